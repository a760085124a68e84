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
