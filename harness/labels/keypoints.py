"""Keypoints as soft labels, and the readers of keypoint files (docs/protocol.md §4.4–4.6).

Cell geometry: a grid of ``h × w`` cells tiles the original ``H × W`` frame; cell ``i`` is centred on
pixel ``(i + 0.5) · W / w − 0.5`` (pixel centres on integers, the convention of bilinear resizing with
``align_corners=False`` that the mask codecs use). :func:`gaussian_heatmaps` places each point's Gaussian
at its sub-cell position in that geometry and :func:`decode_heatmaps` maps cells back with the same
formula, so encoding then decoding returns the points up to the top-k decoding error.

Points are ``[2, J, ...]`` arrays of 0-based pixel ``(x, y)``; a point that is absent is ``-1`` (or NaN
before encoding: it gets an all-zero channel).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.errors import DataError

if TYPE_CHECKING:
    import torch

#: σ of a point's Gaussian, in cells
SIGMA_CELLS = 0.5
#: cells averaged (weighted by their values) to decode a point
TOP_CELLS = 3


def to_grid(xy: np.ndarray, size: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """0-based pixel coordinates ``[2, ...]`` of an ``H × W`` frame → continuous cell coordinates."""
    (height, width), (h, w) = size, grid
    scale = np.array([w / width, h / height]).reshape(2, *([1] * (np.ndim(xy) - 1)))
    return (np.asarray(xy, dtype=np.float64) + 0.5) * scale - 0.5


def to_pixels(cells: np.ndarray, size: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`to_grid`: continuous cell coordinates ``[2, ...]`` → 0-based pixels."""
    (height, width), (h, w) = size, grid
    cells = np.asarray(cells, dtype=np.float64)
    scale = np.array([width / w, height / h]).reshape(2, *([1] * (cells.ndim - 1)))
    return (cells + 0.5) * scale - 0.5


def gaussian_heatmaps(xy: np.ndarray, size: tuple[int, int], grid: tuple[int, int],
                      sigma: float = SIGMA_CELLS) -> torch.Tensor:
    """``[J + 1, h, w]``: per point an un-normalised Gaussian (peak 1, ``sigma`` cells) on a 4 × 4 support
    (the 2 × 2 cells around the point and a ring of one), zero elsewhere, plus a background channel that
    is 1 where every point channel is 0. ``xy`` is ``[2, J]``; non-finite points get an all-zero channel."""
    import torch

    h, w = grid
    centres = to_grid(xy, size, grid)  # [2, J]
    maps = torch.zeros(centres.shape[1] + 1, h, w, dtype=torch.float64)
    ys = torch.arange(h, dtype=torch.float64)[:, None]
    xs = torch.arange(w, dtype=torch.float64)[None, :]
    for j, (cx, cy) in enumerate(centres.T):
        if not (math.isfinite(cx) and math.isfinite(cy)):
            continue
        x0, y0 = math.floor(cx), math.floor(cy)
        support = ((xs >= x0 - 1) & (xs <= x0 + 2)) & ((ys >= y0 - 1) & (ys <= y0 + 2))
        gauss = torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))
        maps[j] = torch.where(support, gauss, 0.0)
    maps[-1] = (maps[:-1] == 0).all(dim=0).double()
    return maps.float()


def decode_heatmaps(maps: torch.Tensor, top: int = TOP_CELLS) -> np.ndarray:
    """``[T, J, h, w]`` point heatmaps → ``[2, J, T]`` cell coordinates: per point the mean of its ``top``
    cells weighted by their values (normalised to sum 1); an all-zero map gives ``-1`` (no prediction)."""
    import torch

    T, J, h, w = maps.shape
    flat = maps.reshape(T, J, h * w).double()
    values, index = flat.topk(min(top, h * w), dim=-1)
    total = values.sum(-1, keepdim=True)
    weights = torch.where(total > 0, values / total.clamp_min(1e-300), 0.0)
    x = (weights * (index % w).double()).sum(-1)
    y = (weights * torch.div(index, w, rounding_mode="floor").double()).sum(-1)
    empty = flat.amax(-1) <= 0
    coords = torch.stack([x, y]).masked_fill(empty[None], -1.0)  # [2, T, J]
    return coords.permute(0, 2, 1).numpy()


def decode_points(soft: torch.Tensor, points: int, size: tuple[int, int], top: int = TOP_CELLS) -> np.ndarray:
    """``[T, ≥points, h, w]`` propagated heatmaps → ``[2, points, T]`` 0-based pixels of an ``H × W`` frame
    (``-1`` where a heatmap vanished). Channels after the first ``points`` (background) are ignored."""
    cells = decode_heatmaps(soft[:, :points].detach().cpu(), top)
    pixels = to_pixels(cells, size, tuple(soft.shape[-2:]))
    return np.where(cells[:1] < 0, -1.0, pixels)  # a weighted mean of cell indices is never < 0


# -- keypoint files ---------------------------------------------------------------------------------


def read_npy_points(path: Path) -> np.ndarray:
    """A ``.npy`` array of points (numbers only; pickled objects are refused); a bad file raises
    :class:`DataError` naming it."""
    try:
        return np.asarray(np.load(path, allow_pickle=False), dtype=np.float64)
    except (OSError, ValueError, TypeError) as err:
        raise DataError(f"{path}: unreadable .npy keypoint file ({type(err).__name__}: {err})") from err


def read_json_points(path: Path, key: str | None = None) -> np.ndarray:
    """Points from a JSON file: a nested list of numbers, or the list under ``key`` of a JSON object; ``null``
    reads as NaN (an absent point). A bad file raises :class:`DataError` naming it."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: unreadable JSON keypoint file ({type(err).__name__}: {err})") from err
    if key is not None:
        if not isinstance(content, dict) or key not in content:
            present = ", ".join(sorted(content)) if isinstance(content, dict) else type(content).__name__
            raise DataError(f"{path} has no {key!r} entry (found: {present or 'none'})")
        content = content[key]
    try:
        array = np.array(content, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"{path}: keypoints must be a nested list of numbers of one shape ({err})") from err
    return array
