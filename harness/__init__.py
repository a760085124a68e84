"""crwbench: a benchmark harness for self-supervised visual correspondence.

The public API is loaded lazily so that ``harness list`` and ``harness score`` start without
importing torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["propagate", "Protocol", "resolve_protocol", "register_protocol", "register_method", "register_trainer",
           "register_task", "MethodFacts", "__version__"]

_LAZY = {
    "propagate": "harness.engine.propagation",
    "Protocol": "harness.engine.protocol",
    "resolve_protocol": "harness.engine.protocol",
    "register_protocol": "harness.engine.protocol",
    "register_method": "harness.registry",
    "register_trainer": "harness.registry",
    "register_task": "harness.registry",
    "MethodFacts": "harness.facts",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
