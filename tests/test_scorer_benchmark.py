"""Micro-benchmarks of the DAVIS scorer (pytest-benchmark), each checked for correctness too.

Run with ``pytest tests/test_scorer_benchmark.py --benchmark-only``; timings are reported by
pytest-benchmark, never asserted. The numbers checked are the official evaluator's (full precision, data
file ../shared/reference/davis2017_official_scores_osvos-gt_rvos-pred.json) for one real sequence, and a
hand-computable IoU for one frame.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.errors import DataError
from harness.metrics.davis import frame_values, object_scores, read_id_png

SEQUENCE = "bike-packing"  # 69 frames, 2 objects: a typical DAVIS-2017 val sequence


@pytest.fixture(scope="module")
def real_sequence(shared_dir: Path) -> tuple[np.ndarray, np.ndarray, dict[str, dict[str, float]]]:
    """osvos masks as ground truth, rvos-clipped as the prediction, and the official per-object scores."""
    masks = shared_dir / "data" / "davis2017-val-masks"
    reference = json.loads((shared_dir / "reference" / "davis2017_official_scores_osvos-gt_rvos-pred.json").read_text())
    frames = sorted(p.name for p in (masks / "osvos" / SEQUENCE).glob("*.png"))
    gt = np.stack([read_id_png(masks / "osvos" / SEQUENCE / f, DataError) for f in frames])
    pred = np.stack([read_id_png(masks / "rvos-clipped" / SEQUENCE / f, DataError) for f in frames])
    official = {k: v for k, v in reference["per_object"].items() if k.startswith(f"{SEQUENCE}_")}
    return gt, pred, official


def test_object_scores_benchmark_matches_the_official_evaluator(benchmark, real_sequence) -> None:
    gt, pred, official = real_sequence
    n_objects = int(gt[0].max())
    scores = benchmark.pedantic(object_scores, args=(gt, pred, n_objects), rounds=3, iterations=1)
    assert len(official) == n_objects == 2
    for key, want in official.items():
        got = scores[int(key.rsplit("_", 1)[1])]
        for metric, value in want.items():
            assert got[metric] == pytest.approx(value, abs=1e-9), (key, metric)


def test_frame_values_benchmark_matches_a_hand_computed_iou(benchmark) -> None:
    """Two overlapping squares: object 1 IoU 30*30 / (40*40 + 40*40 - 30*30); identical object 2 has J = F = 1."""
    gt = np.zeros((480, 854), dtype=np.uint8)
    pred = np.zeros_like(gt)
    gt[100:140, 100:140] = 1
    pred[110:150, 110:150] = 1
    gt[300:400, 500:700] = 2
    pred[300:400, 500:700] = 2
    j, f = benchmark(frame_values, gt, pred, 2)
    assert j[0] == pytest.approx(900 / (1600 + 1600 - 900), abs=1e-12)
    assert j[1] == 1.0 and f[1] == 1.0
    assert 0.0 < f[0] < 1.0
