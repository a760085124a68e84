"""A task whose primary metric is smaller-is-better is ranked ascending, and its summary says so."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from harness.leaderboard.build import build_leaderboard
from harness.tasks.davis import DavisTask
from tests.test_leaderboard import make_record, write_record


def test_lower_is_better_primary_metric_ranks_the_smallest_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DavisTask, "primary_metric", "J-Decay")  # declared lower-is-better by the task
    assert "J-Decay" in DavisTask.lower_is_better
    steady, decaying = make_record("steady", score=0.40), make_record("decaying", score=0.80)
    steady["metrics"]["J-Decay"], decaying["metrics"]["J-Decay"] = 0.05, 0.30
    for record in (steady, decaying):
        for values in record["per_sequence"].values():
            values["J-Decay"] = record["metrics"]["J-Decay"]
    write_record(tmp_path, steady)
    write_record(tmp_path, decaying)
    out = tmp_path / "out"
    build_leaderboard([tmp_path / "runs"], out)
    ranks = {r["method"]: r["rank"] for r in csv.DictReader(io.StringIO((out / "leaderboard.csv").read_text()))}
    assert ranks == {"steady": "1", "decaying": "2"}
    summary = (out / "leaderboard.md").read_text().split("###")[0]
    assert "steady" in summary and "ahead of decaying" in summary and "+25.0" in summary
