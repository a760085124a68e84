"""The CRW training augmentation: a clip of frames → a grid of jittered patches per frame (crw-protocol.md §1.4, §3).

Per frame, independently (new random parameters for every frame, so consecutive frames are
cropped differently — that is part of what the walk must see through):

1. RandomResizedCrop to ``frame_size`` (scale 0.8–0.95, aspect ratio 0.7–1.3, bilinear);
2. a regular grid of ``patch_size`` patches with stride ``patch_stride`` (256/64/32 → 7×7 = 49);
3. each patch its own RandomResizedCrop back to ``patch_size`` (scale 0.7–0.9, ratio 3/4–4/3);
4. scale to [0, 1] and normalise with the **CIFAR-10** mean/std (0.4914, 0.4822, 0.4465) /
   (0.2023, 0.1994, 0.2010). The original trained with these and evaluated with ImageNet
   statistics; the author called the mismatch a bug of no real consequence (issue #23). We keep
   it because the released weights were trained that way; the recipe can change ``mean``/``std``.

Everything runs as torch ops on one ``torch.Generator``, so the same generator state gives the
same patches bit for bit (the test-time-adaptation helper relies on that too).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)

DEFAULTS: dict[str, Any] = {
    "frame_size": 256,
    "frame_scale": (0.8, 0.95),
    "frame_ratio": (0.7, 1.3),
    "patch_size": 64,
    "patch_stride": 32,
    "patch_scale": (0.7, 0.9),
    "patch_ratio": (3 / 4, 4 / 3),
    "mean": CIFAR10_MEAN,
    "std": CIFAR10_STD,
}


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def _randint(generator: torch.Generator, high_inclusive: int) -> int:
    return int(torch.randint(high_inclusive + 1, (), generator=generator))


def random_resized_box(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a random crop, by torchvision's RandomResizedCrop rule.

    Ten tries at an area fraction in ``scale`` and a log-uniform aspect ratio in ``ratio``; if
    none fits, a centre crop with the ratio clamped to ``ratio``.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * _uniform(generator, *scale)
        aspect = math.exp(_uniform(generator, *log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return _randint(generator, height - h), _randint(generator, width - w), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def resized_crop(image: torch.Tensor, box: tuple[int, int, int, int], size: int) -> torch.Tensor:
    """Crop ``[C, H, W]`` to ``box`` and resize it to ``size``×``size`` (bilinear, antialiased when shrinking)."""
    top, left, h, w = box
    crop = image[:, top : top + h, left : left + w].unsqueeze(0)
    return F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]


def patch_grid(image: torch.Tensor, size: int, stride: int) -> torch.Tensor:
    """All ``size``×``size`` windows of ``[C, S, S]`` at ``stride``, row-major: ``[N, C, size, size]``."""
    channels = image.shape[0]
    windows = image.unfold(1, size, stride).unfold(2, size, stride)  # C, gy, gx, size, size
    return windows.permute(1, 2, 0, 3, 4).reshape(-1, channels, size, size)


def grid_nodes(frame_size: int, patch_size: int, patch_stride: int) -> int:
    """Number of patches (walk nodes) per frame: ``((S - P) // stride + 1)²``."""
    side = (frame_size - patch_size) // patch_stride + 1
    return side * side


class ClipAugment:
    """``frames [T, H, W, 3] uint8`` + generator → normalised patches ``[T, N, 3, P, P]`` float32.

    ``recipe`` is the recipe's ``augment`` section (missing keys take the paper's values).
    """

    def __init__(self, recipe: dict[str, Any] | None = None) -> None:
        cfg = {**DEFAULTS, **(recipe or {})}
        unknown = set(cfg) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown augment keys {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        self.frame_size = int(cfg["frame_size"])
        self.frame_scale = tuple(float(v) for v in cfg["frame_scale"])
        self.frame_ratio = tuple(float(v) for v in cfg["frame_ratio"])
        self.patch_size = int(cfg["patch_size"])
        self.patch_stride = int(cfg["patch_stride"])
        self.patch_scale = tuple(float(v) for v in cfg["patch_scale"])
        self.patch_ratio = tuple(float(v) for v in cfg["patch_ratio"])
        if self.patch_size > self.frame_size or self.patch_stride <= 0:
            raise ValueError(
                f"patch_size {self.patch_size} / stride {self.patch_stride} do not fit frame_size {self.frame_size}"
            )
        self.mean = torch.tensor(cfg["mean"], dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg["std"], dtype=torch.float32).view(1, 3, 1, 1)
        self.nodes = grid_nodes(self.frame_size, self.patch_size, self.patch_stride)

    def frame_patches(self, frame: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One float ``[3, H, W]`` frame in [0, 1] → jittered patches ``[N, 3, P, P]`` (not normalised)."""
        box = random_resized_box(frame.shape[1], frame.shape[2], self.frame_scale, self.frame_ratio, generator)
        frame = resized_crop(frame, box, self.frame_size)
        patches = patch_grid(frame, self.patch_size, self.patch_stride)
        out = torch.empty_like(patches)
        for n, patch in enumerate(patches):
            box = random_resized_box(self.patch_size, self.patch_size, self.patch_scale, self.patch_ratio, generator)
            out[n] = resized_crop(patch, box, self.patch_size)
        return out

    def __call__(self, frames: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}")
        video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
        clip = torch.stack([self.frame_patches(frame, generator) for frame in video])
        return (clip - self.mean) / self.std
