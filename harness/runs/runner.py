"""The one place that wires a method, a task, the propagation engine and a run record together.

Per sequence: features (once, batched) → first-frame labels → ``propagate`` → decode → write the
official prediction files → score. Each finished sequence leaves a small state file, so a rerun of
the same configuration resumes where it stopped; the record is assembled from those files at the end.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from harness.config import RunConfig
from harness.data.check import require_valid
from harness.data.identify import describe_run_data
from harness.data.roots import resolve_data_root
from harness.device import peak_gpu_mib, peak_rss_mib, pick_device, reset_peak_memory, sync
from harness.engine.propagation import propagate
from harness.engine.protocol import require_fits, resolve_protocol
from harness.errors import HarnessError, Terminated
from harness.io import sha256_file
from harness.method import Method
from harness.registry import get_method, get_task
from harness.resources import results_dir, results_flag
from harness.runs.digest import fingerprint_inputs, run_out_dir
from harness.runs.feature_cache import cached_features
from harness.runs.frames import SequenceReader
from harness.runs.inputs import check_method_inputs, check_task_settings
from harness.runs.outdir import RECORD, OutputFolder, claim, require_writable_dir
from harness.runs.precision import check_precision
from harness.runs.record import code_state, environment, git_state, now_iso, write_record
from harness.runs.schema import (
    SCHEMA_VERSION,
    CheckpointBlock,
    DataBlock,
    DatasetIdentity,
    EnvBlock,
    ProtocolBlock,
    RunRecord,
    TimingBlock,
)
from harness.runs.sharding import Shard, run_sharded
from harness.runs.state import load_state, save_state
from harness.runs.timing import StageTimer, WarmUp, record_timing
from harness.tasks.base import Sequence, Task

#: default-folder root; None: ``runs/`` under :func:`harness.resources.results_dir` (./results)
RUNS_DIR: Path | None = None


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _adapt_options(config: RunConfig) -> dict[str, Any]:
    """Adaptation settings join the protocol (and its hash): adapted and plain runs never compare."""
    if not config.adapt:
        return {}
    return {"adapt": json.dumps({"enabled": True, **config.overrides.get("adapt", {})}, sort_keys=True)}


class Runner:
    """Evaluates one method on one task under one protocol; see :func:`run`."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.git_at_start = git_state()  # the code this process imported (see record.code_state)
        task_entry = get_task(config.task)
        self.method_entry = get_method(config.method)
        check_method_inputs(config.method, self.method_entry.facts, config.overrides.get("method", {}),
                            config.checkpoint, config.weights)
        self.data_root, self.is_sample = resolve_data_root(task_entry.name, config.data_root)
        if self.is_sample:
            log(f"note: no --data-root or $HARNESS_DATA given: using the shipped real sample in {self.data_root}")
        self.task: Task = task_entry.factory(self.data_root, config.task_config())
        check_task_settings(self.task.name, self.task.settings, config.overrides.get("task", {}))
        defaults = {**self.task.protocol_defaults(config.protocol), **_adapt_options(config)}
        self.protocol = resolve_protocol(config.protocol, self.task.name, config.overrides.get("protocol"), defaults)
        self.task.check_protocol_options(dict(self.protocol.task_options))
        self.task.config["protocol"] = self.protocol
        self.sequences = self.task.sequences()
        checked = require_valid(self.task.name, self.data_root, self.sequences)
        require_fits(self.protocol, checked.longest, *checked.largest)  # before any compute
        self.shard = Shard.from_env()  # one rank of a torchrun job, or the whole run
        self.device = self.shard.device(pick_device(config.device))
        self.resolved = self._resolved_config()
        # data and weights by content, before any compute
        self.inputs = fingerprint_inputs(self.resolved, self.method_entry.facts.weights_sha256)
        outputs = self.task.outputs + (self.task.visual_outputs if config.visualize else ())
        self.inputs = replace(self.inputs, identity=replace(self.inputs.identity, outputs=outputs))
        self.out_dir = Path(config.out_dir) if config.out_dir else run_out_dir(
            RUNS_DIR or results_dir(config.results_dir) / "runs", self.resolved, self.inputs)
        #: the flag a problem with the output folder is about (the user set one of them, or neither)
        self.out_flag = "--out-dir" if config.out_dir else results_flag(config.results_dir)
        if not config.out_dir:
            require_writable_dir(results_dir(config.results_dir), self.out_flag)

    def _resolved_config(self) -> dict[str, Any]:
        c = self.config
        return {
            "method": c.method, "method_config": c.method_config(), "task": self.task.name,
            "task_config": {k: v for k, v in self.task.config.items() if k != "protocol"},
            "protocol": self.protocol.record(), "data_root": str(self.data_root), "sample": self.is_sample,
            "sequences": self.sequences, "limit": c.limit, "adapt": c.adapt, "adapt_config": c.overrides.get("adapt", {}),
            "seed": c.seed, "precision": check_precision(c.precision, self.device),
        }

    # -- the work ----------------------------------------------------------------------------
    def run(self) -> Path:
        """Claim the output folder (refused before any compute if it is not this run's), then evaluate."""
        if self.shard.sharded:
            return run_sharded(self.shard, self.out_dir, self.inputs.identity, self.config.force, self.out_flag,
                               self._run_in)
        with claim(self.out_dir, self.inputs.identity, force=self.config.force, flag=self.out_flag) as folder:
            return self._run_in(folder)

    def _run_in(self, folder: OutputFolder) -> Path:
        """Evaluate into ``folder`` (claimed by this process, or joined as one rank of a sharded run)."""
        self.folder = folder
        started = now_iso()
        torch.manual_seed(self.config.seed)
        self.model_load_s: float | None = None
        self.warm_up = WarmUp(self.device)
        mine = self.shard.assigned(self.task, self.sequences)  # all of them, unless torchrun started ranks
        self.reader = SequenceReader(self.task.load, mine)  # reads the next sequence meanwhile
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            reset_peak_memory(self.device)
        self.method: Method | None = None
        per_sequence: dict[str, dict[str, Any]] = {}
        timings: dict[str, dict[str, float]] = {}
        visuals: list[str] = []
        bar = tqdm(mine, desc=f"{self.config.method} on {self.task.name}", unit="seq", file=sys.stderr)
        reused = 0
        with _stop_says_what_is_saved(self.folder.path, per_sequence, len(mine)):
            for name in bar:
                state, was_saved = self._sequence_state(name, bar)
                reused += was_saved
                per_sequence[name] = state["scores"]
                timings[name] = state["timing"]
                visuals += state.get("visualizations", [])
        bar.close()
        self.reader.close()
        if reused:
            log(f"resumed: {reused} of {len(mine)} sequences reused from their saved state in "
                f"{self.folder.path}, {len(mine) - reused} computed")
        per_sequence, timings, visuals = self.shard.gather(self.folder, self.sequences, per_sequence, timings, visuals)
        if not self.shard.is_main:
            return self.out_dir / RECORD  # rank 0 writes it
        start_scoring = time.perf_counter()
        summary = self.task.aggregate(per_sequence)
        _require_fractions(self.task.name, "the whole run", summary.get("metrics", {}), self.task.metric_keys)
        aggregate_s = time.perf_counter() - start_scoring
        method = self.method if self.method is not None else self.method_entry.factory(
            {**self.config.method_config(), "device": "cpu"})
        record = self._record(method, summary, timings, aggregate_s, started, visuals)
        path = self.out_dir / RECORD
        self.folder.add([RECORD])  # the manifest lists the record before it exists: the record comes last
        write_record(path, record)
        self.folder.add_written(RECORD)
        self._report(record.metrics)
        return path.resolve()

    def _sequence_state(self, name: str, bar: tqdm) -> tuple[dict[str, Any], bool]:
        """Sequence ``name``'s state and whether it was reused: its saved state while that still describes the
        inputs, else computed now (the method is loaded on the first sequence that needs it)."""
        state, why = load_state(self.folder, name, self.inputs.sequences[name], self.inputs.weights)
        if why:
            log(f"recomputing {name}: {why}")
        if state is not None:
            return state, True
        if self.method is None:
            loading = time.perf_counter()
            method = self.method_entry.factory({**self.config.method_config(), "device": str(self.device)})
            self.method = method.to(self.device).set_precision(self.config.precision)
            self.model_load_s = time.perf_counter() - loading
        self.folder.retract_record()
        before = self.folder.snapshot(name)
        state = self._run_sequence(self.method, name, bar)
        return save_state(self.folder, name, state, self.inputs.sequences[name], self.inputs.weights,
                          self.folder.written_since(name, before)), False

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
            sync(self.device)
            timing["adapt_s"] = time.perf_counter() - start
        self.warm_up(method, seq.frames)  # cuDNN autotuning of a new frame shape stays out of the timings
        with timer.stage("features"):
            feats, from_cache = cached_features(self.config, method, seq.frames)
        if from_cache is not None:
            timing["features_from_cache"] = from_cache
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
        _require_fractions(self.task.name, seq.name, scores, self.task.metric_keys)
        timing.update(timer.state())
        state: dict[str, Any] = {"scores": scores, "timing": timing}
        if self.config.visualize:
            path = self.task.visualize(seq, prediction, self.out_dir)
            if path is not None:
                state["visualizations"] = [str(Path(path).relative_to(self.out_dir))]
        return state

    def _record(self, method: Method, summary: dict[str, Any], timings: dict[str, dict[str, float]],
                aggregate_s: float, started: str, visuals: list[str]) -> RunRecord:
        """The run record, validated as it is built (one the leaderboard would refuse is a runner bug)."""
        info = method.describe()
        checkpoint = info.pop("checkpoint", None)
        timing = {
            **record_timing(timings, self.model_load_s, aggregate_s),
            "peak_rss_mib": peak_rss_mib(),
            "peak_gpu_mib": peak_gpu_mib(self.device),
        }
        cached = [bool(t["features_from_cache"]) for t in timings.values() if "features_from_cache" in t]
        if cached:  # --feature-cache: a hit's features time is a file load, not the method's work
            timing["feature_cache"] = {"hits": sum(cached), "misses": len(cached) - sum(cached)}
        if isinstance(checkpoint, (str, Path)):
            checkpoint = {"path": str(checkpoint), "sha256": sha256_file(checkpoint)}
        data = {"root": str(self.data_root), "sample": self.is_sample, "sequences": self.sequences,
                "limit": self.config.limit}
        # What the data is (from sequence names and object counts), and whether it is a smoke run.
        dataset, smoke = describe_run_data(self.task.name, data, summary.get("per_sequence"), summary.get("per_object"))
        extra = {"visualizations": visuals} if visuals else {}
        return RunRecord(
            schema_version=SCHEMA_VERSION,
            method=self.config.method,
            method_info={**info, "stride": method.stride, "dim": method.dim},
            task=self.task.name,
            protocol=ProtocolBlock(**self.protocol.record()),
            checkpoint=None if checkpoint is None else CheckpointBlock(**checkpoint),
            config=self.resolved,
            env=EnvBlock(**environment(self.device, code_state(self.git_at_start, git_state()))),
            seed=self.config.seed,
            data=DataBlock(**data, dataset=DatasetIdentity(**dataset), fingerprint=self.inputs.data),
            started=started,
            finished=now_iso(),
            timing=TimingBlock(**timing),
            **summary,
            smoke=smoke,
            run_digest=self.inputs.identity.digest,
            **extra,
        )

    def _report(self, metrics: dict[str, float | None]) -> None:
        shown = ", ".join(f"{k} {100 * v:.1f}" for k, v in metrics.items() if v is not None)
        log(f"{self.config.method} on {self.task.name} ({len(self.sequences)} sequences, protocol "
            f"{self.protocol.name}-{self.protocol.hash}): {shown}")


def _require_fractions(task: str, sequence: str, scores: dict[str, Any], metric_keys: tuple[str, ...]) -> None:
    """A task's metric outside [-1, 1] would be refused when the record is validated, as a harness bug; say
    instead that the task (a plug-in's, usually) scores in the wrong unit, at the first sequence where its
    per-sequence scores carry the metric, else when the run aggregates."""
    for key in metric_keys:
        value = scores.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) > 1.0:
            raise HarnessError(f"task {task!r} scored {key} = {value} on {sequence}: run records hold metrics as "
                               "fractions in [-1, 1] (docs/conventions.md §5), so the task's score_sequence must "
                               "return e.g. 0.62, not 62")


@contextmanager
def _stop_says_what_is_saved(folder: Path, done: dict[str, Any], total: int) -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C (saved sequences stay; the CLI exits 143); either way the run says how
    many sequences were finished and saved, and that rerunning the same command resumes from them."""
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    except KeyboardInterrupt as stop:
        what = "SIGTERM" if isinstance(stop, Terminated) else "an interrupt"
        log(f"stopped by {what}: {len(done)} of {total} sequences finished and saved in {folder}; rerun the "
            "same command to resume (the saved sequences are reused, the others computed)")
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated()


def run(config: RunConfig) -> Path:
    """Evaluate ``config.method`` on ``config.task``; returns the path of the written run record."""
    return Runner(config).run()
