"""Numeric precision of feature extraction (``--precision {fp32,tf32,bf16}``).

- ``fp32``: strict float32: TF32 off for matmuls and cuDNN convolutions (the default; the numbers a
  CPU run gives, up to summation order).
- ``tf32``: float32 storage, TF32 tensor-core matmuls and convolutions on CUDA (PyTorch's own default
  for convolutions): ~10 mantissa bits in the products, several times faster on Ampere and later.
- ``bf16``: autocast to bfloat16 with channels-last activations and weights, the fastest on recent GPUs.

The setting changes features and so possibly scores: it is recorded in the run's ``config`` and is
part of the run digest, but it is not a propagation setting and stays out of the protocol hash.
Only feature extraction runs under it; propagation's matmuls keep strict float32 (the flags are set
on entry and restored on exit). On CPU both are refused: TF32 does not exist there (a ``tf32`` run
would compute exactly the ``fp32`` numbers under another name, in a folder and record of its own),
and CPU autocast to bfloat16 is slower than float32 on most CPUs and gives other numbers, so it would
buy nothing but a record that does not compare.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from harness.errors import HarnessError

PRECISIONS = ("fp32", "tf32", "bf16")
DEFAULT_PRECISION = "fp32"


def check_precision(precision: str, device: torch.device | str | None = None) -> str:
    """``precision`` if it is known and usable on ``device``; otherwise a :class:`HarnessError` saying why."""
    if precision not in PRECISIONS:
        raise HarnessError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    on_cpu = device is not None and torch.device(device).type == "cpu"
    if precision == "bf16" and on_cpu:
        raise HarnessError(
            "--precision bf16 is for CUDA devices: on CPU, bfloat16 autocast is slower than float32 and gives "
            "other numbers; use --precision fp32 on CPU"
        )
    if precision == "tf32" and on_cpu:
        raise HarnessError(
            "--precision tf32 needs a CUDA device: TF32 is a tensor-core mode and does not exist on CPU, where "
            "the run would compute fp32 numbers under another name; use --precision fp32 on CPU"
        )
    return precision


@contextmanager
def feature_precision(precision: str, device: torch.device) -> Iterator[None]:
    """Run the enclosed feature extraction at ``precision`` on ``device``; global flags are restored after."""
    check_precision(precision, device)
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    fast = precision != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = fast
    try:
        if precision == "bf16":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                yield
        else:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def memory_format(precision: str) -> torch.memory_format:
    """Channels-last for ``bf16`` (tensor-core convolutions read NHWC without transposes), else contiguous."""
    return torch.channels_last if precision == "bf16" else torch.contiguous_format
