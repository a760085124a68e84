"""Object masks as soft labels: one channel per object id, bilinearly downsampled to the feature grid, and
back by bilinear upsampling and argmax (the DAVIS tasks' codec, docs/protocol.md §4.4)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def one_hot_soft(ids: np.ndarray, channels: int, grid: tuple[int, int]) -> torch.Tensor:
    """``[channels, h, w]``: the one-hot map of ``ids`` (``[H, W]``, values ``0..channels-1``) resized
    bilinearly (``align_corners=False``) to ``grid``."""
    import torch
    import torch.nn.functional as F

    onehot = F.one_hot(torch.from_numpy(np.asarray(ids, dtype=np.int64)), channels).permute(2, 0, 1).float()
    return F.interpolate(onehot[None], size=tuple(grid), mode="bilinear", align_corners=False)[0]


def argmax_channels(soft: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """``[K, h, w]`` soft labels → ``[H, W]`` int64 channel indices: bilinear upsampling to ``size``, argmax."""
    import torch.nn.functional as F

    up = F.interpolate(soft[None].float(), size=tuple(size), mode="bilinear", align_corners=False)[0]
    return up.argmax(0).numpy()


def decode_masks(soft: torch.Tensor, first: np.ndarray) -> np.ndarray:
    """``[T, K, h, w]`` soft labels → ``[T, H, W]`` uint8 ids; frame 0 is ``first`` (the ground truth)."""
    out = np.empty((soft.shape[0], *first.shape), dtype=np.uint8)
    out[0] = first
    for t in range(1, soft.shape[0]):
        out[t] = argmax_channels(soft[t], first.shape).astype(np.uint8)
    return out
