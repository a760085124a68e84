"""A record's numbers re-derived from its own finer-grained blocks, so an edited number is caught.

A record stores its global ``metrics`` next to the scores they are computed from; nothing but this
check stops a hand-edited ``metrics`` (or a per-sequence summary) from being ranked. What can be
re-derived, per task, exactly as the task's ``aggregate`` computes it:

- DAVIS (``davis``, ``davis2016``): every global metric from ``per_object`` (means over objects,
  J&F-Mean = (J-Mean + F-Mean) / 2); each ``per_sequence`` J-Mean, F-Mean, J&F-Mean and object count
  from that sequence's objects. ``per_object`` itself is the finest block and cannot be checked.
- JHMDB: every PCK from the per-clip joint counts (``per_sequence[*].hits/totals``), and each clip's
  PCK and ``per_joint`` from the same counts.
- VIP: mIoU and pixel accuracy from the summed per-video confusion matrices, each video's from its
  own, and ``per_class`` IoU.

A block a record does not store (a clip without joint counts, a video without a confusion matrix, no
``per_object``) cannot be checked and is skipped; the global numbers are checked only when every
sequence's block is there. Pure numpy (the leaderboard and ``harness schema --check`` import no torch).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from harness.metrics import davis, miou, pck

#: relative tolerance: the same float operations in the same order give the same bits, but a record
#: written by another numpy may differ in the last place
_RTOL = 1e-9


def derivation_problem(record: dict[str, Any]) -> str | None:
    """None when every number that can be re-derived from the record's own blocks matches; else a sentence
    naming the first key that does not (or the block that cannot be read)."""
    derive = {"davis": _davis, "davis2016": _davis, "jhmdb": _jhmdb, "vip": _vip}.get(record.get("task"))
    if derive is None:
        return None
    try:
        for key, stored, derived, source in derive(record):
            if not _same(stored, derived):
                return (f"{key} is {stored!r}, but the record's own {source} give {derived!r}: the record was "
                        "edited or damaged after it was written, so its numbers cannot be trusted")
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        return f"its per-sequence scores cannot be read to re-derive its metrics ({type(err).__name__}: {err})"
    return None


def _same(stored: Any, derived: float | int | None) -> bool:
    if derived is None or stored is None:
        return stored is None and derived is None
    if isinstance(stored, bool) or not isinstance(stored, (int, float)):
        return False
    return math.isclose(stored, derived, rel_tol=_RTOL, abs_tol=1e-12)


def _nan_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


Check = Iterator[tuple[str, Any, Any, str]]


def _davis(record: dict[str, Any]) -> Check:
    per_object = record.get("per_object")
    if not per_object:
        return
    for key, value in davis.global_scores(per_object).items():
        yield f"metrics.{key}", record["metrics"].get(key), value, "per_object scores"
    covered = 0
    for seq, summary in (record.get("per_sequence") or {}).items():
        objects = [scores for key, scores in per_object.items()
                   if key.startswith(f"{seq}_") and key[len(seq) + 1:].isdigit()]
        covered += len(objects)
        source = f"per_object scores of {seq!r}"
        yield f"per_sequence.{seq}.n_objects", summary.get("n_objects"), len(objects), source
        if not objects:
            continue
        for key, value in davis.sequence_summary(objects).items():
            if key != "n_objects":
                yield f"per_sequence.{seq}.{key}", summary.get(key), value, source
    if record.get("per_sequence") is not None:
        yield "per_object (objects of the listed sequences)", len(per_object), covered, "per_sequence blocks"


def _pck_values(hits: np.ndarray, totals: np.ndarray) -> dict[str, float | None]:
    values = pck.pck_from_counts(hits, totals)
    return {f"PCK@{a:g}": _nan_none(v) for a, v in zip(pck.THRESHOLDS, values, strict=True)}


def _counts(result: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """A clip's joint counts, None when its entry holds none (a record that does not store them)."""
    if not isinstance(result, dict) or not isinstance(result.get("hits"), dict) or "totals" not in result:
        return None
    hits = np.asarray([result["hits"][f"{a:g}"] for a in pck.THRESHOLDS], dtype=np.int64)
    return hits, np.asarray(result["totals"], dtype=np.int64)


def _jhmdb(record: dict[str, Any]) -> Check:
    per_sequence = record.get("per_sequence") or {}
    counts = {clip: _counts(result) for clip, result in per_sequence.items()}
    for clip, pair in counts.items():
        if pair is not None:
            for key, value in _pck_values(*pair).items():
                yield f"per_sequence.{clip}.{key}", per_sequence[clip].get(key), value, f"joint counts of {clip!r}"
    if not counts or any(pair is None for pair in counts.values()):
        return  # the global numbers need every clip's counts
    all_hits = sum(pair[0] for pair in counts.values())
    all_totals = sum(pair[1] for pair in counts.values())
    for key, value in _pck_values(all_hits, all_totals).items():
        yield f"metrics.{key}", record["metrics"].get(key), value, "per-clip joint counts"
    from harness.tasks.jhmdb import JOINT_NAMES  # records store per_joint by name, in sorted order

    for joint, scores in (record.get("per_joint") or {}).items():
        j = JOINT_NAMES.index(joint)
        for i, a in enumerate(pck.THRESHOLDS):
            key = f"PCK@{a:g}"
            value = float(all_hits[i, j] / all_totals[j]) if all_totals[j] else None
            yield f"per_joint.{joint}.{key}", scores.get(key), value, "per-clip joint counts"


def _vip(record: dict[str, Any]) -> Check:
    from harness.tasks.vip import CLASS_NAMES  # records store per_class by name, in sorted order

    per_sequence = record.get("per_sequence") or {}
    matrices = {}
    for video, result in per_sequence.items():
        confusion = np.asarray(result.get("confusion") if isinstance(result, dict) else None, dtype=object)
        if confusion.shape != (len(CLASS_NAMES), len(CLASS_NAMES)):
            continue  # no VIP confusion matrix stored for this video
        matrices[video] = confusion = confusion.astype(np.int64)
        source = f"confusion matrix of {video!r}"
        yield f"per_sequence.{video}.mIoU", result.get("mIoU"), _nan_none(miou.mean_iou(confusion)), source
        yield f"per_sequence.{video}.pixel_acc", result.get("pixel_acc"), _nan_none(miou.pixel_accuracy(confusion)), source
    if not matrices or len(matrices) != len(per_sequence):
        return  # the global numbers need every video's matrix
    total = sum(matrices.values())
    source = "per-video confusion matrices"
    yield "metrics.mIoU", record["metrics"].get("mIoU"), _nan_none(miou.mean_iou(total)), source
    yield "metrics.pixel_acc", record["metrics"].get("pixel_acc"), _nan_none(miou.pixel_accuracy(total)), source
    iou = miou.class_iou(total)
    for name, stored in (record.get("per_class") or {}).items():
        yield f"per_class.{name}", stored, _nan_none(iou[CLASS_NAMES.index(name)]), source
