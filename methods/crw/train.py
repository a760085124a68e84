"""Training CRW from raw video: recipe → data → DDP training loop → checkpoints and a JSONL log.

One code path serves a laptop CPU, one GPU and many GPUs on many machines: under ``torchrun``
(``WORLD_SIZE`` > 1) the process group is initialised from the environment (NCCL on CUDA, gloo on
CPU) and the model is wrapped in DistributedDataParallel; each rank trains on its own shard of
every epoch's clip list. BatchNorm statistics stay per rank, as in the original (no SyncBN).
Mixed precision and ``cudnn.benchmark`` are switched on only on CUDA.

Exact resume: the sampler, the augmentation and the edge-dropout masks derive their randomness
from ``(seed, step, position/rank)``, so a run restarted from a checkpoint at step k draws the
same batch k+1 and the same masks as an uninterrupted one; model, optimizer, scheduler, grad
scaler and every rank's RNG states are restored from the checkpoint as well.
"""

from __future__ import annotations

import copy
import datetime
import difflib
import json
import logging
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml

from harness.config import parse_assignment
from harness.device import pick_device
from harness.device import sync as _sync
from harness.errors import CheckpointError, HarnessError
from harness.io import atomic_path, atomic_write_text, read_yaml
from harness.safe_load import load_weights_only
from methods.crw.acceleration import StepForward, resolve_switch, use_channels_last
from methods.crw.augment import ClipAugment, grid_nodes
from methods.crw.data import (
    ClipDataset,
    ClipIndex,
    ShardedClipSampler,
    build_loader,
    index_videos,
    mix_seed,
)
from methods.crw.provenance import check_training_data, data_fingerprint
from methods.crw.train_eval import CURVE_NAME, EvalOptions, draw_curve, evaluate_step, evaluated_steps

log = logging.getLogger(__name__)

RECIPE_DIR = Path(__file__).resolve().parent / "recipes"
CHECKPOINT_NAME = "checkpoint.pt"
EVAL_CHECKPOINT_NAME = "crw-eval.pt"
LOG_NAME = "metrics.jsonl"
#: recipe keys that may differ between a checkpoint and the run resuming it
RESUMABLE_CHANGES = ("train.checkpoint_every", "data.workers", "data.cache_dir", "train.compile", "train.channels_last")
#: keys added to the recipes later, with the value that reproduces what older checkpoints did
ADDED_KEYS = {"data.augment_on": "cpu", "train.compile": "auto", "train.channels_last": "auto"}
#: how long a rank waits at a collective: long enough for rank 0 to evaluate a checkpoint meanwhile
DIST_TIMEOUT = datetime.timedelta(hours=3)


# -- recipes ----------------------------------------------------------------------------------


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def load_recipe(name: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """A recipe by name (``methods/crw/recipes/NAME.yaml``) or YAML path, ``base:`` resolved, overrides applied."""
    recipe = _load_recipe_file(name, seen=())
    for item in overrides or []:
        set_key(recipe, *parse_assignment(item))
    validate_recipe(recipe)
    return recipe


def chance_accuracy(recipe: dict[str, Any]) -> float:
    """Cycle accuracy of a walk that guesses: one over the patches per frame (``harness bench train``)."""
    augment = recipe["augment"]
    return 1 / grid_nodes(augment["frame_size"], augment["patch_size"], augment["patch_stride"])


def validate_recipe(recipe: dict[str, Any]) -> None:
    """Reject settings that would fail (or silently do nothing) only after minutes of indexing."""
    try:
        checks = {
            "data.clip_len >= 3 (the shortest cycle is skipped, so T=2 has no walk)": int(recipe["data"]["clip_len"]) >= 3,
            "data.clips_per_video >= 1": int(recipe["data"]["clips_per_video"]) >= 1,
            "data.workers >= 0": int(recipe["data"]["workers"]) >= 0,
            "optim.batch_size >= 1": int(recipe["optim"]["batch_size"]) >= 1,
            "optim.lr > 0": float(recipe["optim"]["lr"]) > 0,
            "optim.epochs >= 1": int(recipe["optim"]["epochs"]) >= 1,
            "loss.temperature > 0": float(recipe["loss"]["temperature"]) > 0,
            "0 <= loss.edge_dropout < 1": 0 <= float(recipe["loss"]["edge_dropout"]) < 1,
            "model.padding in (reflect, zeros)": recipe["model"]["padding"] in ("reflect", "zeros"),
            "train.checkpoint_every >= 1": int(recipe["train"]["checkpoint_every"]) >= 1,
            "data.augment_on in (cpu, gpu)": recipe["data"]["augment_on"] in ("cpu", "gpu"),
            "train.compile in (auto, on, off)": recipe["train"]["compile"] in ("auto", True, False, "on", "off"),
            "train.channels_last in (auto, on, off)": recipe["train"]["channels_last"] in ("auto", True, False, "on", "off"),
        }
    except (KeyError, TypeError, ValueError) as err:
        raise HarnessError(f"recipe {recipe.get('name')!r} is missing or mistypes a key: {err}") from err
    bad = [rule for rule, ok in checks.items() if not ok]
    if bad:
        raise HarnessError(f"recipe {recipe.get('name')!r} breaks: {'; '.join(bad)}")


def _load_recipe_file(name: str, seen: tuple[str, ...]) -> dict[str, Any]:
    path = Path(name)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = RECIPE_DIR / f"{name}.yaml"
    if not path.is_file():
        close = difflib.get_close_matches(name, recipe_names(), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise HarnessError(f"unknown recipe {name!r}.{hint} Known: {', '.join(recipe_names())}")
    if str(path) in seen:
        raise HarnessError(f"recipe {path} includes itself through `base:`")
    raw = read_yaml(path, "training recipe") or {}
    if not isinstance(raw, dict):
        raise HarnessError(f"recipe {path} must be a mapping of sections")
    base_name = raw.pop("base", None)
    if base_name is None:
        return raw
    recipe = _load_recipe_file(str(base_name), (*seen, str(path)))
    _merge(recipe, raw, source=path)
    return recipe


def _merge(into: dict[str, Any], update: dict[str, Any], source: Path, prefix: str = "") -> None:
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if key not in into:
            raise HarnessError(f"recipe {source}: unknown key {dotted!r} (not in its base recipe)")
        if isinstance(into[key], dict) and isinstance(value, dict):
            _merge(into[key], value, source, prefix=f"{dotted}.")
        else:
            into[key] = value


def set_key(recipe: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in a recipe; unknown keys are an error naming the closest known ones."""
    node = recipe
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            known = _flat_keys(recipe)
            close = difflib.get_close_matches(dotted, known, n=3)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise HarnessError(f"--set {dotted}: unknown recipe key.{hint}")
        if depth == len(parts) - 1:
            if isinstance(node[part], dict):
                raise HarnessError(f"--set {dotted}: is a section; set one of its keys")
            node[part] = _coerce(node[part], value, dotted)
        else:
            node = node[part]


def _coerce(old: Any, new: Any, dotted: str) -> Any:
    """Read ``new`` as a number where the recipe holds one: YAML 1.1 parses ``3e-4`` as a string."""
    if isinstance(old, (int, float)) and not isinstance(old, bool) and isinstance(new, str):
        try:
            return float(new) if isinstance(old, float) or not new.lstrip("+-").isdigit() else int(new)
        except ValueError:
            raise HarnessError(f"--set {dotted}={new}: expected a number") from None
    return new


def _flat_keys(recipe: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in recipe.items():
        if isinstance(value, dict):
            keys.extend(_flat_keys(value, f"{prefix}{key}."))
        else:
            keys.append(f"{prefix}{key}")
    return keys


def _flat(recipe: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in _flat_keys(recipe):
        node: Any = recipe
        for part in key.split("."):
            node = node[part]
        out[key] = node
    return out


# -- distributed setup ------------------------------------------------------------------------


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    """Join the process group torchrun describes in the environment; a lone process needs none."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL collectives (all_gather_object) use the current device
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo", init_method="env://", timeout=DIST_TIMEOUT
        )
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


# -- RNG state --------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU, CUDA) RNG states as tensors and plain values (``weights_only``-safe)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate((state["python_version"], tuple(state["python"]), None))
    numpy_state = state["numpy"]
    np.random.set_state(
        ("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"], numpy_state["has_gauss"], numpy_state["gauss"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# -- the loop ---------------------------------------------------------------------------------


@dataclass
class TrainOptions:
    """What ``harness train`` passes besides the recipe."""

    data: list[Path]
    out_dir: Path
    max_steps: int | None = None
    resume: bool = False
    device: str = "auto"
    progress: bool = True
    force: bool = False
    #: ``--allow-data-change``: resume although the training videos differ from the checkpoint's
    allow_data_change: bool = False
    #: ``--eval-every``: evaluate eval/step-<N>/crw-eval.pt through the runner every N steps and at the end
    evaluate: EvalOptions | None = None


def build_model(recipe: dict[str, Any]) -> torch.nn.Module:
    from methods.crw.model import CRWNet

    return CRWNet(padding=recipe["model"]["padding"])


def build_data(recipe: dict[str, Any], roots: list[Path], augment_on_device: bool = False) -> tuple[ClipDataset, ClipIndex]:
    """Index every root (cached), pool their videos, and wrap them in a clip dataset.

    ``augment_on_device``: workers only decode and draw the random boxes (:meth:`ClipAugment.prepare`);
    the training loop resizes the frames and cuts the patches of the whole batch on the device.
    """
    cfg = recipe["data"]
    cache_dir = Path(cfg["cache_dir"]).expanduser() if cfg["cache_dir"] else None
    videos = []
    for root in roots:
        found, stats = index_videos(root, cache_dir, cfg["frame_folder_fps"])
        log.info("%s: %d videos (%d re-indexed, %d unreadable skipped)", root, len(found), stats.indexed, stats.failed)
        videos.extend(found)
    index = ClipIndex(videos, int(cfg["clip_len"]), cfg["fps"])
    augment = ClipAugment(recipe["augment"])
    return ClipDataset(index, augment.prepare if augment_on_device else augment), index


def batch_to_device(batch: Any, augment: ClipAugment, device: torch.device) -> torch.Tensor:
    """A loader batch → patches ``[B, T, N, 3, P, P]`` on ``device``.

    With ``data.augment_on: gpu`` the batch is the decoded uint8 frames and their boxes
    (:func:`~methods.crw.data.collate`); the frames are resized and the patches cut here, on the device.
    """
    if isinstance(batch, tuple):
        frames, frame_boxes, patch_boxes = batch
        return augment.finish([f.to(device, non_blocking=True) for f in frames], frame_boxes, patch_boxes)
    return batch.to(device, non_blocking=True)


def _amp_dtype(recipe: dict[str, Any], device: torch.device) -> torch.dtype | None:
    mode = recipe["train"]["amp"]
    if device.type != "cuda" or mode in (False, "off", None):
        return None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if mode in ("bf16", "fp16"):
        return torch.bfloat16 if mode == "bf16" else torch.float16
    raise HarnessError(f"train.amp must be auto, bf16, fp16 or off, got {mode!r}")


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def _check_resumable(saved: dict[str, Any], recipe: dict[str, Any], path: Path) -> None:
    old, new = {**ADDED_KEYS, **_flat(saved)}, _flat(recipe)
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in RESUMABLE_CHANGES)
    if changed:
        details = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise HarnessError(f"--resume: {path} was trained with a different recipe ({details}); use a new --out-dir")


def _gather(obj: Any, ctx: Dist) -> list[Any]:
    if ctx.world_size == 1:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def _mean_over_ranks(values: list[float], ctx: Dist, device: torch.device) -> list[float]:
    if ctx.world_size == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return (tensor / ctx.world_size).tolist()


def _truncate_log(path: Path, step: int) -> None:
    """Keep the log lines of steps up to ``step`` (those after it are redone by the resumed run)."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def _restore(
    ckpt_path: Path,
    recipe: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    ctx: Dist,
    steps_per_epoch: int,
    fingerprint: dict[str, Any],
    allow_data_change: bool,
) -> tuple[int, list[dict[str, Any]]]:
    """Load a training checkpoint into the run's objects and this rank's RNG state; returns its step and
    the training-data changes it has seen (:func:`~methods.crw.provenance.check_training_data`)."""
    state = load_weights_only(ckpt_path, "--resume: training checkpoint", map_location=next(model.parameters()).device)
    missing = {"model", "optimizer", "scheduler", "step", "recipe", "rng", "world_size"} - state.keys()
    if missing:
        raise CheckpointError(f"{ckpt_path}: cannot resume, missing keys {sorted(missing)}")
    _check_resumable(state["recipe"], recipe, ckpt_path)
    history = check_training_data(state, fingerprint, allow_data_change, ckpt_path, int(state["step"]))
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if "scaler" in state:
        scaler.load_state_dict(state["scaler"])
    saved_steps_per_epoch = state.get("sampler", {}).get("steps_per_epoch")
    if saved_steps_per_epoch != steps_per_epoch:
        log.warning(
            "--resume: the training data changed since %s was written (%s steps per epoch, now %d): "
            "the run goes on, but not with the batches the original run would have drawn",
            ckpt_path, saved_steps_per_epoch, steps_per_epoch,
        )
    if state["world_size"] == ctx.world_size:
        set_rng_state(state["rng"][ctx.rank])
    else:
        log.warning(
            "resuming a %d-rank run on %d ranks: clips are re-sharded, so batches differ from the original run",
            state["world_size"], ctx.world_size,
        )
    return int(state["step"]), history


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def train(recipe: dict[str, Any], options: TrainOptions) -> Path:
    """Train CRW with ``recipe`` on the videos under ``options.data``; returns the final checkpoint path."""
    device = pick_device(options.device)
    ctx = init_distributed(device)
    out_dir = Path(options.out_dir)
    if ctx.main:
        out_dir.mkdir(parents=True, exist_ok=True)
    seed = int(recipe["seed"])
    optim_cfg, loss_cfg, train_cfg = recipe["optim"], recipe["loss"], recipe["train"]
    if int(optim_cfg["batch_size"]) % ctx.world_size:
        raise HarnessError(f"optim.batch_size {optim_cfg['batch_size']} does not split evenly over {ctx.world_size} ranks")
    local_batch = int(optim_cfg["batch_size"]) // ctx.world_size

    # rank 0 indexes first and fills the cache the other ranks then read (put data.cache_dir on
    # shared storage for multi-node runs, or every node indexes once)
    augment_on_device = recipe["data"]["augment_on"] == "gpu" and device.type == "cuda"
    if recipe["data"]["augment_on"] == "gpu" and not augment_on_device and ctx.main:
        log.warning("data.augment_on: gpu needs CUDA; the workers cut the patches on the CPU")
    if ctx.world_size > 1 and not ctx.main:
        dist.barrier()
    dataset, index = build_data(recipe, options.data, augment_on_device)
    if ctx.world_size > 1 and ctx.main:
        dist.barrier()
    fingerprint = data_fingerprint(options.data, index.videos)
    probe = ShardedClipSampler(index, int(recipe["data"]["clips_per_video"]), local_batch, seed, ctx.rank, ctx.world_size)
    steps_per_epoch = probe.steps_per_epoch
    total_steps = int(optim_cfg["epochs"]) * steps_per_epoch
    if options.max_steps is not None:
        total_steps = min(total_steps, options.max_steps)

    seed_everything(seed)
    model = build_model(recipe).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=float(optim_cfg["lr"]), weight_decay=float(optim_cfg["weight_decay"]))
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=[int(m) * steps_per_epoch for m in optim_cfg["milestones"]], gamma=float(optim_cfg["gamma"])
    )
    amp_dtype = _amp_dtype(recipe, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if resolve_switch(train_cfg["channels_last"], device, "train.channels_last"):
        use_channels_last(model)

    start_step = 0
    data_history: list[dict[str, Any]] = []
    ckpt_path = out_dir / CHECKPOINT_NAME
    log_path = out_dir / LOG_NAME
    if options.resume and ckpt_path.is_file():
        start_step, data_history = _restore(ckpt_path, recipe, model, optimizer, scheduler, scaler, ctx,
                                            steps_per_epoch, fingerprint, options.allow_data_change)
        if ctx.main:
            _truncate_log(log_path, start_step)
            log.info("resumed from %s at step %d", ckpt_path, start_step)
    elif options.resume and ctx.main:
        log.info("--resume: no checkpoint in %s yet, starting from scratch", out_dir)
    elif ckpt_path.is_file() and not options.force:
        raise HarnessError(f"{ckpt_path} exists: pass --resume to continue that run, --force to start over, or another --out-dir")
    elif ctx.main and log_path.exists():
        log_path.unlink()
    if ctx.main:
        atomic_write_text(out_dir / "recipe.yaml", yaml.safe_dump(recipe, sort_keys=False))

    if ctx.world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    model.train()
    # compiled forward for the steps; checkpoints still come from `model` (no `_orig_mod.` keys)
    step_forward = StepForward(model, resolve_switch(train_cfg["compile"], device, "train.compile"))
    augment = ClipAugment(recipe["augment"])
    sampler = ShardedClipSampler(
        index, int(recipe["data"]["clips_per_video"]), local_batch, seed, ctx.rank, ctx.world_size, start_step, total_steps
    )
    # the loader's own generator keeps it off the global RNG (whose state is saved for resuming)
    loader_generator = torch.Generator().manual_seed(mix_seed(seed, ctx.rank, 3))
    loader = build_loader(dataset, sampler, int(recipe["data"]["workers"]), device.type == "cuda", loader_generator)

    progress = None
    if options.progress and ctx.main:
        from tqdm import tqdm

        progress = tqdm(total=total_steps, initial=start_step, file=sys.stderr, unit="step", dynamic_ncols=True)

    def checkpoint(step: int) -> None:
        rngs = _gather(rng_state(), ctx)
        if ctx.main:
            save_checkpoint(
                ckpt_path,
                {
                    "model": _unwrap(model).state_dict(),
                    "recipe": copy.deepcopy(recipe),
                    "step": step,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "rng": rngs,
                    "world_size": ctx.world_size,
                    "sampler": {"epoch": step // steps_per_epoch, "batch": step % steps_per_epoch,
                                "steps_per_epoch": steps_per_epoch, "seed": seed},
                    "data": [str(Path(p).resolve()) for p in options.data],
                    "data_fingerprint": fingerprint,
                    "data_changes": data_history,
                },
            )

    # evaluations already logged (a resumed run keeps them); rank 0 reads the log, every rank learns it
    evaluated = _gather(evaluated_steps(log_path) if ctx.main and options.evaluate else set(), ctx)[0]

    def maybe_evaluate(step: int, last: bool) -> None:
        """Evaluate at multiples of --eval-every and at the end, once per step; other ranks wait."""
        if options.evaluate is None or step in evaluated or not (last or step % options.evaluate.every == 0):
            return
        if ctx.main:
            entry = evaluate_step(out_dir, step, _unwrap(model).state_dict(), recipe, options.evaluate)
            log_handle.write(json.dumps(entry) + "\n")
            log_handle.flush()
            draw_curve(log_path, out_dir / CURVE_NAME)
        evaluated.add(step)
        if ctx.world_size > 1:
            dist.barrier()

    step = start_step
    failures_total = 0
    log_handle = open(log_path, "a") if ctx.main else None
    try:
        tick = time.perf_counter()
        for batch, failures in loader:
            batch = batch_to_device(batch, augment, device)
            _sync(device)
            t_data = time.perf_counter() - tick
            generator = torch.Generator(device=device).manual_seed(mix_seed(seed, step, 2, ctx.rank))
            loss, diag, lr, t_fwd_bwd = step_forward.run_step(
                lambda forward: _train_step(forward, batch, generator, loss_cfg, amp_dtype, scaler, optimizer, scheduler)  # noqa: B023
            )
            compile_s = step_forward.compile_s if step == start_step else None
            step += 1
            t_step = time.perf_counter() - tick
            t_optim = t_step - t_data - t_fwd_bwd

            walks = sorted(diag["xent"])
            values = [float(loss), diag["acc_mean"], *(diag["xent"][k] for k in walks), *(diag["acc"][k] for k in walks), failures]
            values = _mean_over_ranks(values, ctx, device)
            failures_total += round(values[-1] * ctx.world_size)
            if ctx.main:
                n = len(walks)
                record = {
                    "step": step,
                    "epoch": (step - 1) // steps_per_epoch,
                    "loss": values[0],
                    "acc": values[1],
                    "xent": dict(zip(walks, values[2 : 2 + n], strict=True)),
                    "walk_acc": dict(zip(walks, values[2 + n : 2 + 2 * n], strict=True)),
                    "lr": lr,
                    "clips_per_s": int(optim_cfg["batch_size"]) / t_step,
                    "time": {"data": t_data, "fwd_bwd": t_fwd_bwd, "optim": t_optim, "step": t_step},
                    "decode_failures": failures_total,
                }
                if compile_s is not None:  # this step compiled the model: not a throughput sample
                    record["compile_s"] = compile_s
                log_handle.write(json.dumps(record) + "\n")
                log_handle.flush()
                if progress is not None:
                    progress.set_postfix(loss=f"{values[0]:.3f}", acc=f"{values[1]:.3f}", clips_s=f"{record['clips_per_s']:.2f}")
                    progress.update(1)
            if step % int(train_cfg["checkpoint_every"]) == 0 or step == total_steps:
                checkpoint(step)
            maybe_evaluate(step, last=step == total_steps)
            tick = time.perf_counter()
        if step == start_step:
            checkpoint(step)
            maybe_evaluate(step, last=True)
    finally:
        if log_handle is not None:
            log_handle.close()
        if progress is not None:
            progress.close()
    if failures_total:
        log.warning("%d clip(s) failed to decode and were replaced by other clips", failures_total)

    if ctx.main:
        from methods.crw.checkpoint import save_eval_checkpoint

        eval_path = save_eval_checkpoint(out_dir / EVAL_CHECKPOINT_NAME, _unwrap(model).state_dict(), recipe, step)
        log.info("evaluation-only checkpoint (encoder through layer3): %s", eval_path)
    if ctx.world_size > 1:
        dist.barrier()
    return ckpt_path


def _train_step(
    model: Any,
    batch: torch.Tensor,
    generator: torch.Generator,
    loss_cfg: dict[str, Any],
    amp_dtype: torch.dtype | None,
    scaler: torch.amp.GradScaler,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> tuple[torch.Tensor, dict[str, Any], float, float]:
    """One optimisation step; returns loss, walk diagnostics, the step's learning rate and its forward+backward time.

    ``model`` is the module or its compiled forward (:class:`~methods.crw.acceleration.StepForward`).
    """
    from methods.crw.loss import walk_loss

    device = batch.device
    started = time.perf_counter()
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        embeddings = model(batch)
    loss, diag = walk_loss(
        embeddings.float(),  # the walk's products of softmaxes stay in float32 under autocast
        float(loss_cfg["temperature"]),
        float(loss_cfg["edge_dropout"]),
        generator=generator,
        leak_dropout=bool(loss_cfg["leak_dropout"]),
    )
    scaler.scale(loss).backward()
    _sync(device)
    fwd_bwd = time.perf_counter() - started
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    lr = scheduler.get_last_lr()[0]
    scheduler.step()
    _sync(device)
    return loss.detach(), diag, lr, fwd_bwd


# -- benchmarks (``harness bench train`` reaches them through the trainer registry) ----------


def benchmark_loader(recipe: dict[str, Any], video: Path, clips: int = 8, rounds: int = 3) -> dict[str, Any]:
    """One worker's pipeline, per-patch reference vs batched path, side by side (:mod:`methods.crw.perf`)."""
    from methods.crw.perf import benchmark_loader as run

    return run(recipe, video, clips, rounds)


def benchmark_model_step(recipe: dict[str, Any], device: str, warmup: int = 1, steps: int = 3) -> dict[str, Any]:
    """The model step in float32 eager and as configured, side by side (:mod:`methods.crw.perf`)."""
    from methods.crw.perf import benchmark_model_step as run

    return run(recipe, device, warmup, steps)
