"""The CRW training augmentation: a clip of frames → a grid of jittered patches per frame (crw-protocol.md §1.4, §3).

Per frame, independently (new random parameters for every frame, so consecutive frames are
cropped differently — that is part of what the walk must see through):

1. RandomResizedCrop to ``frame_size`` (scale 0.8–0.95, aspect ratio 0.7–1.3, bilinear);
2. a regular grid of ``patch_size`` patches with stride ``patch_stride`` (256/64/32 → 7×7 = 49);
3. each patch its own RandomResizedCrop back to ``patch_size`` (scale 0.7–0.9, ratio 3/4–4/3),
   all patches of all frames cut by one ``grid_sample`` call (:func:`cut_patches`; the former
   one-interpolation-per-patch path is kept in :mod:`methods.crw.reference` and tested against);
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


def _axis_sources(offset: torch.Tensor, start: torch.Tensor, length: torch.Tensor, size: int) -> torch.Tensor:
    """Source coordinates (float64) of ``size`` output pixels resampling ``[start, start + length)`` of an axis.

    The rule of ``F.interpolate(mode="bilinear", align_corners=False)``: output pixel ``i`` reads
    ``(i + 0.5) · length / size - 0.5``, clamped to the crop (``[0, length - 1]``), so border
    pixels never blend with what lies outside the box. ``offset`` places the box's patch in the
    frame. Shapes: ``offset``/``start``/``length`` ``[F, N]`` → ``[F, N, size]``.
    """
    steps = torch.arange(size, dtype=torch.float64, device=length.device) + 0.5
    length = length.to(torch.float64).unsqueeze(-1)
    source = (steps * (length / size) - 0.5).clamp(min=0.0)
    source = torch.minimum(source, length - 1)
    return source + (offset + start).to(torch.float64).unsqueeze(-1)


def cut_patches(frames: torch.Tensor, boxes: torch.Tensor, patch_size: int, patch_stride: int) -> torch.Tensor:
    """Every patch's jittered crop of every frame in one ``grid_sample`` call: ``[F, N, C, P, P]``.

    ``frames`` is ``[F, C, S, S]`` (float, resized frames), ``boxes`` ``[F, N, 4]`` holds each grid
    patch's ``(top, left, h, w)`` inside its ``P``×``P`` window. The same numbers as cropping each
    window and resizing the crop to ``P`` with :func:`resized_crop` (bilinear; patch crops are
    never larger than ``P``, so antialiasing has nothing to do), up to float32 rounding of the
    sampling positions (tested within 1e-4 on real frames). Runs on whatever device ``frames`` is on.
    The result is a permuted view of ``grid_sample``'s output (``collate``'s stack copies it anyway).
    """
    count, channels, side, _ = frames.shape
    nodes = boxes.shape[1]
    grid_side = (side - patch_size) // patch_stride + 1
    boxes = boxes.to(frames.device)
    cells = torch.arange(nodes, device=frames.device)
    origin_y = (cells // grid_side * patch_stride).expand(count, nodes)
    origin_x = (cells % grid_side * patch_stride).expand(count, nodes)
    scale = 2.0 / (side - 1)  # align_corners=True: -1 and 1 are the centres of the border pixels
    ys = (_axis_sources(origin_y, boxes[..., 0], boxes[..., 2], patch_size) * scale - 1.0).float()  # F, N, P
    xs = (_axis_sources(origin_x, boxes[..., 1], boxes[..., 3], patch_size) * scale - 1.0).float()
    grid = torch.empty(count, nodes, patch_size, patch_size, 2, device=frames.device)
    grid[..., 0] = xs.unsqueeze(-2)  # x varies along output columns
    grid[..., 1] = ys.unsqueeze(-1)  # y along output rows
    grid = grid.view(count, nodes * patch_size, patch_size, 2).to(frames.dtype)
    out = F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.view(count, channels, nodes, patch_size, patch_size).transpose(1, 2)


class ClipAugment:
    """``frames [T, H, W, 3] uint8`` + generator → normalised patches ``[T, N, 3, P, P]`` float32.

    ``recipe`` is the recipe's ``augment`` section (missing keys take the paper's values).

    The work splits in two so the second half can run batched on the GPU: :meth:`prepare` draws
    every random box (in the order the per-patch reference draws them: a frame's box, then its
    ``N`` patch boxes, frame after frame) and resizes the frames (one antialiased interpolation
    per frame); :meth:`finish` cuts all patches of all frames in one ``grid_sample`` and
    normalises. ``methods.crw.reference`` keeps the former one-interpolation-per-patch path.
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

    def prepare(self, frames: np.ndarray, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Resized frames ``[T, 3, S, S]`` in [0, 1] and every patch box ``[T, N, 4]`` (top, left, h, w)."""
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}")
        video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
        height, width = video.shape[2:]
        resized, boxes = [], []
        for frame in video:
            top, left, h, w = random_resized_box(height, width, self.frame_scale, self.frame_ratio, generator)
            crop = frame[:, top : top + h, left : left + w].float().div_(255.0)  # only the crop is converted
            resized.append(resized_crop(crop, (0, 0, h, w), self.frame_size))
            boxes.append([
                random_resized_box(self.patch_size, self.patch_size, self.patch_scale, self.patch_ratio, generator)
                for _ in range(self.nodes)
            ])
        return torch.stack(resized), torch.tensor(boxes, dtype=torch.int64)

    def finish(self, frames: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """:meth:`prepare`'s output (optionally with a leading batch dimension) → normalised patches.

        ``[T, 3, S, S]``, ``[T, N, 4]`` → ``[T, N, 3, P, P]``; ``[B, T, …]`` → ``[B, T, N, 3, P, P]``.
        """
        lead = frames.shape[:-3]
        frames = frames.reshape(-1, *frames.shape[-3:])
        # normalising before resampling is the same (bilinear weights sum to 1) on 3x fewer pixels
        frames = (frames - self.mean.to(frames.device)) / self.std.to(frames.device)
        patches = cut_patches(frames, boxes.reshape(-1, *boxes.shape[-2:]), self.patch_size, self.patch_stride)
        return patches.reshape(*lead, *patches.shape[1:])

    def __call__(self, frames: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        return self.finish(*self.prepare(frames, generator))
