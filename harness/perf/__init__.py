"""Benchmarks that write JSON reports (``harness bench NAME``): speed and memory measured side by side
with the reference each target must beat, in separate processes, reported as ratios.

Each benchmark module exposes ``add_arguments(parser)`` and ``main(args) -> dict`` (the report).
"""

BENCHMARKS = {
    "scorer": "harness.perf.scorer",
    "propagation": "harness.perf.propagation",
    "train": "harness.perf.train",
    "adapt": "harness.perf.adapt",
    "run": "harness.perf.run",
}
#: reports go to ``bench/`` under the results root (:func:`harness.resources.results_dir`)
REPORT_DIR = "bench"
