"""The model step alone, float32 eager against the recipe's configuration (``harness bench train``).

Both settings are timed in one process on the same synthetic batch (the trainer's
:meth:`~harness.training.contract.Trainer.synthetic_batch`), through the loop's own
:func:`~harness.training.loop.optimisation_step`, so the ratio is read off one report even on a
shared machine. ``float32_eager`` is the original arithmetic; ``configured`` is what ``harness
train`` runs on this device (amp, compile, channels_last as the recipe resolves them).
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from typing import Any

import torch

from harness.device import pick_device
from harness.training.acceleration import StepForward, amp_dtype, resolve_switch, use_channels_last
from harness.training.contract import Trainer
from harness.training.loop import optimisation_step
from harness.training.state import Stateful


def _time_steps(trainer: Trainer, recipe: dict[str, Any], device: torch.device, settings: dict[str, Any], batch: Any,
                warmup: int, steps: int) -> dict[str, Any]:
    torch.manual_seed(0)
    model = trainer.build_model(recipe).to(device).train()
    if settings["channels_last"]:
        use_channels_last(model)
    optimizer, scheduler = trainer.build_optimizer(model, recipe, steps_per_epoch=1)
    amp = amp_dtype(settings["amp"], device)
    objects = Stateful(model, optimizer, scheduler, torch.amp.GradScaler("cuda", enabled=amp == torch.float16))
    forward = StepForward(model, settings["compile"])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for step in range(warmup + steps):
        generator = torch.Generator(device=device).manual_seed(step)
        started = time.perf_counter()
        forward.run_step(lambda f: optimisation_step(trainer, f, batch, generator, recipe, amp, objects, device))  # noqa: B023
        if step >= warmup:
            times.append(time.perf_counter() - started)
    clips = int(recipe["optim"]["batch_size"])
    out: dict[str, Any] = {
        "settings": {**settings, "compile": forward.compiled, "amp_dtype": str(amp).removeprefix("torch.") if amp else "float32"},
        "step_s_median": statistics.median(times),
        "clips_per_s": clips / statistics.median(times),
        "compile_s": forward.compile_s,
        "timed_steps": steps,
        "warmup_steps": warmup,
    }
    if device.type == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def benchmark_model_step(trainer: Trainer, recipe: dict[str, Any], device_name: str, warmup: int = 1,
                         steps: int = 3) -> dict[str, Any]:
    """The model step (forward, loss, backward, optimiser) in float32 eager and as configured, side by side.

    When both resolve to the same settings (the CPU) the step is measured once and reported for both.
    """
    device = pick_device(device_name)
    batch = trainer.synthetic_batch(recipe, device)
    train_cfg = recipe["train"]
    eager = {"amp": "off", "compile": False, "channels_last": False}
    configured = {
        "amp": train_cfg["amp"],
        "compile": resolve_switch(train_cfg["compile"], device, "train.compile"),
        "channels_last": resolve_switch(train_cfg["channels_last"], device, "train.channels_last"),
    }
    load_before = os.getloadavg()
    results = {"float32_eager": _time_steps(trainer, recipe, device, eager, batch, warmup, steps)}
    same = device.type != "cuda" and not configured["compile"] and not configured["channels_last"]
    results["configured"] = copy.deepcopy(results["float32_eager"]) if same else _time_steps(
        trainer, recipe, device, configured, batch, warmup, steps
    )
    return {
        "what": "model step alone (forward + loss + backward + optimiser) on a synthetic batch of the recipe's shapes",
        "device": str(device),
        "batch_shape": list(batch.shape) if isinstance(batch, torch.Tensor) else None,
        **results,
        "configured_same_as_float32_eager": same,
        "speedup_configured_vs_float32_eager": results["configured"]["clips_per_s"] / results["float32_eager"]["clips_per_s"],
        "load_average_1m_before_after": [load_before[0], os.getloadavg()[0]],
        "torch_threads": torch.get_num_threads(),
    }
