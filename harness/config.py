"""One validated configuration per command, built from flags and ``--set key=value`` overrides.

``--set`` keys are dotted paths into the config (``protocol.topk=5``, ``method.layer=blocks.2``,
``adapt.steps=20``); values are read as YAML scalars so ``5``, ``0.1``, ``true`` and ``[a, b]`` get
their natural types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.errors import HarnessError

SECTIONS = ("method", "task", "protocol", "adapt")


def parse_assignment(item: str) -> tuple[str, Any]:
    """One ``--set`` item, ``"a.b=5"`` → ``("a.b", 5)``: the one reader of overrides (runs, recipes, benchmarks)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise HarnessError(f"--set expects key=value, got {item!r}")
    try:
        return key, yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise HarnessError(f"--set {item!r}: cannot read the value: {err}") from err


def parse_sets(items: list[str] | None) -> dict[str, dict[str, Any]]:
    """``["protocol.topk=5", "adapt.steps=3"]`` → ``{"protocol": {"topk": 5}, "adapt": {"steps": 3}, ...}``."""
    out: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for item in items or []:
        key, value = parse_assignment(item)
        section, dot, name = key.partition(".")
        if not dot or section not in SECTIONS or not name:
            raise HarnessError(f"--set key {key!r} must start with one of: {', '.join(s + '.' for s in SECTIONS)}")
        out[section][name] = value
    return out


@dataclass
class RunConfig:
    """Everything ``harness run`` needs; the resolved form is written into the run record."""

    method: str
    task: str
    data_root: str | None = None
    sequences: list[str] | None = None
    limit: int | None = None
    protocol: str = "crw"
    overrides: dict[str, dict[str, Any]] = field(default_factory=lambda: {s: {} for s in SECTIONS})
    out_dir: str | None = None
    results_dir: str | None = None
    checkpoint: str | None = None
    weights: str | None = None
    device: str = "auto"
    force: bool = False
    visualize: bool = False
    adapt: bool = False
    seed: int = 0
    precision: str = "fp32"  # of feature extraction: fp32, tf32 or bf16 (harness.runs.precision)
    feature_cache: str | None = None  # folder of cached features (harness.runs.feature_cache)

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise HarnessError(f"--limit must be >= 1, got {self.limit}")
        if self.sequences is not None and (not self.sequences or len(set(self.sequences)) != len(self.sequences)):
            raise HarnessError(f"--sequences must name each sequence once, got {self.sequences}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise HarnessError(f"--device must be cpu, cuda or auto, got {self.device!r}")
        for path, flag in ((self.checkpoint, "--checkpoint"), (self.weights, "--weights")):
            if path is not None and not Path(path).is_file():
                raise HarnessError(f"{flag} {path}: no such file")
        if self.overrides.get("adapt") and not self.adapt:
            raise HarnessError("adapt.* settings given without --adapt")
        from harness.runs.precision import check_precision  # imports torch: only when a config is built

        check_precision(self.precision)

    def method_config(self) -> dict[str, Any]:
        config = dict(self.overrides.get("method", {}))
        if self.checkpoint:
            config["checkpoint"] = str(Path(self.checkpoint).resolve())
        if self.weights:
            config["weights"] = str(Path(self.weights).resolve())
        return config

    def task_config(self) -> dict[str, Any]:
        config = dict(self.overrides.get("task", {}))
        config["sequences"] = self.sequences
        config["limit"] = self.limit
        return config
