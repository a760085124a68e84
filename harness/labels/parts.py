"""Part (class-id) maps as soft labels: one channel per class present in the first frame, and back to class
ids (the VIP task's codec, docs/protocol.md §4.4). Ids without a channel (ignored values) get an all-zero
label vector."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from harness.labels.masks import argmax_channels

if TYPE_CHECKING:
    import torch


def soft_labels(labels: np.ndarray, class_ids: list[int], grid: tuple[int, int]) -> torch.Tensor:
    """``[K, h, w]`` bilinearly downsampled one-hot maps of ``labels`` for ``class_ids`` (in that order)."""
    import torch
    import torch.nn.functional as F

    ids = torch.as_tensor(class_ids, dtype=torch.int64).view(-1, 1, 1)
    onehot = (torch.from_numpy(np.asarray(labels, dtype=np.int64))[None] == ids).float()
    return F.interpolate(onehot[None], size=tuple(grid), mode="bilinear", align_corners=False)[0]


def labels_from_soft(soft: torch.Tensor, class_ids: list[int], size: tuple[int, int]) -> np.ndarray:
    """``[K, h, w]`` soft labels → ``[H, W]`` uint8 class ids (bilinear upsampling, argmax)."""
    lookup = np.asarray(class_ids, dtype=np.uint8)
    return lookup[argmax_channels(soft, size)]
