"""Issue 25, data and scoring: each test names a class of silent wrong numbers, tracebacks or misleading
messages about the data a run reads and the predictions a score reads, and checks the whole class."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
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


# -- 2. silent: predictions that do not pair up with the ground truth's frames ------------------------


def test_prediction_files_must_pair_up_with_ground_truth_frames(tmp_path, capsys):
    """Shifted numbering, a missing first frame or a file for a frame without ground truth is refused,
    naming the files; --official-frames accepts only what the official evaluator needs; scores go to stdout."""
    root = davis_root(tmp_path / "davis", frames=6, sequences=("car-shadow",))
    truth = root / "Annotations" / "480p" / "car-shadow"
    score = ["score", "--task", "davis", "--data-root", str(root)]

    exact = shutil.copytree(truth, tmp_path / "exact" / "car-shadow").parent
    code, out, err = run_cli([*score, "--predictions", str(exact)], capsys)
    assert code == 0, err
    assert json.loads(out)["J-Mean"] == 1.0 and json.loads(out)["F-Mean"] == 1.0  # the truth scored as itself

    shifted = tmp_path / "shifted" / "car-shadow"
    shifted.mkdir(parents=True)
    for path in sorted(truth.glob("*.png")):
        shutil.copy(path, shifted / f"{int(path.stem) + 1:05d}.png")
    for flags in ([], ["--official-frames"]):
        code, out, err = run_cli([*score, "--predictions", str(shifted.parent), *flags], capsys)
        assert code == 2 and out == ""
        assert "shifted by +1" in err and f"{shifted}: predictions 00001.png … 00006.png" in err

    (exact / "car-shadow" / "00000.png").unlink()  # no first frame: official tools do not read it
    (exact / "car-shadow" / "00099.png").write_bytes((truth / "00003.png").read_bytes())  # no such frame
    code, out, err = run_cli([*score, "--predictions", str(exact)], capsys)
    assert code == 2 and out == ""
    assert str(exact / "car-shadow" / "00000.png") in err and str(exact / "car-shadow" / "00099.png") in err
    code, out, err = run_cli([*score, "--predictions", str(exact), "--official-frames"], capsys)
    assert code == 0, err
    assert json.loads(out)["J-Mean"] == 1.0 and str(exact / "car-shadow" / "00099.png") in err  # named as ignored
    (exact / "car-shadow" / "00002.png").unlink()  # a scored frame: needed by every semantics
    code, out, err = run_cli([*score, "--predictions", str(exact), "--official-frames"], capsys)
    assert code == 2 and str(exact / "car-shadow" / "00002.png") in err

    # a whole sequence folder outside the scored sequences (a misspelt name, another split) is named, not dropped
    whole = shutil.copytree(truth, tmp_path / "whole" / "car-shadow").parent
    shutil.copytree(truth, whole / "car_shadow")
    code, out, err = run_cli([*score, "--predictions", str(whole)], capsys)
    assert code == 0 and json.loads(out)["J-Mean"] == 1.0
    assert "not scored: car_shadow" in err


# -- 3. silent: `data check` calling valid what `run` refuses or mis-reads ----------------------------


def damage_jpeg(path: Path) -> None:
    """Zero 400 bytes of a real frame's compressed data (a lost disk block): Pillow still decodes it."""
    data = bytearray(path.read_bytes())
    start = data.index(b"\xff\xda") + 5000  # inside the scan, past its header
    data[start:start + 400] = bytes(400)
    path.write_bytes(bytes(data))
    Image.open(path).load()  # decodes without a word: the damage is silent to Pillow


def upper_case_suffix(frames: Path) -> Path:
    path = frames / "00003.jpg"
    return path.rename(frames / "00003.JPG")


def folder_named_like_a_frame(frames: Path) -> Path:
    (frames / "00006.jpg").mkdir()
    return frames / "00006.jpg"


def damaged_jpeg_data(frames: Path) -> Path:
    damage_jpeg(frames / "00002.jpg")
    return frames / "00002.jpg"


@pytest.mark.parametrize("spoil", [upper_case_suffix, folder_named_like_a_frame, damaged_jpeg_data])
def test_data_check_and_run_refuse_the_same_files(tmp_path, capsys, spoil):
    """What `data check --full` calls OK, `run` reads as checked; what one refuses, the other refuses too."""
    root = davis_root(tmp_path / "davis", frames=6, sequences=("car-shadow",))
    bad = spoil(root / "JPEGImages" / "480p" / "car-shadow")
    code, out, _ = run_cli(["data", "check", "davis", "--data-root", str(root), "--full"], capsys)
    assert code == 1 and str(bad) in out
    code, out, err = run_cli(["run", "--method", "pixels", "--task", "davis", "--data-root", str(root),
                              "--out-dir", str(tmp_path / "r")], capsys)
    assert code == 2 and str(bad) in err
    assert not (tmp_path / "r" / "record.json").exists()  # nothing scored from the refused data


# -- 4. traceback/hang: protocol values past what the data allows ------------------------------------


def test_protocol_values_past_the_data_are_fitted_or_refused_before_computing(tmp_path, capsys):
    """Context and radius past the video's bounds give the labels of the bound (no hang, no overflow,
    no underflow); a top-k above every node there is is refused before anything is computed."""
    from harness.engine.propagation import propagate
    from harness.engine.protocol import resolve_protocol

    generator = torch.Generator().manual_seed(0)
    features = torch.nn.functional.normalize(torch.randn(6, 16, 9, 11, generator=generator), dim=1)
    first = torch.softmax(torch.randn(3, 9, 11, generator=generator), 0)
    for family in ("crw", "dino"):
        def labels(family=family, **settings):
            return propagate(features, first, resolve_protocol(family, None, settings))
        # a 9x11 grid: offsets at most sqrt(8² + 10²) = 12.8 cells apart, so a radius of 13 admits them all
        assert torch.equal(labels(radius=1e300), labels(radius=13.0))
        # below 1, a disk or square admits the node's own cell alone, whatever the radius
        assert torch.equal(labels(radius=1e-300), labels(radius=0.5))
        # 6 frames: past 5 frames, the queue holds only copies of frame 0, each counted at most top-k times
        topk = resolve_protocol(family).topk
        assert torch.equal(labels(context=10**11), labels(context=5 + topk))

    root = davis_root(tmp_path / "davis", frames=4, sequences=("car-shadow",))
    base = ["run", "--method", "pixels", "--task", "davis", "--data-root", str(root)]
    code, _, err = run_cli([*base, "--out-dir", str(tmp_path / "huge"), "--set", "protocol.context=100000000000"], capsys)
    assert code == 0, err
    code, _, err = run_cli([*base, "--out-dir", str(tmp_path / "huge-topk"), "--set", "protocol.topk=1000000000000"],
                           capsys)
    assert code == 2 and "protocol.topk=1000000000000" in err
    assert not (tmp_path / "huge-topk").exists()


# -- 5. traceback: a file posing as a MATLAB annotation ----------------------------------------------


@pytest.mark.parametrize("content", [b"joints: see the video", b"0123456789 " * 5,
                                     b"MATLAB 5.0 MAT-file" + b" " * 97 + b"\x00\x01IM"])  # text; a bare header
def test_file_posing_as_a_mat_annotation_is_named_by_check_and_run(tmp_path, capsys, content):
    """Whatever scipy raises for a file that is not a .mat file, check and run name the file and exit cleanly."""
    root = Path(shutil.copytree(REPO / "datasets" / "sample" / "jhmdb", tmp_path / "jhmdb"))
    mat = next(root.glob("joint_positions/*/*/joint_positions.mat"))
    clip = mat.parent.relative_to(root / "joint_positions").as_posix()
    mat.write_bytes(content)
    code, out, _ = run_cli(["data", "check", "jhmdb", "--data-root", str(root), "--sequences", clip], capsys)
    assert code == 1 and f"{mat}: unreadable .mat file" in out
    code, _, err = run_cli(["run", "--method", "pixels", "--task", "jhmdb", "--data-root", str(root), "--sequences", clip,
                            "--set", "task.resolution=96", "--out-dir", str(tmp_path / "r")], capsys)
    assert code == 2 and f"{mat}: unreadable .mat file" in err and "Traceback" not in err


# -- 6. message: byte-order marks in split lists -------------------------------------------------------


def test_split_list_encodings_are_read_or_refused_by_name(tmp_path, capsys):
    """A list saved by Windows Notepad (UTF-8 BOM, CRLF) reads as its names for check and run alike;
    a UTF-16 list or a BOM inside the list is refused, calling it what it is."""
    from harness.registry import get_task

    root = davis_root(tmp_path / "davis", frames=3)
    listing = root / "ImageSets" / "2017" / "val.txt"
    listing.write_bytes(b"\xef\xbb\xbfcar-shadow\r\nmotocross-jump\r\n")
    code, out, err = run_cli(["data", "check", "davis", "--data-root", str(root)], capsys)
    assert code == 0 and "2 sequences" in out, out + err
    assert get_task("davis").factory(root, {}).sequences() == ["car-shadow", "motocross-jump"]
    vip = Path(shutil.copytree(REPO / "datasets" / "sample" / "vip", tmp_path / "vip"))
    vip_list = vip / "lists" / "val_videos.txt"
    names = vip_list.read_text().split()
    vip_list.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(names).encode())
    assert get_task("vip").factory(vip, {}).sequences() == names

    listing.write_bytes("car-shadow\nmotocross-jump\n".encode("utf-16"))
    code, out, _ = run_cli(["data", "check", "davis", "--data-root", str(root)], capsys)
    assert code == 1 and str(listing) in out and "UTF-16" in out and "byte-order mark" in out
    listing.write_bytes(b"car-shadow\n\xef\xbb\xbfmotocross-jump\n")  # two files joined
    code, out, _ = run_cli(["data", "check", "davis", "--data-root", str(root)], capsys)
    assert code == 1 and str(listing) in out and "line 2" in out and "byte-order mark" in out


def test_missing_jpeg_checker_is_named_not_a_traceback(monkeypatch):
    """An environment without simplejpeg (e.g. a machine that got the tree but no pip) is told what to install."""
    import sys

    from harness.data.rules import jpeg_damage
    from harness.errors import HarnessError

    monkeypatch.setitem(sys.modules, "simplejpeg", None)  # makes `import simplejpeg` raise ImportError
    with pytest.raises(HarnessError, match="pip install 'simplejpeg"):
        jpeg_damage(b"\xff\xd8\xff")
