"""VFS checkpoints: the harness format, its evaluation-only saver, and the authors' two layouts.

Harness checkpoints are dicts that load with ``torch.load(weights_only=True)``::

    {"model": VFSNet.state_dict(),   # "encoder.<torchvision key>", "projector.*", "predictor.*"
     "recipe": {...}, "step": int, "arch": "resnet18" | "resnet50"}

:func:`save_eval_checkpoint` keeps only ``encoder.*`` through layer3 (what evaluation reads) and
marks the file ``eval_only``. Two layouts of the original release are read too:

- the converted backbone (``tools/convert_weights/convert_to_pretrained.py``, what their test
  command loads): torchvision keys (``conv1.weight``, ``layer1.0.bn1.running_mean``), at the top
  level or under ``state_dict``;
- the raw mmaction2 training checkpoint: ``backbone.`` keys in mmcv ``ConvModule`` naming
  (``conv1.conv.weight``, ``layer1.0.conv1.bn.weight``, ``layer2.0.downsample.conv.weight``) under
  ``state_dict``, renamed here as that script does; the ``img_head.`` weights are skipped.

Whatever the layout, evaluation needs the trunk through layer3; a missing, unexpected or mis-shaped
key raises :class:`~harness.errors.CheckpointError` naming the keys.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.errors import CheckpointError
from harness.io import atomic_path, plain_json, sha256_file
from harness.safe_load import load_weights_only
from methods.vfs.model import ARCHS, EvalEncoder, arch_of

_MMCV_CONV = re.compile(r"^(?P<block>.*?)(?P<conv>conv\d)\.(?P<part>conv|bn)\.(?P<tail>[^.]+)$")
_MMCV_DOWNSAMPLE = re.compile(r"^(?P<block>.*\.downsample)\.(?P<part>conv|bn)\.(?P<tail>[^.]+)$")


@dataclass
class VFSCheckpoint:
    """A checkpoint read from disk: its evaluation weights in :class:`~methods.vfs.model.EvalEncoder` naming."""

    path: Path
    sha256: str
    source: str  # "harness", "original (converted backbone)" or "original (mmaction2 checkpoint)"
    arch: str
    eval_state: dict[str, torch.Tensor]
    recipe: dict[str, Any] = field(default_factory=dict)
    step: int | None = None


def mmcv_to_torchvision(key: str) -> str:
    """One backbone key from mmcv ``ConvModule`` naming to torchvision's (``backbone.`` already stripped)."""
    if match := _MMCV_DOWNSAMPLE.match(key):
        index = "0" if match["part"] == "conv" else "1"
        return f"{match['block']}.{index}.{match['tail']}"
    if match := _MMCV_CONV.match(key):
        name = match["conv"] if match["part"] == "conv" else match["conv"].replace("conv", "bn")
        return f"{match['block']}{name}.{match['tail']}"
    return key


@functools.cache
def expected_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    """Key → shape of an evaluation encoder's state dict."""
    return {k: tuple(v.shape) for k, v in EvalEncoder(arch).state_dict().items()}


def _check(state: dict[str, torch.Tensor], arch: str, path: Path) -> dict[str, torch.Tensor]:
    """The trunk through layer3 of ``state`` (layer4 dropped), every key and shape checked."""
    state = {k: v for k, v in state.items() if not k.startswith("layer4.")}
    expected = expected_shapes(arch)
    problems = []
    if missing := sorted(set(expected) - set(state)):
        problems.append(f"missing keys: {', '.join(missing[:8])}{' …' if len(missing) > 8 else ''}")
    if unexpected := sorted(set(state) - set(expected)):
        problems.append(f"unexpected keys: {', '.join(unexpected[:8])}{' …' if len(unexpected) > 8 else ''}")
    shapes = [f"{k} {tuple(state[k].shape)} vs {expected[k]}" for k in sorted(set(state) & set(expected))
              if tuple(state[k].shape) != expected[k]]
    if shapes:
        problems.append(f"shape mismatch (checkpoint vs model): {'; '.join(shapes[:5])}")
    if problems:
        raise CheckpointError(f"checkpoint {path} does not fit the VFS {arch} encoder: " + "; ".join(problems))
    return state


def _tensors(value: Any, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(value, dict) or not value or not all(isinstance(v, torch.Tensor) for v in value.values()):
        raise CheckpointError(f"checkpoint {path} holds no state dict of tensors (under 'model', 'state_dict' "
                              "or at the top level)")
    return {str(k): v for k, v in value.items()}


def read_checkpoint(path: str | Path) -> VFSCheckpoint:
    """Read a harness or original-release VFS checkpoint (weights only; nothing else unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"VFS checkpoint not found: {path}")
    payload = load_weights_only(path, "checkpoint")
    sha = sha256_file(path)
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint {path} holds neither a state dict nor a dict with one")
    if "model" in payload:
        model = _tensors(payload["model"], path)
        trunk = {k[len("encoder."):]: v for k, v in model.items() if k.startswith("encoder.")}
        arch = payload.get("arch") if payload.get("arch") in ARCHS else arch_of(trunk)
        recipe = payload.get("recipe")
        step = payload.get("step")
        return VFSCheckpoint(path, sha, "harness", arch, _check(trunk, arch, path),
                             plain_json(recipe) if isinstance(recipe, dict) else {}, step if isinstance(step, int) else None)
    state = _tensors(payload.get("state_dict", payload), path)
    if any(k.startswith("backbone.") for k in state):
        trunk = {mmcv_to_torchvision(k[len("backbone."):]): v for k, v in state.items() if k.startswith("backbone.")}
        source = "original (mmaction2 checkpoint)"
    else:
        trunk, source = state, "original (converted backbone)"
    arch = arch_of(trunk)
    return VFSCheckpoint(path, sha, source, arch, _check(trunk, arch, path), {"source": "xvjiarui/VFS release"})


def save_eval_checkpoint(
    path: str | Path, model_state: dict[str, torch.Tensor], recipe: dict[str, Any], step: int
) -> Path:
    """Write the evaluation-only checkpoint (trunk through layer3 + recipe metadata) atomically.

    ``model_state`` is a :class:`~methods.vfs.model.VFSNet` state dict; layer4, the projector and
    the predictor are left out (what evaluation never reads).
    """
    path = Path(path)
    kept = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model_state.items()
            if k.startswith("encoder.") and not k.startswith("encoder.layer4.")}
    if not kept:
        raise CheckpointError("save_eval_checkpoint: the model state has no 'encoder.' keys (not a VFSNet state dict)")
    arch = arch_of(kept)
    _check({k[len("encoder."):]: v for k, v in kept.items()}, arch, path)
    payload = {"model": kept, "recipe": plain_json(dict(recipe)), "step": int(step), "arch": arch, "eval_only": True}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path
