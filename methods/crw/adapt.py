"""Test-time adaptation: a few walk-loss steps on the test video's own frames before extracting features.

The paper reports a gain from training on each test video before propagating; the code was never
released (issue #15), so this is our reading of it. For one video:

1. copy the network (the caller's weights are never touched, so nothing leaks between videos);
2. sample ``batch`` clips of ``clip_len`` frames, ``frame_gap`` apart, from the video, cut them into
   jittered patch grids with the training augmentation (:class:`methods.crw.augment.ClipAugment`)
   at the checkpoint recipe's resolution, and take ``steps`` Adam steps (fresh optimizer state) on
   the walk loss. Learning rate, clip length, temperature and edge dropout default to the values
   in the checkpoint's recipe, so adaptation continues the training the weights came from;
3. hand the copy back in eval mode.

Only frames are read: first-frame labels never reach this module. Clip sampling, patch jitter
and edge dropout all draw from generators seeded with the run's seed, so two runs with the same
seed adapt to bit-identical weights on CPU (CUDA kernels may differ in the last bits).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch

from harness.errors import HarnessError
from methods.crw.checkpoint import CRWCheckpoint, load_model_state
from methods.crw.loss import walk_loss
from methods.crw.model import CRWNet

DEFAULTS: dict[str, Any] = {
    "steps": 10,  # Adam steps per video; 0 copies the weights unchanged
    "batch": 2,  # clips per step
    "frame_gap": 1,  # frames between consecutive clip frames
    "freeze_bn": False,  # True: BatchNorm keeps its running statistics while adapting
    # None = the value the checkpoint was trained with (its recipe), else the released recipe's.
    "lr": None,
    "clip_len": None,  # at least 3
    "temperature": None,
    "edge_dropout": None,
    "leak_dropout": None,
}
RELEASED = {"lr": 1e-4, "clip_len": 4, "temperature": 0.05, "edge_dropout": 0.1, "leak_dropout": False}
RECIPE_NAMES = {
    "lr": ("lr",),
    "clip_len": ("clip_len",),
    "temperature": ("temperature", "temp"),
    "edge_dropout": ("edge_dropout", "dropout"),
    "leak_dropout": ("leak_dropout",),
}


def _recipe_value(recipe: dict[str, Any], names: tuple[str, ...]) -> Any:
    """A recipe value found at the top level or one section down (``loss.temperature``)."""
    for name in names:
        if name in recipe:
            return recipe[name]
    for section in recipe.values():
        if isinstance(section, dict):
            for name in names:
                if name in section:
                    return section[name]
    return None


def recipe_augment(recipe: dict[str, Any]) -> dict[str, Any]:
    """The augmentation settings the checkpoint was trained with (empty: the paper's)."""
    augment = recipe.get("augment")
    return dict(augment) if isinstance(augment, dict) else {}


def resolve_settings(settings: dict[str, Any] | None, checkpoint: CRWCheckpoint) -> dict[str, Any]:
    """Fill defaults (from the checkpoint's recipe where noted), validate, and return every setting.

    The result is what should be hashed into the protocol: it includes the augmentation actually
    used, so two runs that adapt differently never share a hash.
    """
    settings = dict(settings or {})
    settings.pop("enabled", None)
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise HarnessError(f"unknown adapt setting(s) {unknown}; known: {sorted(DEFAULTS)}")
    out = {**DEFAULTS, **settings}
    for key, names in RECIPE_NAMES.items():
        if out[key] is None:
            value = _recipe_value(checkpoint.recipe, names)
            out[key] = RELEASED[key] if value is None else value
    try:
        for key in ("steps", "clip_len", "batch", "frame_gap"):
            out[key] = int(out[key])
        for key in ("lr", "temperature", "edge_dropout"):
            out[key] = float(out[key])
        for key in ("freeze_bn", "leak_dropout"):
            if not isinstance(out[key], bool):
                raise ValueError(f"{key} must be true or false")
    except (TypeError, ValueError) as err:
        raise HarnessError(f"invalid adapt setting: {err}") from err
    checks = {
        "steps": out["steps"] >= 0,
        "lr": out["lr"] > 0,
        "clip_len": out["clip_len"] >= 3,
        "batch": out["batch"] >= 1,
        "frame_gap": out["frame_gap"] >= 1,
        "temperature": out["temperature"] > 0,
        "edge_dropout": 0 <= out["edge_dropout"] < 1,
    }
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        raise HarnessError(
            f"invalid adapt setting(s): {', '.join(f'{k}={out[k]!r}' for k in bad)} "
            "(steps >= 0, lr > 0, clip_len >= 3, batch >= 1, frame_gap >= 1, temperature > 0, 0 <= edge_dropout < 1)"
        )
    out["augment"] = recipe_augment(checkpoint.recipe)
    return out


def sample_clips(num_frames: int, clip_len: int, gap: int, count: int, generator: torch.Generator) -> list[np.ndarray]:
    """``count`` random clips: frame indices ``start, start+gap, …`` inside ``[0, num_frames)``.

    Short videos get a smaller gap, then a shorter clip (never under 3 frames).
    """
    clip_len = min(clip_len, num_frames)
    gap = max(1, min(gap, (num_frames - 1) // max(clip_len - 1, 1)))
    span = (clip_len - 1) * gap + 1
    starts = torch.randint(num_frames - span + 1, (count,), generator=generator)
    return [int(s) + gap * np.arange(clip_len) for s in starts]


def sample_batch(
    frames: np.ndarray, settings: dict[str, Any], generator: torch.Generator
) -> torch.Tensor:
    """One batch of augmented clips ``[B, T, N, 3, P, P]`` from the video's frames (CPU)."""
    from methods.crw.augment import ClipAugment

    augment = ClipAugment(settings["augment"])
    clips = sample_clips(len(frames), settings["clip_len"], settings["frame_gap"], settings["batch"], generator)
    return torch.stack([augment(frames[idx], generator) for idx in clips])


def _set_train_mode(net: CRWNet, freeze_bn: bool) -> None:
    net.train()
    if freeze_bn:
        for module in net.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


def adapt_network(
    net: CRWNet, frames: np.ndarray, settings: dict[str, Any], seed: int, checkpoint: CRWCheckpoint | None = None
) -> list[float]:
    """Train ``net`` in place on clips of ``frames`` ``[T, H, W, 3]`` uint8; returns the loss per step.

    ``settings`` must come from :func:`resolve_settings`. ``checkpoint``, when given, is checked
    to hold layer4 and the head, which the walk loss trains through.
    """
    if checkpoint is not None:
        load_model_state(checkpoint)  # raises if the checkpoint is evaluation-only
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise HarnessError(f"adaptation expects uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}")
    if len(frames) < 3:
        print(f"adapt: video of {len(frames)} frames is too short for a walk; not adapted", file=sys.stderr)
        return []
    device = next(net.parameters()).device
    sample_gen = torch.Generator().manual_seed(seed)
    drop_gen = torch.Generator(device=device).manual_seed(seed + 1)
    optimizer = torch.optim.Adam(net.parameters(), lr=settings["lr"])
    losses: list[float] = []
    _set_train_mode(net, settings["freeze_bn"])
    for _ in range(settings["steps"]):
        patches = sample_batch(frames, settings, sample_gen).to(device, non_blocking=True)
        loss, _ = walk_loss(
            net.embed_nodes(patches),
            settings["temperature"],
            edge_dropout=settings["edge_dropout"],
            generator=drop_gen,
            leak_dropout=settings["leak_dropout"],
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    net.eval()
    return losses
