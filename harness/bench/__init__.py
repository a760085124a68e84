"""Benchmarks that write JSON reports (``harness bench NAME``): speed and memory measured side by side
with the reference each target must beat, in separate processes, reported as ratios.

Each benchmark module exposes ``add_arguments(parser)`` and ``main(args) -> dict`` (the report).
"""

BENCHMARKS = {
    "scorer": "harness.bench.scorer",
    "propagation": "harness.bench.propagation",
    "train": "harness.bench.train",
    "adapt": "harness.bench.adapt",
}
REPORT_DIR = "results/bench"
