"""The ``toykp`` task: propagate three keypoints (the centres of coloured blobs) from each clip's first frame.

A task reads a benchmark, turns its first-frame labels into soft maps and back (here with the harness's
shared keypoint codec, :mod:`harness.labels.keypoints`), scores predictions and writes them. Its facts
are class attributes: the metrics and their direction, the one that ranks runs (``primary_metric``),
its name and place on the leaderboard, and its dataset card (``toykp.yaml`` beside this file, which
also says what ``harness data check toykp`` checks and which 20 clips make the official split).

Scores, pooled over every point of every frame after the first:

- ``PCK@0.2`` (ranks runs): the share of points predicted within 0.2 x the normaliser of the harness's
  PCK (:mod:`harness.metrics.pck`: 0.6 x the diagonal of the frame's ground-truth box); a point without
  a prediction is a miss;
- ``EPE`` (end-point error): the mean distance between predicted and true points, over the points that have
  a prediction, as a fraction of the frame's diagonal (metrics are fractions in run records); lower is
  better. It sorts before ``PCK@0.2``, so a leaderboard that took the first metric would rank by it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.data.cards import task_split
from harness.errors import DataError, PredictionError
from harness.io import atomic_write_text
from harness.labels.keypoints import decode_points, gaussian_heatmaps, read_json_points
from harness.metrics import pck
from harness.registry import register_task
from harness.tasks.base import Sequence, Task
from harness.tasks.frames import read_image, select_sequences

if TYPE_CHECKING:
    import torch

THRESHOLD = 0.2


@register_task("toykp", summary="toy keypoints: 3 coloured blobs per clip (crwbench_example plug-in)")
class ToyKeypoints(Task):
    """Keypoint propagation on generated clips; predictions are ``<clip>.json`` (``[2, 3, T]`` pixel lists)."""

    name = "toykp"
    metric_keys = ("PCK@0.2", "EPE")
    primary_metric = "PCK@0.2"
    lower_is_better = ("EPE",)
    headline_metrics = ("PCK@0.2", "EPE")
    label = "ToyKP test"
    order = 100  # after the built-in benchmarks
    card_path = Path(__file__).with_name("toykp.yaml")
    settings = ()  # no --set task.* keys
    outputs = ("{name}.json",)
    layout_help = ("expected under the data root: frames/<clip>/00000.png ..., points/<clip>.json, test.txt; "
                   "write them with: python -m crwbench_example.make_data DIR")

    # -- reading -----------------------------------------------------------------------------
    def sequences(self) -> list[str]:
        names, path = task_split(self.name, self.data_root)  # the split list the card names
        return select_sequences(names, self.config.get("sequences"), self.config.get("limit"), str(path))

    def load(self, name: str) -> Sequence:
        paths = sorted((self.data_root / "frames" / name).glob("*.png"))
        if not paths:
            raise DataError(f"clip {name!r}: no frames in {self.data_root / 'frames' / name}\n{self.layout_help}")
        frames = np.stack([read_image(p, "RGB") for p in paths])
        points = read_json_points(self.data_root / "points" / f"{name}.json")
        return Sequence(name, frames, points, {"size": frames.shape[1:3], "frame_names": [p.stem for p in paths]})

    # -- labels ------------------------------------------------------------------------------
    def encode(self, seq: Sequence, grid: tuple[int, int]) -> torch.Tensor:
        """Frame 0's points as Gaussian heatmaps, plus a background channel: ``[J + 1, h, w]``."""
        return gaussian_heatmaps(seq.gt[:, :, 0], seq.meta["size"], tuple(grid))

    def decode(self, seq: Sequence, soft: torch.Tensor) -> np.ndarray:
        """Propagated heatmaps ``[T, J + 1, h, w]`` → points ``[2, J, T]`` in pixels (-1: no prediction)."""
        return decode_points(soft, seq.gt.shape[1], seq.meta["size"])

    # -- scoring -----------------------------------------------------------------------------
    def score_sequence(self, seq: Sequence, prediction: np.ndarray) -> dict[str, Any]:
        return score_points(seq.gt, prediction, seq.meta["size"])

    def aggregate(self, per_sequence: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return {"metrics": metrics_from_counts(per_sequence.values()), "per_sequence": per_sequence}

    @classmethod
    def rederive(cls, record: dict[str, Any]) -> Iterator[tuple[str, Any, Any, str]]:
        """Both metrics from the per-clip counts the record stores (the leaderboard checks them)."""
        per_sequence = record.get("per_sequence") or {}
        if per_sequence:
            for key, value in metrics_from_counts(per_sequence.values()).items():
                yield f"metrics.{key}", record["metrics"].get(key), value, "per-clip counts"

    def score_predictions(self, pred_dir: Path, sequences: list[str] | None = None) -> dict[str, Any]:
        """Score written ``<clip>.json`` predictions against the ground truth (``harness score``)."""
        per_sequence = {}
        for name in sequences if sequences is not None else self.sequences():
            path = Path(pred_dir) / f"{name}.json"
            if not path.is_file():
                raise PredictionError(f"missing prediction file {path}")
            seq = self.load(name)
            per_sequence[name] = score_points(seq.gt, read_json_points(path), seq.meta["size"])
        return self.aggregate(per_sequence)

    # -- writing -----------------------------------------------------------------------------
    def write(self, seq: Sequence, prediction: np.ndarray, out_dir: Path) -> None:
        atomic_write_text(Path(out_dir) / f"{seq.name}.json", json.dumps(np.asarray(prediction).tolist()))


def score_points(gt: np.ndarray, prediction: np.ndarray, size: tuple[int, int]) -> dict[str, Any]:
    """Counts of one clip of ``size`` (height, width), frame 0 (the given labels) left out: points scored, hit
    and predicted, and the sum of the predicted points' distances as fractions of the frame's diagonal."""
    gt, pred = np.asarray(gt, dtype=np.float64)[:, :, 1:], np.asarray(prediction, dtype=np.float64)[:, :, 1:]
    if pred.shape != gt.shape:
        raise PredictionError(f"prediction of shape {pred.shape}, expected {gt.shape}")
    scored = np.ones(gt.shape[1:], dtype=bool)
    hits, totals = pck.pck_counts(pck.normalised_distances(pred, gt, scored), (THRESHOLD,))
    predicted = pck.prediction_visible(pred)
    distances = np.hypot(*(pred - gt))[predicted] / np.hypot(*size)
    return {"hits": int(hits.sum()), "points": int(totals.sum()), "predicted": int(predicted.sum()),
            "distance": float(distances.sum())}


def metrics_from_counts(counts: Any) -> dict[str, float | None]:
    """``PCK@0.2`` and ``EPE`` pooled over clips' counts (:func:`score_points`)."""
    counts = list(counts)
    points, predicted = sum(c["points"] for c in counts), sum(c["predicted"] for c in counts)
    return {"PCK@0.2": sum(c["hits"] for c in counts) / points if points else None,
            "EPE": sum(c["distance"] for c in counts) / predicted if predicted else None}
