"""The contract every method fulfils: frames in, L2-normalised feature maps out.

Methods know nothing of tasks or datasets. The runner hands them whole videos as uint8 RGB
frames; a method normalises them its own way (mean/std, colour space), runs its network in
batches on its device, and returns ``[T, C, h, w]`` unit-norm features at a declared stride.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from harness.errors import MethodError
from harness.facts import IMAGENET_MEAN, IMAGENET_STD, MethodFacts
from harness.runs.precision import DEFAULT_PRECISION, check_precision, feature_precision, memory_format


class Method(ABC):
    """A feature extractor registered by name.

    Subclasses set ``name``, ``stride``, ``dim`` and implement :meth:`embed`, which maps a batch of
    normalised frames ``[B, 3, H, W]`` to raw feature maps ``[B, C, ceil(H/stride), ceil(W/stride)]``.
    """

    name: str = ""
    stride: int = 8
    dim: int = 0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    batch_size: int = 5
    #: the facts the method registered with; a subclass setting ``facts`` gets stride, dim, mean, std from it
    facts: MethodFacts | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        facts = cls.__dict__.get("facts")
        if facts is not None:
            cls.stride, cls.dim, cls.mean, cls.std = facts.stride, facts.dim, facts.mean, facts.std

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config: dict[str, Any] = dict(config or {})
        self.device = torch.device("cpu")
        self.precision = DEFAULT_PRECISION

    # -- to override -------------------------------------------------------------------------
    @abstractmethod
    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        """Raw (not yet L2-normalised) feature maps of a batch of normalised frames."""

    def to(self, device: torch.device) -> Method:
        """Move the method's weights to ``device``; methods without weights just remember it."""
        self.device = device
        return self

    def set_precision(self, precision: str) -> Method:
        """Extract features at ``precision`` (see :mod:`harness.runs.precision`); call after :meth:`to`.

        ``bf16`` also turns the method's modules to channels-last, the layout bf16 convolutions run fastest in.
        """
        self.precision = check_precision(precision, self.device)
        for module in vars(self).values():
            if isinstance(module, torch.nn.Module):
                module.to(memory_format=memory_format(precision))
        return self

    def describe(self) -> dict[str, Any]:
        """Facts for the run record and the leaderboard (backbone, parameters, pretraining, checkpoint)."""
        return {"backbone": None, "parameters": None, "pretraining": None, "checkpoint": None}

    # -- shared machinery --------------------------------------------------------------------
    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, H, W, 3]`` → float ``[B, 3, H, W]`` normalised with the method's mean/std."""
        x = frames.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        return ((x - mean) / std).contiguous(memory_format=memory_format(self.precision))

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Feature grid of a frame: ``ceil`` of the size over the stride (480×854 → 60×107 at 8)."""
        return math.ceil(height / self.stride), math.ceil(width / self.stride)

    def batches(self, frames: np.ndarray) -> Iterator[torch.Tensor]:
        for start in range(0, len(frames), self.batch_size):
            yield torch.from_numpy(np.ascontiguousarray(frames[start : start + self.batch_size]))

    @torch.no_grad()
    def features(self, frames: np.ndarray) -> torch.Tensor:
        """Unit-norm features ``[T, C, h, w]`` (float32, on the method's device) of a whole video.

        Frames are ``[T, H, W, 3]`` uint8. NaN or Inf in the output is a method bug and stops the
        run with the method's name and the first bad frame.
        """
        height, width = frames.shape[1:3]
        expected = self.grid_size(height, width)
        out: list[torch.Tensor] = []
        for batch in self.batches(frames):
            with feature_precision(self.precision, self.device):
                maps = self.embed(self.preprocess(batch))
            maps = maps.float()
            if tuple(maps.shape[-2:]) != expected:
                maps = torch.nn.functional.interpolate(maps, size=expected, mode="bilinear", align_corners=False)
            out.append(maps)
        feats = torch.cat(out)
        bad = ~torch.isfinite(feats).flatten(1).all(dim=1)
        if bool(bad.any()):
            frame = int(torch.nonzero(bad)[0])
            raise MethodError(f"method {self.name!r} produced NaN or Inf features at frame {frame}")
        return torch.nn.functional.normalize(feats, dim=1)


def count_parameters(module: torch.nn.Module) -> int:
    """Number of parameters of a module (for the record's ``parameters`` field)."""
    return sum(p.numel() for p in module.parameters())
