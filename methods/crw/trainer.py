"""CRW's part of training (:class:`CRWTrainer`): the model, the walk loss step, the clips and the eval export.

The loop, checkpoints, resume, DDP, logging and evaluation while training are the harness's
(:mod:`harness.training`). The clips are drawn as the original pipeline drew them
(:mod:`methods.crw.data`); their randomness derives from ``(seed, epoch, position)`` only, which is
what keeps ``--resume`` exact.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from harness.training.contract import Diagnostics, Trainer
from harness.training.data import TrainData
from methods.crw.augment import ClipAugment, grid_nodes
from methods.crw.data import ClipDataset, ClipIndex, ShardedClipSampler, collate, index_roots
from methods.crw.recipe import CRWRecipe

log = logging.getLogger(__name__)

RECIPE_DIR = Path(__file__).resolve().parent / "recipes"


def build_clip_data(recipe: dict[str, Any], roots: list[Path], augment_on_device: bool = False) -> tuple[ClipDataset, ClipIndex]:
    """Index every root (cached), pool their videos, and wrap them in a clip dataset.

    ``augment_on_device``: workers only decode and draw the random boxes (:meth:`ClipAugment.prepare`);
    :meth:`CRWTrainer.batch_to_device` resizes the frames and cuts the patches of the whole batch on the device.
    """
    cfg = recipe["data"]
    index = ClipIndex(index_roots(roots, cfg), int(cfg["clip_len"]), cfg["fps"])
    augment = ClipAugment(recipe["augment"])
    return ClipDataset(index, augment.prepare if augment_on_device else augment), index


class CRWTrainer(Trainer):
    """The Contrastive Random Walk: palindrome walks over patch graphs of raw video clips."""

    method = "crw"
    recipe_model = CRWRecipe
    recipe_dir = RECIPE_DIR
    curve_metric = "acc"
    curve_label = "training cycle accuracy"
    #: the name every CRW run has used, kept so that old runs resume
    state_file = "checkpoint.pt"
    demo_recipe = "crw-cpu-demo"
    paper_recipe = "crw-paper"

    def build_model(self, recipe: dict[str, Any]) -> torch.nn.Module:
        from methods.crw.model import CRWNet

        return CRWNet(padding=recipe["model"]["padding"])

    def build_data(self, recipe: dict[str, Any], roots: list[Path], *, device: torch.device, rank: int, world_size: int,
                   local_batch: int) -> TrainData:
        augment_on_device = recipe["data"]["augment_on"] == "gpu" and device.type == "cuda"
        if recipe["data"]["augment_on"] == "gpu" and not augment_on_device and rank == 0:
            log.warning("data.augment_on: gpu needs CUDA; the workers cut the patches on the CPU")
        dataset, index = build_clip_data(recipe, roots, augment_on_device)
        clips_per_video, seed = int(recipe["data"]["clips_per_video"]), int(recipe["seed"])

        def sampler(start_step: int = 0, total_steps: int | None = None) -> ShardedClipSampler:
            return ShardedClipSampler(index, clips_per_video, local_batch, seed, rank, world_size, start_step, total_steps)

        return TrainData(dataset=dataset, sampler=sampler, collate=collate, steps_per_epoch=sampler().steps_per_epoch,
                         items=index.videos, workers=int(recipe["data"]["workers"]))

    def batch_to_device(self, batch: Any, recipe: dict[str, Any], device: torch.device) -> torch.Tensor:
        """A loader batch → patches ``[B, T, N, 3, P, P]`` on ``device``.

        With ``data.augment_on: gpu`` the batch is the decoded uint8 frames and their boxes
        (:func:`~methods.crw.data.collate`); the frames are resized and the patches cut here, on the device.
        """
        if isinstance(batch, tuple):
            frames, frame_boxes, patch_boxes = batch
            augment = ClipAugment(recipe["augment"])
            return augment.finish([f.to(device, non_blocking=True) for f in frames], frame_boxes, patch_boxes)
        return batch.to(device, non_blocking=True)

    def training_step(self, forward: Any, batch: torch.Tensor, generator: torch.Generator,
                      recipe: dict[str, Any]) -> tuple[torch.Tensor, Diagnostics]:
        """The walk loss; diagnostics ``acc`` (mean cycle accuracy), ``xent`` and ``walk_acc`` per walk (``k2``, …)."""
        from methods.crw.loss import walk_loss

        loss_cfg = recipe["loss"]
        loss, diag = walk_loss(
            forward(batch).float(),  # the walk's products of softmaxes stay in float32 under autocast
            float(loss_cfg["temperature"]),
            float(loss_cfg["edge_dropout"]),
            generator=generator,
            leak_dropout=bool(loss_cfg["leak_dropout"]),
        )
        walks = sorted(diag["xent"])
        return loss, {"acc": diag["acc_mean"], "xent": {k: diag["xent"][k] for k in walks},
                      "walk_acc": {k: diag["acc"][k] for k in walks}}

    def export_eval(self, model_state: dict[str, torch.Tensor], recipe: dict[str, Any], step: int, path: Path) -> Path:
        """The encoder through layer3 (11 MB for ResNet-18) and the recipe: what ``harness run --method crw`` reads."""
        from methods.crw.checkpoint import save_eval_checkpoint

        return save_eval_checkpoint(path, model_state, recipe, step)

    def chance(self, recipe: dict[str, Any]) -> float:
        """Cycle accuracy of a walk that guesses: one over the patches per frame."""
        augment = recipe["augment"]
        return 1 / grid_nodes(augment["frame_size"], augment["patch_size"], augment["patch_stride"])

    def synthetic_batch(self, recipe: dict[str, Any], device: torch.device) -> torch.Tensor:
        """Normal noise of the recipe's patch batch shape ``[B, T, N, 3, P, P]`` (seeded)."""
        augment = ClipAugment(recipe["augment"])
        shape = (int(recipe["optim"]["batch_size"]), int(recipe["data"]["clip_len"]), augment.nodes, 3,
                 augment.patch_size, augment.patch_size)
        return torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)

    def benchmark_loader(self, recipe: dict[str, Any], video: Path, clips: int = 8, rounds: int = 3) -> dict[str, Any]:
        """One worker's pipeline, per-patch reference vs batched path, side by side (:mod:`methods.crw.perf`)."""
        from methods.crw.perf import benchmark_loader

        return benchmark_loader(recipe, video, clips, rounds)
