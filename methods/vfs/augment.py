"""The VFS frame augmentation, on CPU with torch ops (methods/vfs/README.md §Augmentation).

Every frame gets its own random parameters (the original's ``same_on_clip=False,
same_across_clip=False``), in this order:

1. random resized crop: ten tries at an area fraction uniform in ``area`` and an aspect ratio
   log-uniform in ``ratio``; the first that fits is placed uniformly; if none fits, the centred square
   of the shorter side (mmaction2's rule, which differs from torchvision's fallback);
2. resize to ``size × size`` (bilinear, no antialiasing: OpenCV's ``INTER_LINEAR``);
3. horizontal flip with probability ``flip``;
4. optional photometric jitter, off in the fine-grained recipes (the "nc" = no colour configs):
   colour jitter (brightness/contrast/saturation/hue in random order) with probability ``jitter_p``,
   greyscale with ``grayscale_p``, Gaussian blur with σ uniform in ``blur_sigma`` with ``blur_p``;
5. scale to [0, 1] and normalise with ``mean``/``std`` (ImageNet's, RGB).

All randomness comes from one ``torch.Generator``, so the same generator state gives the same views
bit for bit (what lets a trainer resume exactly).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

CROP_TRIES = 10


def _uniform(generator: torch.Generator, low: float, high: float, n: int | None = None) -> torch.Tensor:
    shape = () if n is None else (n,)
    return low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float64)


def _randint(generator: torch.Generator, high_inclusive: int) -> int:
    return int(torch.randint(high_inclusive + 1, (), generator=generator))


def crop_box(
    height: int, width: int, area: tuple[float, float], ratio: tuple[float, float], generator: torch.Generator
) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a random resized crop by the rule in the module docstring.

    The ten candidate ratios and areas are drawn at once, then the offsets (left before top) of
    the first candidate that fits.
    """
    ratios = torch.exp(_uniform(generator, math.log(ratio[0]), math.log(ratio[1]), CROP_TRIES))
    areas = _uniform(generator, area[0], area[1], CROP_TRIES) * (height * width)
    widths = torch.round(torch.sqrt(areas * ratios)).long().tolist()
    heights = torch.round(torch.sqrt(areas / ratios)).long().tolist()
    for w, h in zip(widths, heights, strict=True):
        if 0 < h <= height and 0 < w <= width:
            left = _randint(generator, width - w)
            top = _randint(generator, height - h)
            return top, left, h, w
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


@dataclass(frozen=True)
class FrameAugment:
    """Per-frame augmentation settings (see the module docstring); call with frames ``[T, H, W, 3]`` uint8."""

    size: int = 224
    area: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5
    jitter_p: float = 0.0
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_p: float = 0.0
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 0.2)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __call__(self, frames: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        """Normalised float views ``[T, 3, size, size]``, one independent draw per frame."""
        return torch.stack([self.frame(torch.from_numpy(np.ascontiguousarray(f)), generator) for f in frames])

    def frame(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One ``[H, W, 3]`` uint8 frame → ``[3, size, size]`` normalised float32."""
        height, width = image.shape[:2]
        top, left, h, w = crop_box(height, width, self.area, self.ratio, generator)
        x = image[top : top + h, left : left + w].permute(2, 0, 1).float()[None]
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)[0]
        if float(torch.rand((), generator=generator)) < self.flip:
            x = x.flip(-1)
        x = (x.clamp(0, 255) / 255.0)
        x = self._photometric(x, generator)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return (x - mean) / std

    def _photometric(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Colour jitter, greyscale and blur on a [0, 1] image; each draw happens only when its probability is > 0."""
        from torchvision.transforms import functional as TF

        if self.jitter_p > 0 and float(torch.rand((), generator=generator)) < self.jitter_p:
            factors = {
                "brightness": float(_uniform(generator, max(0.0, 1 - self.brightness), 1 + self.brightness)),
                "contrast": float(_uniform(generator, max(0.0, 1 - self.contrast), 1 + self.contrast)),
                "saturation": float(_uniform(generator, max(0.0, 1 - self.saturation), 1 + self.saturation)),
                "hue": float(_uniform(generator, -self.hue, self.hue)),
            }
            ops = {"brightness": TF.adjust_brightness, "contrast": TF.adjust_contrast,
                   "saturation": TF.adjust_saturation, "hue": TF.adjust_hue}
            for i in torch.randperm(4, generator=generator).tolist():
                name = ("brightness", "contrast", "saturation", "hue")[i]
                x = ops[name](x, factors[name])
        if self.grayscale_p > 0 and float(torch.rand((), generator=generator)) < self.grayscale_p:
            x = TF.rgb_to_grayscale(x, num_output_channels=3)
        if self.blur_p > 0 and float(torch.rand((), generator=generator)) < self.blur_p:
            sigma = float(_uniform(generator, *self.blur_sigma))
            kernel = 2 * math.ceil(3 * sigma) + 1
            x = TF.gaussian_blur(x, [kernel, kernel], [sigma, sigma])
        return x
