"""The ``toynet`` trainer: what ``harness train --method toynet`` needs from the method, and nothing else.

The harness's loop (:mod:`harness.training.loop`) owns the device, seeding, DDP, checkpoints, exact
``--resume``, the ``metrics.jsonl`` log, evaluation while training and ``curve.svg``; a trainer supplies
its recipe model and four methods (:mod:`harness.training.contract`).

The objective is a two-frame cycle walk, CRW's objective at its shortest: the cells of frame ``t`` walk to
frame ``t + gap`` and back along the softmax of their feature affinities, and each walker should come home.
Training data: every folder of ``.png``/``.jpg`` frames under ``--data`` is one video. Resume stays exact
because a step's samples depend only on ``(seed, epoch, position)`` (:class:`PairSampler`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import Field

from crwbench_example.method import FACTS
from crwbench_example.network import CHECKPOINT_FORMAT, ToyNet
from harness.declared import Declared
from harness.errors import DataError
from harness.training.contract import Diagnostics, Trainer
from harness.training.data import TrainData
from harness.training.recipe_model import Recipe
from harness.training.rng import mix_seed

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")


# -- the recipe: the loop's keys (name, seed, optim, train) come from Recipe; these are toynet's own ---------
class PairData(Declared):
    size: int = Field(64, ge=8, description="frames are resized to size x size")
    gap: int = Field(1, ge=1, description="frames between the two frames of a pair")
    workers: int = Field(0, ge=0, description="loader worker processes")


class ToyNetModel(Declared):
    width: int = Field(32, ge=2, description="channels of the features")


class WalkLoss(Declared):
    temperature: float = Field(0.07, gt=0, description="softmax temperature of the affinities")


class ToyRecipe(Recipe):
    data: PairData
    model: ToyNetModel
    loss: WalkLoss


# -- the data: videos, a sampler of (video, seed) keys, and a dataset reading one pair per key -----------
@dataclass(frozen=True)
class FrameFolder:
    """One training video, a folder of frames; ``path``, ``size`` and ``sha256`` are its provenance."""

    path: Path
    frames: tuple[Path, ...]
    size: int
    sha256: str


def index_videos(roots: list[Path], gap: int) -> list[FrameFolder]:
    """Every folder under ``roots`` holding more than ``gap`` frames, in name order."""
    videos = []
    for root in roots:
        for folder in sorted({p.parent for p in Path(root).rglob("*") if p.suffix.lower() in FRAME_SUFFIXES}):
            frames = tuple(sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES))
            if len(frames) > gap:
                digest = hashlib.sha256()
                for frame in frames:
                    digest.update(frame.read_bytes())
                videos.append(FrameFolder(folder, frames, sum(f.stat().st_size for f in frames), digest.hexdigest()))
    if not videos:
        raise DataError(f"no folder with more than {gap} frames under {', '.join(map(str, roots))}")
    return videos


class PairSampler(torch.utils.data.Sampler):
    """Batches of ``(video, seed)`` keys: epoch ``e`` shuffles the videos with a generator seeded from
    ``(seed, e)``, and each rank takes its own share; so step ``s``'s keys do not depend on where it started."""

    def __init__(self, videos: int, batch: int, seed: int, rank: int, world: int, start: int = 0,
                 total: int | None = None) -> None:
        self.videos, self.batch, self.seed, self.rank, self.world = videos, batch, seed, rank, world
        self.start, self.total = start, total
        self.steps_per_epoch = max(1, videos // world // batch)

    def batch_at(self, step: int) -> list[tuple[int, int]]:
        epoch, i = divmod(step, self.steps_per_epoch)
        order = torch.randperm(self.videos, generator=torch.Generator().manual_seed(mix_seed(self.seed, epoch)))
        mine = order.tolist()[self.rank :: self.world]
        picked = [mine[(i * self.batch + j) % len(mine)] for j in range(self.batch)]
        return [(video, mix_seed(self.seed, epoch, i, j)) for j, video in enumerate(picked)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start
        while self.total is None or step < self.total:
            yield self.batch_at(step)
            step += 1

    def __len__(self) -> int:
        return (self.total or self.steps_per_epoch) - self.start


class PairDataset(torch.utils.data.Dataset):
    """``key → [2, 3, size, size]``: two frames ``gap`` apart, normalised, flipped together half of the time."""

    def __init__(self, videos: list[FrameFolder], recipe: dict[str, Any]) -> None:
        self.videos, self.size, self.gap = videos, recipe["data"]["size"], recipe["data"]["gap"]
        self.mean = torch.tensor(FACTS.mean).view(3, 1, 1)
        self.std = torch.tensor(FACTS.std).view(3, 1, 1)

    def __getitem__(self, key: tuple[int, int]) -> torch.Tensor:  # type: ignore[override]
        video, seed = self.videos[key[0]], key[1]
        generator = torch.Generator().manual_seed(seed)
        t = int(torch.randint(len(video.frames) - self.gap, (), generator=generator))
        pair = torch.stack([self._read(video.frames[t]), self._read(video.frames[t + self.gap])])
        return pair.flip(-1) if bool(torch.rand((), generator=generator) < 0.5) else pair

    def _read(self, path: Path) -> torch.Tensor:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB").resize((self.size, self.size), Image.BILINEAR))
        return (torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255 - self.mean) / self.std

    def __len__(self) -> int:
        return len(self.videos)


def collate(pairs: list[torch.Tensor]) -> tuple[torch.Tensor, int]:
    """``[B, 2, 3, S, S]`` and the number of samples that failed to read (none are replaced here)."""
    return torch.stack(pairs), 0


# -- the trainer --------------------------------------------------------------------------------------
class ToyTrainer(Trainer):
    """Trains :class:`~crwbench_example.network.ToyNet` with a two-frame cycle walk."""

    method = "toynet"
    recipe_model = ToyRecipe
    recipe_dir = Path(__file__).with_name("recipes")
    curve_metric = "walk_acc"
    curve_label = "cycle walk accuracy"

    def build_model(self, recipe: dict[str, Any]) -> torch.nn.Module:
        return ToyNet(recipe["model"]["width"])

    def build_data(self, recipe: dict[str, Any], roots: list[Path], *, device: torch.device, rank: int,
                   world_size: int, local_batch: int) -> TrainData:
        videos = index_videos(roots, recipe["data"]["gap"])

        def sampler(start: int = 0, total: int | None = None) -> PairSampler:
            return PairSampler(len(videos), local_batch, recipe["seed"], rank, world_size, start, total)

        return TrainData(PairDataset(videos, recipe), sampler, collate, sampler().steps_per_epoch, videos,
                         recipe["data"]["workers"])

    def training_step(self, forward: Callable[..., Any], batch: torch.Tensor, generator: torch.Generator,
                      recipe: dict[str, Any]) -> tuple[torch.Tensor, Diagnostics]:
        pairs = batch.shape[0]
        features = forward(batch.flatten(0, 1)).float()  # [2B, C, h, w]
        features = F.normalize(features, dim=1).flatten(2).view(pairs, 2, features.shape[1], -1)
        affinity = torch.einsum("bcn,bcm->bnm", features[:, 0], features[:, 1]) / recipe["loss"]["temperature"]
        there = affinity.softmax(dim=-1)  # frame t -> frame t + gap
        back = affinity.transpose(1, 2).softmax(dim=-1)  # and back
        home = torch.bmm(there, back)  # [B, N, N]: where each walker of frame t ends up
        target = torch.arange(home.shape[-1], device=home.device).expand(pairs, -1)
        loss = F.nll_loss(home.clamp_min(1e-20).log().flatten(0, 1), target.flatten())
        accuracy = (home.argmax(dim=-1) == target).float().mean()
        return loss, {"walk_acc": float(accuracy)}

    def chance(self, recipe: dict[str, Any]) -> float | None:
        cells = -(-recipe["data"]["size"] // FACTS.stride)
        return 1.0 / cells**2

    def export_eval(self, model_state: dict[str, torch.Tensor], recipe: dict[str, Any], step: int,
                    path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"format": CHECKPOINT_FORMAT, "model": model_state, "width": recipe["model"]["width"],
                    "step": step, "recipe": recipe["name"]}, path)
        return path
