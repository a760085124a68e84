"""The training loop every trainer shares: recipe + data → DDP steps → checkpoints, a JSONL log, evaluations.

One code path serves a laptop CPU, one GPU and many GPUs on many machines: under ``torchrun``
(``WORLD_SIZE`` > 1) the process group is initialised from the environment (NCCL on CUDA, gloo on
CPU) and the model is wrapped in DistributedDataParallel; each rank trains on its own shard of
every epoch. Mixed precision and ``cudnn.benchmark`` are switched on only on CUDA. What the loop
guarantees a trainer (exact resume, RNG restore, DDP) is written down in :mod:`harness.training.contract`.

Output folder: the trainer's ``state_file`` (resumable), its ``eval_file`` (evaluation only),
``metrics.jsonl`` (one line per step: ``step``, ``epoch``, ``loss``, the trainer's diagnostics,
``lr``, ``clips_per_s``, ``time``, ``decode_failures``; plus ``{"kind": "eval"}`` lines),
``recipe.yaml``, and with ``--eval-every`` ``eval/step-<N>/`` and ``curve.svg``.
"""

from __future__ import annotations

import copy
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch
import yaml

from harness.device import pick_device
from harness.device import sync as _sync
from harness.errors import HarnessError
from harness.io import atomic_write_text
from harness.training.acceleration import StepForward, amp_dtype, resolve_switch, use_channels_last
from harness.training.contract import Diagnostics, Trainer
from harness.training.curve import CURVE_NAME, draw_curve
from harness.training.data import TrainData, make_loader
from harness.training.distributed import Dist, barrier, gather, init_distributed, mean_over_ranks
from harness.training.evaluate import evaluate_step, evaluated_steps
from harness.training.options import TrainOptions
from harness.training.provenance import data_fingerprint
from harness.training.rng import mix_seed, rng_state, seed_everything
from harness.training.state import LOG_NAME, Stateful, restore, save_state, truncate_log

log = logging.getLogger(__name__)


@dataclass
class Run:
    """Everything one training run holds while it steps."""

    trainer: Trainer
    recipe: dict[str, Any]
    options: TrainOptions
    device: torch.device
    ctx: Dist
    out_dir: Path
    data: TrainData
    fingerprint: dict[str, Any]
    total_steps: int
    objects: Stateful
    amp: torch.dtype | None
    start_step: int = 0
    data_history: list[dict[str, Any]] = field(default_factory=list)
    evaluated: set[int] = field(default_factory=set)
    failures_total: int = 0
    log_handle: IO[str] | None = None

    @property
    def seed(self) -> int:
        return int(self.recipe["seed"])

    @property
    def state_path(self) -> Path:
        return self.out_dir / self.trainer.state_file

    @property
    def log_path(self) -> Path:
        return self.out_dir / LOG_NAME

    def plain_model(self) -> torch.nn.Module:
        model = self.objects.model
        return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def train(trainer: Trainer, recipe: dict[str, Any], options: TrainOptions) -> Path:
    """Train with ``recipe`` on the data under ``options.data``; returns the final state file's path."""
    run = _prepare(trainer, recipe, options)
    step_forward, loader = _start(run)
    progress = _progress(run)
    run.log_handle = open(run.log_path, "a") if run.ctx.main else None
    try:
        step = _steps(run, step_forward, loader, progress)
    finally:
        if run.log_handle is not None:
            run.log_handle.close()
        if progress is not None:
            progress.close()
    if run.failures_total:
        log.warning("%d sample(s) failed to read and were replaced by others", run.failures_total)
    if run.ctx.main:
        eval_path = trainer.export_eval(run.plain_model().state_dict(), recipe, step, run.out_dir / trainer.eval_file)
        log.info("evaluation-only checkpoint: %s", eval_path)
    barrier(run.ctx)
    return run.state_path


def _prepare(trainer: Trainer, recipe: dict[str, Any], options: TrainOptions) -> Run:
    """Device and process group, data, model and optimiser, and the state of a run being resumed."""
    device = pick_device(options.device)
    ctx = init_distributed(device)
    out_dir = Path(options.out_dir)
    if ctx.main:
        out_dir.mkdir(parents=True, exist_ok=True)
    batch_size = int(recipe["optim"]["batch_size"])
    if batch_size % ctx.world_size:
        raise HarnessError(f"optim.batch_size {batch_size} does not split evenly over {ctx.world_size} ranks")
    data = _build_data(trainer, recipe, options, device, ctx, batch_size // ctx.world_size)
    fingerprint = data_fingerprint(options.data, data.items)
    total_steps = int(recipe["optim"]["epochs"]) * data.steps_per_epoch
    if options.max_steps is not None:
        total_steps = min(total_steps, options.max_steps)

    seed_everything(int(recipe["seed"]))
    model = trainer.prepare_model(trainer.build_model(recipe).to(device), recipe, device=device,
                                  world_size=ctx.world_size)
    optimizer, scheduler = trainer.build_optimizer(model, recipe, data.steps_per_epoch)
    amp = amp_dtype(recipe["train"]["amp"], device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if resolve_switch(recipe["train"]["channels_last"], device, "train.channels_last"):
        use_channels_last(model)
    run = Run(trainer, recipe, options, device, ctx, out_dir, data, fingerprint, total_steps,
              Stateful(model, optimizer, scheduler, scaler), amp)
    _resume_or_start(run)
    if ctx.main:
        atomic_write_text(out_dir / "recipe.yaml", yaml.safe_dump(recipe, sort_keys=False))
    return run


def _build_data(trainer: Trainer, recipe: dict[str, Any], options: TrainOptions, device: torch.device, ctx: Dist,
                local_batch: int) -> TrainData:
    """Rank 0 indexes first and fills the caches the other ranks then read (put caches on shared storage for
    multi-node runs, or every node indexes once)."""
    if not ctx.main:
        barrier(ctx)
    data = trainer.build_data(recipe, list(options.data), device=device, rank=ctx.rank, world_size=ctx.world_size,
                              local_batch=local_batch)
    if ctx.main:
        barrier(ctx)
    return data


def _resume_or_start(run: Run) -> None:
    """``--resume`` restores the state file; without it an existing one is refused unless ``--force``."""
    options, ctx = run.options, run.ctx
    if options.resume and run.state_path.is_file():
        run.start_step, run.data_history = restore(
            run.state_path, run.trainer.recipe_model, run.trainer.resumable_changes, run.recipe, run.objects, ctx,
            run.data.steps_per_epoch, run.fingerprint, options.allow_data_change)
        if ctx.main:
            truncate_log(run.log_path, run.start_step)
            log.info("resumed from %s at step %d", run.state_path, run.start_step)
    elif options.resume and ctx.main:
        log.info("--resume: no checkpoint in %s yet, starting from scratch", run.out_dir)
    elif run.state_path.is_file() and not options.force:
        raise HarnessError(f"{run.state_path} exists: pass --resume to continue that run, --force to start over, "
                           "or another --out-dir")
    elif ctx.main and run.log_path.exists():
        run.log_path.unlink()


def _start(run: Run) -> tuple[StepForward, torch.utils.data.DataLoader]:
    """Wrap the model for DDP and compilation; the loader from the resumed step on; the evaluations already logged."""
    model, device, ctx = run.objects.model, run.device, run.ctx
    if ctx.world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        run.objects.model = model
    model.train()
    # compiled forward for the steps; checkpoints still come from the plain module (no `_orig_mod.` keys)
    step_forward = StepForward(model, resolve_switch(run.recipe["train"]["compile"], device, "train.compile"))
    sampler = run.data.sampler(run.start_step, run.total_steps)
    # the loader's own generator keeps it off the global RNG (whose state is saved for resuming)
    generator = torch.Generator().manual_seed(mix_seed(run.seed, ctx.rank, 3))
    loader = make_loader(run.data.dataset, sampler, run.data.workers, run.data.collate, device.type == "cuda", generator)
    # rank 0 reads the log, every rank learns which steps were evaluated
    run.evaluated = gather(evaluated_steps(run.log_path) if ctx.main and run.options.evaluate else set(), ctx)[0]
    return step_forward, loader


def _progress(run: Run) -> Any:
    if not (run.options.progress and run.ctx.main):
        return None
    from tqdm import tqdm

    return tqdm(total=run.total_steps, initial=run.start_step, file=sys.stderr, unit="step", dynamic_ncols=True)


def _steps(run: Run, step_forward: StepForward, loader: torch.utils.data.DataLoader, progress: Any) -> int:
    """The steps from ``start_step`` to ``total_steps``: train, log, checkpoint, evaluate; returns the last step."""
    step = run.start_step
    tick = time.perf_counter()
    for batch, failures in loader:
        batch = run.trainer.batch_to_device(batch, run.recipe, run.device)
        _sync(run.device)
        t_data = time.perf_counter() - tick
        generator = torch.Generator(device=run.device).manual_seed(mix_seed(run.seed, step, 2, run.ctx.rank))
        loss, diagnostics, lr, t_fwd_bwd = step_forward.run_step(
            lambda forward: optimisation_step(run.trainer, forward, batch, generator, run.recipe, run.amp, run.objects,  # noqa: B023
                                              run.device)
        )
        compile_s = step_forward.compile_s if step == run.start_step else None
        step += 1
        t_step = time.perf_counter() - tick
        times = {"data": t_data, "fwd_bwd": t_fwd_bwd, "optim": t_step - t_data - t_fwd_bwd, "step": t_step}
        _log_step(run, step, loss, diagnostics, failures, lr, times, compile_s, progress)
        if step % int(run.recipe["train"]["checkpoint_every"]) == 0 or step == run.total_steps:
            _checkpoint(run, step)
        _maybe_evaluate(run, step, last=step == run.total_steps)
        tick = time.perf_counter()
    if step == run.start_step:
        _checkpoint(run, step)
        _maybe_evaluate(run, step, last=True)
    return step


def optimisation_step(
    trainer: Trainer,
    forward: Any,
    batch: Any,
    generator: torch.Generator,
    recipe: dict[str, Any],
    amp: torch.dtype | None,
    objects: Stateful,
    device: torch.device,
) -> tuple[torch.Tensor, Diagnostics, float, float]:
    """One optimisation step; returns loss, diagnostics, the step's learning rate and its forward+backward time.

    ``forward`` is the module or its compiled forward (:class:`~harness.training.acceleration.StepForward`);
    the trainer's step gets it under autocast (when ``amp`` is set) and computes its loss outside it.
    """
    started = time.perf_counter()

    def autocast_forward(*args: Any, **kwargs: Any) -> Any:
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            return forward(*args, **kwargs)

    loss, diagnostics = trainer.training_step(autocast_forward, batch, generator, recipe)
    objects.scaler.scale(loss).backward()
    _sync(device)
    fwd_bwd = time.perf_counter() - started
    objects.scaler.step(objects.optimizer)
    objects.scaler.update()
    objects.optimizer.zero_grad(set_to_none=True)
    lr = objects.scheduler.get_last_lr()[0]
    objects.scheduler.step()
    _sync(device)
    return loss.detach(), diagnostics, lr, fwd_bwd


def flatten_diagnostics(diagnostics: Diagnostics) -> list[float]:
    """Diagnostics as one list of floats, in order (a dict's values in its own order)."""
    values: list[float] = []
    for value in diagnostics.values():
        if isinstance(value, dict):
            values.extend(float(v) for v in value.values())
        else:
            values.append(float(value))
    return values


def unflatten_diagnostics(layout: Diagnostics, values: list[float]) -> Diagnostics:
    """The inverse of :func:`flatten_diagnostics`: ``values`` put back into ``layout``'s shape."""
    out: Diagnostics = {}
    position = 0
    for key, value in layout.items():
        if isinstance(value, dict):
            out[key] = dict(zip(value, values[position : position + len(value)], strict=True))
            position += len(value)
        else:
            out[key] = values[position]
            position += 1
    return out


def _log_step(run: Run, step: int, loss: torch.Tensor, diagnostics: Diagnostics, failures: int, lr: float,
              times: dict[str, float], compile_s: float | None, progress: Any) -> None:
    """Average loss and diagnostics over the ranks; rank 0 appends the step's line and moves the progress bar."""
    values = mean_over_ranks([float(loss), *flatten_diagnostics(diagnostics), failures], run.ctx, run.device)
    run.failures_total += round(values[-1] * run.ctx.world_size)
    if not run.ctx.main:
        return
    record = {
        "step": step,
        "epoch": (step - 1) // run.data.steps_per_epoch,
        "loss": values[0],
        **unflatten_diagnostics(diagnostics, values[1:-1]),
        "lr": lr,
        "clips_per_s": int(run.recipe["optim"]["batch_size"]) / times["step"],
        "time": times,
        "decode_failures": run.failures_total,
    }
    if compile_s is not None:  # this step compiled the model: not a throughput sample
        record["compile_s"] = compile_s
    assert run.log_handle is not None
    run.log_handle.write(json.dumps(record) + "\n")
    run.log_handle.flush()
    if progress is not None:
        metric = run.trainer.curve_metric
        progress.set_postfix({"loss": f"{values[0]:.3f}", metric: f"{record[metric]:.3f}",
                              "clips_s": f"{record['clips_per_s']:.2f}"})
        progress.update(1)


def _checkpoint(run: Run, step: int) -> None:
    """Every rank's RNG state gathered; rank 0 writes the state file."""
    rngs = gather(rng_state(), run.ctx)
    if not run.ctx.main:
        return
    objects, steps_per_epoch = run.objects, run.data.steps_per_epoch
    save_state(
        run.state_path,
        {
            "model": run.plain_model().state_dict(),
            "recipe": copy.deepcopy(run.recipe),
            "step": step,
            "optimizer": objects.optimizer.state_dict(),
            "scheduler": objects.scheduler.state_dict(),
            "scaler": objects.scaler.state_dict(),
            "rng": rngs,
            "world_size": run.ctx.world_size,
            "sampler": {"epoch": step // steps_per_epoch, "batch": step % steps_per_epoch,
                        "steps_per_epoch": steps_per_epoch, "seed": run.seed},
            "data": [str(Path(p).resolve()) for p in run.options.data],
            "data_fingerprint": run.fingerprint,
            "data_changes": run.data_history,
        },
    )


def _maybe_evaluate(run: Run, step: int, last: bool) -> None:
    """Evaluate at multiples of ``--eval-every`` and at the end, once per step; the other ranks wait."""
    options = run.options.evaluate
    if options is None or step in run.evaluated or not (last or step % options.every == 0):
        return
    if run.ctx.main:
        entry = evaluate_step(run.trainer, run.out_dir, step, run.plain_model().state_dict(), run.recipe, options)
        assert run.log_handle is not None
        run.log_handle.write(json.dumps(entry) + "\n")
        run.log_handle.flush()
        draw_curve(run.log_path, run.out_dir / CURVE_NAME, run.trainer.method, run.trainer.curve_metric,
                   run.trainer.curve_label)
    run.evaluated.add(step)
    barrier(run.ctx)
