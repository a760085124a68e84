"""Each bad input stops `harness run` with a clear message naming what is wrong — never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.cli import main
from tests.test_runner import small_davis_root


def run_error(args: list[str], capsys) -> str:
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Traceback" not in err
    return err


@pytest.fixture
def root(tmp_path):
    return small_davis_root(tmp_path / "davis", frames=3, sequences=("car-shadow",))


def run_args(root: Path, tmp_path: Path, method: str = "pixels") -> list[str]:
    return ["run", "--method", method, "--task", "davis", "--data-root", str(root), "--out-dir", str(tmp_path / "o")]


def test_unknown_method_and_task_suggest_names(root, tmp_path, capsys):
    assert "pixels" in run_error(run_args(root, tmp_path, "pixel"), capsys)
    err = run_error(["run", "--method", "pixels", "--task", "davis2061", "--data-root", str(root)], capsys)
    assert "davis2016" in err


def test_missing_data_root_says_where(tmp_path, capsys):
    err = run_error(["run", "--method", "pixels", "--task", "davis", "--data-root", str(tmp_path / "nope")], capsys)
    assert str(tmp_path / "nope") in err


def test_missing_layout_folder_names_it_and_shows_layout(root, tmp_path, capsys):
    shutil.rmtree(root / "Annotations")
    err = run_error(run_args(root, tmp_path), capsys)
    assert str(root / "Annotations" / "480p") in err and "ImageSets/2017/val.txt" in err


def test_missing_split_file(root, tmp_path, capsys):
    (root / "ImageSets" / "2017" / "val.txt").unlink()
    assert "val.txt" in run_error(run_args(root, tmp_path), capsys)


def test_truncated_frame_names_the_file(root, tmp_path, capsys):
    frame = root / "JPEGImages" / "480p" / "car-shadow" / "00001.jpg"
    frame.write_bytes(frame.read_bytes()[:2000])
    assert str(frame) in run_error(run_args(root, tmp_path), capsys)


def test_annotation_of_another_size(root, tmp_path, capsys):
    ann = root / "Annotations" / "480p" / "car-shadow" / "00002.png"
    image = Image.open(ann)
    image.resize((100, 50)).save(ann)
    assert str(ann) in run_error(run_args(root, tmp_path), capsys)


def test_sequence_without_frames(root, tmp_path, capsys):
    for frame in (root / "JPEGImages" / "480p" / "car-shadow").glob("*.jpg"):
        frame.unlink()
    assert str(root / "JPEGImages" / "480p" / "car-shadow") in run_error(run_args(root, tmp_path), capsys)


def test_first_frame_without_object(root, tmp_path, capsys):
    ann = root / "Annotations" / "480p" / "car-shadow" / "00000.png"
    image = Image.open(ann)
    empty = Image.fromarray(np.zeros_like(np.asarray(image)), mode="P")
    empty.putpalette(image.getpalette())
    empty.save(ann)
    assert str(ann) in run_error(run_args(root, tmp_path), capsys)


def test_rgb_annotations_in_the_palette_are_accepted_others_rejected(root, tmp_path, capsys):
    folder = root / "Annotations" / "480p" / "car-shadow"
    for path in folder.glob("*.png"):
        Image.open(path).convert("RGB").save(path)
    assert main(run_args(root, tmp_path)) == 0
    capsys.readouterr()
    ann = folder / "00001.png"
    rgb = np.asarray(Image.open(ann)).copy()
    rgb[:10, :10] = (1, 2, 3)
    Image.fromarray(rgb).save(ann)
    assert str(ann) in run_error([*run_args(root, tmp_path), "--force"], capsys)


def test_unknown_sequence_suggests(root, tmp_path, capsys):
    err = run_error([*run_args(root, tmp_path), "--sequences", "car-shadw"], capsys)
    assert "car-shadow" in err


def test_nan_features_name_method_and_frame(root, tmp_path, capsys, monkeypatch):
    from methods import baselines

    cls = baselines._pixels_class()
    original = cls.embed

    def broken(self, frames):
        out = original(self, frames)
        out[1] = float("nan")
        return out

    monkeypatch.setattr(cls, "embed", broken)
    monkeypatch.setattr(baselines, "_pixels_class", lambda: cls)
    err = run_error(run_args(root, tmp_path), capsys)
    assert "pixels" in err and "frame 1" in err


# ----------------------------------------------------------------------------------------- issue 13: silent inputs


def argparse_error(args: list[str], capsys) -> str:
    """Flags refused by argparse: exit status 2 and a message naming the flag, no traceback."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    return err


def _renumber_half_of_object(path: Path, new_id: int) -> None:
    """Give the right half of object 1 the id ``new_id`` (first-frame ids 1 and 3: a gap at 2)."""
    image = Image.open(path)
    ids = np.asarray(image).copy()
    ys, xs = np.nonzero(ids == 1)
    ids[(ids == 1) & (np.arange(ids.shape[1])[None, :] > np.median(xs))] = new_id
    out = Image.fromarray(ids, mode="P")
    out.putpalette(image.getpalette())
    out.save(path)


def test_first_frame_ids_with_a_gap_refused_by_run_and_data_check_warned_by_score(root, tmp_path, capsys):
    first = root / "Annotations" / "480p" / "car-shadow" / "00000.png"
    _renumber_half_of_object(first, 3)
    err = run_error(run_args(root, tmp_path), capsys)
    assert str(first) in err and "[1, 3]" in err and "no object 2" in err
    assert not (tmp_path / "o").exists()
    assert main(["data", "check", "davis", "--data-root", str(root)]) == 1
    out = capsys.readouterr().out
    assert str(first) in out and "[1, 3]" in out
    predictions = shutil.copytree(root / "Annotations" / "480p", tmp_path / "pred")
    assert main(["score", "--task", "davis", "--data-root", str(root), "--predictions", str(predictions)]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and str(first) in err and "phantom" in err


def test_unpadded_frame_names_refused(tmp_path, capsys):
    root = small_davis_root(tmp_path / "davis", frames=12, sequences=("car-shadow",))
    for sub, ext in (("JPEGImages", "jpg"), ("Annotations", "png")):
        for path in sorted((root / sub / "480p" / "car-shadow").glob(f"*.{ext}")):
            path.rename(path.with_name(f"{int(path.stem)}.{ext}"))
    err = run_error(run_args(root, tmp_path), capsys)
    assert "not zero-padded" in err and "'10' sorts before '2'" in err
    assert str(root / "JPEGImages" / "480p" / "car-shadow") in err
    assert main(["data", "check", "davis", "--data-root", str(root)]) == 1
    assert "not zero-padded" in capsys.readouterr().out


def test_misconfigured_harness_data_is_named_never_the_sample(tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "data.txt"
    a_file.write_text("x")
    monkeypatch.setenv("HARNESS_DATA", str(a_file))
    err = run_error(["run", "--method", "pixels", "--task", "davis", "--out-dir", str(tmp_path / "o")], capsys)
    assert f"HARNESS_DATA={a_file} is a file" in err and "sample" in err
    holder = tmp_path / "data"
    (holder / "jhmdb").mkdir(parents=True)
    monkeypatch.setenv("HARNESS_DATA", str(holder))
    err = run_error(["run", "--method", "pixels", "--task", "davis", "--out-dir", str(tmp_path / "o")], capsys)
    assert "has no folder 'davis/'" in err and "jhmdb/" in err
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path / "missing"))
    err = run_error(["score", "--task", "davis", "--predictions", str(holder)], capsys)
    assert "does not exist" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("setting", ["topk=2.5", "topk=0", "topk=true", "temperature=nan", "temperature=-0.1",
                                     "temperature=.inf", "temperature=1e-300", "radius=0", "radius=inf", "context=-1", "keep_first=2"])
def test_out_of_range_protocol_values_refused(root, tmp_path, capsys, setting):
    err = run_error([*run_args(root, tmp_path), "--set", f"protocol.{setting}"], capsys)
    assert f"protocol.{setting.split('=')[0]}" in err
    assert not (tmp_path / "o").exists()


def test_unknown_method_setting_suggests_the_known_ones(root, tmp_path, capsys):
    err = run_error([*run_args(root, tmp_path, "random-resnet18"), "--set", "method.sed=1"], capsys)
    assert "method.sed" in err and "Did you mean: method.seed?" in err
    err = run_error([*run_args(root, tmp_path), "--set", "method.layer=x"], capsys)
    assert "'pixels' has no setting 'layer'" in err and "Its settings: none" in err


def test_weights_for_a_method_that_takes_none(root, tmp_path, capsys):
    ckpt = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(1)}, ckpt)
    err = run_error([*run_args(root, tmp_path), "--checkpoint", str(ckpt)], capsys)
    assert "method 'pixels' takes no checkpoint file" in err
    err = run_error([*run_args(root, tmp_path, "crw"), "--weights", str(ckpt)], capsys)
    assert "takes no weights file; it takes --checkpoint" in err


@pytest.mark.parametrize("content", [b"", b"hello, I am a text file\n", b"\x00\x01\x02 binary junk"])
def test_unreadable_checkpoint_files_are_a_sentence(root, tmp_path, capsys, content):
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(content)
    err = run_error([*run_args(root, tmp_path, "crw"), "--checkpoint", str(ckpt)], capsys)
    assert str(ckpt) in err and ("empty" in err or "text file" in err or "not a PyTorch" in err)


@pytest.mark.parametrize("value,message", [(",", "names no sequence"), (" , ", "names no sequence"),
                                           ("car-shadow,car-shadow", "car-shadow more than once")])
def test_empty_or_repeated_sequences_refused_by_run_and_score(root, tmp_path, capsys, value, message):
    assert message in run_error([*run_args(root, tmp_path), "--sequences", value], capsys)
    err = run_error(["score", "--task", "davis", "--data-root", str(root), "--predictions", str(root),
                     "--sequences", value], capsys)
    assert message in err


@pytest.mark.parametrize("command", ["run", "score"])
@pytest.mark.parametrize("limit", ["0", "-1", "1.5"])
def test_limit_below_one_refused(root, tmp_path, capsys, command, limit):
    args = (run_args(root, tmp_path) if command == "run"
            else ["score", "--task", "davis", "--data-root", str(root), "--predictions", str(root)])
    assert "--limit" in argparse_error([*args, "--limit", limit], capsys)


def test_select_sequences_refuses_what_the_api_could_pass():
    from harness.errors import DataError
    from harness.tasks.frames import select_sequences

    for wanted, limit in ((["a", "a"], None), (None, -1), (None, 0)):
        with pytest.raises(DataError):
            select_sequences(["a", "b"], wanted, limit, "val.txt")


def test_train_max_steps_below_one_refused(tmp_path, capsys):
    err = argparse_error(["train", "--method", "crw", "--data", str(tmp_path), "--out-dir", str(tmp_path / "t"),
                          "--max-steps", "0"], capsys)
    assert "--max-steps" in err and ">= 1" in err
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("device", ["cuda:x", "tpu", "cuda:0:1", ""])
def test_nonsense_device_strings(root, tmp_path, capsys, device):
    assert "--device" in run_error([*run_args(root, tmp_path), "--device", device], capsys)


def test_unusable_score_out_and_leaderboard_out_dir(root, tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    predictions = shutil.copytree(root / "Annotations" / "480p", tmp_path / "pred")
    score = ["score", "--task", "davis", "--data-root", str(root), "--predictions", str(predictions)]
    assert "is a folder" in run_error([*score, "--out", str(tmp_path)], capsys)
    assert "is a file" in run_error([*score, "--out", str(a_file / "scores.json")], capsys)
    err = run_error(["leaderboard", str(tmp_path), "--out-dir", str(a_file)], capsys)
    assert f"--out-dir {a_file} is a file" in err
    assert a_file.read_text() == "x"


def test_an_internal_error_keeps_its_traceback_and_says_it_is_a_bug(root, tmp_path, capsys, monkeypatch):
    from harness.runs import runner

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(runner.Runner, "_run_sequence", broken)
    assert main(run_args(root, tmp_path)) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError" in err and "bug in crwbench" in err


def test_unknown_task_setting_and_settings_score_does_not_read(root, tmp_path, capsys):
    err = run_error([*run_args(root, tmp_path), "--set", "task.splt=test"], capsys)
    assert "task 'davis' has no setting 'splt'" in err and "Did you mean: task.split?" in err
    err = run_error(["score", "--task", "davis", "--data-root", str(root), "--predictions", str(root),
                     "--set", "method.layer=x"], capsys)
    assert "method.layer" in err and "only protocol.*" in err


@pytest.mark.parametrize("seed", ["abc", "2.5", "true"])
def test_non_integer_method_seed(root, tmp_path, capsys, seed):
    err = run_error([*run_args(root, tmp_path, "random-resnet18"), "--set", f"method.seed={seed}"], capsys)
    assert "method.seed must be a whole number" in err
