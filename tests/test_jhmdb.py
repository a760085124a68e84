"""The ``jhmdb`` task: geometry and label codec on the real clip, PCK scoring, files, options, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from harness.cli import main
from harness.engine.protocol import resolve_protocol
from harness.errors import DataError, HarnessError, PredictionError
from harness.labels.keypoints import decode_heatmaps, to_grid, to_pixels
from harness.labels.keypoints import gaussian_heatmaps as joint_heatmaps
from harness.tasks.frames import resize_frames
from harness.tasks.jhmdb import NUM_JOINTS, JhmdbTask
from tests.datagen import make_jhmdb_clip

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "datasets" / "sample" / "jhmdb"
SHARED = REPO.parent / "shared" / "data" / "jhmdb-sample"
CLIP = "catch/Goal_Keeping_Tips_catch_f_cm_np1_fr_med_2"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/jhmdb-sample is not available")


def make_task(root: Path = SAMPLE, visibility: str | None = None, **config) -> JhmdbTask:
    task = JhmdbTask(root, config)
    if visibility is not None:
        overrides = {"jhmdb_visibility": visibility}
        task.config["protocol"] = resolve_protocol("crw", "jhmdb", overrides, task.protocol_defaults("crw"))
    return task


def copy_sample(dest: Path) -> Path:
    shutil.copytree(SAMPLE, dest)
    return dest


@pytest.fixture(scope="module")
def sample_seq():
    """The shipped clip, loaded once (tests must not modify it)."""
    return make_task().load(CLIP)


@pytest.fixture(scope="module")
def shared_seq():
    """The full real clip from ../shared, loaded once."""
    if not SHARED.is_dir():
        pytest.skip("../shared/data/jhmdb-sample is not available")
    return make_task(SHARED, sequences=[CLIP]).load(CLIP)


def perfect_soft(seq, grid=(40, 40)) -> torch.Tensor:
    """What a perfect propagation would give: every frame's own ground truth, encoded."""
    return torch.stack([joint_heatmaps(seq.gt[:, :, t], seq.meta["size"], grid) for t in range(seq.num_frames)])


# -- geometry and codec --------------------------------------------------------------------------
def test_grid_mapping_uses_the_actual_grid_and_frame_size() -> None:
    # 320x240 frame on a 40x40 grid: a cell is 8 px wide and 6 px high; cell 0's centre is pixel (3.5, 2.5)
    centre = to_pixels(np.array([[0.0], [0.0]]), (240, 320), (40, 40))
    assert centre[:, 0].tolist() == [3.5, 2.5]
    xy = np.array([[0.0, 100.3, 319.0], [0.0, 57.9, 239.0]])
    for grid in ((40, 40), (30, 41), (13, 7)):
        np.testing.assert_allclose(to_pixels(to_grid(xy, (240, 320), grid), (240, 320), grid), xy, atol=1e-9)


def test_heatmaps_have_a_4x4_support_and_a_background_channel() -> None:
    xy = np.zeros((2, NUM_JOINTS))
    xy[:, 0] = (100.0, 60.0)
    xy[:, 1] = (-500.0, -500.0)  # far outside the frame: an all-zero channel
    xy[:, 2:] = np.array([[200.0], [150.0]])
    maps = joint_heatmaps(xy, (240, 320), (40, 40))
    assert maps.shape == (NUM_JOINTS + 1, 40, 40)
    assert int((maps[0] > 0).sum()) == 16
    assert float(maps[0].max()) <= 1.0 and float(maps[0].max()) > 0.5
    assert float(maps[1].abs().sum()) == 0.0
    background = (maps[:NUM_JOINTS] == 0).all(0).float()
    assert torch.equal(maps[-1], background)
    # the peak cell is the one whose centre is nearest the joint
    gx, gy = to_grid(xy[:, :1], (240, 320), (40, 40))[:, 0]
    peak = int(maps[0].flatten().argmax())
    assert (peak % 40, peak // 40) == (round(gx), round(gy))


def test_decoding_takes_the_weighted_mean_of_the_top_3_cells() -> None:
    maps = torch.zeros(1, 2, 5, 6)
    maps[0, 0, 2, 3] = 0.5  # (x=3, y=2)
    maps[0, 0, 2, 4] = 0.3  # (x=4, y=2)
    maps[0, 0, 1, 3] = 0.2  # (x=3, y=1)
    maps[0, 0, 4, 0] = 0.1  # 4th largest: ignored
    coords = decode_heatmaps(maps)
    assert coords.shape == (2, 2, 1)
    assert coords[0, 0, 0] == pytest.approx(0.5 * 3 + 0.3 * 4 + 0.2 * 3)
    assert coords[1, 0, 0] == pytest.approx(0.5 * 2 + 0.3 * 2 + 0.2 * 1)
    assert coords[:, 1, 0].tolist() == [-1.0, -1.0]  # all-zero map → no prediction


def test_a_vanished_joint_decodes_to_minus_one_in_pixels(sample_seq) -> None:
    task, seq = make_task(), sample_seq
    soft = task.encode(seq, (40, 40))[None].repeat(2, 1, 1, 1)
    soft[1, 4] = 0.0
    pred = task.decode(seq, soft)
    assert pred[:, 4, 1].tolist() == [-1.0, -1.0] and (pred[:, 4, 0] >= 0).all()


def test_encode_then_decode_returns_frame_0_within_one_pixel_on_the_real_clip(sample_seq) -> None:
    task, seq = make_task(), sample_seq
    assert seq.frames.shape == (25, 320, 320, 3) and seq.meta["size"] == (240, 320)
    first = task.encode(seq, (40, 40))
    assert first.shape == (NUM_JOINTS + 1, 40, 40)
    decoded = task.decode(seq, first[None])[:, :, 0]
    error = np.hypot(*(decoded - seq.gt[:, :, 0]))
    assert error.max() < 1.0, error


def test_sample_is_the_start_of_the_real_clip(sample_seq, shared_seq) -> None:
    sample, full = sample_seq, shared_seq
    assert full.num_frames == 40
    np.testing.assert_array_equal(sample.frames, full.frames[:25])
    np.testing.assert_array_equal(sample.gt, full.gt[:, :, :25])


def test_perfect_propagation_scores_1(sample_seq) -> None:
    task, seq = make_task(), sample_seq
    pred = task.decode(seq, perfect_soft(seq))
    scores = task.score_sequence(seq, pred)
    assert scores["frames"] == 25 and scores["totals"] == [24] * NUM_JOINTS  # frame 0 is not scored
    assert all(scores[f"PCK@{a}"] == 1.0 for a in (0.1, 0.2, 0.3, 0.4, 0.5))


@pytest.mark.parametrize("size", [(320, 320), (70, 90), (560, 560)])
def test_frame_resizing_matches_opencv_inter_linear(size) -> None:
    cv2 = pytest.importorskip("cv2", reason="opencv (a dev extra) is the reference for CRW's resizing")
    frame = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    ours = resize_frames([frame], size)[0].astype(int)
    reference = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_LINEAR).astype(int)
    assert np.abs(ours - reference).max() <= 1  # OpenCV rounds in fixed point


# -- scoring options and aggregation ------------------------------------------------------------
def test_visibility_option_changes_what_is_scored_and_the_protocol_hash(sample_seq) -> None:
    task_pred, task_gt = make_task(visibility="pred"), make_task(visibility="gt")
    assert task_pred.config["protocol"].hash != task_gt.config["protocol"].hash
    assert make_task().visibility() == "pred"  # no protocol handed over: CRW's rule
    seq = sample_seq
    pred = task_pred.decode(seq, perfect_soft(seq))
    pred[:, 3, 5:] = -1.0  # joint 3 lost from frame 5 on
    by_pred, by_gt = task_pred.score_sequence(seq, pred), task_gt.score_sequence(seq, pred)
    assert by_pred["totals"][3] == 4 and by_pred["PCK@0.1"] == 1.0  # dropped silently
    assert by_gt["totals"][3] == 24 and by_gt["hits"]["0.1"][3] == 4  # counted as misses
    assert by_gt["PCK@0.1"] == pytest.approx((14 + 4 / 24) / 15)
    with pytest.raises(HarnessError, match="jhmdb_visibility"):
        make_task(visibility="sometimes").visibility()


def test_aggregate_pools_counts_per_joint_over_clips() -> None:
    task = make_task()
    zeros = [0] * NUM_JOINTS

    def clip(total: int, hit: int) -> dict:
        totals, hits = [total] + zeros[1:], [hit] + zeros[1:]
        return {"totals": totals, "hits": {a: hits for a in ("0.1", "0.2", "0.3", "0.4", "0.5")}}

    # joint 0: 1/1 in one clip, 0/3 in the other → 1/4 pooled (a mean over clips would say 0.5)
    result = task.aggregate({"a": clip(1, 1), "b": clip(3, 0)})
    assert result["metrics"]["PCK@0.1"] == 0.25
    assert result["per_joint"]["neck"]["PCK@0.1"] == 0.25 and result["per_joint"]["face"]["PCK@0.1"] is None


def test_written_predictions_rescore_identically(tmp_path: Path, sample_seq) -> None:
    task, seq = make_task(), sample_seq
    rng = np.random.default_rng(0)
    pred = seq.gt + rng.normal(0, 6, seq.gt.shape)
    pred[:, 2, 10:] = -1.0
    task.write(seq, pred, tmp_path)
    written = np.load(tmp_path / f"{CLIP}.npy")
    assert written.shape == (2, NUM_JOINTS, 25) and written.dtype == np.float64
    direct = task.aggregate({CLIP: task.score_sequence(seq, pred)})
    assert task.score_predictions(tmp_path, [CLIP]) == direct
    assert 0 < direct["metrics"]["PCK@0.1"] < 1


def test_prediction_files_are_checked(tmp_path: Path) -> None:
    task = make_task()
    with pytest.raises(PredictionError, match=r"Goal_Keeping_Tips_catch_f_cm_np1_fr_med_2\.npy"):
        task.score_predictions(tmp_path, [CLIP])
    path = tmp_path / f"{CLIP}.npy"
    path.parent.mkdir(parents=True)
    np.save(path, np.zeros((2, NUM_JOINTS, 24)))
    with pytest.raises(PredictionError, match="is \\(2, 15, 24\\)"):
        task.score_predictions(tmp_path, [CLIP])


def test_visualize_writes_a_strip(tmp_path: Path, sample_seq) -> None:
    task, seq = make_task(), sample_seq
    path = task.visualize(seq, seq.gt.copy(), tmp_path)
    assert path.is_file() and path.suffix == ".png" and path.is_relative_to(tmp_path)


# -- clip lists and data errors -----------------------------------------------------------------
@needs_shared
def test_missing_clips_are_a_data_error_unless_restricted() -> None:
    with pytest.raises(DataError, match=r"268 of the 268 clips .* missing.*--sequences"):
        make_task(SHARED).sequences()
    assert make_task(SHARED, sequences=[CLIP]).sequences() == [CLIP]  # present, though not a split-1 test clip
    with pytest.raises(DataError, match="not in"):
        make_task(SHARED, sequences=["catch/no_such_clip"]).sequences()


def test_limit_and_official_per_class_split_files(tmp_path: Path) -> None:
    root = copy_sample(tmp_path / "jhmdb")
    assert make_task(root, limit=1).sequences() == [CLIP]
    (root / "splits" / "test_split1_clips.txt").unlink()
    (root / "splits" / "catch_test_split1.txt").write_text(
        "Other_clip_catch_u_cm_np1_ba_goo_0.avi 1\nGoal_Keeping_Tips_catch_f_cm_np1_fr_med_2.avi 2 \n"
    )
    assert make_task(root).sequences() == [CLIP]


def test_missing_pos_img_names_the_file(tmp_path: Path) -> None:
    root = copy_sample(tmp_path / "jhmdb")
    mat = root / "joint_positions" / CLIP / "joint_positions.mat"
    scipy.io.savemat(mat, {"pos_world": np.zeros((2, NUM_JOINTS, 25))})
    with pytest.raises(DataError, match=r"joint_positions\.mat has no 'pos_img'.*pos_world"):
        make_task(root).load(CLIP)


def test_wrong_joint_count_names_the_file(tmp_path: Path) -> None:
    root = copy_sample(tmp_path / "jhmdb")
    (root / "Rename_Images" / CLIP / "00025.png").unlink()
    with pytest.raises(DataError, match=r"joint_positions\.mat: pos_img is \(2, 15, 25\)"):
        make_task(root).load(CLIP)


def test_missing_frame_folder_names_it(tmp_path: Path) -> None:
    root = copy_sample(tmp_path / "jhmdb")
    shutil.rmtree(root / "Rename_Images" / CLIP)
    with pytest.raises(DataError, match="Rename_Images/catch/Goal_Keeping"):
        make_task(root).load(CLIP)
    with pytest.raises(DataError, match="1 of the 1 clips"):
        make_task(root).sequences()


def test_missing_layout_folder_is_explained(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="Rename_Images is missing"):
        JhmdbTask(tmp_path, {})


def test_fixture_clip_from_the_real_video(tmp_path: Path, shared_seq) -> None:
    joints = scipy.io.loadmat(SHARED / "joint_positions" / CLIP / "joint_positions.mat")["pos_img"]
    name = make_jhmdb_clip(tmp_path, SHARED / "videos" / f"{CLIP}.avi", joints, name=CLIP, max_frames=8)
    seq = make_task(tmp_path).load(name)
    assert seq.num_frames == 8 and seq.meta["size"] == (240, 320)
    np.testing.assert_array_equal(seq.gt, joints[:, :, :8] - 1)
    # the PNG frames of the release were extracted from this video: decoded frames stay close
    assert np.abs(seq.frames.astype(int) - shared_seq.frames[:8].astype(int)).mean() < 12


# -- end to end through the CLI ------------------------------------------------------------------
@pytest.mark.smoke
def test_run_and_score_through_the_cli(tmp_path: Path, capsys) -> None:
    def run(*extra: str) -> dict:
        args = ["run", "--method", "pixels", "--task", "jhmdb", "--data-root", str(SAMPLE),
                "--set", "task.resolution=96", *extra]
        assert main(args) == 0
        return json.loads(Path(capsys.readouterr().out.strip().splitlines()[-1]).read_text())

    out_dir = tmp_path / "run"
    record = run("--out-dir", str(out_dir))
    assert set(record["metrics"]) == {f"PCK@{a}" for a in (0.1, 0.2, 0.3, 0.4, 0.5)}
    assert record["protocol"]["settings"]["task_options"] == {"jhmdb_visibility": "pred"}
    assert record["protocol"]["settings"]["context"] == 7
    assert np.load(out_dir / f"{CLIP}.npy").shape == (2, NUM_JOINTS, 25)
    scores = tmp_path / "scores.json"
    assert main(["score", "--task", "jhmdb", "--data-root", str(SAMPLE), "--predictions", str(out_dir),
                 "--out", str(scores)]) == 0
    assert json.loads(scores.read_text())["metrics"] == record["metrics"]

    by_gt = run("--out-dir", str(tmp_path / "gt"), "--set", "protocol.jhmdb_visibility=gt")
    assert by_gt["protocol"]["settings"]["task_options"] == {"jhmdb_visibility": "gt"}
    assert by_gt["protocol"]["hash"] != record["protocol"]["hash"]
