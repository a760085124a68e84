"""`harness data check`: small roots built from real DAVIS/JHMDB files, one broken input per test.

Every bad input must be reported with the offending file's name; good roots must pass.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from harness.cli import main as cli_main
from harness.data.check import check_dataset, read_split, require_valid
from harness.data.images import davis_palette
from harness.errors import DataError

SHARED = Path(__file__).resolve().parents[2] / "shared"
DAVIS17 = SHARED / "data/davis2017-layout-val10"
DAVIS16 = SHARED / "data/davis2016-val10/DAVIS"
JHMDB = SHARED / "data/jhmdb-sample"
CLIP = "catch/Goal_Keeping_Tips_catch_f_cm_np1_fr_med_2"
SEQ = "blackswan"
pytestmark = [
    pytest.mark.skipif(not DAVIS17.is_dir() or not DAVIS16.is_dir() or not JHMDB.is_dir(),
                       reason="needs the real data in ../shared/data (davis2017-layout-val10, davis2016-val10, "
                              "jhmdb-sample)"),
    pytest.mark.timeout(60),
]


def _davis_root(tmp_path: Path, source: Path = DAVIS17, split_file: str = "ImageSets/2017/val.txt") -> Path:
    """A DAVIS root with the first 3 real frames and masks of blackswan."""
    root = tmp_path / "davis"
    for kind, ext in (("JPEGImages", "jpg"), ("Annotations", "png")):
        folder = root / kind / "480p" / SEQ
        folder.mkdir(parents=True)
        for i in range(3):
            shutil.copy(source / kind / "480p" / SEQ / f"{i:05d}.{ext}", folder)
    (root / split_file).parent.mkdir(parents=True)
    (root / split_file).write_text(f"{SEQ}\n")
    return root


def _frame(root: Path, i: int) -> Path:
    return root / "JPEGImages/480p" / SEQ / f"{i:05d}.jpg"


def _mask(root: Path, i: int) -> Path:
    return root / "Annotations/480p" / SEQ / f"{i:05d}.png"


def _one_problem_naming(problems: list[str], path: Path, *words: str) -> str:
    assert len(problems) == 1, problems
    assert problems[0].startswith(str(path)), problems
    for word in words:
        assert word in problems[0], problems
    return problems[0]


def test_real_davis_roots_pass(tmp_path: Path) -> None:
    assert check_dataset("davis", _davis_root(tmp_path)) == []
    assert check_dataset("davis", _davis_root(tmp_path / "b"), full=True) == []
    assert check_dataset("davis", DAVIS17, ["blackswan", "dog"]) == []
    require_valid("davis", _davis_root(tmp_path / "c"), None)


def test_palette_is_the_real_davis_palette() -> None:
    with Image.open(_mask(DAVIS17, 0)) as image:
        real = np.array(image.getpalette()[:768], dtype=np.uint8).reshape(-1, 3)
    assert len(real) == 256
    np.testing.assert_array_equal(davis_palette(), real)


def test_truncated_jpeg_is_named(tmp_path: Path) -> None:
    root = _davis_root(tmp_path)
    frame = _frame(root, 1)
    frame.write_bytes(frame.read_bytes()[: frame.stat().st_size // 2])
    _one_problem_naming(check_dataset("davis", root), frame, "truncated")


def test_unreadable_jpeg_is_named(tmp_path: Path) -> None:
    root = _davis_root(tmp_path)
    _frame(root, 2).write_bytes(b"this is not a JPEG at all")
    _one_problem_naming(check_dataset("davis", root), _frame(root, 2), "unreadable")


def test_truncated_first_frame_is_named(tmp_path: Path) -> None:
    root = _davis_root(tmp_path)
    frame = _frame(root, 0)
    frame.write_bytes(frame.read_bytes()[:5000])
    _one_problem_naming(check_dataset("davis", root), frame, "truncated")


@pytest.mark.parametrize("index", [0, 2])
def test_truncated_png_annotation_is_named(tmp_path: Path, index: int) -> None:
    root = _davis_root(tmp_path)
    mask = _mask(root, index)
    mask.write_bytes(mask.read_bytes()[: mask.stat().st_size // 2])
    _one_problem_naming(check_dataset("davis", root), mask, "truncated")


def test_annotation_of_another_size_is_named(tmp_path: Path) -> None:
    root = _davis_root(tmp_path)
    with Image.open(_mask(root, 1)) as image:
        image.resize((427, 240), Image.NEAREST).save(_mask(root, 1))
    _one_problem_naming(check_dataset("davis", root), _mask(root, 1), "427x240", "854x480", "00001.jpg")


def test_frame_of_another_size_is_named(tmp_path: Path) -> None:
    root = _davis_root(tmp_path)
    with Image.open(_frame(root, 2)) as image:
        image.resize((640, 360)).save(_frame(root, 2))
    problems = check_dataset("davis", root)
    assert any(p.startswith(str(_frame(root, 2))) and "640x360" in p for p in problems), problems
    assert any(p.startswith(str(_mask(root, 2))) for p in problems), problems  # and its mask no longer fits


def test_sequence_with_no_frames_is_named(tmp_path: Path) -> None:
    root = _davis_root(tmp_path)
    (root / "ImageSets/2017/val.txt").write_text(f"{SEQ}\nempty-seq\nmissing-seq\n")
    (root / "JPEGImages/480p/empty-seq").mkdir()
    problems = check_dataset("davis", root)
    assert len(problems) == 2, problems
    assert problems[0].startswith(str(root / "JPEGImages/480p/empty-seq")) and "no .jpg frames" in problems[0]
    assert problems[1].startswith(str(root / "JPEGImages/480p/missing-seq")) and "missing" in problems[1]


def test_missing_and_extra_annotations_are_named(tmp_path: Path) -> None:
    root = _davis_root(tmp_path)
    _mask(root, 1).rename(_mask(root, 7))
    problems = check_dataset("davis", root)
    assert "3 frames but 3 annotations" in problems[0]
    assert any(p.startswith(str(_mask(root, 1))) and "missing" in p for p in problems), problems
    assert any(p.startswith(str(_mask(root, 7))) and "has no frame" in p for p in problems), problems


def test_first_frame_without_object_is_named(tmp_path: Path) -> None:
    root = _davis_root(tmp_path)
    empty = Image.fromarray(np.zeros((480, 854), dtype=np.uint8), mode="P")
    empty.putpalette(davis_palette().ravel().tolist())
    empty.save(_mask(root, 0))
    _one_problem_naming(check_dataset("davis", root), _mask(root, 0), "no object")


def test_rgb_annotation_on_the_palette_is_accepted(tmp_path: Path) -> None:
    root = _davis_root(tmp_path)
    for i in range(3):
        with Image.open(_mask(root, i)) as image:
            image.convert("RGB").save(_mask(root, i))
    assert check_dataset("davis", root) == []


def test_rgb_annotation_off_the_palette_is_named(tmp_path: Path) -> None:
    root = _davis_root(tmp_path)
    with Image.open(_mask(root, 1)) as image:
        rgb = np.array(image.convert("RGB"))
    rgb[:10, :10] = (10, 200, 30)
    Image.fromarray(rgb).save(_mask(root, 1))
    _one_problem_naming(check_dataset("davis", root), _mask(root, 1), "outside the DAVIS palette", "(10, 200, 30)")


def test_davis2016_masks_given_to_davis_are_named(tmp_path: Path) -> None:
    root = _davis_root(tmp_path)
    for i in range(3):
        shutil.copy(DAVIS16 / "Annotations/480p" / SEQ / f"{i:05d}.png", _mask(root, i))
    problems = check_dataset("davis", root)
    assert len(problems) == 3 and all("mode L" in p and "davis2016" in p for p in problems), problems
    assert problems[0].startswith(str(_mask(root, 0)))


def test_davis2016_root_passes_and_bad_values_are_named(tmp_path: Path) -> None:
    root = _davis_root(tmp_path, DAVIS16, "ImageSets/2016/val.txt")
    assert check_dataset("davis2016", root) == []
    mask = np.array(Image.open(_mask(root, 0)))
    mask[mask == 255] = 1  # an object id instead of 255: a 2017-style mask
    Image.fromarray(mask).save(_mask(root, 0))
    _one_problem_naming(check_dataset("davis2016", root), _mask(root, 0), "not 0/255")


def test_davis2016_frame_pair_list(tmp_path: Path) -> None:
    root = _davis_root(tmp_path, DAVIS16, "ImageSets/480p/val.txt")
    (root / "ImageSets/480p/val.txt").write_text("".join(
        f"/JPEGImages/480p/{s}/{i:05d}.jpg /Annotations/480p/{s}/{i:05d}.png\n" for s in (SEQ, "dog") for i in range(2)))
    problems = check_dataset("davis2016", root)
    assert len(problems) == 1 and problems[0].startswith(str(root / "JPEGImages/480p/dog")), problems


def test_non_first_bad_value_needs_full(tmp_path: Path) -> None:
    """Fast mode reads headers of later masks only; --full decodes them and finds the bad value."""
    root = _davis_root(tmp_path, DAVIS16, "ImageSets/2016/val.txt")
    mask = np.array(Image.open(_mask(root, 2)))
    mask[:5, :5] = 7
    Image.fromarray(mask).save(_mask(root, 2))
    assert check_dataset("davis2016", root) == []
    _one_problem_naming(check_dataset("davis2016", root, full=True), _mask(root, 2), "values 7 ")


def test_missing_split_list_and_not_a_root(tmp_path: Path) -> None:
    root = _davis_root(tmp_path)
    (root / "ImageSets/2017/val.txt").unlink()
    _one_problem_naming(check_dataset("davis", root), root, "ImageSets/2017/val.txt")
    (tmp_path / "elsewhere").mkdir()
    _one_problem_naming(check_dataset("davis", tmp_path / "elsewhere"), tmp_path / "elsewhere", "JPEGImages/")


def test_require_valid_raises_with_the_report(tmp_path: Path) -> None:
    root = _davis_root(tmp_path)
    _frame(root, 1).write_bytes(b"")
    with pytest.raises(DataError) as err:
        require_valid("davis", root, [SEQ])
    assert str(_frame(root, 1)) in str(err.value) and "harness data check davis" in str(err.value)


def test_cli_check_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _davis_root(tmp_path)
    assert cli_main(["data", "check", "davis", "--data-root", str(root)]) == 0
    assert "OK:" in capsys.readouterr().out
    _mask(root, 2).unlink()
    assert cli_main(["data", "check", "davis", "--data-root", str(root), "--sequences", SEQ, "--full"]) == 1
    assert str(_mask(root, 2)) in capsys.readouterr().out


# --------------------------------------------------------------------------------------------- JHMDB


def _jhmdb_root(tmp_path: Path, keys: dict[str, np.ndarray] | None = None) -> tuple[Path, Path]:
    """A JHMDB root with 3 real frames of the sample clip and a .mat built with scipy.io.savemat."""
    root = tmp_path / "jhmdb"
    frames = root / "Rename_Images" / CLIP
    frames.mkdir(parents=True)
    for i in range(1, 4):
        shutil.copy(JHMDB / "Rename_Images" / CLIP / f"{i:05d}.png", frames)
    real = scipy.io.loadmat(JHMDB / "joint_positions" / CLIP / "joint_positions.mat")
    mat = root / "joint_positions" / CLIP / "joint_positions.mat"
    mat.parent.mkdir(parents=True)
    scipy.io.savemat(mat, keys if keys is not None else {"pos_img": real["pos_img"][:, :, :3],
                                                         "pos_world": real["pos_world"][:, :, :3]})
    (root / "splits").mkdir()
    (root / "splits/test_split1_clips.txt").write_text(CLIP + "\n")
    return root, mat


def test_jhmdb_root_passes(tmp_path: Path) -> None:
    root, _ = _jhmdb_root(tmp_path)
    assert check_dataset("jhmdb", root) == []
    assert check_dataset("jhmdb", root, full=True) == []


def test_jhmdb_missing_mat_key_is_named(tmp_path: Path) -> None:
    root, mat = _jhmdb_root(tmp_path, {"pos_world": np.zeros((2, 15, 3))})
    _one_problem_naming(check_dataset("jhmdb", root), mat, "pos_img", "pos_world")


def test_jhmdb_joint_frames_disagree_with_frames(tmp_path: Path) -> None:
    root, mat = _jhmdb_root(tmp_path, {"pos_img": np.zeros((2, 15, 40))})
    _one_problem_naming(check_dataset("jhmdb", root), mat, "40 frames", "holds 3")


def test_jhmdb_unreadable_mat_and_truncated_png(tmp_path: Path) -> None:
    root, mat = _jhmdb_root(tmp_path)
    mat.write_bytes(b"MATLAB? no.")
    frame = root / "Rename_Images" / CLIP / "00002.png"
    frame.write_bytes(frame.read_bytes()[:3000])
    problems = check_dataset("jhmdb", root)
    assert len(problems) == 2, problems
    assert problems[0].startswith(str(frame)) and "truncated" in problems[0]
    assert problems[1].startswith(str(mat)) and "unreadable .mat" in problems[1]


def test_jhmdb_official_split_files(tmp_path: Path) -> None:
    root, _ = _jhmdb_root(tmp_path)
    (root / "splits/test_split1_clips.txt").unlink()
    clip = CLIP.split("/")[1]
    (root / "splits/catch_test_split1.txt").write_text(f"{clip}.avi 2\nsome_training_clip.avi 1\n")
    (root / "splits/catch_test_split2.txt").write_text("other_clip.avi 2\n")
    from harness.data.cards import find_card

    names, problems = read_split(root, find_card("jhmdb").check.splits["test1"])
    assert names == [CLIP] and problems == []
    assert check_dataset("jhmdb", root) == []


# --------------------------------------------------------------------------------------------- VIP


def _vip_root(tmp_path: Path, values: list[int]) -> tuple[Path, list[Path]]:
    """Generated VIP layout (no real VIP data is available): 2 frames with class-id masks."""
    root = tmp_path / "vip"
    images, labels = root / "VIP_Fine/Images/v1", root / "VIP_Fine/Annotations/Category_ids/v1"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    masks = []
    for i, value in enumerate(values):
        Image.fromarray(np.full((24, 32, 3), 90 * i, dtype=np.uint8)).save(images / f"{i:06d}.jpg")
        mask = np.zeros((24, 32), dtype=np.uint8)
        mask[5:15, 5:15] = value
        Image.fromarray(mask).save(labels / f"{i:06d}.png")
        masks.append(labels / f"{i:06d}.png")
    (root / "lists").mkdir()
    (root / "lists/val_videos.txt").write_text("v1\n")
    return root, masks


def test_vip_class_ids(tmp_path: Path) -> None:
    root, _ = _vip_root(tmp_path / "a", [3, 19])
    assert check_dataset("vip", root, full=True) == []
    root, masks = _vip_root(tmp_path / "b", [3, 25])
    _one_problem_naming(check_dataset("vip", root, full=True), masks[1], "25", "0..19")
    root, masks = _vip_root(tmp_path / "c", [0, 4])
    _one_problem_naming(check_dataset("vip", root), masks[0], "no object")
