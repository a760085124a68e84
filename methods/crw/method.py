"""The ``crw`` method: layer3 features of a CRW checkpoint, evaluated the way the original tested.

Test-time normalisation uses the ImageNet mean/std (the :class:`~harness.method.Method` default)
although CRW trains with CIFAR-10 statistics (methods/crw/augment.py). That mismatch is the
original code's (docs/protocol.md §3.3, issue #23: "a bug … should not significantly affect
performance") and is kept so that numbers stay comparable with the released model's.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.errors import CheckpointError, HarnessError
from harness.method import Method, count_parameters
from methods.crw import FACTS
from methods.crw.checkpoint import CRWCheckpoint, load_model_state, read_checkpoint
from methods.crw.model import EVAL_LAST_STAGE, CRWNet

#: evaluation-only (encoder through layer3, ~11 MB): what `harness run` reads; --adapt needs a
#: full checkpoint.pt from `harness train` instead (layer4 and the head train too)
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / str(FACTS.weights)
EVAL_STAGES = ("conv1", "bn1", "layer1", "layer2", "layer3")


class CRWMethod(Method):
    """CRW ResNet-18 encoder (stride 8), 256-d layer3 maps; the head and layer4 are training-only."""

    name = "crw"
    facts = FACTS

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        path = Path(self.config.get("checkpoint") or DEFAULT_CHECKPOINT)
        if not path.is_file():
            if self.config.get("checkpoint"):
                raise CheckpointError(f"CRW checkpoint not found: {path}")
            raise HarnessError(
                f"no CRW checkpoint given and the default {path} does not exist: train one with "
                "`harness train --method crw --recipe crw-cpu-demo --data DIR --out-dir OUT` (OUT/crw-eval.pt "
                "is such a checkpoint) or pass --checkpoint PATH (a harness or original videowalk checkpoint)"
            )
        self.checkpoint: CRWCheckpoint = read_checkpoint(path)
        self.net = CRWNet(self.checkpoint.padding)
        if self.checkpoint.has_training_layers:
            self.net.load_state_dict(load_model_state(self.checkpoint))
        else:
            result = self.net.encoder.load_state_dict(self.checkpoint.eval_state(), strict=False)
            not_layer4 = [k for k in result.missing_keys if not k.startswith("layer4.")]
            if not_layer4 or result.unexpected_keys:  # eval_state() validated already; a guard against drift
                raise CheckpointError(f"checkpoint {path}: missing {not_layer4}, unexpected {result.unexpected_keys}")
        self.net.eval()
        self.adapt_losses: list[float] = []  # walk loss per adaptation step (adapted copies only)
        device = self.config.get("device")
        if device and device != "auto":
            self.to(torch.device(device))

    def to(self, device: torch.device) -> Method:
        self.net.to(device)
        return super().to(device)

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        self.net.eval()  # BatchNorm with running statistics, whatever happened before
        return self.net.eval_features(frames)

    def describe(self) -> dict[str, Any]:
        ckpt = self.checkpoint
        eval_params = sum(count_parameters(getattr(self.net.encoder, n)) for n in EVAL_STAGES)
        return {
            "backbone": "resnet18 (stride-8 surgery)",
            "parameters": eval_params,  # conv1 … layer3: what the features come from
            "pretraining": {"source": ckpt.source, "step": ckpt.step, "recipe": ckpt.recipe,
                            "features": EVAL_LAST_STAGE, "padding": ckpt.padding},
            "checkpoint": {"path": str(ckpt.path), "sha256": ckpt.sha256},
        }

    def adapt_settings(self, settings: dict[str, Any] | None = None) -> dict[str, Any]:
        """Every adaptation setting with defaults (some from this checkpoint's recipe) filled in.

        This is what a run should hash into its protocol: the same ``--set adapt.*`` overrides
        mean different training with checkpoints of different recipes.
        """
        from methods.crw.adapt import resolve_settings

        return resolve_settings(settings, self.checkpoint)

    def adapted(self, frames: np.ndarray, settings: dict[str, Any], seed: int) -> CRWMethod:
        """A new method whose weights were trained on this video's frames (test-time adaptation).

        ``self`` is left untouched; see :mod:`methods.crw.adapt` for the settings.
        """
        from methods.crw.adapt import adapt_network

        resolved = self.adapt_settings(settings)
        clone = copy.copy(self)
        clone.config = {**self.config, "adapt": resolved}
        clone.net = copy.deepcopy(self.net)
        clone.adapt_losses = adapt_network(clone.net, frames, resolved, seed, self.checkpoint)
        return clone
