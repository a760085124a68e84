"""DAVIS video object segmentation: ``davis`` (DAVIS-2017 semi-supervised) and ``davis2016``.

Both read the official layouts (``JPEGImages/480p/<seq>/*.jpg``, ``Annotations/480p/<seq>/*.png``,
``ImageSets/...``), run at native 480p as CRW does, encode the first frame's objects as one-hot maps
bilinearly downsampled to the feature grid, decode by bilinear upsampling + argmax, and write
mode-P palette PNGs with ids 0..N — the format the official evaluator reads.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from harness.data.cards import task_split
from harness.data.images import davis_palette, object_ids_problem, unpadded_names
from harness.data.rules import require_sequence_files
from harness.errors import DataError
from harness.io import atomic_path
from harness.labels.formats import ListFormat, list_lines, register_list_format
from harness.labels.masks import decode_masks, one_hot_soft
from harness.metrics import davis as davis_metrics
from harness.registry import register_task
from harness.tasks.base import Sequence, Task
from harness.tasks.frames import read_image, select_sequences

if TYPE_CHECKING:
    import torch  # annotations only: reading and scoring a benchmark need no torch

VOID = 255


PALETTE = davis_palette().reshape(-1).tolist()
_PALETTE_LOOKUP = {tuple(PALETTE[3 * i : 3 * i + 3]): i for i in range(255, -1, -1)}


def _frame_pair_names(path: Path, pattern: str) -> list[str]:
    """DAVIS-2016's split lists: lines ``/JPEGImages/480p/<seq>/00000.jpg /Annotations/480p/<seq>/00000.png``."""
    names = []
    for line in list_lines(path):
        parts = line.split()[0].strip("/").split("/")
        if len(parts) < 4:
            raise DataError(f"{path}: cannot read a sequence name from line {line!r}")
        names.append(parts[2])
    return names


register_list_format(ListFormat("davis-frame-pairs", "DAVIS-2016 frame-pair lines (frame path, annotation path)",
                                _frame_pair_names))


class DavisTask(Task):
    """DAVIS-2017 semi-supervised: palette PNGs, objects 1..N from the first frame, 255 = void."""

    name = "davis"
    settings = ("split",)
    outputs = ("{name}/*.png",)
    visual_outputs = ("visualize/{name}.jpg",)
    metric_keys = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
    primary_metric = "J&F-Mean"
    headline_metrics = ("J&F-Mean", "J-Mean", "F-Mean")  # recalls and decays stay in the CSV
    lower_is_better = ("J-Decay", "F-Decay")
    label = "DAVIS-2017 val"
    order = 10
    official_scorer = True
    cards = ("davis2017", "davis2016")  # DAVIS-2016's single-object sequences read in the 2017 layout are 2016's
    resolution = "480p"
    binary_masks = False
    layout_help = (
        "expected DAVIS-2017 layout under the data root:\n"
        "  JPEGImages/480p/<sequence>/00000.jpg ...\n"
        "  Annotations/480p/<sequence>/00000.png ...   (palette PNGs, object ids 1..N, 255 = void)\n"
        "  ImageSets/2017/val.txt                     (one sequence name per line)\n"
        "Get it with `harness data download davis` or from https://davischallenge.org/davis2017/code.html"
    )

    def __init__(self, data_root: Path, config: dict[str, Any] | None = None) -> None:
        super().__init__(data_root, config)
        self.split = str(self.config.get("split", "val"))
        self.frames_dir = self.data_root / "JPEGImages" / self.resolution
        self.annotations_dir = self.data_root / "Annotations" / self.resolution
        for folder in (self.frames_dir, self.annotations_dir):
            if not folder.is_dir():
                raise DataError(f"{folder} is missing.\n{self.layout_help}")

    # -- reading -----------------------------------------------------------------------------
    def sequences(self) -> list[str]:
        """The split's names, read from the list files the dataset card names (its one reader)."""
        try:
            names, path = task_split(self.name, self.data_root, self.split)
        except DataError as err:
            raise DataError(f"{err}\n{self.layout_help}") from None
        return select_sequences(names, self.config.get("sequences"), self.config.get("limit"), str(path))

    def load(self, name: str) -> Sequence:
        frame_paths = require_sequence_files(self.frames_dir / name, ".jpg", f"sequence {name!r}")
        annotation_paths = require_sequence_files(self.annotations_dir / name, ".png", f"sequence {name!r}")
        if not frame_paths:
            raise DataError(f"sequence {name!r} has no frames: no *.jpg in {self.frames_dir / name}")
        if not annotation_paths:
            raise DataError(f"sequence {name!r} has no annotations: no *.png in {self.annotations_dir / name}")
        problem = unpadded_names([p.stem for p in frame_paths])
        if problem:
            raise DataError(f"{self.frames_dir / name}: {problem}")
        if [p.stem for p in annotation_paths] != [p.stem for p in frame_paths]:
            missing = sorted({p.stem for p in frame_paths} ^ {p.stem for p in annotation_paths})
            raise DataError(
                f"frames and annotations of {name!r} do not pair up ({self.frames_dir / name} vs "
                f"{self.annotations_dir / name}); unmatched frame names: {', '.join(missing[:5])}"
            )
        frames = [read_image(p, "RGB") for p in frame_paths]
        masks = [self.read_mask(p) for p in annotation_paths]
        size = frames[0].shape[:2]
        for frame_path, frame, path, mask in zip(frame_paths, frames, annotation_paths, masks, strict=True):
            if frame.shape[:2] != size:
                raise DataError(f"frame {frame_path} is {frame.shape[1]}x{frame.shape[0]}, the sequence's first "
                                f"frame is {size[1]}x{size[0]}")
            if mask.shape != frame.shape[:2]:
                raise DataError(f"annotation {path} is {mask.shape[1]}x{mask.shape[0]}, its frame {frame_path} is "
                                f"{frame.shape[1]}x{frame.shape[0]}")
        frames, masks = np.stack(frames), np.stack(masks)
        n_objects = int(masks[0][masks[0] != VOID].max(initial=0))
        if n_objects == 0:
            raise DataError(f"first-frame annotation {annotation_paths[0]} contains no object")
        problem = object_ids_problem(_object_ids(masks[0]))
        if problem:
            raise DataError(f"{annotation_paths[0]}: {problem}")
        meta = {"frame_names": [p.stem for p in frame_paths], "n_objects": n_objects,
                "first_annotation": str(annotation_paths[0])}
        return Sequence(name=name, frames=frames, gt=masks, meta=meta)

    def read_mask(self, path: Path) -> np.ndarray:
        """Object ids of one annotation; RGB annotations are accepted when every colour is a palette entry."""
        image = read_image(path, None)
        if image.ndim == 2:
            return image.astype(np.uint8)
        colours = image.reshape(-1, 3)
        unique, inverse = np.unique(colours, axis=0, return_inverse=True)
        ids = []
        for colour in map(tuple, unique.tolist()):
            if colour not in _PALETTE_LOOKUP:
                raise DataError(f"annotation {path} is an RGB image with colour {colour}, which is not in the "
                                "DAVIS palette; save annotations as palette (mode P) PNGs")
            ids.append(_PALETTE_LOOKUP[colour])
        return np.asarray(ids, dtype=np.uint8)[inverse.reshape(-1)].reshape(image.shape[:2])

    # -- labels ------------------------------------------------------------------------------
    def encode(self, seq: Sequence, grid: tuple[int, int]) -> torch.Tensor:
        """One channel per id 0..N of the first frame (void counts as background), bilinear to the grid."""
        return one_hot_soft(_without_void(seq.gt[0]), seq.meta["n_objects"] + 1, grid)

    def decode(self, seq: Sequence, soft: torch.Tensor) -> np.ndarray:
        """Bilinear upsampling of each frame's soft labels to the frame size, argmax → ids; frame 0 = GT."""
        return decode_masks(soft, _without_void(seq.gt[0]))

    # -- scoring -----------------------------------------------------------------------------
    def score_sequence(self, seq: Sequence, prediction: np.ndarray) -> dict[str, Any]:
        objects = davis_metrics.object_scores(seq.gt, prediction, seq.meta["n_objects"])
        return {"objects": {str(k): v for k, v in objects.items()}}

    def aggregate(self, per_sequence: dict[str, dict[str, Any]]) -> dict[str, Any]:
        per_object = {f"{seq}_{oid}": scores for seq, result in per_sequence.items()
                      for oid, scores in result["objects"].items()}
        summary = {seq: davis_metrics.sequence_summary(list(result["objects"].values()))
                   for seq, result in per_sequence.items()}
        return {"metrics": davis_metrics.global_scores(per_object), "per_sequence": summary, "per_object": per_object}

    def score_official(self, pred_dir: Path, sequences: list[str], official_frames: bool = False) -> dict[str, Any]:
        """The davis2017-evaluation package's scores, after the same pairing of predictions with frames."""
        from harness.metrics.davis import require_matching_predictions
        from harness.metrics.davis_official import official_scores

        require_matching_predictions(self.annotations_dir, pred_dir, sequences, official_frames=official_frames)
        return official_scores(self.data_root, pred_dir, sequences)

    def score_predictions(self, pred_dir: Path, sequences: list[str] | None = None, *,
                          official_frames: bool = False) -> dict[str, Any]:
        """Score written predictions; ``official_frames`` accepts the file sets the official evaluator
        accepts (no first/last frame, files without ground truth ignored) instead of exactly one per frame."""
        names = sequences if sequences is not None else self.sequences()
        for name in names:
            self._check_ground_truth(name)
        return davis_metrics.score_folder(self.annotations_dir, Path(pred_dir), names, binary_gt=self.binary_masks,
                                          official_frames=official_frames)

    def _check_ground_truth(self, name: str) -> None:
        """Scoring keeps the official semantics, but says when they mislead: unpadded frame names are
        refused (J-Decay would use text order), object ids with gaps are warned about (phantom objects)."""
        paths = sorted(self.annotations_dir.joinpath(name).glob("*.png"))
        problem = unpadded_names([p.stem for p in paths])
        if problem:
            raise DataError(f"{self.annotations_dir / name}: {problem}")
        if paths:
            problem = object_ids_problem(_object_ids(self.read_mask(paths[0])))
            if problem:
                print(f"warning: {paths[0]}: {problem}. Scored as the official evaluator does, phantom "
                      "objects included.", file=sys.stderr)

    @classmethod
    def rederive(cls, record: dict[str, Any]) -> Iterator[tuple[str, Any, Any, str]]:
        """Every global metric from ``per_object`` (means over objects, J&F-Mean = (J-Mean + F-Mean) / 2);
        each ``per_sequence`` J-Mean, F-Mean, J&F-Mean and object count from that sequence's objects.
        ``per_object`` itself is the finest block and cannot be checked."""
        per_object = record.get("per_object")
        if not per_object:
            return
        for key, value in davis_metrics.global_scores(per_object).items():
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
            for key, value in davis_metrics.sequence_summary(objects).items():
                if key != "n_objects":
                    yield f"per_sequence.{seq}.{key}", summary.get(key), value, source
        if record.get("per_sequence") is not None:
            yield "per_object (objects of the listed sequences)", len(per_object), covered, "per_sequence blocks"

    # -- writing -----------------------------------------------------------------------------
    def write(self, seq: Sequence, prediction: np.ndarray, out_dir: Path) -> None:
        folder = Path(out_dir) / seq.name
        folder.mkdir(parents=True, exist_ok=True)
        for frame_name, mask in zip(seq.meta["frame_names"], prediction, strict=True):
            image = Image.fromarray(mask, mode="P")
            image.putpalette(PALETTE)
            with atomic_path(folder / f"{frame_name}.png") as tmp:
                image.save(tmp, format="PNG")

    def visualize(self, seq: Sequence, prediction: np.ndarray, out_dir: Path) -> Path:
        """A strip of five frames spread over the video with the predicted masks blended in."""
        picks = np.linspace(0, seq.num_frames - 1, num=min(5, seq.num_frames)).round().astype(int)
        colours = np.asarray(PALETTE, dtype=np.float32).reshape(256, 3)
        tiles = []
        for t in picks:
            frame = seq.frames[t].astype(np.float32)
            mask = prediction[t]
            blend = np.where(mask[..., None] > 0, 0.5 * frame + 0.5 * colours[mask], frame)
            tiles.append(blend.astype(np.uint8))
        strip = Image.fromarray(np.concatenate(tiles, axis=1))
        strip.thumbnail((2400, 400))
        path = Path(out_dir) / "visualize" / f"{seq.name}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            strip.save(tmp, format="JPEG", quality=85)
        return path


class Davis2016Task(DavisTask):
    """DAVIS-2016: one object per sequence, greyscale masks with values 0/255 (no void)."""

    name = "davis2016"
    binary_masks = True
    label = "DAVIS-2016 val"
    order = 20
    cards = ("davis2016", "davis2017")
    layout_help = (
        "expected DAVIS-2016 layout under the data root:\n"
        "  JPEGImages/480p/<sequence>/00000.jpg ...\n"
        "  Annotations/480p/<sequence>/00000.png ...   (greyscale masks, 0 = background, 255 = object)\n"
        "  ImageSets/2016/val.txt (one sequence per line) or ImageSets/480p/val.txt (frame-pair list)\n"
        "Get it with `harness data download davis2016` or from https://davischallenge.org/davis2016/code.html"
    )

    def read_mask(self, path: Path) -> np.ndarray:
        image = read_image(path, "L")
        return (image > 127).astype(np.uint8)


def _without_void(mask: np.ndarray) -> np.ndarray:
    """A copy of ``mask`` with void (255) as background 0."""
    out = mask.copy()
    out[out == VOID] = 0
    return out


def _object_ids(mask: np.ndarray) -> list[int]:
    return [int(v) for v in np.unique(mask) if v not in (0, VOID)]


register_task("davis", summary="DAVIS-2017 semi-supervised VOS (val, 30 sequences, multi-object)")(DavisTask)
register_task("davis2016", summary="DAVIS-2016 single-object VOS (val, 20 sequences)")(Davis2016Task)
