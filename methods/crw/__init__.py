"""CRW (Contrastive Random Walk, Jabri et al. 2020): registration of the ``crw`` method.

The package splits into model (encoder + head), loss (walk loss), checkpoint (save/load/import
of the original release), method (the evaluation wrapper), adapt (test-time adaptation) and
CRW's part of training: trainer (model, walk-loss step, eval export; the loop is harness.training),
recipe (the declared recipe), data and augment (the clips), perf (the loader benchmark), and the
recipes/ and sweeps/ folders. Importing the package stays free of torch so ``harness list`` is fast; the
factory and the lazy attributes below import the heavy modules on first use.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from harness.facts import MethodFacts
from harness.registry import register_method, register_trainer

_LAZY = {
    "walk_loss": "methods.crw.loss",
    "CRWNet": "methods.crw.model",
    "build_encoder": "methods.crw.model",
    "CRWMethod": "methods.crw.method",
}


#: ImageNet mean/std at test time although training uses CIFAR-10's: the original's choice (method.py)
FACTS = MethodFacts(
    stride=8,
    dim=256,
    weights="weights/crw-cpu-demo-eval.pt",
    weights_sha256="84b7bd506fd156b0900a0c88fb82cdb87addde719c02e25cf2e819d55c88458b",
    license="MIT (code after the original videowalk release; demo weights trained by this harness)",
    paper="Jabri, Owens, Efros. Space-Time Correspondence as a Contrastive Random Walk. NeurIPS 2020",
    settings=("checkpoint",),
)

register_trainer("crw", "methods.crw.trainer:CRWTrainer", summary="CRW walk loss on raw video (recipes in methods/crw/recipes)",
                 sweep_dir=Path(__file__).resolve().parent / "sweeps")


@register_method(
    "crw",
    summary="Contrastive Random Walk ResNet-18 (layer3, stride 8), trained by `harness train`",
    facts=FACTS,
)
def create_crw(config: dict[str, Any]) -> Any:
    """Build the CRW method from ``config`` (keys ``checkpoint``, ``device``)."""
    from methods.crw.method import CRWMethod

    return CRWMethod(config)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'methods.crw' has no attribute {name!r}")
