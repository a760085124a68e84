"""The DAVIS J&F scorer: official numbers on 30 real sequences, plain reference versions of every fast
path, hand-computed cases, and bad input that must fail naming the file."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from harness.errors import DataError, HarnessError, PredictionError
from harness.metrics import davis
from harness.metrics.davis import (
    boundary_points,
    boundary_radius,
    disk_half_widths,
    frame_values,
    global_scores,
    match_counts,
    object_scores,
    read_id_png,
    score_folder,
    statistics,
)

REFERENCE = "reference/davis2017_official_scores_osvos-gt_rvos-pred.json"
MASKS = "data/davis2017-val-masks"


# -- plain reference versions (written from the official definitions, slow and obvious) ------------
def ref_seg2bmap(seg: np.ndarray) -> np.ndarray:
    """Boundary map: a pixel differs from its east, south or south-east neighbour (outside = 0);
    the last row compares east only, the last column south only, the bottom-right pixel is never one."""
    seg = seg.astype(bool)
    east, south, diag = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    diag[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ east) | (seg ^ south) | (seg ^ diag)
    b[-1, :] = seg[-1, :] ^ east[-1, :]
    b[:, -1] = seg[:, -1] ^ south[:, -1]
    b[-1, -1] = False
    return b


def ref_disk(radius: int) -> np.ndarray:
    d = np.arange(-radius, radius + 1)
    return d[:, None] ** 2 + d[None, :] ** 2 <= radius**2


def ref_dilate(b: np.ndarray, radius: int) -> np.ndarray:
    """OR of the map shifted by every offset of the disk; pixels outside the image contribute nothing."""
    h, w = b.shape
    padded = np.pad(b, radius)
    out = np.zeros_like(b)
    for dy, dx in zip(*np.nonzero(ref_disk(radius)), strict=True):
        out |= padded[dy : dy + h, dx : dx + w]
    return out


def ref_f(gt: np.ndarray, pred: np.ndarray, radius: int) -> float:
    gb, fb = ref_seg2bmap(gt), ref_seg2bmap(pred)
    n_gt, n_fg = int(gb.sum()), int(fb.sum())
    if n_fg == 0 and n_gt > 0:
        p, r = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        p, r = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        p, r = 1.0, 1.0
    else:
        p = (fb & ref_dilate(gb, radius)).sum() / float(n_fg)
        r = (gb & ref_dilate(fb, radius)).sum() / float(n_gt)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def ref_j(gt: np.ndarray, pred: np.ndarray) -> float:
    union = (gt | pred).sum()
    return 1.0 if union == 0 else (gt & pred).sum() / union


def ref_statistics(values: list[float]) -> tuple[float, float, float]:
    n = len(values)
    edges = [int(np.round(1 + i * (n - 1) / 4 + 1e-10)) - 1 for i in range(5)]
    first, last = values[edges[0] : edges[1] + 1], values[edges[3] : edges[4] + 1]
    return float(np.mean(values)), float(np.mean([v > 0.5 for v in values])), float(np.mean(first) - np.mean(last))


def ref_object_scores(gt: np.ndarray, pred: np.ndarray, n: int) -> dict[int, dict[str, float]]:
    radius = boundary_radius(*gt.shape[1:])
    out = {}
    for k in range(1, n + 1):
        js = [ref_j(gt[t] == k, pred[t] == k) for t in range(1, len(gt) - 1)]
        fs = [ref_f(gt[t] == k, pred[t] == k, radius) for t in range(1, len(gt) - 1)]
        (jm, jr, jd), (fm, fr, fd) = ref_statistics(js), ref_statistics(fs)
        out[k] = {"J-Mean": jm, "J-Recall": jr, "J-Decay": jd, "F-Mean": fm, "F-Recall": fr, "F-Decay": fd}
    return out


def blobs(rng: np.random.Generator, shape: tuple[int, ...], n: int, p: float = 0.5) -> np.ndarray:
    """Random id maps with smooth objects (touching the image edges too) and some speckle."""
    noise = ndimage.gaussian_filter(rng.normal(size=shape), sigma=(0,) * (len(shape) - 2) + (3, 3))
    labels = np.digitize(noise, np.quantile(noise, np.linspace(1 - p, 1, n + 1)[:-1])).astype(np.uint8)
    speckle = rng.random(shape) < 0.01
    labels[speckle] = rng.integers(0, n + 1, speckle.sum())
    return labels


def assert_scores_close(got: dict, want: dict, tol: float = 1e-12) -> None:
    assert got.keys() == want.keys()
    for key in want:
        for name in davis.OBJECT_KEYS:
            assert got[key][name] == pytest.approx(want[key][name], abs=tol), (key, name)


# -- official numbers on real data ----------------------------------------------------------------
def test_matches_official_evaluator_on_30_real_sequences(shared_dir: Path, tmp_path: Path) -> None:
    """Every global and per-object number of davis2017-evaluation (osvos as GT, rvos-clipped as prediction)."""
    reference = json.loads((shared_dir / REFERENCE).read_text())
    sequences = list(reference["per_sequence"])
    assert len(sequences) == 30
    annotations = tmp_path / "DAVIS" / "Annotations" / "480p"
    annotations.mkdir(parents=True)
    for name in sequences:
        (annotations / name).symlink_to(shared_dir / MASKS / "osvos" / name, target_is_directory=True)
    (tmp_path / "DAVIS" / "ImageSets" / "2017").mkdir(parents=True)
    (tmp_path / "DAVIS" / "ImageSets" / "2017" / "val.txt").write_text("\n".join(sequences) + "\n")

    result = score_folder(annotations, shared_dir / MASKS / "rvos-clipped", sequences, processes=2, progress=False)

    assert result["metrics"].keys() == reference["global"].keys()
    for key, value in reference["global"].items():
        assert result["metrics"][key] == pytest.approx(value, abs=1e-9), key
    assert list(result["per_object"]) == list(reference["per_object"])
    assert len(result["per_object"]) == 61
    for obj, scores in reference["per_object"].items():
        assert result["per_object"][obj].keys() == scores.keys()
        for key, value in scores.items():
            assert result["per_object"][obj][key] == pytest.approx(value, abs=1e-9), (obj, key)
    for name, scores in reference["per_sequence"].items():  # the reference rounds these to 6 decimals
        got = result["per_sequence"][name]
        assert got["n_objects"] == scores["n_objects"]
        for key in ("J-Mean", "F-Mean", "J&F-Mean"):
            assert got[key] == pytest.approx(scores[key], abs=6e-7), (name, key)


def test_fast_png_reader_equals_pillow(shared_dir: Path, tmp_path: Path) -> None:
    paths = sorted((shared_dir / MASKS / "rvos-clipped" / "dogs-jump").glob("*.png"))[:5]
    assert davis._decode_plain_png(paths[0].read_bytes()) is not None  # the fast path is really taken
    for path in paths:
        np.testing.assert_array_equal(read_id_png(path, DataError), np.asarray(Image.open(path)))
    grey = np.random.default_rng(0).integers(0, 256, (37, 53), dtype=np.uint8)  # Pillow filters these rows
    Image.fromarray(grey, mode="L").save(tmp_path / "grey.png")
    np.testing.assert_array_equal(read_id_png(tmp_path / "grey.png", DataError), grey)


# -- the fast paths against the plain versions ------------------------------------------------------
@pytest.mark.parametrize("radius", [1, 2, 3, 5, 8, 9, 12])
def test_disk_rows_and_dilation_equal_the_disk(radius: int) -> None:
    """The disk as rows of half-width w(d) is x² + y² <= r² (skimage's disk); dilating by it equals
    thresholding the Euclidean distance transform at r, scipy's binary dilation and cv2.dilate."""
    disk = ref_disk(radius)
    widths = disk_half_widths(radius)
    rows = np.abs(np.arange(-radius, radius + 1))
    cols = np.arange(-radius, radius + 1)
    np.testing.assert_array_equal(disk, np.abs(cols)[None, :] <= widths[rows][:, None])
    rng = np.random.default_rng(radius)
    b = rng.random((60, 75)) < 0.01
    b[0, 5] = b[59, 74] = True
    dilated = ref_dilate(b, radius)
    np.testing.assert_array_equal(dilated, ndimage.distance_transform_edt(~b) <= radius)
    np.testing.assert_array_equal(dilated, ndimage.binary_dilation(b, structure=disk))
    cv2 = pytest.importorskip("cv2")
    np.testing.assert_array_equal(dilated, cv2.dilate(b.astype(np.uint8), disk.astype(np.uint8)).astype(bool))


def test_disk_is_skimage_disk_as_the_official_code_calls_it() -> None:
    morphology = pytest.importorskip("skimage.morphology")
    for radius in range(1, 13):  # the official code passes np.ceil(...), a float
        np.testing.assert_array_equal(morphology.disk(float(radius)).astype(bool), ref_disk(radius))


def test_boundary_points_equal_seg2bmap_per_object() -> None:
    rng = np.random.default_rng(1)
    for shape in [(1, 1), (1, 7), (6, 1), (2, 2), (31, 47), (64, 40)]:
        for n in (1, 3):
            labels = blobs(rng, shape, n) if min(shape) > 2 else rng.integers(0, n + 1, shape).astype(np.uint8)
            ids, ys, xs = boundary_points(labels)
            for k in range(n + 1):
                got = np.zeros(shape, dtype=bool)
                got[ys[ids == k], xs[ids == k]] = True
                assert np.count_nonzero(ids == k) == got.sum()  # no pixel listed twice for an object
                np.testing.assert_array_equal(got, ref_seg2bmap(labels == k), err_msg=f"{shape} object {k}")
            if n == 1:  # the path for one object: its points are the edge pixels
                ids, ys, xs = boundary_points(labels, binary=True)
                got = np.zeros(shape, dtype=bool)
                got[ys, xs] = True
                assert (ids == 1).all() and len(ys) == got.sum()
                np.testing.assert_array_equal(got, ref_seg2bmap(labels == 1), err_msg=f"{shape} binary")


@pytest.mark.parametrize("radius", [1, 2, 8])
def test_match_counts_equal_dilation_counts(radius: int) -> None:
    rng = np.random.default_rng(radius)
    for _ in range(20):
        gb, fb = rng.random((2, 40, 50)) < rng.uniform(0.002, 0.05)
        gb[0, 0] = fb[39, 49] = True
        fy, fx = np.nonzero(fb)
        gy, gx = np.nonzero(gb)
        want = ((fb & ref_dilate(gb, radius)).sum(), (gb & ref_dilate(fb, radius)).sum())
        assert match_counts(fy, fx, gy, gx, radius) == want


@pytest.mark.parametrize("radius", [1, 3, 8, 13, 40, 70])
def test_packed_dilation_equals_the_disk_dilation(radius: int) -> None:
    """Bitmaps packed 64 pixels to a word, dilated by radii whose widening needs carries across words and
    (40, 70) steps capped below 64 and half-widths wider than a word."""
    rng = np.random.default_rng(radius)
    b = rng.random((90, 200)) < 0.004
    b[0, 0] = b[89, 199] = b[45, 63] = b[46, 64] = True
    n_words = 4 + davis.pad_words(radius)
    packed = np.packbits(b, axis=-1, bitorder="little")
    words = np.concatenate([packed, np.zeros((90, n_words * 8 - packed.shape[1]), np.uint8)], axis=1).view("<u8")
    got = np.unpackbits(davis.dilate_packed(words[None], radius)[0].view(np.uint8), axis=-1, bitorder="little")
    got = got[:, :200]
    np.testing.assert_array_equal(got.astype(bool), ref_dilate(b, radius))


def test_frame_values_equal_reference_on_random_frames() -> None:
    rng = np.random.default_rng(2)
    for shape in [(48, 64), (100, 90), (20, 200)]:
        radius = boundary_radius(*shape)
        for n in (1, 2, 4):
            gt, pred = blobs(rng, shape, n), blobs(rng, shape, n, p=0.4)
            j, f = frame_values(gt, pred, n)
            for k in range(1, n + 1):
                assert j[k - 1] == pytest.approx(ref_j(gt == k, pred == k), abs=1e-15)
                assert f[k - 1] == pytest.approx(ref_f(gt == k, pred == k, radius), abs=1e-15)


def test_object_scores_equal_reference_with_void_and_extra_gt_ids() -> None:
    rng = np.random.default_rng(3)
    gt = blobs(rng, (9, 50, 70), 3)
    gt[:, 20:24, :] = 255  # void band
    gt[4, 0:5, 0:5] = 7  # an id above N in a later frame: background for every object
    pred = blobs(rng, (9, 50, 70), 3, p=0.45)
    want = ref_object_scores(np.where(gt > 3, 0, gt), pred, 3)
    assert_scores_close(object_scores(gt, pred, 3), want)


# -- hand-computed cases ----------------------------------------------------------------------------
def test_shifted_square_by_hand() -> None:
    """100x100 frames, so the boundary radius is ceil(0.008 * 141.4) = 2. GT: an 11x11 square at
    rows/cols 9..19; prediction: the same square moved right by 5. J = 66 / 176 (11x6 overlap).
    seg2bmap puts each boundary on the 12x12 ring one pixel up-left of the mask (rows/cols 8..19 for the
    GT, columns 13..24 for the prediction), 44 pixels each. GT ring pixels within 2 px of the predicted
    ring: top and bottom rows at columns 11..19 (9 + 9), the right column at rows 9, 10, 17, 18 (4),
    the left column never (5 px away): 22 of 44, and the same by symmetry the other way, so F = 0.5 —
    which is not > 0.5, so F-Recall is 0. Frames 0 and 2 hold junk that must not be scored."""
    assert boundary_radius(100, 100) == 2
    gt = np.zeros((3, 100, 100), dtype=np.uint8)
    pred = np.zeros_like(gt)
    gt[1, 9:20, 9:20] = 1
    pred[1, 9:20, 14:25] = 1
    gt[0], pred[2] = 1, 1
    assert ref_seg2bmap(gt[1]).sum() == ref_seg2bmap(pred[1]).sum() == 44
    scores = object_scores(gt, pred, 1)[1]
    assert scores["J-Mean"] == 66 / 176
    assert scores["F-Mean"] == 0.5
    assert (scores["J-Recall"], scores["F-Recall"], scores["J-Decay"], scores["F-Decay"]) == (0.0, 0.0, 0.0, 0.0)


def test_empty_mask_conventions() -> None:
    h, w = 30, 40
    gt = np.zeros((5, h, w), dtype=np.uint8)
    pred = np.zeros_like(gt)
    gt[2, 5:10, 5:10] = 1  # frame 2: object only in the GT      -> J 0, F 0
    pred[3, 5:10, 5:10] = 1  # frame 3: object only predicted    -> J 0, F 0
    # frame 1: empty in both -> J 1, F 1
    scores = object_scores(gt, pred, 1)[1]
    assert scores["J-Mean"] == pytest.approx(1 / 3)
    assert scores["F-Mean"] == pytest.approx(1 / 3)
    # an object covering the whole frame has no boundary at all: F is 1 (both empty) even where J is 0
    gt[1:4] = 1
    pred[1:4] = 0
    pred[1] = 1
    scores = object_scores(gt, pred, 1)[1]
    assert scores["J-Mean"] == pytest.approx(1 / 3)
    assert scores["F-Mean"] == pytest.approx(1.0)


def test_void_counts_as_background_as_in_semi_supervised_mode() -> None:
    rng = np.random.default_rng(4)
    gt = blobs(rng, (5, 40, 60), 2)
    pred = blobs(rng, (5, 40, 60), 2)
    with_void = gt.copy()
    with_void[:, :, 30:] = np.where(gt[:, :, 30:] == 0, 255, gt[:, :, 30:])
    assert_scores_close(object_scores(with_void, pred, 2), object_scores(gt, pred, 2), tol=0)


def test_statistics_bins_by_hand() -> None:
    values = np.arange(10) / 10  # bins: frames 0..2 and 7..9 -> decay 0.1 - 0.8
    mean, recall, decay = statistics(values)
    assert (mean, recall) == (pytest.approx(0.45), pytest.approx(0.4))
    assert decay == pytest.approx(-0.7)
    for n in range(1, 30):
        v = np.random.default_rng(n).random(n)
        assert statistics(v) == pytest.approx(ref_statistics(list(v)), abs=1e-15)


def test_global_scores_are_means_over_objects() -> None:
    per_object = {"a_1": dict.fromkeys(davis.OBJECT_KEYS, 0.2), "b_1": dict.fromkeys(davis.OBJECT_KEYS, 0.6)}
    per_object["b_1"]["F-Mean"] = 1.0
    scores = global_scores(per_object)
    assert list(scores) == list(davis.GLOBAL_KEYS)
    assert scores["J-Mean"] == pytest.approx(0.4)
    assert scores["F-Mean"] == pytest.approx(0.6)
    assert scores["J&F-Mean"] == pytest.approx(0.5)


# -- folders --------------------------------------------------------------------------------------
def write_pngs(folder: Path, masks: np.ndarray, mode: str = "P") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for t, mask in enumerate(masks):
        image = Image.fromarray(mask, mode="L")
        if mode == "P":
            image = image.convert("P")
            image.putpalette([v for i in range(256) for v in (i * 37 % 256, i * 91 % 256, i * 53 % 256)])
        image.save(folder / f"{t:05d}.png")


@pytest.fixture()
def small_dataset(tmp_path: Path) -> tuple[Path, Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    rng = np.random.default_rng(5)
    data = {}
    for name, n, frames in [("alpha", 2, 6), ("beta", 1, 4), ("gamma", 3, 5)]:
        gt, pred = blobs(rng, (frames, 36, 48), n), blobs(rng, (frames, 36, 48), n, p=0.4)
        gt[0, 0, 0] = n  # make sure the first frame holds every object id
        gt[:, -3:, :] = 255
        write_pngs(tmp_path / "gt" / name, gt)
        write_pngs(tmp_path / "pred" / name, pred)
        data[name] = (gt, pred)
    return tmp_path / "gt", tmp_path / "pred", data


@pytest.mark.parametrize("processes", [1, 2])
def test_score_folder_equals_object_scores(small_dataset, processes: int) -> None:
    gt_dir, pred_dir, data = small_dataset
    result = score_folder(gt_dir, pred_dir, list(data), processes=processes, progress=False)
    want = {}
    for name, (gt, pred) in data.items():
        n = int(gt[0][gt[0] != 255].max())
        for k, scores in object_scores(gt, pred, n).items():
            want[f"{name}_{k}"] = scores
        assert result["per_sequence"][name]["n_objects"] == n
    assert_scores_close(result["per_object"], want, tol=0)
    assert list(result["per_object"]) == list(want)
    assert result["metrics"] == global_scores(want)


def test_score_folder_binary_ground_truth(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    gt, pred = blobs(rng, (5, 30, 40), 1), blobs(rng, (5, 30, 40), 1)
    write_pngs(tmp_path / "gt" / "seq", gt * 255, mode="L")  # DAVIS-2016: greyscale 0/255
    write_pngs(tmp_path / "pred" / "seq", pred)
    result = score_folder(tmp_path / "gt", tmp_path / "pred", ["seq"], binary_gt=True, progress=False)
    assert_scores_close(result["per_object"], {"seq_1": object_scores(gt, pred, 1)[1]}, tol=0)


def test_missing_prediction_frame_names_the_file(small_dataset) -> None:
    gt_dir, pred_dir, data = small_dataset
    (pred_dir / "alpha" / "00003.png").unlink()
    with pytest.raises(PredictionError, match=r"alpha/00003\.png"):
        score_folder(gt_dir, pred_dir, list(data), progress=False)


def test_first_and_last_prediction_frames_are_not_needed(small_dataset) -> None:
    gt_dir, pred_dir, data = small_dataset
    (pred_dir / "beta" / "00000.png").unlink()
    (pred_dir / "beta" / "00003.png").unlink()
    assert "beta_1" in score_folder(gt_dir, pred_dir, ["beta"], progress=False, official_frames=True)["per_object"]


def test_wrong_size_names_the_file(small_dataset) -> None:
    gt_dir, pred_dir, data = small_dataset
    Image.fromarray(np.zeros((36, 47), dtype=np.uint8)).save(pred_dir / "gamma" / "00002.png")
    with pytest.raises(PredictionError, match=r"gamma/00002\.png is 47x36.*48x36"):
        score_folder(gt_dir, pred_dir, list(data), processes=2, progress=False)


def test_extra_predicted_id_names_the_file_and_ids(small_dataset) -> None:
    gt_dir, pred_dir, data = small_dataset
    mask = np.zeros((36, 48), dtype=np.uint8)
    mask[3, 3], mask[5, 5] = 2, 9  # beta has one object
    Image.fromarray(mask).save(pred_dir / "beta" / "00001.png")
    with pytest.raises(PredictionError, match=r"beta/00001\.png holds ids \[2, 9\]"):
        score_folder(gt_dir, pred_dir, list(data), processes=2, progress=False)


@pytest.mark.parametrize("content", [b"not a png at all", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00"])
def test_unreadable_png_names_the_file(small_dataset, content: bytes) -> None:
    gt_dir, pred_dir, data = small_dataset
    (pred_dir / "alpha" / "00002.png").write_bytes(content)
    with pytest.raises(PredictionError, match=r"alpha/00002\.png"):
        score_folder(gt_dir, pred_dir, list(data), progress=False)


def test_truncated_and_rgb_pngs_name_the_file(small_dataset) -> None:
    gt_dir, pred_dir, data = small_dataset
    path = pred_dir / "alpha" / "00001.png"
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(PredictionError, match=r"alpha/00001\.png"):
        score_folder(gt_dir, pred_dir, ["alpha"], progress=False)
    Image.new("RGB", (48, 36)).save(path)
    with pytest.raises(PredictionError, match=r"alpha/00001\.png is a RGB image"):
        score_folder(gt_dir, pred_dir, ["alpha"], progress=False)


def test_bad_ground_truth_raises_data_error(small_dataset) -> None:
    gt_dir, pred_dir, data = small_dataset
    with pytest.raises(DataError, match=r"gt/delta"):
        score_folder(gt_dir, pred_dir, ["delta"], progress=False)
    (gt_dir / "gamma" / "00001.png").write_bytes(b"junk")
    with pytest.raises(DataError, match=r"gamma/00001\.png"):
        score_folder(gt_dir, pred_dir, ["gamma"], progress=False)
    write_pngs(gt_dir / "empty", np.zeros((3, 8, 8), dtype=np.uint8))
    write_pngs(pred_dir / "empty", np.zeros((3, 8, 8), dtype=np.uint8))
    with pytest.raises(DataError, match=r"empty/00000\.png contains no object"):
        score_folder(gt_dir, pred_dir, ["empty"], progress=False)


def test_object_scores_rejects_bad_arrays() -> None:
    gt = np.zeros((4, 10, 10), dtype=np.uint8)
    gt[:, 2:5, 2:5] = 1
    with pytest.raises(PredictionError, match="shape"):
        object_scores(gt, gt[:, :9], 1)
    pred = gt.copy()
    pred[2, 0, 0] = 3
    with pytest.raises(PredictionError, match=r"ids \[3\] at frame 2"):
        object_scores(gt, pred, 1)


# -- the official cross-check ---------------------------------------------------------------------
def test_official_scores_explains_how_to_install(monkeypatch) -> None:
    from harness.metrics.davis_official import official_scores

    monkeypatch.setitem(sys.modules, "davis2017", None)
    monkeypatch.setitem(sys.modules, "davis2017.evaluation", None)
    with pytest.raises(HarnessError, match="pip install git\\+https://github.com/davisvideochallenge/davis2017-evaluation"):
        official_scores(Path("/nonexistent"), Path("/nonexistent"), ["blackswan"])


def test_official_scores_converts_the_evaluator_output(monkeypatch, tmp_path: Path) -> None:
    """A stand-in for DAVISEvaluation with the official return shape: lists in per-object order."""
    from harness.metrics.davis_official import official_scores

    calls = {}

    class FakeEvaluation:
        def __init__(self, davis_root, task, gt_set, sequences="all", codalab=False):
            calls.update(root=davis_root, task=task, gt_set=gt_set, sequences=sequences)

        def evaluate(self, res_path):
            calls["res_path"] = res_path
            names = {"a_1": 0, "a_2": 1, "b_1": 2}
            return {m: {"M": [0.1 + i for i in names.values()], "R": [0.5] * 3, "D": [0.01] * 3,
                        "M_per_object": {k: 0.1 + i for k, i in names.items()}} for m in ("J", "F")}

    package = types.ModuleType("davis2017")
    module = types.ModuleType("davis2017.evaluation")
    module.DAVISEvaluation = FakeEvaluation
    monkeypatch.setitem(sys.modules, "davis2017", package)
    monkeypatch.setitem(sys.modules, "davis2017.evaluation", module)
    result = official_scores(tmp_path, tmp_path / "pred", ["a", "b"])
    assert calls == {"root": str(tmp_path), "task": "semi-supervised", "gt_set": "val", "sequences": ["a", "b"],
                     "res_path": str(tmp_path / "pred")}
    assert list(result["per_object"]) == ["a_1", "a_2", "b_1"]
    assert result["per_object"]["a_2"]["J-Mean"] == pytest.approx(1.1)
    assert result["per_sequence"]["a"] == {"n_objects": 2, "J-Mean": pytest.approx(0.6), "F-Mean": pytest.approx(0.6),
                                           "J&F-Mean": pytest.approx(0.6)}
    assert result["metrics"]["J&F-Mean"] == pytest.approx((0.1 + 1.1 + 2.1) / 3)
