"""Stage timings of a run: the timer, the warm-up, the record's timing block, and a whole run's record."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.cli import main
from harness.runs import timing
from harness.runs.schema import STAGES, validate_record
from harness.runs.timing import StageTimer, WarmUp, process_age_s, record_timing
from tests.test_runner import small_davis_root


def test_stage_timer_sums_calls_and_synchronises(monkeypatch):
    synced = []
    monkeypatch.setattr(timing, "synchronize", lambda device: synced.append(device.type))
    # A fake clock that advances 1 s per features reading and 0.25 s per score reading: the sums are exact.
    ticks = iter([0.0, 1.0, 1.0, 2.0, 2.0, 2.25])
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(ticks))
    timer = StageTimer(torch.device("cuda"))
    for _ in range(2):
        with timer.stage("features"):
            pass
    with timer.stage("score"):
        pass
    assert synced == ["cuda"] * 6  # before and after every stage
    assert set(timer.seconds) == {"features", "score"}
    assert timer.seconds == {"features": 2.0, "score": 0.25}
    assert set(timer.state()) == {"features_s", "scoring_s"}


def test_stage_timer_counts_a_failed_stage():
    timer = StageTimer(torch.device("cpu"))
    with pytest.raises(RuntimeError), timer.stage("read"):
        raise RuntimeError("bad file")
    assert "read" in timer.seconds


class CountingMethod:
    batch_size = 3

    def __init__(self) -> None:
        self.calls: list[int] = []

    def features(self, frames: np.ndarray) -> None:
        self.calls.append(len(frames))


def test_warm_up_runs_one_batch_per_new_shape():
    method = CountingMethod()
    warm = WarmUp(torch.device("cpu"), enabled=True)
    small, large = np.zeros((8, 4, 6, 3), np.uint8), np.zeros((2, 5, 6, 3), np.uint8)
    assert warm(method, small) and not warm(method, small[:5])
    assert warm(method, large)
    assert method.calls == [3, 2]


def test_warm_up_is_off_on_cpu():
    method = CountingMethod()
    assert not WarmUp(torch.device("cpu"))(method, np.zeros((4, 2, 2, 3), np.uint8))
    assert method.calls == []


def test_record_timing_hand_computed():
    timings = {
        "a": {"frames": 10, "read_s": 1.0, "features_s": 2.0, "propagation_s": 3.0, "labels_s": 0.5,
              "write_s": 0.25, "scoring_s": 0.75, "adapt_s": 4.0},
        "b": {"frames": 30, "features_s": 2.0, "propagation_s": 1.0, "scoring_s": 0.25},  # a version-1 state
    }
    out = record_timing(timings, model_load_s=1.5, aggregate_s=1.0)
    assert out["frames"] == 40
    assert out["stages"] == {"read": 25.0, "features": 100.0, "propagation": 100.0, "labels": 12.5,
                             "write": 6.25, "score": 50.0}
    assert out["features_ms_per_frame"] == 100.0 and out["propagation_ms_per_frame"] == 100.0
    assert out["scoring_s"] == 2.0
    assert out["total_s"] == 1.0 + 4.0 + 4.0 + 0.5 + 0.25 + 2.0 + 4.0
    assert out["adapt_s_per_video"] == 4.0 and out["model_load_s"] == 1.5
    assert out["wall_s"] > 0


def test_process_age_counts_from_process_start():
    age = process_age_s()
    assert age > 0
    # pytest imported this module after the interpreter started: the process is older than that import
    assert age >= time.monotonic() - timing._IMPORTED
    assert process_age_s() >= age


def test_run_record_has_every_stage(tmp_path, capsys):
    root = small_davis_root(tmp_path / "davis", frames=4)
    code = main(["run", "--method", "pixels", "--task", "davis", "--data-root", str(root), "--out-dir",
                 str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert code == 0, err
    record = json.loads(Path(out.strip().splitlines()[-1]).read_text())
    validate_record(record)
    t = record["timing"]
    assert set(t["stages"]) == set(STAGES) and all(v >= 0 for v in t["stages"].values())
    assert t["stages"]["features"] > 0 and t["stages"]["propagation"] > 0 and t["stages"]["read"] > 0
    assert t["model_load_s"] is not None and t["model_load_s"] >= 0
    assert 0 <= t["read_wait_ms_per_frame"]  # reading is timed on its thread; the wait is what overlap left
    staged_s = sum(t["stages"].values()) * t["frames"] / 1000
    assert t["wall_s"] >= staged_s + t["model_load_s"]  # the wall clock contains every stage
    for key in ("features_ms_per_frame", "propagation_ms_per_frame", "scoring_s", "total_s"):
        assert t[key] > 0
    assert t["features_ms_per_frame"] == pytest.approx(t["stages"]["features"])
