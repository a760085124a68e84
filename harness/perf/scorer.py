"""``harness bench scorer``: ``harness score`` against vos-benchmark, each timed as a whole process.

Both score the same 30 real DAVIS-2017 val sequences (``--gt``: one method's masks taken as ground
truth, ``--pred``: another method's masks as predictions) with 2 worker processes (our scorer uses every CPU; the machine has 2).
Each side is a fresh process timed from start to exit — interpreter start-up, imports, reading and
scoring — because that is what a user waits for; the time inside the scoring call alone hides the cost
of heavy imports. Runs alternate (ours, theirs, ours, ...) within one invocation so that a busy machine
slows both alike; the report carries the load average around them and CPU seconds (process and reaped
workers) beside wall seconds, the figure a busy machine moves least. Our numbers are checked against
the official evaluator's per-object scores for the same pair (``--reference``, a JSON file) to 1e-9.
The defaults point into the developers' data folder (:func:`harness.resources.shared_dir`).
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
from harness.resources import shared_dir, source_root

SHARED = shared_dir()
TARGET_RATIO = 5.0
TOLERANCE = 1e-9
SPLIT_FILE = Path("ImageSets") / "2017" / "val.txt"

_VOS = """
import json, sys
args = json.loads(sys.argv[1])
from vos_benchmark.benchmark import benchmark
jf, j, f, _ = benchmark([args["gt"]], [args["pred"]], strict=True, num_processes=args["processes"],
                        verbose=False, skip_first_and_last=True)
print(json.dumps({"J&F-Mean": float(jf[0]) / 100, "J-Mean": float(j[0]) / 100, "F-Mean": float(f[0]) / 100}))
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt", type=Path, default=SHARED / "data/davis2017-val-masks/osvos",
                        help="ground-truth masks, one folder per sequence")
    parser.add_argument("--pred", type=Path, default=SHARED / "data/davis2017-val-masks/rvos-clipped",
                        help="predicted masks, one folder per sequence")
    parser.add_argument("--reference", type=Path,
                        default=SHARED / "reference/davis2017_official_scores_osvos-gt_rvos-pred.json",
                        help="official evaluator's scores for --gt/--pred, with the anchor timings")
    parser.add_argument("--processes", type=int, default=2, help="vos-benchmark's worker processes (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each scorer (alternating)")


def _timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[dict[str, float], str]:
    """Run ``command`` to its exit: wall seconds from start to exit, CPU seconds (the process and the
    workers it reaped: less sensitive to a busy machine than wall time), its peak RSS (MiB); and stdout."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall_s = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise HarnessError(f"{' '.join(command[:4])} ... failed (exit {proc.returncode}):\n"
                               f"{err.read().decode(errors='replace')[-2000:]}")
        timing = {"wall_s": wall_s, "cpu_s": usage.ru_utime + usage.ru_stime, "rss_mib": usage.ru_maxrss / 1024}
        return timing, out.read().decode()  # ru_maxrss: Linux reports KiB


def _layout(args: argparse.Namespace, sequences: list[str], folder: Path) -> dict[str, Path]:
    """Links to the sequences only: a DAVIS-2017 data root for ``harness score`` and the two plain roots
    vos-benchmark wants (it writes results.csv into the prediction root and insists both list the same)."""
    paths = {"root": folder / "DAVIS", "gt": folder / "gt", "pred": folder / "pred"}
    annotations = paths["root"] / "Annotations" / "480p"
    for target in (annotations, paths["root"] / "JPEGImages" / "480p", paths["gt"], paths["pred"]):
        target.mkdir(parents=True)
    for name in sequences:
        for source in (args.gt, args.pred):
            if not (source / name).is_dir():
                raise HarnessError(f"{source / name} is missing")
        for link, source in ((annotations / name, args.gt), (paths["gt"] / name, args.gt), (paths["pred"] / name, args.pred)):
            link.symlink_to((source / name).resolve(), target_is_directory=True)
    (paths["root"] / SPLIT_FILE).parent.mkdir(parents=True)
    (paths["root"] / SPLIT_FILE).write_text("\n".join(sequences) + "\n")
    return paths


def _max_diff(got: dict[str, float], want: dict[str, float]) -> float:
    return max(abs(got[k] - want[k]) for k in want)


def _summary(runs: list[dict[str, float]]) -> dict[str, Any]:
    return {
        "wall_s": [round(r["wall_s"], 3) for r in runs],
        "cpu_s": [round(r["cpu_s"], 3) for r in runs],
        "median_wall_s": round(statistics.median(r["wall_s"] for r in runs), 3),
        "median_cpu_s": round(statistics.median(r["cpu_s"] for r in runs), 3),
        "peak_rss_main_mib": round(max(r["rss_mib"] for r in runs), 1),
    }


def main(args: argparse.Namespace) -> dict[str, Any]:
    if not args.reference.is_file():
        raise HarnessError(f"reference scores {args.reference} not found: pass --reference FILE, the official "
                           "evaluator's per-object scores of --pred against --gt")
    try:
        import vos_benchmark  # noqa: F401
    except ImportError as err:
        raise HarnessError("vos-benchmark is not installed: pip install --no-deps vos-benchmark") from err
    reference = json.loads(args.reference.read_text())
    sequences = list(reference["per_sequence"])
    # the child imports the same harness as this process, wherever it was started from
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(source_root()), os.environ.get("PYTHONPATH")) if p)}
    load_before = os.getloadavg()
    ours: list[dict[str, float]] = []
    theirs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-scorer-") as tmp:
        folder = Path(tmp)
        paths = _layout(args, sequences, folder)
        scores = folder / "scores.json"
        ours_cmd = [sys.executable, "-m", "harness", "score", "--task", "davis", "--data-root", str(paths["root"]),
                    "--predictions", str(paths["pred"]), "--out", str(scores)]
        payload = json.dumps({"gt": str(paths["gt"]), "pred": str(paths["pred"]), "processes": args.processes})
        for _ in range(args.repeats):
            ours.append(_timed(ours_cmd, folder, env)[0])
            print(f"harness score: {ours[-1]['wall_s']:.2f} s", file=sys.stderr)
            timing, out = _timed([sys.executable, "-c", _VOS, payload], folder, env)
            theirs.append(timing)
            print(f"vos-benchmark: {timing['wall_s']:.2f} s", file=sys.stderr)
        result = json.loads(scores.read_text())
        vos_metrics = json.loads(out.strip().splitlines()[-1])
    per_object_diff = max(_max_diff(result["per_object"][name], want) for name, want in reference["per_object"].items())
    global_diff = _max_diff(result["metrics"], reference["global"])
    ours_s, theirs_s = _summary(ours), _summary(theirs)
    ratio = theirs_s["median_wall_s"] / ours_s["median_wall_s"]
    anchor = reference["anchor_timing_2core_cpu"]
    return {
        "what": "DAVIS-2017 J&F scoring of 30 real val sequences (osvos as GT, rvos-clipped as prediction): "
                "`harness score --task davis` vs vos_benchmark.benchmark, each a whole process timed from start "
                "to exit (start-up, imports, reading, scoring), alternating in one invocation",
        "sequences": len(sequences),
        "vos_benchmark_processes": args.processes,
        "ours_processes": os.cpu_count(),
        "repeats": args.repeats,
        "cpu_count": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "ours": ours_s,
        "vos_benchmark": theirs_s,
        "speed_ratio": round(ratio, 2),
        "cpu_ratio": round(theirs_s["median_cpu_s"] / ours_s["median_cpu_s"], 2),
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio >= TARGET_RATIO,
        "anchor_timing_2core_cpu": anchor,
        "ours_vs_anchor_vos_benchmark_2proc": round(anchor["vos_benchmark_2proc_wall_s"] / ours_s["median_wall_s"], 2),
        "ours_vs_anchor_official": round(anchor["official_evaluator_wall_s"] / ours_s["median_wall_s"], 2),
        "matches_official": global_diff <= TOLERANCE and per_object_diff <= TOLERANCE,
        "max_abs_diff_global": global_diff,
        "max_abs_diff_per_object": per_object_diff,
        "vos_benchmark_max_abs_diff_jf_global": _max_diff(vos_metrics, {k: reference["global"][k] for k in vos_metrics}),
        "tolerance": TOLERANCE,
    }
