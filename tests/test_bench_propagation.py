"""``harness bench propagation`` end to end on a tiny shape: three worker processes, one JSON report."""

from __future__ import annotations

import json

import pytest

from harness.cli import main

TINY = ["--frames", "6", "--short-frames", "4", "--reference-frames", "3", "--channels", "8", "--height", "9", "--width", "13"]


@pytest.mark.smoke
@pytest.mark.parametrize("out_after_name", [True, False])
def test_bench_propagation_writes_a_report(tmp_path, capsys, out_after_name):
    out = tmp_path / "propagation.json"
    args = ["bench", "propagation", "--out", str(out), *TINY, "--dtype", "float64"]
    if not out_after_name:
        args = ["bench", "--out", str(out), "propagation", *TINY, "--dtype", "float64"]
    assert main(args) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out.resolve())
    report = json.loads(out.read_text())
    assert report["compared_frames"] == 3
    assert report["labels_max_abs_diff"] <= 1e-9  # float64: the engine equals the dense reference
    assert report["topk_set_disagreement"] == 0.0
    assert report["engine"]["target_frames"] == 5 and report["dense_reference"]["target_frames"] == 3
    assert set(report["targets_met"]) == {"speedup_wall", "speedup_wall_steady", "memory_ratio_above_runtime",
                                          "memory_ratio_total_rss"}
    assert report["device"] == "cpu" and report["engine_path"] == "tiled"


@pytest.mark.smoke
def test_bench_propagation_batched_path_on_cpu(tmp_path, capsys):
    out = tmp_path / "propagation.json"
    assert main(["bench", "propagation", "--out", str(out), *TINY, "--dtype", "float64", "--device", "cpu",
                 "--path", "batched"]) == 0
    report = json.loads(out.read_text())
    assert report["engine_path"] == "batched" and report["engine"]["path"] == "batched"
    assert report["labels_max_abs_diff"] <= 1e-9 and report["topk_set_disagreement"] == 0.0
