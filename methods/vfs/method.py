"""The ``vfs`` method: layer3 ("res4") features at stride 8 of a VFS trunk, as the original evaluates.

Frames are normalised with the ImageNet mean/std (RGB), the statistics VFS trains with too. With
``--checkpoint`` the weights come from a harness VFS checkpoint or either layout of the authors'
release (methods/vfs/checkpoint.py). Without one the encoder keeps a seeded random init
(``--set method.arch=resnet50``, ``method.seed``): the architecture's floor, announced on stderr and
recorded as such, never mistaken for a trained VFS.
"""

from __future__ import annotations

import sys
from typing import Any

import torch

from harness.errors import HarnessError
from harness.method import Method, count_parameters
from methods.vfs import FACTS
from methods.vfs.checkpoint import VFSCheckpoint, read_checkpoint
from methods.vfs.model import ARCHS, EVAL_DIM, EvalEncoder

RANDOM_SEED = 0


class VFSMethod(Method):
    """VFS ResNet encoder with the evaluation stride surgery; the heads and layer4 are training-only."""

    name = "vfs"
    facts = FACTS

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.checkpoint: VFSCheckpoint | None = None
        self.seed: int | None = None
        path = self.config.get("checkpoint")
        if path:
            if "arch" in self.config or "seed" in self.config:
                raise HarnessError("method.arch and method.seed choose a random init; with --checkpoint the "
                                   "checkpoint decides the architecture, so leave them out")
            self.checkpoint = read_checkpoint(path)
            self.arch = self.checkpoint.arch
            self.encoder = EvalEncoder(self.arch)
            self.encoder.load_state_dict(self.checkpoint.eval_state)
        else:
            self.arch = self.config.get("arch", "resnet18")
            if self.arch not in ARCHS:
                raise HarnessError(f"method.arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
            seed = self.config.get("seed", RANDOM_SEED)
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise HarnessError(f"method.seed must be a whole number, got {seed!r}")
            self.seed = seed
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.encoder = EvalEncoder(self.arch)
            print(f"vfs: no --checkpoint given, so these are RANDOM-INIT {self.arch} features (seed {seed}), not a "
                  "trained VFS; pass --checkpoint PATH (a VFS training checkpoint or the authors' released weights)",
                  file=sys.stderr, flush=True)
        self.dim = EVAL_DIM[self.arch]
        self.encoder.eval()
        device = self.config.get("device")
        if device and device != "auto":
            self.to(torch.device(device))

    def to(self, device: torch.device) -> Method:
        self.encoder.to(device)
        return super().to(device)

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        self.encoder.eval()  # BatchNorm with running statistics, whatever happened before
        return self.encoder(frames)

    def describe(self) -> dict[str, Any]:
        backbone = f"{self.arch} (VFS eval strides 1,2,1,1: layer3 at stride 8)"
        params = count_parameters(self.encoder)
        ckpt = self.checkpoint
        if ckpt is None:
            return {"backbone": backbone, "parameters": params,
                    "pretraining": f"none (random init, seed {self.seed})", "checkpoint": None}
        return {
            "backbone": backbone,
            "parameters": params,
            "pretraining": {"source": ckpt.source, "step": ckpt.step, "recipe": ckpt.recipe, "features": "layer3"},
            "checkpoint": {"path": str(ckpt.path), "sha256": ckpt.sha256},
        }
