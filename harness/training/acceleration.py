"""The fast model step on CUDA: ``torch.compile``, channels_last and mixed precision, each behind a recipe switch.

Both default to ``auto``: on for CUDA, off on the CPU (where compiling costs minutes of a small
run and NHWC convolutions are not faster). ``torch.compile`` wraps the (possibly DDP-wrapped)
model for the forward only; checkpoints keep coming from the plain module, so their keys never
carry the compiled wrapper's ``_orig_mod.`` prefix. Compilation happens during the first step and
can fail (no C compiler, an unsupported op): :class:`StepForward` then says so once, restores the
BatchNorm buffers the failed attempt may have touched, and trains eagerly. Mixed precision
(``train.amp``) is CUDA only: :func:`amp_dtype` resolves it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import torch

from harness.errors import HarnessError

log = logging.getLogger(__name__)

_ON = (True, "on", "true", "yes")
_OFF = (False, "off", "false", "no")


def resolve_switch(value: Any, device: torch.device, key: str) -> bool:
    """``auto`` → on exactly when training on CUDA; ``on``/``off`` (YAML reads them as booleans) as given."""
    if value in ("auto", None):
        return device.type == "cuda"
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise HarnessError(f"{key} must be auto, on or off, got {value!r}")


def use_channels_last(model: torch.nn.Module) -> None:
    """NHWC weights; a model with a ``channels_last`` attribute is told, to convert its inputs (the state dict is unchanged)."""
    model.to(memory_format=torch.channels_last)
    if hasattr(model, "channels_last"):
        model.channels_last = True  # type: ignore[assignment]


def amp_dtype(mode: Any, device: torch.device) -> torch.dtype | None:
    """``train.amp`` on ``device``: None (float32) on the CPU or when off; ``auto`` = bf16 where supported, else fp16."""
    if device.type != "cuda" or mode in (False, "off", None):
        return None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if mode in ("bf16", "fp16"):
        return torch.bfloat16 if mode == "bf16" else torch.float16
    raise HarnessError(f"train.amp must be auto, bf16, fp16 or off, got {mode!r}")


class StepForward:
    """The model's forward for training steps: compiled when asked, eager after a failed compilation.

    ``run_step(step_fn)`` calls ``step_fn(forward)``; the first call with compilation on is the one
    that compiles, and its wall time is kept in ``compile_s`` so throughput figures can leave it out.
    """

    def __init__(self, model: torch.nn.Module, compile_model: bool) -> None:
        self.model = model
        self.compiled = compile_model
        self.forward: Callable[..., torch.Tensor] = torch.compile(model) if compile_model else model
        self.compile_s: float | None = None
        self._first = compile_model

    def run_step(self, step_fn: Callable[[Callable[..., torch.Tensor]], Any]) -> Any:
        if not self._first:
            return step_fn(self.forward)
        self._first = False
        buffers = {name: b.detach().clone() for name, b in self.model.named_buffers()}
        started = time.perf_counter()
        try:
            result = step_fn(self.forward)
        except Exception as err:  # inductor/dynamo raise many kinds of errors; any means: train eagerly
            with torch.no_grad():
                for name, b in self.model.named_buffers():
                    b.copy_(buffers[name])
            for param in self.model.parameters():
                param.grad = None
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
            log.warning("torch.compile failed (%s: %s); training eagerly", type(err).__name__, first_line[:300])
            self.compiled = False
            self.forward = self.model
            return step_fn(self.forward)
        self.compile_s = time.perf_counter() - started
        log.info("torch.compile: the first step took %.1f s (compilation included; left out of throughput)", self.compile_s)
        return result
