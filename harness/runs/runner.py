"""The one place that wires a method, a task, the propagation engine and a run record together.

Per sequence: features (once, batched) → first-frame labels → ``propagate`` → decode → write the
official prediction files → score. Each finished sequence leaves a small state file, so a rerun of
the same configuration resumes where it stopped; the record is assembled from those files at the end.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from harness.config import RunConfig
from harness.data.check import require_valid
from harness.data.identify import describe_run_data
from harness.data.roots import resolve_data_root
from harness.engine.propagation import propagate
from harness.engine.protocol import Protocol, resolve_protocol
from harness.errors import HarnessError
from harness.io import TMP_PREFIX, atomic_write_json, sha256_file
from harness.method import Method
from harness.registry import get_method, get_task
from harness.runs.feature_cache import cached_features
from harness.runs.frames import SequenceReader
from harness.runs.precision import check_precision
from harness.runs.record import REPO_ROOT, environment, now_iso, peak_rss_mib
from harness.runs.schema import SCHEMA_VERSION, validate_record
from harness.runs.timing import StageTimer, WarmUp, record_timing
from harness.tasks.base import Sequence, Task

RUNS_DIR = REPO_ROOT / "results" / "runs"
STATE_DIR = ".state"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def pick_device(name: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU; asking for CUDA without one is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HarnessError("--device cuda was asked for, but no CUDA device is available")
    return device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def default_out_dir(task: str, method: str, protocol: Protocol, method_config: dict[str, Any]) -> Path:
    """``results/runs/<task>/<method>/<protocol>-<hash>/``; a method run with a checkpoint, weights or
    ``--set method.*`` gets ``<method>+<digest>`` so that differently configured runs never share a folder."""
    safe_method = re.sub(r"[^A-Za-z0-9._@+-]+", "_", method)
    if method_config:
        digest = hashlib.sha256(json.dumps(method_config, sort_keys=True).encode()).hexdigest()[:8]
        safe_method = f"{safe_method}+{digest}"
    return RUNS_DIR / task / safe_method / f"{protocol.name}-{protocol.hash}"


def _adapt_options(config: RunConfig) -> dict[str, Any]:
    """Adaptation settings join the protocol (and its hash): adapted and plain runs never compare."""
    if not config.adapt:
        return {}
    return {"adapt": json.dumps({"enabled": True, **config.overrides.get("adapt", {})}, sort_keys=True)}


class Runner:
    """Evaluates one method on one task under one protocol; see :func:`run`."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        task_entry = get_task(config.task)
        self.method_entry = get_method(config.method)
        self.data_root, self.is_sample = resolve_data_root(task_entry.name, config.data_root)
        if self.is_sample:
            log(f"note: no --data-root or $HARNESS_DATA given: using the shipped real sample in {self.data_root}")
        self.task: Task = task_entry.factory(self.data_root, config.task_config())
        defaults = {**self.task.protocol_defaults(config.protocol), **_adapt_options(config)}
        self.protocol = resolve_protocol(config.protocol, self.task.name, config.overrides.get("protocol"), defaults)
        self.task.config["protocol"] = self.protocol
        self.sequences = self.task.sequences()
        require_valid(self.task.name, self.data_root, self.sequences)
        self.out_dir = (Path(config.out_dir) if config.out_dir
                        else default_out_dir(self.task.name, config.method, self.protocol, config.method_config()))
        self.device = pick_device(config.device)
        self.resolved = self._resolved_config()
        self.config_hash = hashlib.sha256(json.dumps(self.resolved, sort_keys=True).encode()).hexdigest()[:16]

    def _resolved_config(self) -> dict[str, Any]:
        c = self.config
        return {
            "method": c.method, "method_config": c.method_config(), "task": self.task.name,
            "task_config": {k: v for k, v in self.task.config.items() if k != "protocol"},
            "protocol": self.protocol.record(), "data_root": str(self.data_root), "sample": self.is_sample,
            "sequences": self.sequences, "limit": c.limit, "adapt": c.adapt, "adapt_config": c.overrides.get("adapt", {}),
            "seed": c.seed, "precision": check_precision(c.precision, self.device),
        }

    # -- state of finished sequences ---------------------------------------------------------
    def _state_path(self, name: str) -> Path:
        return self.out_dir / STATE_DIR / (name.replace("/", "__") + ".json")

    def _load_state(self, name: str) -> dict[str, Any] | None:
        path = self._state_path(name)
        if not path.is_file():
            return None
        try:
            state = json.loads(path.read_text())
        except json.JSONDecodeError:
            return None
        return state if state.get("config_hash") == self.config_hash else None

    def _clean(self) -> None:
        """``--force`` drops earlier results; leftover temporary files of a killed run always go."""
        if self.config.force and self.out_dir.exists():
            shutil.rmtree(self.out_dir)
        if self.out_dir.exists():
            for tmp in self.out_dir.rglob(TMP_PREFIX + "*"):
                tmp.unlink()

    # -- the work ----------------------------------------------------------------------------
    def run(self) -> Path:
        started = now_iso()
        self._clean()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(self.config.seed)
        self.model_load_s: float | None = None
        self.warm_up = WarmUp(self.device)
        self.reader = SequenceReader(self.task.load, self.sequences)  # reads the next sequence meanwhile
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.cuda.reset_peak_memory_stats(self.device)
        method: Method | None = None
        per_sequence: dict[str, dict[str, Any]] = {}
        timings: dict[str, dict[str, float]] = {}
        visuals: list[str] = []
        bar = tqdm(self.sequences, desc=f"{self.config.method} on {self.task.name}", unit="seq", file=sys.stderr)
        for name in bar:
            state = self._load_state(name)
            if state is None:
                if method is None:
                    loading = time.perf_counter()
                    method = self.method_entry.factory({**self.config.method_config(), "device": str(self.device)})
                    method = method.to(self.device).set_precision(self.config.precision)
                    self.model_load_s = time.perf_counter() - loading
                state = self._run_sequence(method, name, bar)
                atomic_write_json(self._state_path(name), state)
            per_sequence[name] = state["scores"]
            timings[name] = state["timing"]
            visuals += state.get("visualizations", [])
        bar.close()
        self.reader.close()
        start_scoring = time.perf_counter()
        summary = self.task.aggregate(per_sequence)
        aggregate_s = time.perf_counter() - start_scoring
        if method is None:
            method = self.method_entry.factory({**self.config.method_config(), "device": "cpu"})
        record = self._record(method, summary, timings, aggregate_s, started, visuals)
        path = self.out_dir / "record.json"
        validate_record(record)  # a record the leaderboard would refuse is a runner bug: never write one
        atomic_write_json(path, record)
        self._report(summary["metrics"])
        return path.resolve()

    def _run_sequence(self, method: Method, name: str, bar: tqdm) -> dict[str, Any]:
        timer = StageTimer(self.device)
        seq: Sequence
        seq, read_s, wait_s = self.reader.take(name)
        timer.add("read", read_s)
        bar.set_postfix_str(f"{name}: {seq.num_frames} frames")
        timing: dict[str, float] = {"frames": seq.num_frames, "read_wait_s": wait_s}
        if self.config.adapt:
            adapted = getattr(method, "adapted", None)
            if adapted is None:
                raise HarnessError(f"method {self.config.method!r} cannot adapt at test time (it has no training step)")
            start = time.perf_counter()
            method = adapted(seq.frames, self.config.overrides.get("adapt", {}), self.config.seed)
            _sync(self.device)
            timing["adapt_s"] = time.perf_counter() - start
        self.warm_up(method, seq.frames)  # cuDNN autotuning of a new frame shape stays out of the timings
        with timer.stage("features"):
            feats = cached_features(self.config, method, seq.frames)
        with timer.stage("propagation"):
            first = self.task.encode(seq, tuple(feats.shape[-2:])).to(device=feats.device, dtype=feats.dtype)
            soft = propagate(feats, first, self.protocol)
        del feats
        with timer.stage("labels"):
            prediction = self.task.decode(seq, soft.cpu())
        with timer.stage("write"):
            self.task.write(seq, prediction, self.out_dir)
        with timer.stage("score"):
            scores = self.task.score_sequence(seq, prediction)
        timing.update(timer.state())
        state: dict[str, Any] = {"config_hash": self.config_hash, "scores": scores, "timing": timing}
        if self.config.visualize:
            path = self.task.visualize(seq, prediction, self.out_dir)
            if path is not None:
                state["visualizations"] = [str(Path(path).relative_to(self.out_dir))]
        return state

    def _record(self, method: Method, summary: dict[str, Any], timings: dict[str, dict[str, float]],
                aggregate_s: float, started: str, visuals: list[str]) -> dict[str, Any]:
        info = method.describe()
        checkpoint = info.pop("checkpoint", None)
        timing = {
            **record_timing(timings, self.model_load_s, aggregate_s),
            "peak_rss_mib": peak_rss_mib(),
            "peak_gpu_mib": (torch.cuda.max_memory_allocated(self.device) / 2**20) if self.device.type == "cuda" else None,
        }
        if isinstance(checkpoint, (str, Path)):
            checkpoint = {"path": str(checkpoint), "sha256": sha256_file(checkpoint)}
        record = {
            "schema_version": SCHEMA_VERSION,
            "method": self.config.method,
            "method_info": {**info, "stride": method.stride, "dim": method.dim},
            "task": self.task.name,
            "protocol": self.protocol.record(),
            "checkpoint": checkpoint,
            "config": self.resolved,
            "env": environment(self.device),
            "seed": self.config.seed,
            "data": {"root": str(self.data_root), "sample": self.is_sample, "sequences": self.sequences,
                     "limit": self.config.limit},
            "started": started,
            "finished": now_iso(),
            "timing": timing,
            **summary,
        }
        # What the data is (from sequence names and object counts), and whether it is a smoke run.
        record["data"]["dataset"], record["smoke"] = describe_run_data(
            self.task.name, record["data"], summary.get("per_sequence"), summary.get("per_object"))
        if visuals:
            record["visualizations"] = visuals
        return record

    def _report(self, metrics: dict[str, float]) -> None:
        shown = ", ".join(f"{k} {100 * v:.1f}" for k, v in metrics.items() if v is not None)
        log(f"{self.config.method} on {self.task.name} ({len(self.sequences)} sequences, protocol "
            f"{self.protocol.name}-{self.protocol.hash}): {shown}")


def run(config: RunConfig) -> Path:
    """Evaluate ``config.method`` on ``config.task``; returns the path of the written run record."""
    return Runner(config).run()
