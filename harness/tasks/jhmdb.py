"""JHMDB pose propagation (split-1 test clips), scored with PCK as CRW's ``eval/eval_pck.py`` does.

Layout under the data root (the official release):

- ``Rename_Images/<class>/<clip>/00001.png …`` — the frames;
- ``joint_positions/<class>/<clip>/joint_positions.mat`` — ``pos_img``: 2 × 15 × T, 1-based pixels;
- ``splits/test_split1_clips.txt`` — the 268 split-1 test clips, one ``class/clip`` per line.

Choices, and why (docs/protocol.md §4.4–4.6, §5.2):

- Frames are resized to a square (``resolution``, default 320) for the features, as CRW does;
  predictions and scores live in the original frame's pixels.
- Labels: the shared keypoint codec (:mod:`harness.labels.keypoints`, where its cell geometry is
  described): one channel per joint, an un-normalised Gaussian (σ = 0.5 cells, peak 1) on a 4 × 4
  support (CRW's size), plus a background channel that is 1 where every joint channel is 0 — 16
  channels. Encode → decode returns the ground truth up to the top-3 decoding error (< 1.4 px per
  axis at 8 × 6 px cells; under 1 px on frame 0 of the shipped clip). CRW rounds the Gaussian's centre
  to a cell and maps cells back to their top-left pixel with a hard-coded 40-cell grid; the
  difference is a fraction of a cell. Propagation is linear per channel, so the background channel
  never changes a joint's prediction; it is kept for fidelity to CRW's label set.
- Decoding: per joint, the weighted mean of the top-3 cells (weights = their values, normalised to
  sum 1); an all-zero map gives ``-1`` (no prediction).
- Visibility: CRW scores a joint only where its *prediction* exists (``x >= 0``), so a joint
  whose heatmap vanished is silently dropped. That is the default (``jhmdb_visibility: pred``);
  ``--set protocol.jhmdb_visibility=gt`` scores the joints whose ground truth lies inside the frame
  instead, with a missing prediction counted as a miss. The option is part of the protocol hash.
- Aggregation: per-joint hit counts are pooled over all scored frames of all clips (frame 0
  excluded), then PCK is the mean over joints of the per-joint fractions — the original
  accumulates every clip's distances per joint before taking any ratio.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

from harness.data.cards import task_split
from harness.data.rules import read_mat, require_sequence_files
from harness.engine.protocol import Protocol
from harness.errors import DataError, HarnessError, PredictionError
from harness.io import atomic_path
from harness.labels.formats import (
    ListFormat,
    class_from_file,
    class_glob_problem,
    list_lines,
    register_list_format,
)
from harness.labels.keypoints import decode_points, gaussian_heatmaps
from harness.metrics import pck
from harness.registry import register_task
from harness.tasks.base import Sequence, Task
from harness.tasks.frames import read_image, resize_frames, select_sequences

if TYPE_CHECKING:
    import torch  # annotations only: reading and scoring a benchmark need no torch

NUM_JOINTS = 15
JOINT_NAMES = (
    "neck", "belly", "face", "right shoulder", "left shoulder", "right hip", "left hip",
    "right elbow", "left elbow", "right knee", "left knee", "right wrist", "left wrist",
    "right ankle", "left ankle",
)
#: limbs drawn by :meth:`JhmdbTask.visualize` (0-based joint indices)
SKELETON = ((0, 2), (0, 1), (0, 3), (0, 4), (3, 7), (7, 11), (4, 8), (8, 12),
            (1, 5), (1, 6), (5, 9), (9, 13), (6, 10), (10, 14))
SPLIT_FILE = Path("splits") / "test_split1_clips.txt"
OFFICIAL_SPLIT_SUFFIX = "_test_split1.txt"
VISIBILITY_OPTION = "jhmdb_visibility"
VISIBILITY_MODES = ("pred", "gt")


def metric_key(threshold: float) -> str:
    return f"PCK@{threshold:g}"


def _official_split_names(path: Path, pattern: str) -> list[str]:
    """JHMDB's official per-class split files ``<class>_test_split1.txt``: lines ``<clip>.avi 2`` are test clips
    (``1``: training), named ``<class>/<clip>``."""
    cls = class_from_file(path, pattern)
    if cls is None:
        return []
    names = []
    for line in list_lines(path):
        if len(line.split()) != 2:
            raise DataError(f"{path}: cannot read line {line!r} (expected '<clip>.avi 1|2')")
        if line.split()[1] == "2":
            names.append(f"{cls}/{Path(line.split()[0]).stem}")
    return names


register_list_format(ListFormat("jhmdb-official", "JHMDB per-class split files, lines '<clip>.avi 1|2' (2 = test)",
                                _official_split_names, class_glob_problem))


class JhmdbTask(Task):
    """JHMDB split-1 keypoint propagation; predictions are ``<class>/<clip>.npy`` (2 × 15 × T)."""

    name = "jhmdb"
    settings = ("resolution",)
    outputs = ("{name}.npy",)
    visual_outputs = ("visualize/{name}.png",)
    metric_keys = tuple(metric_key(a) for a in pck.THRESHOLDS)
    primary_metric = "PCK@0.1"
    headline_metrics = ("PCK@0.1", "PCK@0.2")
    label = "JHMDB split 1"
    order = 30
    cards = ("jhmdb",)
    layout_help = (
        "expected JHMDB layout under the data root:\n"
        "  Rename_Images/<class>/<clip>/00001.png ...\n"
        "  joint_positions/<class>/<clip>/joint_positions.mat   (pos_img: 2 x 15 x T, 1-based pixels)\n"
        f"  {SPLIT_FILE.as_posix()}                    (one class/clip per line; or the official\n"
        f"  splits/<class>{OFFICIAL_SPLIT_SUFFIX} files, lines '<clip>.avi 2' = test)\n"
        "Get it from http://jhmdb.is.tue.mpg.de/ (research use)."
    )

    def __init__(self, data_root: Path, config: dict[str, Any] | None = None) -> None:
        super().__init__(data_root, config)
        self.resolution = int(self.config.get("resolution", 320))
        if self.resolution < 1:
            raise HarnessError(f"task.resolution must be a positive number of pixels, got {self.resolution}")
        self.frames_dir = self.data_root / "Rename_Images"
        self.joints_dir = self.data_root / "joint_positions"
        for folder in (self.frames_dir, self.joints_dir):
            if not folder.is_dir():
                raise DataError(f"{folder} is missing.\n{self.layout_help}")

    # -- options -----------------------------------------------------------------------------
    @classmethod
    def protocol_defaults(cls, family: str) -> dict[str, Any]:
        return {VISIBILITY_OPTION: "pred"}

    @classmethod
    def check_protocol_options(cls, options: dict[str, Any]) -> None:
        mode = options.get(VISIBILITY_OPTION, "pred")
        if mode not in VISIBILITY_MODES:
            raise HarnessError(f"protocol.{VISIBILITY_OPTION} must be one of {', '.join(VISIBILITY_MODES)}, got {mode!r}")

    def visibility(self) -> str:
        """``pred`` (CRW) or ``gt``, from the resolved protocol the runner hands over."""
        protocol = self.config.get("protocol")
        mode = protocol.option(VISIBILITY_OPTION, "pred") if isinstance(protocol, Protocol) else "pred"
        self.check_protocol_options({VISIBILITY_OPTION: mode})
        return mode

    # -- reading -----------------------------------------------------------------------------
    def split_names(self) -> tuple[list[str], str]:
        """Split-1 test clips and the list they came from, as the dataset card says: ``splits/test_split1_clips.txt``
        when present, else the official per-class files ``splits/<class>_test_split1.txt`` (lines ``<clip>.avi 2``
        are test clips), classes in alphabetical order."""
        try:
            names, path = task_split(self.name, self.data_root)
        except DataError as err:
            raise DataError(f"{err}\n{self.layout_help}") from None
        return names, str(path)

    def sequences(self) -> list[str]:
        names, split = self.split_names()
        wanted = self.config.get("sequences") or []
        extra = [n for n in wanted if n not in names and self._present(n)]
        if extra:
            print(f"warning: {', '.join(extra)} not in {split}; scored anyway, but not part of the benchmark split",
                  file=sys.stderr)
        names = select_sequences(names + extra, wanted, self.config.get("limit"), split)
        missing = [n for n in names if not self._present(n)]
        if missing:
            raise DataError(
                f"{len(missing)} of the {len(names)} clips asked for from {split} are missing under {self.data_root} "
                f"(no frame folder or no joint_positions.mat), e.g. {', '.join(missing[:3])}. "
                "Pass --sequences class/clip,... to evaluate the clips that are present."
            )
        return names

    def _present(self, name: str) -> bool:
        return (self.frames_dir / name).is_dir() and self._mat_path(name).is_file()

    def _mat_path(self, name: str) -> Path:
        return self.joints_dir / name / "joint_positions.mat"

    def _frame_paths(self, name: str) -> list[Path]:
        folder = self.frames_dir / name
        if not folder.is_dir():
            raise DataError(f"clip {name!r}: frame folder {folder} is missing")
        paths = require_sequence_files(folder, ".png", f"clip {name!r}")
        if not paths:
            raise DataError(f"clip {name!r}: no *.png frames in {folder}")
        return paths

    def read_joints(self, name: str, num_frames: int) -> np.ndarray:
        """``pos_img − 1``: ``[2, 15, T]`` 0-based pixel coordinates; a bad file raises naming it."""
        path = self._mat_path(name)
        if not path.is_file():
            raise DataError(f"clip {name!r}: joint file {path} is missing")
        mat = read_mat(path, ("pos_img",))
        joints = np.asarray(mat["pos_img"], dtype=np.float64)
        if joints.shape != (2, NUM_JOINTS, num_frames):
            raise DataError(f"{path}: pos_img is {joints.shape}, expected (2, {NUM_JOINTS}, {num_frames}) "
                            f"for the {num_frames} frames in {self.frames_dir / name}")
        return joints - 1.0

    def load(self, name: str) -> Sequence:
        paths = self._frame_paths(name)
        frames = [read_image(p, "RGB") for p in paths]
        size = frames[0].shape[:2]
        for path, frame in zip(paths, frames, strict=True):
            if frame.shape[:2] != size:
                raise DataError(f"frame {path} is {frame.shape[1]}x{frame.shape[0]}, the clip's first frame is "
                                f"{size[1]}x{size[0]}")
        joints = self.read_joints(name, len(paths))
        meta = {"size": tuple(int(s) for s in size), "frame_names": [p.stem for p in paths]}
        return Sequence(name, resize_frames(frames, (self.resolution, self.resolution)), joints, meta)

    # -- labels ------------------------------------------------------------------------------
    def encode(self, seq: Sequence, grid: tuple[int, int]) -> torch.Tensor:
        """Frame 0's joints as Gaussian heatmaps plus background, ``[16, h, w]``."""
        return gaussian_heatmaps(seq.gt[:, :, 0], seq.meta["size"], tuple(grid))

    def decode(self, seq: Sequence, soft: torch.Tensor) -> np.ndarray:
        """``[T, 16, h, w]`` → ``[2, 15, T]`` 0-based pixel coordinates of the original frame (-1 = none)."""
        return decode_points(soft, NUM_JOINTS, seq.meta["size"])

    # -- scoring -----------------------------------------------------------------------------
    def score_sequence(self, seq: Sequence, prediction: np.ndarray) -> dict[str, Any]:
        return self._score(seq.gt, prediction, seq.meta["size"])

    def _score(self, gt: np.ndarray, prediction: np.ndarray, size: tuple[int, int]) -> dict[str, Any]:
        """Per-joint counts of one clip (frame 0 excluded), and the clip's own PCK for display."""
        gt, pred = gt[:, :, 1:], np.asarray(prediction, dtype=np.float64)[:, :, 1:]
        if self.visibility() == "pred":
            evaluated = pck.prediction_visible(pred)
        else:
            evaluated = pck.inside_frame(gt, *size)
        hits, totals = pck.pck_counts(pck.normalised_distances(pred, gt, evaluated))
        result: dict[str, Any] = {
            "frames": int(gt.shape[2] + 1),
            "totals": totals.tolist(),
            "hits": {f"{a:g}": row.tolist() for a, row in zip(pck.THRESHOLDS, hits, strict=True)},
        }
        result.update(_pck_metrics(hits, totals))
        return result

    def aggregate(self, per_sequence: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Pool per-joint counts over all clips, then average the per-joint PCK over joints."""
        totals = np.zeros(NUM_JOINTS, dtype=np.int64)
        hits = np.zeros((len(pck.THRESHOLDS), NUM_JOINTS), dtype=np.int64)
        for result in per_sequence.values():
            totals += np.asarray(result["totals"], dtype=np.int64)
            hits += np.asarray([result["hits"][f"{a:g}"] for a in pck.THRESHOLDS], dtype=np.int64)
        per_joint = {
            JOINT_NAMES[j]: {metric_key(a): (float(hits[i, j] / totals[j]) if totals[j] else None)
                             for i, a in enumerate(pck.THRESHOLDS)}
            for j in range(NUM_JOINTS)
        }
        return {"metrics": _pck_metrics(hits, totals), "per_sequence": per_sequence, "per_joint": per_joint}

    def score_predictions(self, pred_dir: Path, sequences: list[str] | None = None) -> dict[str, Any]:
        """Score ``<pred_dir>/<class>/<clip>.npy`` files against the ground truth."""
        names = sequences if sequences is not None else self.sequences()
        per_sequence = {}
        for name in names:
            paths = self._frame_paths(name)
            with Image.open(paths[0]) as first:
                size = (first.height, first.width)
            gt = self.read_joints(name, len(paths))
            per_sequence[name] = self._score(gt, read_prediction(Path(pred_dir) / f"{name}.npy", gt.shape), size)
        return self.aggregate(per_sequence)

    @classmethod
    def rederive(cls, record: dict[str, Any]) -> Iterator[tuple[str, Any, Any, str]]:
        """Every PCK from the per-clip joint counts (``per_sequence[*].hits/totals``), and each clip's PCK and
        ``per_joint`` from the same counts; the global numbers only when every clip stores its counts."""
        per_sequence = record.get("per_sequence") or {}
        counts = {clip: _counts(result) for clip, result in per_sequence.items()}
        for clip, pair in counts.items():
            if pair is not None:
                for key, value in _pck_metrics(*pair).items():
                    yield f"per_sequence.{clip}.{key}", per_sequence[clip].get(key), value, f"joint counts of {clip!r}"
        if not counts or any(pair is None for pair in counts.values()):
            return
        all_hits = sum(pair[0] for pair in counts.values())
        all_totals = sum(pair[1] for pair in counts.values())
        for key, value in _pck_metrics(all_hits, all_totals).items():
            yield f"metrics.{key}", record["metrics"].get(key), value, "per-clip joint counts"
        for joint, scores in (record.get("per_joint") or {}).items():
            j = JOINT_NAMES.index(joint)
            for i, a in enumerate(pck.THRESHOLDS):
                key = metric_key(a)
                value = float(all_hits[i, j] / all_totals[j]) if all_totals[j] else None
                yield f"per_joint.{joint}.{key}", scores.get(key), value, "per-clip joint counts"

    # -- writing -----------------------------------------------------------------------------
    def write(self, seq: Sequence, prediction: np.ndarray, out_dir: Path) -> None:
        path = Path(out_dir) / f"{seq.name}.npy"
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, np.asarray(prediction, dtype=np.float64))

    def visualize(self, seq: Sequence, prediction: np.ndarray, out_dir: Path) -> Path:
        """Five frames spread over the clip: ground truth in green, prediction in red (with limbs)."""
        height, width = seq.meta["size"]
        picks = np.linspace(0, seq.num_frames - 1, num=min(5, seq.num_frames)).round().astype(int)
        tiles = []
        for t in picks:
            tile = Image.fromarray(seq.frames[t]).resize((width, height), Image.BILINEAR)
            draw = ImageDraw.Draw(tile)
            for points, colour in ((seq.gt[:, :, t], (0, 220, 0)), (prediction[:, :, t], (255, 40, 40))):
                shown = points[0] >= 0
                for a, b in SKELETON:
                    if shown[a] and shown[b]:
                        draw.line([tuple(points[:, a]), tuple(points[:, b])], fill=colour, width=1)
                for x, y in points[:, shown].T:
                    draw.ellipse([x - 2, y - 2, x + 2, y + 2], outline=colour)
            draw.text((3, 2), f"t={t}", fill=(255, 255, 255))
            tiles.append(np.asarray(tile))
        path = Path(out_dir) / "visualize" / f"{seq.name}.png"
        with atomic_path(path) as tmp:
            Image.fromarray(np.concatenate(tiles, axis=1)).save(tmp, format="PNG")
        return path


def read_prediction(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A written ``.npy`` prediction, checked against the clip's ground-truth shape."""
    if not path.is_file():
        raise PredictionError(f"missing prediction file {path}")
    try:
        pred = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise PredictionError(f"cannot read prediction {path}: {err}") from err
    if pred.shape != tuple(shape):
        raise PredictionError(f"prediction {path} is {pred.shape}, the ground truth is {tuple(shape)} "
                              "(2 x 15 joints x frames, 0-based pixels)")
    if not np.isfinite(pred).all():
        raise PredictionError(f"prediction {path} contains NaN or Inf (use -1 for 'no prediction')")
    return pred.astype(np.float64)


def _counts(result: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """A clip's joint counts from a record, None when its entry holds none."""
    if not isinstance(result, dict) or not isinstance(result.get("hits"), dict) or "totals" not in result:
        return None
    hits = np.asarray([result["hits"][f"{a:g}"] for a in pck.THRESHOLDS], dtype=np.int64)
    return hits, np.asarray(result["totals"], dtype=np.int64)


def _pck_metrics(hits: np.ndarray, totals: np.ndarray) -> dict[str, float | None]:
    values = pck.pck_from_counts(hits, totals)
    return {metric_key(a): (None if math.isnan(v) else float(v)) for a, v in zip(pck.THRESHOLDS, values, strict=True)}


register_task("jhmdb", summary="JHMDB pose propagation (split-1 test, 268 clips, 15 joints)")(JhmdbTask)
