"""VFS's part of training (:class:`VFSTrainer`): the network, the two-view similarity step, the pairs and the eval export.

The loop, checkpoints, resume, DDP, logging and evaluation while training are the harness's
(:mod:`harness.training`). Samples are drawn as the original drew them (:mod:`methods.vfs.pairs`, on
CRW's video index and decoder); their randomness derives from ``(seed, epoch, position)`` only,
which is what keeps ``--resume`` exact. The optimiser is the original's: SGD with momentum and
weight decay on every parameter, the learning rate annealed by a cosine per iteration to
``optim.min_lr`` over all ``optim.epochs`` (mmcv's ``CosineAnnealingLrUpdaterHook`` with
``by_epoch=False``, no warm-up). Across GPUs BatchNorm becomes SyncBatchNorm, as the original trains.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch

from harness.training.contract import Diagnostics, Trainer
from harness.training.data import TrainData
from methods.vfs.recipe import VFSRecipe

log = logging.getLogger(__name__)

RECIPE_DIR = Path(__file__).resolve().parent / "recipes"
#: views per sample: two, each ``segments / 2`` frames of one video
VIEWS = 2


def cosine_factor(iteration: int, total: int, lr: float, min_lr: float) -> float:
    """The learning rate at ``iteration`` of ``total`` as a fraction of ``lr``:
    ``min_lr + (lr − min_lr)·(1 + cos(π·iteration/total))/2``, held at ``min_lr`` past the end."""
    progress = min(iteration, total) / max(total, 1)
    return (min_lr + (lr - min_lr) * (1 + math.cos(math.pi * progress)) / 2) / lr


class VFSTrainer(Trainer):
    """VFS: two augmented frames (or frame groups) far apart in one video should have similar pooled embeddings."""

    method = "vfs"
    recipe_model = VFSRecipe
    recipe_dir = RECIPE_DIR
    curve_metric = "cosine"
    curve_label = "cosine of prediction and other view's projection (collapse gives 1 too: see z_std)"
    demo_recipe = "vfs-cpu-demo"
    paper_recipe = "vfs-paper"

    def build_model(self, recipe: dict[str, Any]) -> torch.nn.Module:
        from methods.vfs.model import VFSNet

        model = recipe["model"]
        return VFSNet(
            model["arch"],
            projector=(model["projector_layers"], model["projector_hidden"], model["projector_out"]),
            predictor=(model["predictor_layers"], model["predictor_hidden"], model["predictor_out"]),
            zero_init_residual=model["zero_init_residual"],
        )

    def prepare_model(self, model: torch.nn.Module, recipe: dict[str, Any], *, device: torch.device,
                      world_size: int) -> torch.nn.Module:
        """SyncBatchNorm across the ranks of a CUDA run, as the original (same parameters and state-dict keys).

        PyTorch's SyncBatchNorm runs on GPUs only, so a multi-process CPU run keeps per-rank BatchNorm (said once).
        """
        if world_size <= 1:
            return model
        if device.type != "cuda":
            log.warning("SyncBatchNorm needs CUDA: on %s each of the %d ranks normalises by its own batch", device.type,
                        world_size)
            return model
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def build_data(self, recipe: dict[str, Any], roots: list[Path], *, device: torch.device, rank: int, world_size: int,
                   local_batch: int) -> TrainData:
        from methods.crw.data import index_roots
        from methods.vfs.pairs import PairDataset, PairSampler, ShardedPairSampler, collate_pairs

        cfg = recipe["data"]
        videos = index_roots(roots, cfg)
        pairs = PairSampler(videos, int(cfg["segments"]), int(recipe["seed"]), int(cfg["repeat"]), cfg["fps"])
        dataset = PairDataset(pairs, frame_augment(recipe))

        def sampler(start_step: int = 0, total_steps: int | None = None) -> ShardedPairSampler:
            return ShardedPairSampler(pairs, local_batch, rank, world_size, start_step, total_steps)

        return TrainData(dataset=dataset, sampler=sampler, collate=collate_pairs,
                         steps_per_epoch=sampler().steps_per_epoch, items=videos, workers=int(cfg["workers"]))

    def training_step(self, forward: Any, batch: torch.Tensor, generator: torch.Generator,
                      recipe: dict[str, Any]) -> tuple[torch.Tensor, Diagnostics]:
        """The symmetric stop-gradient loss of the two views ``[B, 2, T, 3, S, S]``; diagnostics ``cosine``
        (mean cos of prediction and target over the pairs) and ``z_std`` (spread of the normalised
        projections: about ``1/√D`` while healthy, 0 when collapsed)."""
        from methods.vfs.loss import vfs_loss

        z, p = forward(batch)
        z, p = z.float(), p.float()  # the loss in float32 under autocast
        loss, diag = vfs_loss(p[:, 0], p[:, 1], z[:, 0], z[:, 1], all_pairs=bool(recipe["loss"]["all_pairs"]))
        return loss, {"cosine": diag["cosine"], "z_std": diag["z_std"]}

    def build_optimizer(
        self, model: torch.nn.Module, recipe: dict[str, Any], steps_per_epoch: int
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        """SGD (``optim.lr``, ``momentum``, ``weight_decay`` on every parameter) and the per-iteration cosine
        to ``optim.min_lr`` over ``epochs × steps_per_epoch`` iterations (the loop restores its position)."""
        optim = recipe["optim"]
        lr, min_lr = float(optim["lr"]), float(optim["min_lr"])
        total = int(optim["epochs"]) * steps_per_epoch
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=float(optim["momentum"]),
                                    weight_decay=float(optim["weight_decay"]))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda iteration: cosine_factor(iteration, total, lr, min_lr))
        return optimizer, scheduler

    def export_eval(self, model_state: dict[str, torch.Tensor], recipe: dict[str, Any], step: int, path: Path) -> Path:
        """The trunk through layer3 (11 MB for ResNet-18) and the recipe: what ``harness run --method vfs`` reads."""
        from methods.vfs.checkpoint import save_eval_checkpoint

        return save_eval_checkpoint(path, model_state, recipe, step)

    def chance(self, recipe: dict[str, Any]) -> float:
        """The cosine of a prediction unrelated to its target: 0 (a collapsed model reaches 1 without learning)."""
        return 0.0

    def synthetic_batch(self, recipe: dict[str, Any], device: torch.device) -> torch.Tensor:
        """Normal noise of the recipe's batch shape ``[B, 2, T, 3, S, S]`` (seeded)."""
        size = int(recipe["augment"]["size"])
        shape = (int(recipe["optim"]["batch_size"]), VIEWS, int(recipe["data"]["segments"]) // VIEWS, 3, size, size)
        return torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)


def frame_augment(recipe: dict[str, Any]) -> Any:
    """The recipe's ``augment`` section as a :class:`~methods.vfs.augment.FrameAugment`."""
    from methods.vfs.augment import FrameAugment

    return FrameAugment(**{key: tuple(value) if isinstance(value, list) else value
                           for key, value in recipe["augment"].items()})
