"""The ``toynet`` network and the method class the harness evaluates it through.

A method turns uint8 frames into feature maps at its stride (:class:`harness.method.Method`: the base class
normalises the frames with the facts' mean/std, batches them, checks the output and L2-normalises it). The
evaluation checkpoint ``harness train`` writes is a plain dict of tensors and numbers, read with
``torch.load(..., weights_only=True)``: loading it runs no code from the file.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from crwbench_example.method import FACTS
from harness.errors import HarnessError
from harness.io import sha256_file
from harness.method import Method, count_parameters

#: what ``export_eval`` writes under "format", checked on load
CHECKPOINT_FORMAT = "toynet-eval/1"


class ToyNet(nn.Module):
    """Three stride-2 3x3 convolutions: ``[B, 3, H, W]`` → ``[B, width, H/8, W/8]``."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.width = width
        self.layers = nn.Sequential(
            nn.Conv2d(3, width // 2, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width // 2, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.layers(frames)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """An evaluation checkpoint written by :meth:`crwbench_example.trainer.ToyTrainer.export_eval`."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError) as err:
        raise HarnessError(f"--checkpoint {path}: cannot read it ({err})") from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise HarnessError(f"--checkpoint {path} is not a toynet evaluation checkpoint (written by `harness train "
                           "--method toynet`)")
    return payload


class ToyNetMethod(Method):
    """``toynet`` features; without ``--checkpoint``, a random init from ``method.seed`` (default 0)."""

    name = "toynet"
    facts = FACTS

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.checkpoint = self.config.get("checkpoint")
        if self.checkpoint:
            payload = read_checkpoint(self.checkpoint)
            self.net = ToyNet(int(payload["width"]))
            self.net.load_state_dict(payload["model"])
            self.pretraining: Any = {"step": int(payload["step"]), "recipe": payload["recipe"]}
        else:
            seed = self.config.get("seed", 0)
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise HarnessError(f"method.seed must be a whole number, got {seed!r}")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.net = ToyNet()
            self.pretraining = f"none (random init, seed {seed})"
            print(f"toynet: no --checkpoint, so these are random-init features (seed {seed})", file=sys.stderr)
        self.dim = self.net.width
        self.net.eval()

    def to(self, device: torch.device) -> Method:
        self.net.to(device)
        return super().to(device)

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        return self.net(frames)

    def describe(self) -> dict[str, Any]:
        checkpoint = {"path": str(self.checkpoint), "sha256": sha256_file(self.checkpoint)} if self.checkpoint else None
        return {"backbone": f"toynet (3 convs, width {self.net.width})", "parameters": count_parameters(self.net),
                "pretraining": self.pretraining, "checkpoint": checkpoint}
