"""PCK (percentage of correct keypoints) as CRW's JHMDB evaluation computes it (``eval/eval_pck.py``).

Pure numpy: arrays in, numbers out. Keypoints are ``[2, J, T]`` arrays of 0-based pixel
coordinates (x, y) of the original frame; a prediction with ``x < 0`` means "no prediction".

The definition, fact by fact (docs/protocol.md §5.2):

- a joint is scored in a frame only where ``evaluated`` says so (the task decides: CRW takes the
  joints whose *prediction* exists, ``x >= 0``);
- the normaliser of a frame is 0.6 × the diagonal of the bounding box of the ground-truth
  coordinates of the joints scored in that frame;
- distance = ‖pred − gt‖ / normaliser; a joint is correct at threshold ``a`` when distance <= a;
- counts are kept **per joint**, pooled over all frames (and, by the caller, all clips); PCK is the
  per-joint fraction averaged over joints — the pooled-over-joints variant is not used.

Counts rather than fractions are what a clip reports, so that clips can be pooled exactly later.
"""

from __future__ import annotations

import numpy as np

THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)
BOX_FACTOR = 0.6


def prediction_visible(pred: np.ndarray) -> np.ndarray:
    """``[J, T]`` mask of joints that have a prediction (CRW's visibility rule: ``x >= 0``)."""
    return np.asarray(pred)[0] >= 0


def inside_frame(gt: np.ndarray, height: int, width: int) -> np.ndarray:
    """``[J, T]`` mask of ground-truth joints inside the frame (0 <= x < width, 0 <= y < height)."""
    gt = np.asarray(gt)
    return (gt[0] >= 0) & (gt[0] < width) & (gt[1] >= 0) & (gt[1] < height)


def normalisers(gt: np.ndarray, evaluated: np.ndarray) -> np.ndarray:
    """Per-frame normaliser ``[T]``: 0.6 × diagonal of the GT box of the evaluated joints (nan if none)."""
    gt = np.asarray(gt, dtype=np.float64)
    mask = np.asarray(evaluated, dtype=bool)
    lo = np.where(mask[None], gt, np.inf).min(axis=1)  # [2, T]
    hi = np.where(mask[None], gt, -np.inf).max(axis=1)
    with np.errstate(invalid="ignore"):
        diag = np.hypot(hi[0] - lo[0], hi[1] - lo[1])
    return np.where(mask.any(axis=0), BOX_FACTOR * diag, np.nan)


def normalised_distances(pred: np.ndarray, gt: np.ndarray, evaluated: np.ndarray) -> np.ndarray:
    """``[J, T]`` distance / normaliser; nan where a joint is not evaluated.

    An evaluated joint without a prediction (``x < 0``, possible when visibility comes from the
    ground truth) or in a frame whose box is a single point gets ``inf``: it counts, and it misses —
    what the original's ``d / 0`` comparison does too.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[0] != 2:
        raise ValueError(f"pred and gt must both be [2, J, T]; got {pred.shape} and {gt.shape}")
    mask = np.asarray(evaluated, dtype=bool)
    dist = np.hypot(pred[0] - gt[0], pred[1] - gt[1])
    norm = normalisers(gt, mask)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = dist / norm
    scaled = np.where(np.isfinite(scaled), scaled, np.inf)
    scaled = np.where(pred[0] < 0, np.inf, scaled)
    return np.where(mask, scaled, np.nan)


def pck_counts(distances: np.ndarray, thresholds: tuple[float, ...] = THRESHOLDS) -> tuple[np.ndarray, np.ndarray]:
    """Per-joint counts from ``[J, T]`` normalised distances (nan = not evaluated).

    Returns ``hits`` ``[len(thresholds), J]`` (distance <= threshold) and ``totals`` ``[J]``.
    """
    distances = np.asarray(distances, dtype=np.float64)
    scored = ~np.isnan(distances)
    totals = scored.sum(axis=1)
    hits = np.stack([(scored & (distances <= a)).sum(axis=1) for a in thresholds])
    return hits, totals


def pck_from_counts(hits: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """PCK per threshold: per-joint fraction hits/totals, averaged over joints that were scored at all.

    A joint never scored (total 0) is left out of the mean (the original would divide by zero);
    if no joint was scored the result is nan.
    """
    hits = np.asarray(hits, dtype=np.float64)
    totals = np.asarray(totals, dtype=np.float64)
    scored = totals > 0
    if not scored.any():
        return np.full(hits.shape[0], np.nan)
    return (hits[:, scored] / totals[scored]).mean(axis=1)
