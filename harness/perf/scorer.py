"""``harness bench scorer``: the harness's DAVIS J&F scorer against vos-benchmark, side by side.

Both score the same 30 real DAVIS-2017 val sequences (``osvos`` masks as ground truth, ``rvos-clipped``
as predictions, from ../shared) with the same number of worker processes. Each run is a fresh
subprocess, so its wall time includes start-up and imports and its peak RSS (``getrusage`` of the
child and of its pool workers) is its own. Runs alternate (ours, theirs, ours, ...) so that a busy
machine slows both alike; the report gives every run, the medians, the speed ratio, the reference
timings measured when the target was set, and whether our numbers equal the official evaluator's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.resources import shared_dir

SHARED = shared_dir()
TARGET_RATIO = 3.5
TOLERANCE = 1e-9

_OURS = """
import json, resource, sys, time
from pathlib import Path
args = json.loads(sys.argv[1])
from harness.metrics.davis import score_folder
start = time.perf_counter()
result = score_folder(Path(args["gt"]), Path(args["pred"]), args["sequences"], processes=args["processes"],
                      progress=False)
call_s = time.perf_counter() - start
"""

_VOS = """
import json, resource, sys, time
args = json.loads(sys.argv[1])
from vos_benchmark.benchmark import benchmark
start = time.perf_counter()
jf, j, f, _ = benchmark([args["gt"]], [args["pred"]], strict=True, num_processes=args["processes"],
                        verbose=False, skip_first_and_last=True)
call_s = time.perf_counter() - start
result = {"metrics": {"J&F-Mean": float(jf[0]) / 100, "J-Mean": float(j[0]) / 100, "F-Mean": float(f[0]) / 100}}
"""

_REPORT = """
mib = lambda who: resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB
print(json.dumps({"call_s": call_s, "rss_main_mib": mib(resource.RUSAGE_SELF),
                  "rss_worker_max_mib": mib(resource.RUSAGE_CHILDREN), "result": result}))
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt", type=Path, default=SHARED / "data/davis2017-val-masks/osvos",
                        help="ground-truth masks, one folder per sequence")
    parser.add_argument("--pred", type=Path, default=SHARED / "data/davis2017-val-masks/rvos-clipped",
                        help="predicted masks, one folder per sequence")
    parser.add_argument("--reference", type=Path,
                        default=SHARED / "reference/davis2017_official_scores_osvos-gt_rvos-pred.json",
                        help="official evaluator's scores for --gt/--pred, with the anchor timings")
    parser.add_argument("--processes", type=int, default=2, help="worker processes for both scorers")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each scorer (alternating)")


def _run(code: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Run one scorer in a fresh interpreter; wall time covers start-up, imports and scoring."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code + _REPORT, json.dumps(payload)], capture_output=True,
                          text=True, check=False)
    wall_s = time.perf_counter() - start
    if proc.returncode != 0:
        raise HarnessError(f"benchmark run failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_s"] = wall_s
    return out


def _linked_copy(source: Path, sequences: list[str], folder: Path) -> Path:
    """A folder of symlinks to the sequences only: vos-benchmark writes results.csv into the prediction
    root and insists that ground-truth and prediction roots list the same sequences."""
    folder.mkdir(parents=True)
    for name in sequences:
        if not (source / name).is_dir():
            raise HarnessError(f"{source / name} is missing")
        (folder / name).symlink_to((source / name).resolve(), target_is_directory=True)
    return folder


def _max_diff(got: dict[str, float], want: dict[str, float]) -> float:
    return max(abs(got[k] - want[k]) for k in want)


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "wall_s": [round(r["wall_s"], 3) for r in runs],
        "call_s": [round(r["call_s"], 3) for r in runs],
        "median_wall_s": round(statistics.median(r["wall_s"] for r in runs), 3),
        "median_call_s": round(statistics.median(r["call_s"] for r in runs), 3),
        "peak_rss_main_mib": round(max(r["rss_main_mib"] for r in runs), 1),
        "peak_rss_worker_max_mib": round(max(r["rss_worker_max_mib"] for r in runs), 1),
    }


def main(args: argparse.Namespace) -> dict[str, Any]:
    if not args.reference.is_file():
        raise HarnessError(f"reference scores {args.reference} not found (../shared missing?)")
    try:
        import vos_benchmark  # noqa: F401
    except ImportError as err:
        raise HarnessError("vos-benchmark is not installed: pip install vos-benchmark") from err
    reference = json.loads(args.reference.read_text())
    sequences = list(reference["per_sequence"])
    load_before = os.getloadavg()
    ours, theirs = [], []
    with tempfile.TemporaryDirectory(prefix="bench-scorer-") as tmp:
        payload = {"gt": str(_linked_copy(args.gt, sequences, Path(tmp) / "gt")),
                   "pred": str(_linked_copy(args.pred, sequences, Path(tmp) / "pred")),
                   "sequences": sequences, "processes": args.processes}
        for _ in range(args.repeats):
            ours.append(_run(_OURS, payload))
            print(f"ours: {ours[-1]['call_s']:.2f} s", file=sys.stderr)
            theirs.append(_run(_VOS, payload))
            print(f"vos-benchmark: {theirs[-1]['call_s']:.2f} s", file=sys.stderr)
    result = ours[-1]["result"]
    per_object_diff = max(_max_diff(result["per_object"][name], scores)
                          for name, scores in reference["per_object"].items())
    global_diff = _max_diff(result["metrics"], reference["global"])
    ours_s, theirs_s = _summary(ours), _summary(theirs)
    ratio = theirs_s["median_call_s"] / ours_s["median_call_s"]
    anchor = reference["anchor_timing_2core_cpu"]
    return {
        "what": "DAVIS-2017 J&F scoring of 30 real val sequences (osvos as GT, rvos-clipped as prediction): "
                "harness.metrics.davis.score_folder vs vos_benchmark.benchmark, each in a fresh subprocess",
        "processes": args.processes,
        "repeats": args.repeats,
        "cpu_count": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "ours": ours_s,
        "vos_benchmark": theirs_s,
        "speed_ratio": round(ratio, 2),
        "speed_ratio_end_to_end": round(theirs_s["median_wall_s"] / ours_s["median_wall_s"], 2),
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio >= TARGET_RATIO,
        "anchor_timing_2core_cpu": anchor,
        "ours_vs_anchor_vos_benchmark_2proc": round(anchor["vos_benchmark_2proc_wall_s"] / ours_s["median_call_s"], 2),
        "ours_vs_anchor_official": round(anchor["official_evaluator_wall_s"] / ours_s["median_call_s"], 2),
        "matches_official": global_diff <= TOLERANCE and per_object_diff <= TOLERANCE,
        "max_abs_diff_global": global_diff,
        "max_abs_diff_per_object": per_object_diff,
        "vos_benchmark_max_abs_diff_jf_global": _max_diff(theirs[-1]["result"]["metrics"],
                                                          {k: reference["global"][k] for k in ("J&F-Mean", "J-Mean", "F-Mean")}),
        "tolerance": TOLERANCE,
    }
