"""``harness bench run``: a whole run in its own process, reported per stage with the projection."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.perf.run import summarise
from harness.runs.schema import STAGES
from tests.test_runner import small_davis_root


def test_summarise_hand_computed():
    record = {"timing": {"frames": 10, "wall_s": 12.0, "model_load_s": 2.0,
                         "stages": {"read": 100.0, "features": 300.0, "propagation": 500.0, "labels": 50.0,
                                    "write": 25.0, "score": 25.0}}}
    out = summarise(record, 1999)
    assert out["wall_minus_model_load_ms_per_frame"] == 1000.0
    assert out["projected_s"] == 1999.0
    assert out["stage_share"]["propagation"] == 0.5


@pytest.mark.smoke
def test_bench_run_writes_a_stage_report(tmp_path, capsys):
    root = small_davis_root(tmp_path / "davis", frames=3, sequences=("car-shadow",))
    out = tmp_path / "run.json"
    assert main(["bench", "run", "--out", str(out), "--method", "pixels", "--data-root", str(root), "--device", "cpu"]) == 0
    report = json.loads(out.read_text())
    assert report["frames"] == 3 and set(report["stages_ms_per_frame"]) == set(STAGES)
    assert report["projected_s"] > 0 and report["command"][:2] == ["harness", "run"]
    assert report["precision"] == "fp32"


def test_every_report_names_the_code_and_load_it_was_measured_with(tmp_path, monkeypatch, capsys):
    """Whatever a benchmark records itself, the report says which commit (and whether dirty) measured it."""
    import sys
    import types

    import harness.cli.bench as bench
    from harness.perf import BENCHMARKS

    fake = types.ModuleType("fake_bench")
    fake.add_arguments = lambda parser: parser.add_argument("--n", type=int, default=1)
    fake.main = lambda args: {"benchmark": "fake", "n": args.n}
    monkeypatch.setitem(sys.modules, "fake_bench", fake)
    monkeypatch.setitem(BENCHMARKS, "fake", "fake_bench")
    states = iter([("a" * 40, False), ("b" * 40, False)])  # committed beside the benchmark while it ran
    monkeypatch.setattr(bench, "git_state", lambda: next(states))
    out = tmp_path / "fake.json"
    assert main(["bench", "fake", "--out", str(out), "--n", "3"]) == 0
    report = json.loads(out.read_text())
    assert report["n"] == 3
    measured = report["measured_with"]
    assert (measured["git_commit"], measured["git_dirty"]) == ("a" * 40, True)
    assert measured["cpu_model"] and "load_average_before" in measured and "load_average_after" in measured
