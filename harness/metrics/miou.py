"""Confusion-matrix segmentation metrics as CRW's VIP evaluation computes them (``eval/eval_vip.py``).

Pure numpy. Rows of the confusion matrix are ground-truth classes, columns predicted classes.
Ground-truth pixels outside ``[0, num_classes)`` (255 and anything else >= num_classes) are
ignored; a *prediction* outside that range is a caller error, since it has no column to go to.
Matrices are summed over all frames of all videos before any ratio is taken, so a dataset's mIoU
is not a mean of per-video mIoUs.
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``[num_classes, num_classes]`` int64 counts of (gt, pred) pairs over the valid GT pixels."""
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"gt and pred shapes differ: {gt.shape} vs {pred.shape}")
    valid = (gt >= 0) & (gt < num_classes)
    g = gt[valid].astype(np.int64)
    p = pred[valid].astype(np.int64)
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"predicted class ids must lie in [0, {num_classes}); got {p.min()}..{p.max()}")
    return np.bincount(g * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def class_iou(confusion: np.ndarray) -> np.ndarray:
    """IoU per class: TP / (GT + Pred − TP); nan for a class absent from both GT and prediction."""
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(confusion)
    union = confusion.sum(axis=1) + confusion.sum(axis=0) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return tp / union


def mean_iou(confusion: np.ndarray) -> float:
    """nanmean of :func:`class_iou` over all classes (nan if the matrix is empty)."""
    iou = class_iou(confusion)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def pixel_accuracy(confusion: np.ndarray) -> float:
    """Fraction of valid GT pixels predicted correctly (nan if there are none)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    total = confusion.sum()
    return float(np.trace(confusion) / total) if total else float("nan")
