"""Sequences read one ahead on a background thread: same sequences, errors surface, reading is timed."""

from __future__ import annotations

import threading
import time

import pytest

from harness.errors import DataError
from harness.runs.frames import SequenceReader


class SlowLoader:
    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail = fail

    def __call__(self, name: str) -> str:
        self.calls.append((name, threading.current_thread().name))
        time.sleep(0.05)
        if name == self.fail:
            raise DataError(f"cannot read {name}")
        return f"sequence {name}"


def test_reads_the_next_sequence_while_one_is_computed():
    load = SlowLoader()
    with SequenceReader(load, ["a", "b", "c"]) as reader:
        seq, read_s, wait_s = reader.take("a")
        assert seq == "sequence a" and read_s >= 0.05 and wait_s > 0
        time.sleep(0.15)  # "compute" a: b is read meanwhile
        assert [name for name, _ in load.calls] == ["a", "b"]
        seq, read_s, wait_s = reader.take("b")
        assert seq == "sequence b" and read_s >= 0.05
        assert wait_s < read_s  # overlap hid b's reading (no speed claim: b was finished before it was taken)
        assert reader.take("c")[0] == "sequence c"
    assert all(thread.startswith("harness-read") for _, thread in load.calls)
    assert [name for name, _ in load.calls] == ["a", "b", "c"]  # each read once


def test_sequences_out_of_order_or_unknown_still_load():
    with SequenceReader(SlowLoader(), ["a", "b"]) as reader:
        assert reader.take("b")[0] == "sequence b"
        assert reader.take("x")[0] == "sequence x"
        assert reader.take("a")[0] == "sequence a"


def test_a_reading_error_surfaces_on_take():
    with SequenceReader(SlowLoader(fail="b"), ["a", "b", "c"]) as reader:
        reader.take("a")
        with pytest.raises(DataError, match="cannot read b"):
            reader.take("b")
        assert reader.take("c")[0] == "sequence c"


def test_frames_read_in_one_checked_decode_equal_pillow_pixels(tmp_path):
    """Colour JPEG frames take one strict libjpeg-turbo decode; their pixels are Pillow's, bit for bit, on every
    real frame of the shipped sample; a greyscale JPEG and a PNG take Pillow's way and give its pixels too."""
    import io
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from harness.tasks.frames import read_image

    sample = Path(__file__).resolve().parents[1] / "datasets" / "sample" / "davis" / "JPEGImages" / "480p"
    frames = sorted(sample.rglob("*.jpg"))
    assert len(frames) >= 80
    for path in frames:
        with Image.open(path) as image:
            expected = np.asarray(image.convert("RGB"))
        assert np.array_equal(read_image(path, "RGB"), expected), path
    grey = tmp_path / "grey.jpg"
    Image.open(frames[0]).convert("L").save(grey, quality=90)
    assert np.array_equal(read_image(grey, "RGB"), np.asarray(Image.open(grey).convert("RGB")))
    png = tmp_path / "frame.png"
    Image.open(io.BytesIO(frames[0].read_bytes())).save(png)
    assert np.array_equal(read_image(png, "RGB"), np.asarray(Image.open(frames[0]).convert("RGB")))
