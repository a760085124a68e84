"""Issue 25, data and scoring: each test names a class of silent wrong numbers, tracebacks or misleading
messages about the data a run reads and the predictions a score reads, and checks the whole class."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from harness.cli import main

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "datasets" / "sample" / "davis"
OLD = 1_600_000_000  # a modification time long past: files the hash cache may remember


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """File hashes are cached per user; tests keep theirs in their own folder."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("HARNESS_CACHE", str(folder))
    return folder


def davis_root(dest: Path, frames: int = 5, sequences: tuple[str, ...] = ("car-shadow", "motocross-jump")) -> Path:
    """A DAVIS-2017 root with the first real frames of the shipped sample, all dated long ago."""
    for seq in sequences:
        for sub, ext in (("JPEGImages", "jpg"), ("Annotations", "png")):
            out = dest / sub / "480p" / seq
            out.mkdir(parents=True)
            for path in sorted((SAMPLE / sub / "480p" / seq).glob(f"*.{ext}"))[:frames]:
                shutil.copy(path, out / path.name)
                os.utime(out / path.name, (OLD, OLD))
    (dest / "ImageSets" / "2017").mkdir(parents=True)
    (dest / "ImageSets" / "2017" / "val.txt").write_text("\n".join(sequences) + "\n")
    return dest


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def same_size_other_picture(path: Path) -> bytes:
    """A valid JPEG of the same byte size as ``path`` showing another picture (the frame mirrored):
    re-encoded a little smaller, then padded to the size with a comment segment after SOI."""
    original = path.read_bytes()
    mirrored = Image.open(path).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    for quality in range(95, 10, -5):
        buffer = io.BytesIO()
        mirrored.save(buffer, format="JPEG", quality=quality)
        data = buffer.getvalue()
        pad = len(original) - len(data) - 4
        if 0 <= pad < 65000:
            comment = b"\xff\xfe" + (pad + 2).to_bytes(2, "big") + b"x" * pad
            out = data[:2] + comment + data[2:]
            assert len(out) == len(original) and out != original
            return out
    raise AssertionError(f"cannot re-encode {path} to its size")


# -- 1. silent: data replaced by other data of the same size -----------------------------------------


def test_content_change_that_keeps_every_file_size_is_noticed(tmp_path, capsys):
    """Resume and the record's data fingerprint follow the bytes of every frame, not its name and size."""
    root = davis_root(tmp_path / "davis", frames=4)
    args = ["run", "--method", "pixels", "--task", "davis", "--data-root", str(root)]
    assert run_cli([*args, "--out-dir", str(tmp_path / "r")], capsys)[0] == 0
    before = json.loads((tmp_path / "r" / "record.json").read_text())
    frame = root / "JPEGImages" / "480p" / "car-shadow" / "00002.jpg"
    size = frame.stat().st_size
    frame.write_bytes(same_size_other_picture(frame))
    assert frame.stat().st_size == size
    code, _, err = run_cli([*args, "--out-dir", str(tmp_path / "r")], capsys)  # a rerun in the same folder
    assert code == 2 and "another run" in err  # not resumed from scores of the old picture
    assert json.loads((tmp_path / "r" / "record.json").read_text()) == before
    assert run_cli([*args, "--out-dir", str(tmp_path / "fresh")], capsys)[0] == 0
    fresh = json.loads((tmp_path / "fresh" / "record.json").read_text())
    assert fresh["per_object"] != before["per_object"]  # the mirrored frame does change the scores
    assert fresh["data"]["fingerprint"] != before["data"]["fingerprint"]
    assert fresh["run_digest"] != before["run_digest"]
