"""Registration of the ``toynet`` method and its trainer: what the ``harness.methods`` entry point imports.

Nothing here imports torch, so that ``harness list`` stays fast: the method's factory imports the network on
first use, and the trainer is named as ``"module:Class"``, imported only by ``harness train``. The facts are
what ``harness list`` prints and what the run checks ``--checkpoint`` / ``--set method.*`` against.
"""

from __future__ import annotations

from typing import Any

from harness.facts import MethodFacts
from harness.registry import register_method, register_trainer

FACTS = MethodFacts(
    stride=8,
    dim=32,  # the default width; a checkpoint of another width sets it per instance
    mean=(0.5, 0.5, 0.5),
    std=(0.25, 0.25, 0.25),
    license="MIT (crwbench_example)",
    paper="none: a plug-in example",
    settings=("checkpoint", "seed"),
)

register_trainer("toynet", "crwbench_example.trainer:ToyTrainer",
                 summary="two-frame cycle walk on folders of frames (CRW's objective at its shortest)")


@register_method("toynet", summary="3-layer conv net at stride 8 (crwbench_example plug-in)", facts=FACTS)
def create_toynet(config: dict[str, Any]) -> Any:
    """The method, with ``--checkpoint`` weights (from ``harness train``) or a seeded random init."""
    from crwbench_example.network import ToyNetMethod

    return ToyNetMethod(config)
