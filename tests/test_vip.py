"""The ``vip`` task on generated VIP-layout data: label codec, confusion pooling, files, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.cli import main
from harness.errors import DataError, PredictionError
from harness.labels.parts import labels_from_soft, soft_labels
from harness.tasks.vip import CLASS_NAMES, NUM_CLASSES, VipTask
from tests.datagen import IGNORE, make_vip_dataset

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "datasets" / "sample" / "vip"


@pytest.fixture(scope="module")
def vip_root(tmp_path_factory) -> Path:
    return make_vip_dataset(tmp_path_factory.mktemp("vip"), videos=2, frames=5, size=(48, 64), seed=3)


def brute_force_scores(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
    """mIoU and pixel accuracy by explicit per-class counting over all (gt, pred) frames."""
    ious = []
    for c in range(NUM_CLASSES):
        tp = union = 0
        for gt, pred in pairs:
            valid = gt < NUM_CLASSES
            tp += int(((gt == c) & (pred == c) & valid).sum())
            union += int((((gt == c) | (pred == c)) & valid).sum())
        if union:
            ious.append(tp / union)
    correct = sum(int(((gt == pred) & (gt < NUM_CLASSES)).sum()) for gt, pred in pairs)
    total = sum(int((gt < NUM_CLASSES).sum()) for gt, _ in pairs)
    return float(np.mean(ious)), correct / total


def test_class_names_are_vips_20() -> None:
    assert NUM_CLASSES == 20 and CLASS_NAMES[0] == "background" and CLASS_NAMES[19] == "left-shoe"


def test_fixture_has_late_classes_and_an_ignored_patch(vip_root: Path) -> None:
    task = VipTask(vip_root, {"resolution": 64})
    assert task.sequences() == ["synthetic_00", "synthetic_01"]
    seq = task.load("synthetic_00")
    assert seq.frames.shape == (5, 64, 64, 3) and seq.gt.shape == (5, 48, 64)
    first = set(np.unique(seq.gt[0]).tolist())
    later = set(np.unique(seq.gt[1:]).tolist())
    assert IGNORE in first and 0 in first
    assert later - first == {18}  # a class that enters after frame 0
    assert seq.meta["class_ids"] == sorted(first - {IGNORE})


def test_soft_labels_are_bilinear_block_means_at_half_size() -> None:
    labels = np.array([[0, 0, 5, 5], [0, 5, 5, 5], [7, 7, 255, 5], [7, 7, 5, 5]])
    soft = soft_labels(labels, [0, 5, 7], (2, 2))
    # halving with align_corners=False averages each 2x2 block; the ignored pixel has no channel
    expected = torch.tensor([[[0.75, 0.0], [0.0, 0.0]], [[0.25, 1.0], [0.0, 0.75]], [[0.0, 0.0], [1.0, 0.0]]])
    torch.testing.assert_close(soft, expected)
    # decoding maps channel indices back to the (non-consecutive) class ids
    np.testing.assert_array_equal(labels_from_soft(soft, [0, 5, 7], (2, 2)), [[0, 5], [7, 5]])


def test_soft_labels_and_decoding_match_opencv_bilinear(vip_root: Path) -> None:
    cv2 = pytest.importorskip("cv2", reason="opencv (a dev extra) is CRW's resizer, the reference here")
    labels = VipTask(vip_root, {}).read_labels("synthetic_00", ["000000000000"])[0]  # 48x64
    ids = [0, 2, 4, 8]
    soft = soft_labels(labels, ids, (7, 9))
    for k, c in enumerate(ids):
        onehot = (labels == c).astype(np.float32)
        reference = cv2.resize(onehot, (9, 7), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose(soft[k].numpy(), reference, atol=1e-5)
    up = np.stack([cv2.resize(s.numpy(), (64, 48), interpolation=cv2.INTER_LINEAR) for s in soft])
    agree = labels_from_soft(soft, ids, (48, 64)) == np.asarray(ids, dtype=np.uint8)[up.argmax(0)]
    assert agree.mean() > 0.99  # only near-ties at boundaries may differ


def test_perfect_propagation_scores_1_when_every_class_is_in_frame_0(tmp_path: Path) -> None:
    root = make_vip_dataset(tmp_path, videos=1, frames=4, size=(40, 56), seed=1, late_classes=0)
    task = VipTask(root, {"resolution": 64})
    seq = task.load("synthetic_00")
    # at grid = frame size the codec is exact, so perfect propagation must score exactly 1
    soft = torch.stack([soft_labels(gt, seq.meta["class_ids"], seq.meta["size"]) for gt in seq.gt])
    scores = task.aggregate({seq.name: task.score_sequence(seq, task.decode(seq, soft))})
    assert scores["metrics"] == {"mIoU": 1.0, "pixel_acc": 1.0}


def test_late_classes_cost_what_a_brute_force_count_says(vip_root: Path) -> None:
    task = VipTask(vip_root, {"resolution": 64})
    pairs, per_sequence = [], {}
    for name in task.sequences():
        seq = task.load(name)
        soft = torch.stack([soft_labels(gt, seq.meta["class_ids"], (6, 8)) for gt in seq.gt])
        pred = task.decode(seq, soft)
        assert pred.shape == seq.gt.shape and pred.dtype == np.uint8
        per_sequence[name] = task.score_sequence(seq, pred)
        pairs += list(zip(seq.gt, pred, strict=True))
    result = task.aggregate(per_sequence)
    m, acc = brute_force_scores(pairs)
    assert result["metrics"]["mIoU"] == pytest.approx(m, abs=1e-12)
    assert result["metrics"]["pixel_acc"] == pytest.approx(acc, abs=1e-12)
    assert result["per_class"]["right-shoe"] == 0.0 and result["per_class"]["hat"] is None
    assert result["metrics"]["mIoU"] < 1


def test_aggregate_pools_confusions_not_per_video_means() -> None:
    task = VipTask(SAMPLE, {})
    a = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=int)
    b = np.zeros_like(a)
    a[0, 0], a[1, 1] = 90, 10  # video a: perfect, mIoU 1
    b[1, 0] = 10  # video b: class 1 all wrong, mIoU 0
    result = task.aggregate({"a": {"confusion": a.tolist(), "frames": 1}, "b": {"confusion": b.tolist(), "frames": 1}})
    # pooled: IoU0 = 90/100, IoU1 = 10/20 → 0.7 (the mean of per-video mIoUs would be 0.5)
    assert result["metrics"]["mIoU"] == pytest.approx(0.7)
    assert result["metrics"]["pixel_acc"] == pytest.approx(100 / 110)


def test_gt_ids_at_or_above_20_are_ignored_by_the_task(tmp_path: Path) -> None:
    root = make_vip_dataset(tmp_path, videos=1, frames=2, size=(32, 32), late_classes=0, ignore_patch=False)
    path = root / "VIP_Fine" / "Annotations" / "Category_ids" / "synthetic_00" / f"{25:012d}.png"
    labels = np.asarray(Image.open(path)).copy()
    labels[:8] = 21
    Image.fromarray(labels, mode="L").save(path)
    task = VipTask(root, {"resolution": 32})
    seq = task.load("synthetic_00")
    pred = seq.gt.copy()
    pred[1, :8] = 0  # wherever the GT is 21, any prediction is fine
    assert task.score_sequence(seq, pred)["pixel_acc"] == 1.0


def test_written_pngs_rescore_identically(vip_root: Path, tmp_path: Path) -> None:
    task = VipTask(vip_root, {"resolution": 64})
    per_sequence = {}
    for name in task.sequences():
        seq = task.load(name)
        soft = torch.stack([soft_labels(gt, seq.meta["class_ids"], (4, 5)) for gt in seq.gt])
        pred = task.decode(seq, soft)
        task.write(seq, pred, tmp_path)
        per_sequence[name] = task.score_sequence(seq, pred)
    png = Image.open(tmp_path / "synthetic_01" / f"{50:012d}.png")
    assert png.mode == "L" and png.size == (64, 48)
    assert task.score_predictions(tmp_path, task.sequences()) == task.aggregate(per_sequence)


def test_prediction_errors_name_the_file(vip_root: Path, tmp_path: Path) -> None:
    task = VipTask(vip_root, {"resolution": 64})
    with pytest.raises(PredictionError, match=r"synthetic_00/000000000000\.png"):
        task.score_predictions(tmp_path, ["synthetic_00"])
    seq = task.load("synthetic_00")
    bad = seq.gt.copy()
    bad[bad == IGNORE] = 0
    bad[2, 20:, 20:] = 20
    task.write(seq, bad, tmp_path)
    with pytest.raises(PredictionError, match=r"000000000050\.png has class id 20"):
        task.score_predictions(tmp_path, ["synthetic_00"])


def test_missing_annotation_and_frame_folder_name_the_path(tmp_path: Path) -> None:
    root = make_vip_dataset(tmp_path, videos=2, frames=3, size=(32, 32))
    (root / "VIP_Fine" / "Annotations" / "Category_ids" / "synthetic_00" / f"{25:012d}.png").unlink()
    task = VipTask(root, {})
    with pytest.raises(DataError, match=r"Category_ids/synthetic_00/000000000025\.png is missing"):
        task.load("synthetic_00")
    for path in (root / "VIP_Fine" / "Images" / "synthetic_01").iterdir():
        path.unlink()
    (root / "VIP_Fine" / "Images" / "synthetic_01").rmdir()
    with pytest.raises(DataError, match=r"Images/synthetic_01 is missing"):
        task.load("synthetic_01")
    with pytest.raises(DataError, match="not in"):
        VipTask(root, {"sequences": ["nope"]}).sequences()


def test_visualize_writes_a_strip(vip_root: Path, tmp_path: Path) -> None:
    task = VipTask(vip_root, {"resolution": 64})
    seq = task.load("synthetic_00")
    path = task.visualize(seq, seq.gt, tmp_path)
    assert path.is_file() and Image.open(path).size == (5 * 64, 2 * 48)


@pytest.mark.smoke
def test_run_and_score_through_the_cli(vip_root: Path, tmp_path: Path, capsys) -> None:
    out_dir = tmp_path / "run"
    assert main(["run", "--method", "pixels", "--task", "vip", "--data-root", str(vip_root), "--out-dir", str(out_dir),
                 "--set", "task.resolution=64"]) == 0
    record = json.loads(Path(capsys.readouterr().out.strip().splitlines()[-1]).read_text())
    assert set(record["metrics"]) == {"mIoU", "pixel_acc"}
    assert record["protocol"]["settings"]["context"] == 4
    assert 0 < record["metrics"]["mIoU"] < 1 and 0 < record["metrics"]["pixel_acc"] <= 1
    assert (out_dir / "synthetic_01" / f"{100:012d}.png").is_file()
    scores = tmp_path / "scores.json"
    assert main(["score", "--task", "vip", "--data-root", str(vip_root), "--predictions", str(out_dir),
                 "--out", str(scores)]) == 0
    assert json.loads(scores.read_text())["metrics"] == record["metrics"]
