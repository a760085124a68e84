"""CRW checkpoints: the harness format, an eval-only saver, and an importer for the original release.

Harness checkpoints (written by ``harness train``) are dicts::

    {"model": CRWNet.state_dict(),   # "encoder.<resnet key>", "head.weight", "head.bias"
     "recipe": {...}, "step": int,   # recipe metadata: what was trained, how
     "optimizer": ..., "scheduler": ..., "rng": ...}   # optional, for resuming

Everything in them must load with ``torch.load(weights_only=True)`` (tensors, numbers, strings,
lists, dicts). :func:`save_eval_checkpoint` writes the same layout with only the encoder up to
layer3 (what evaluation reads), which is small enough to ship.

The original authors' ``pretrained.pth`` / ``checkpoint.pth`` hold ``{"model", "args"
(argparse.Namespace), "optimizer", "epoch", ...}`` with the encoder under ``encoder.model.``
(the ``From3D`` wrapper) and the head under ``selfsim_fc.0.``. Early versions of their ResNet
implemented reflect padding by wrapping each padded conv in ``Sequential(ReflectionPad2d, Conv2d)``,
so the weights of the stem conv and of both convs of every basic block sit at ``conv1.1.weight`` /
``conv2.1.weight``; 1x1 downsample convs have no padding, were never wrapped and keep
``downsample.0.weight``. :func:`import_original_state` maps all of that to CRWNet names. Those
files are unpickled with only ``argparse.Namespace`` allow-listed — never arbitrary objects.

Evaluation needs the encoder through layer3 only; ``layer4.*`` and ``head.*`` are training-only
and skipped by name. Any other missing, unexpected or mis-shaped key raises
:class:`~harness.errors.CheckpointError` listing the keys, unlike the original ``partial_load``,
which silently skipped whatever did not match.
"""

from __future__ import annotations

import argparse
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.errors import CheckpointError
from harness.io import atomic_path, plain_json, sha256_file
from harness.safe_load import load_weights_only

TRAINING_ONLY_PREFIXES = ("encoder.layer4.", "head.")
ORIGINAL_ENCODER_PREFIX = "encoder.model."
ORIGINAL_HEAD_PREFIX = "selfsim_fc."
_LEGACY_PADDED_CONV = re.compile(r"(^|\.)(conv[12])\.1\.weight$")


@dataclass
class CRWCheckpoint:
    """A checkpoint read from disk, its weights already in CRWNet naming."""

    path: Path
    sha256: str
    source: str  # "harness" or "original"
    model_state: dict[str, torch.Tensor]
    recipe: dict[str, Any] = field(default_factory=dict)
    step: int | None = None

    @property
    def padding(self) -> str:
        """Conv padding the weights were trained with (``reflect`` unless the recipe says zeros).

        Harness recipes say ``model.padding``; the original's args say ``model_type``.
        """
        model = self.recipe.get("model")
        if isinstance(model, dict) and model.get("padding") in ("reflect", "zeros"):
            return str(model["padding"])
        return "zeros" if self.recipe.get("model_type") == "scratch_zeropad" else "reflect"

    @property
    def has_training_layers(self) -> bool:
        """Whether layer4 and the head are there (needed to keep training, e.g. to adapt)."""
        return any(k.startswith("head.") for k in self.model_state) and any(
            k.startswith("encoder.layer4.") for k in self.model_state
        )

    def eval_state(self) -> dict[str, torch.Tensor]:
        """Encoder weights through layer3, keyed as in :class:`methods.crw.model.Encoder`."""
        return eval_state_from_model_state(self.model_state, self.path)


def _torch_load(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return load_weights_only(path, "checkpoint", allowed=[argparse.Namespace])


def _tensor_dict(value: Any, path: Path, what: str) -> dict[str, torch.Tensor]:
    if not isinstance(value, dict) or not all(isinstance(v, torch.Tensor) for v in value.values()):
        raise CheckpointError(f"checkpoint {path}: {what} is not a state dict of tensors")
    return {str(k): v for k, v in value.items()}


def is_original_state(state: dict[str, Any]) -> bool:
    """Whether keys follow the original code's naming (optionally behind nn.DataParallel's ``module.``)."""
    keys = [k.removeprefix("module.") for k in state]
    return any(k.startswith((ORIGINAL_ENCODER_PREFIX, ORIGINAL_HEAD_PREFIX)) for k in keys)


def import_original_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a state dict of the original code to CRWNet keys (see the module docstring).

    ``module.`` (nn.DataParallel) is stripped; ``selfsim_fc.0.`` becomes ``head.`` when the head
    is the single Linear of ``--head-depth 0``; deeper heads keep their index (``head.2.weight``)
    and therefore fail to load into CRWNet for training but are skipped for evaluation.
    """
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    single_linear_head = {k for k in state if k.startswith(ORIGINAL_HEAD_PREFIX)} <= {
        "selfsim_fc.0.weight",
        "selfsim_fc.0.bias",
    }
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = key
        if key.startswith(ORIGINAL_ENCODER_PREFIX):
            new = "encoder." + _LEGACY_PADDED_CONV.sub(r"\1\2.weight", key[len(ORIGINAL_ENCODER_PREFIX) :])
        elif key.startswith(ORIGINAL_HEAD_PREFIX):
            rest = key[len(ORIGINAL_HEAD_PREFIX) :]
            new = "head." + (rest[len("0.") :] if single_linear_head else rest)
        if new in out:
            raise CheckpointError(f"original checkpoint maps two keys to {new!r} (legacy and current names both present)")
        out[new] = value
    return out


def read_checkpoint(path: str | Path) -> CRWCheckpoint:
    """Read a harness or original-release CRW checkpoint (weights only; nothing else unpickled)."""
    path = Path(path)
    payload = _torch_load(path)
    sha = sha256_file(path)
    if isinstance(payload, dict) and "model" in payload:
        state = _tensor_dict(payload["model"], path, "'model'")
        meta = payload
    elif isinstance(payload, dict) and payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
        state, meta = _tensor_dict(payload, path, "the file"), {}
    else:
        raise CheckpointError(f"checkpoint {path} holds neither a state dict nor a dict with a 'model' state dict")

    if "args" in meta or is_original_state(state):
        args = meta.get("args")
        recipe = plain_json(vars(args)) if isinstance(args, argparse.Namespace) else {}
        recipe["source"] = "videowalk (original release)"
        epoch = meta.get("epoch")
        return CRWCheckpoint(
            path, sha, "original", import_original_state(state), recipe, int(epoch) if isinstance(epoch, int) else None
        )
    recipe = meta.get("recipe")
    step = meta.get("step")
    return CRWCheckpoint(
        path, sha, "harness", state, plain_json(recipe) if isinstance(recipe, dict) else {}, step if isinstance(step, int) else None
    )


@functools.cache
def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Key → shape of a CRWNet state dict (padding mode does not change the keys)."""
    from methods.crw.model import CRWNet

    return {k: tuple(v.shape) for k, v in CRWNet().state_dict().items()}


def _key_list(keys: set[str], limit: int = 8) -> str:
    ordered = sorted(keys)
    shown = ", ".join(ordered[:limit])
    return shown + (f", … ({len(ordered)} in all)" if len(ordered) > limit else "")


def check_state(state: dict[str, torch.Tensor], path: Path, ignore: tuple[str, ...] = ()) -> None:
    """Raise CheckpointError naming every missing, unexpected or mis-shaped key (ignoring ``ignore`` prefixes)."""
    expected = expected_shapes()
    given = {k for k in state if not k.startswith(ignore)}
    wanted = {k for k in expected if not k.startswith(ignore)}
    problems = []
    if wanted - given:
        problems.append(f"missing keys: {_key_list(wanted - given)}")
    if given - wanted:
        problems.append(f"unexpected keys: {_key_list(given - wanted)}")
    shapes = {k for k in given & wanted if tuple(state[k].shape) != expected[k]}
    if shapes:
        details = "; ".join(f"{k} {tuple(state[k].shape)} vs {expected[k]}" for k in sorted(shapes)[:5])
        problems.append(f"shape mismatch (checkpoint vs model): {details}")
    if problems:
        raise CheckpointError(
            f"checkpoint {path} does not fit the CRW ResNet-18 (stride 8): " + "; ".join(problems)
        )


def eval_state_from_model_state(model_state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Validate a CRWNet state for evaluation and return its encoder through layer3 (``encoder.`` stripped)."""
    check_state(model_state, path, ignore=TRAINING_ONLY_PREFIXES)
    return {
        k[len("encoder.") :]: v for k, v in model_state.items() if not k.startswith(TRAINING_ONLY_PREFIXES)
    }


def load_eval_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Encoder weights through layer3 of any supported CRW checkpoint, validated key by key."""
    return read_checkpoint(path).eval_state()


def load_model_state(checkpoint: CRWCheckpoint) -> dict[str, torch.Tensor]:
    """The full CRWNet state (layer4 and head included), for training on from a checkpoint."""
    if not checkpoint.has_training_layers:
        raise CheckpointError(
            f"checkpoint {checkpoint.path} is evaluation-only (no layer4/head weights); training on from it "
            "(e.g. test-time adaptation, --adapt) needs a full training checkpoint: make one with "
            "`harness train --method crw --recipe crw-cpu-demo --data VIDEOS --out-dir DIR "
            "--max-steps 50` and pass --checkpoint DIR/checkpoint.pt"
        )
    check_state(checkpoint.model_state, checkpoint.path)
    return checkpoint.model_state


def save_eval_checkpoint(
    path: str | Path, model_state: dict[str, torch.Tensor], recipe: dict[str, Any], step: int
) -> Path:
    """Write the evaluation-only checkpoint (encoder through layer3 + recipe metadata) atomically.

    ``model_state`` is a CRWNet state dict (``encoder.*``, ``head.*``); layer4 and the head are
    left out, which shrinks a ResNet-18 checkpoint from ~45 MB to ~11 MB.
    """
    path = Path(path)
    kept = {
        k: v.detach().to("cpu", copy=True).contiguous()
        for k, v in model_state.items()
        if not k.startswith(TRAINING_ONLY_PREFIXES)
    }
    payload = {"model": kept, "recipe": plain_json(dict(recipe)), "step": int(step), "eval_only": True}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path
