"""What a trainer hands the loop to draw batches from (:class:`TrainData`), and the loader built over it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from harness.training.provenance import TrainingItem


@dataclass
class TrainData:
    """A trainer's training data for one rank.

    ``sampler(start_step, total_steps)`` is a batch sampler yielding this rank's lists of dataset keys
    for steps ``start_step`` up to ``total_steps`` (None: one epoch after another, without end); the
    keys of a step must not depend on where the sampler started (exact resume). ``dataset[key]``
    returns a sample; ``collate(samples)`` returns ``(batch, failures)``, failures being the number of
    samples that could not be read and were replaced (the log counts them). ``items`` are the videos
    (files) the data was indexed from, for the run's provenance fingerprint; ``workers`` the loader's
    worker processes.
    """

    dataset: torch.utils.data.Dataset
    sampler: Callable[[int, int | None], torch.utils.data.Sampler]
    collate: Callable[[list[Any]], tuple[Any, int]]
    steps_per_epoch: int
    items: Sequence[TrainingItem]
    workers: int = 0


def make_loader(
    dataset: torch.utils.data.Dataset,
    sampler: torch.utils.data.Sampler,
    workers: int,
    collate: Callable[[list[Any]], tuple[Any, int]],
    pin_memory: bool = False,
    generator: torch.Generator | None = None,
) -> torch.utils.data.DataLoader:
    """A DataLoader over the sampler's batches; workers read (and augment) samples in parallel.

    ``generator`` keeps the loader off the global RNG, whose state is saved for resuming.
    """
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        persistent_workers=False,
        prefetch_factor=2 if workers > 0 else None,
        generator=generator,
    )
