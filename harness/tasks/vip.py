"""VIP human-part propagation (val videos), scored with 20-class mIoU as CRW's ``eval/eval_vip.py`` does.

Layout under the data root (the VIP release):

- ``VIP_Fine/Images/<video>/<frame>.jpg`` — the annotated frames;
- ``VIP_Fine/Annotations/Category_ids/<video>/<frame>.png`` — class ids 0..19 (greyscale);
- ``lists/val_videos.txt`` — one video name per line.

Choices, and why (docs/protocol.md §4.4–4.6, §5.3):

- Frames are resized to a square (``resolution``, default 560) for the features, as CRW does.
- Labels: one channel per class id present in frame 0 (ignored values — 255 and anything >= 20 —
  get no channel and an all-zero label vector), built at the original size and resized bilinearly
  to the feature grid in one step. CRW instead first resizes the *label image* bilinearly to 560
  (mixing neighbouring ids into spurious intermediate ids) and then the one-hot map to the grid;
  we skip that artefact. Classes absent from frame 0 can never be predicted, as in CRW.
- Decoding: bilinear upsampling of each frame's soft labels straight to the original size, argmax,
  back to class ids. Frame 0 is decoded the same way (from its encoded ground truth) — CRW writes
  that frame too, and its evaluator scores every written file, so frame 0 **is scored**, as it was
  for the published numbers.
- Scoring: one 20 × 20 confusion matrix per video (GT rows, prediction columns, ignored GT pixels
  left out), summed over all videos before mIoU = nanmean of the per-class IoU and pixel accuracy
  are taken. A prediction whose size differs from its ground truth is resized with
  nearest-neighbour, as the original evaluator does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from natsort import natsorted
from PIL import Image

from harness.data.cards import task_split
from harness.data.rules import require_sequence_files
from harness.errors import DataError, HarnessError, PredictionError
from harness.io import atomic_path
from harness.labels.parts import labels_from_soft, soft_labels
from harness.metrics import miou
from harness.registry import register_task
from harness.tasks.base import Sequence, Task
from harness.tasks.frames import read_image, resize_frames, select_sequences

if TYPE_CHECKING:
    import torch  # annotations only: reading and scoring a benchmark need no torch

CLASS_NAMES = (
    "background", "hat", "hair", "sun-glasses", "upper-clothes", "dress", "coat", "socks", "pants",
    "gloves", "scarf", "skirt", "torso-skin", "face", "right-arm", "left-arm", "right-leg", "left-leg",
    "right-shoe", "left-shoe",
)
NUM_CLASSES = len(CLASS_NAMES)


class VipTask(Task):
    """VIP val part propagation; predictions are class-id PNGs ``<video>/<frame>.png``."""

    name = "vip"
    settings = ("resolution", "split")
    outputs = ("{name}/*.png",)
    visual_outputs = ("visualize/{name}.png",)
    metric_keys = ("mIoU", "pixel_acc")
    primary_metric = "mIoU"
    label = "VIP val"
    order = 40
    cards = ("vip",)
    synthetic_sample = True  # datasets/sample/vip is generated: no real VIP data may be shipped
    layout_help = (
        "expected VIP layout under the data root:\n"
        "  VIP_Fine/Images/<video>/<frame>.jpg ...\n"
        "  VIP_Fine/Annotations/Category_ids/<video>/<frame>.png ...   (class ids 0..19, greyscale)\n"
        "  lists/val_videos.txt                                        (one video name per line)\n"
        "Get it from https://sysu-hcp.net/lip/overview.php (VIP, research use)."
    )

    def __init__(self, data_root: Path, config: dict[str, Any] | None = None) -> None:
        super().__init__(data_root, config)
        self.resolution = int(self.config.get("resolution", 560))
        if self.resolution < 1:
            raise HarnessError(f"task.resolution must be a positive number of pixels, got {self.resolution}")
        self.split = str(self.config.get("split", "val"))
        self.images_dir = self.data_root / "VIP_Fine" / "Images"
        self.labels_dir = self.data_root / "VIP_Fine" / "Annotations" / "Category_ids"
        for folder in (self.images_dir, self.labels_dir):
            if not folder.is_dir():
                raise DataError(f"{folder} is missing.\n{self.layout_help}")

    # -- reading -----------------------------------------------------------------------------
    def sequences(self) -> list[str]:
        """The split's names, read from the list file the dataset card names (the reader data check uses)."""
        try:
            names, split = task_split(self.name, self.data_root, self.split)
        except DataError as err:
            raise DataError(f"{err}\n{self.layout_help}") from None
        return select_sequences(names, self.config.get("sequences"), self.config.get("limit"), str(split))

    def frame_names(self, name: str) -> list[str]:
        """Frame names of a video (file stems of its images, in natural order)."""
        folder = self.images_dir / name
        if not folder.is_dir():
            raise DataError(f"video {name!r}: image folder {folder} is missing")
        stems = natsorted(p.stem for p in require_sequence_files(folder, ".jpg", f"video {name!r}"))
        if not stems:
            raise DataError(f"video {name!r}: no *.jpg frames in {folder}")
        return stems

    def read_labels(self, name: str, frames: list[str]) -> np.ndarray:
        """``[T, H, W]`` uint8 class ids; every frame needs its annotation PNG."""
        out = []
        for frame in frames:
            path = self.labels_dir / name / f"{frame}.png"
            if not path.is_file():
                raise DataError(f"video {name!r}: annotation {path} is missing (one PNG per image is required)")
            out.append(_id_image(read_image(path, None), path, DataError))
            if out[-1].shape != out[0].shape:
                raise DataError(f"annotation {path} is {out[-1].shape[1]}x{out[-1].shape[0]}, the video's first "
                                f"annotation is {out[0].shape[1]}x{out[0].shape[0]}")
        return np.stack(out)

    def load(self, name: str) -> Sequence:
        frames = self.frame_names(name)
        labels = self.read_labels(name, frames)
        images = []
        for frame in frames:
            path = self.images_dir / name / f"{frame}.jpg"
            image = read_image(path, "RGB")
            if image.shape[:2] != labels.shape[1:]:
                raise DataError(f"frame {path} is {image.shape[1]}x{image.shape[0]}, its annotation is "
                                f"{labels.shape[2]}x{labels.shape[1]}")
            images.append(resize_frames([image], (self.resolution, self.resolution))[0])
        first = labels[0]
        class_ids = sorted(int(c) for c in np.unique(first[first < NUM_CLASSES]))
        if not class_ids:
            raise DataError(f"first annotation {self.labels_dir / name / frames[0]}.png has no class id below "
                            f"{NUM_CLASSES}")
        meta = {"size": labels.shape[1:], "frame_names": frames, "class_ids": class_ids}
        return Sequence(name, np.stack(images), labels, meta)

    # -- labels ------------------------------------------------------------------------------
    def encode(self, seq: Sequence, grid: tuple[int, int]) -> torch.Tensor:
        """One soft channel per class present in frame 0, ``[K, h, w]``."""
        return soft_labels(seq.gt[0], seq.meta["class_ids"], tuple(grid))

    def decode(self, seq: Sequence, soft: torch.Tensor) -> np.ndarray:
        """``[T, K, h, w]`` → ``[T, H, W]`` uint8 class ids at the original size (frame 0 included)."""
        return np.stack([labels_from_soft(s, seq.meta["class_ids"], seq.meta["size"]) for s in soft.detach().cpu()])

    # -- scoring -----------------------------------------------------------------------------
    def score_sequence(self, seq: Sequence, prediction: np.ndarray) -> dict[str, Any]:
        confusion = sum(miou.confusion_matrix(g, p, NUM_CLASSES) for g, p in zip(seq.gt, prediction, strict=True))
        return _summary(confusion, frames=len(seq.gt))

    def aggregate(self, per_sequence: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Sum the per-video confusion matrices, then take mIoU and pixel accuracy once."""
        confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
        for result in per_sequence.values():
            confusion += np.asarray(result["confusion"], dtype=np.int64)
        iou = miou.class_iou(confusion)
        summary = _summary(confusion, frames=sum(r["frames"] for r in per_sequence.values()))
        return {
            "metrics": {"mIoU": summary["mIoU"], "pixel_acc": summary["pixel_acc"]},
            "per_sequence": per_sequence,
            "per_class": {n: (None if np.isnan(v) else float(v)) for n, v in zip(CLASS_NAMES, iou, strict=True)},
        }

    def score_predictions(self, pred_dir: Path, sequences: list[str] | None = None) -> dict[str, Any]:
        """Score ``<pred_dir>/<video>/<frame>.png`` class-id images against the annotations."""
        names = sequences if sequences is not None else self.sequences()
        per_sequence = {}
        for name in names:
            frames = self.frame_names(name)
            folder = Path(pred_dir) / name
            unmatched = sorted(p.name for p in folder.iterdir() if p.suffix.lower() == ".png" and p.stem not in
                               set(frames)) if folder.is_dir() else []
            if unmatched:  # predictions numbered from another first frame would be scored against other frames
                raise PredictionError(f"{folder}: prediction(s) {', '.join(unmatched[:5])}"
                                      f"{' …' if len(unmatched) > 5 else ''} name no frame of video {name!r} "
                                      f"(frames {frames[0]} … {frames[-1]} in {self.images_dir / name})")
            labels = self.read_labels(name, frames)
            confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
            for frame, gt in zip(frames, labels, strict=True):
                path = Path(pred_dir) / name / f"{frame}.png"
                confusion += _score_file(path, gt)
            per_sequence[name] = _summary(confusion, frames=len(frames))
        return self.aggregate(per_sequence)

    @classmethod
    def rederive(cls, record: dict[str, Any]) -> Iterator[tuple[str, Any, Any, str]]:
        """mIoU and pixel accuracy from the summed per-video confusion matrices (only when every video stores
        one), each video's from its own, and ``per_class`` IoU."""
        per_sequence = record.get("per_sequence") or {}
        matrices = {}
        for video, result in per_sequence.items():
            confusion = np.asarray(result.get("confusion") if isinstance(result, dict) else None, dtype=object)
            if confusion.shape != (NUM_CLASSES, NUM_CLASSES):
                continue  # no VIP confusion matrix stored for this video
            matrices[video] = confusion = confusion.astype(np.int64)
            source = f"confusion matrix of {video!r}"
            yield f"per_sequence.{video}.mIoU", result.get("mIoU"), _nan_none(miou.mean_iou(confusion)), source
            yield (f"per_sequence.{video}.pixel_acc", result.get("pixel_acc"),
                   _nan_none(miou.pixel_accuracy(confusion)), source)
        if not matrices or len(matrices) != len(per_sequence):
            return
        total = sum(matrices.values())
        source = "per-video confusion matrices"
        yield "metrics.mIoU", record["metrics"].get("mIoU"), _nan_none(miou.mean_iou(total)), source
        yield "metrics.pixel_acc", record["metrics"].get("pixel_acc"), _nan_none(miou.pixel_accuracy(total)), source
        iou = miou.class_iou(total)
        for name, stored in (record.get("per_class") or {}).items():
            yield f"per_class.{name}", stored, _nan_none(iou[CLASS_NAMES.index(name)]), source

    # -- writing -----------------------------------------------------------------------------
    def write(self, seq: Sequence, prediction: np.ndarray, out_dir: Path) -> None:
        folder = Path(out_dir) / seq.name
        for frame, ids in zip(seq.meta["frame_names"], prediction, strict=True):
            with atomic_path(folder / f"{frame}.png") as tmp:
                Image.fromarray(np.asarray(ids, dtype=np.uint8), mode="L").save(tmp, format="PNG")

    def visualize(self, seq: Sequence, prediction: np.ndarray, out_dir: Path) -> Path:
        """Five frames spread over the video: top row ground truth, bottom row prediction, blended."""
        from matplotlib import colormaps

        colours = np.zeros((256, 3), dtype=np.float32)
        colours[:NUM_CLASSES] = np.asarray(colormaps["tab20"].colors, dtype=np.float32) * 255
        height, width = seq.meta["size"]
        picks = np.linspace(0, seq.num_frames - 1, num=min(5, seq.num_frames)).round().astype(int)
        rows = []
        for ids in (seq.gt, prediction):
            tiles = []
            for t in picks:
                frame = np.asarray(Image.fromarray(seq.frames[t]).resize((width, height), Image.BILINEAR), np.float32)
                tiles.append((0.5 * frame + 0.5 * colours[ids[t]]).astype(np.uint8))
            rows.append(np.concatenate(tiles, axis=1))
        strip = Image.fromarray(np.concatenate(rows, axis=0))
        strip.thumbnail((2400, 800))
        path = Path(out_dir) / "visualize" / f"{seq.name}.png"
        with atomic_path(path) as tmp:
            strip.save(tmp, format="PNG")
        return path


def _id_image(image: np.ndarray, path: Path, error: type[Exception]) -> np.ndarray:
    """A class-id image as ``[H, W]`` uint8: greyscale/palette as is, RGB only if its channels agree."""
    if image.ndim == 2:
        return image.astype(np.uint8)
    if (image == image[..., :1]).all():
        return image[..., 0].astype(np.uint8)
    raise error(f"{path} is a colour image; class ids must be stored as a greyscale (mode L) PNG")


def _score_file(path: Path, gt: np.ndarray) -> np.ndarray:
    if not path.is_file():
        raise PredictionError(f"missing prediction {path}")
    pred = _id_image(read_image(path, None), path, PredictionError)
    if pred.shape != gt.shape:
        pred = np.asarray(Image.fromarray(pred).resize((gt.shape[1], gt.shape[0]), Image.NEAREST))
    invalid = (pred >= NUM_CLASSES) & (gt < NUM_CLASSES)
    if invalid.any():
        raise PredictionError(f"prediction {path} has class id {int(pred[invalid].max())}; VIP ids are 0..{NUM_CLASSES - 1}")
    return miou.confusion_matrix(gt, pred, NUM_CLASSES)


def _nan_none(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def _summary(confusion: np.ndarray, frames: int) -> dict[str, Any]:
    m, acc = miou.mean_iou(confusion), miou.pixel_accuracy(confusion)
    return {
        "frames": int(frames),
        "mIoU": None if np.isnan(m) else m,
        "pixel_acc": None if np.isnan(acc) else acc,
        "confusion": np.asarray(confusion, dtype=np.int64).tolist(),
    }


register_task("vip", summary="VIP human-part propagation (val videos, 20 classes)")(VipTask)
