"""Each bad input stops `harness run` with a clear message naming what is wrong — never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
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
