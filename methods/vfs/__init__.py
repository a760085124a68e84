"""VFS (Video Frame-level Similarity, Xu & Wang, ICCV 2021): registration of the ``vfs`` method.

The package splits into model (trunk, projector, predictor, stride-8 evaluation encoder), loss,
pairs (frame sampling on CRW's video index and decoder), augment, checkpoint, method (the
evaluation wrapper) and VFS's part of training: trainer (the harness's trainer contract; the loop is
harness.training), recipe (the declared recipe) and the recipes/ folder. Importing the package stays
free of torch so ``harness list`` is fast; the factory and the trainer import the heavy modules on
first use. methods/vfs/README.md is the method card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.engine.protocol import Protocol, register_protocol
from harness.facts import MethodFacts
from harness.registry import register_method, register_trainer

#: the default (ResNet-18) features; a ResNet-50 checkpoint gives 1024 channels, set per instance
FACTS = MethodFacts(
    stride=8,
    dim=256,
    license="Apache-2.0 (the original code, xvjiarui/VFS on MMAction2; re-implemented here, no code shared)",
    paper="Xu, Wang. Rethinking Self-supervised Correspondence Learning: A Video Frame-level Similarity "
          "Perspective. ICCV 2021",
    settings=("checkpoint", "arch", "seed"),
)

#: the test settings of the VFS release (its ``test_cfg``; methods/vfs/README.md): ResNet-18's window of radius
#: 12 on every context frame including the first, tau 0.07, 20 previous frames not padded with frame 0
register_protocol(
    Protocol(name="vfs", context=20, keep_first=True, topk=10, temperature=0.07, radius=12, window="disk",
             restrict_first=True, pad_with_first=False),
    summary="VFS's published test settings (ResNet-18; ResNet-50 used radius 18: --set protocol.radius=18)",
)

register_trainer("vfs", "methods.vfs.trainer:VFSTrainer",
                 summary="VFS frame-level similarity on raw video (recipes in methods/vfs/recipes)",
                 sweep_dir=Path(__file__).resolve().parent / "sweeps")


@register_method(
    "vfs",
    summary="VFS ResNet-18/50 (res4 = layer3 at stride 8), --checkpoint from a VFS run or the authors' release",
    facts=FACTS,
)
def create_vfs(config: dict[str, Any]) -> Any:
    """Build the VFS method from ``config`` (keys ``checkpoint``, ``arch``, ``seed``, ``device``)."""
    from methods.vfs.method import VFSMethod

    return VFSMethod(config)
