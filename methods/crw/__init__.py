"""CRW (Contrastive Random Walk, Jabri et al. 2020): registration of the ``crw`` method.

The package splits into model (encoder + head), loss (walk loss), checkpoint (save/load/import
of the original release), method (the evaluation wrapper), adapt (test-time adaptation) and the
training pipeline. Importing the package stays free of torch so ``harness list`` is fast; the
factory and the lazy attributes below import the heavy modules on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from harness.registry import register_method

_LAZY = {
    "walk_loss": "methods.crw.loss",
    "CRWNet": "methods.crw.model",
    "build_encoder": "methods.crw.model",
    "CRWMethod": "methods.crw.method",
}


@register_method(
    "crw",
    summary="Contrastive Random Walk ResNet-18 (layer3, stride 8), trained by `harness train`",
    stride=8,
    dim=256,
    trainable=True,
)
def create_crw(config: dict[str, Any]) -> Any:
    """Build the CRW method from ``config`` (keys ``checkpoint``, ``device``)."""
    from methods.crw.method import CRWMethod

    return CRWMethod(config)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'methods.crw' has no attribute {name!r}")
