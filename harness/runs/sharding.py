"""Sharded evaluation: ``torchrun --nproc-per-node G -m harness run ...`` splits the sequences over G ranks.

Each rank computes its share on its own device (``cuda:LOCAL_RANK``, or the CPU), writing predictions
and per-sequence state files into the one output folder; rank 0 gathers every rank's per-sequence
states and writes the single record. Sequences are computed exactly as in a one-process run and the
record is assembled from the states in the split's order, so its metrics and per-object scores are
those of a one-process run.

Sequences are dealt to ranks by frame count (longest first, each to the least loaded rank), since a
sequence's cost is about proportional to its frames. The folder is claimed (and locked) by rank 0
only; the other ranks join it after rank 0 says whether the claim succeeded. Ranks talk over a gloo
process group even on GPUs: they exchange only small Python objects, never tensors. If a rank dies,
torchrun stops the others.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from harness.errors import HarnessError
from harness.runs.outdir import RECORD, OutputFolder, RunIdentity, claim, join

#: how long ranks wait for each other at a barrier or gather (the slowest rank's whole share)
TIMEOUT = timedelta(hours=6)
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def frame_count(task: Any, name: str) -> int:
    """Frames of sequence ``name`` counted from its image folder without decoding (1 when the task has none)."""
    for attribute in ("frames_dir", "images_dir"):
        folder = getattr(task, attribute, None)
        if folder is not None and (Path(folder) / name).is_dir():
            return max(1, sum(p.suffix.lower() in _IMAGE_SUFFIXES for p in (Path(folder) / name).iterdir()))
    return 1


def balance(counts: dict[str, int], ranks: int) -> list[list[str]]:
    """Sequences per rank: longest first, each to the rank with the fewest frames so far (ties: lower rank).

    Each rank's list keeps the order of ``counts`` (the split's order). Deterministic: every rank computes
    the same assignment on its own.
    """
    loads, shares = [0] * ranks, [[] for _ in range(ranks)]
    order = list(counts)
    for name in sorted(order, key=lambda n: (-counts[n], order.index(n))):
        rank = min(range(ranks), key=lambda r: (loads[r], r))
        loads[rank] += counts[name]
        shares[rank].append(name)
    return [sorted(share, key=order.index) for share in shares]


@dataclass(frozen=True)
class Shard:
    """This process's place in a sharded run (read from torchrun's environment; one rank when absent)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Shard:
        try:
            return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                       int(os.environ.get("LOCAL_RANK", 0)))
        except ValueError as err:
            raise HarnessError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers (set by torchrun): {err}") from None

    @property
    def sharded(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """Each rank of a sharded CUDA run gets its own GPU, ``cuda:LOCAL_RANK``."""
        if not self.sharded or device.type != "cuda":
            return device
        if self.local_rank >= torch.cuda.device_count():
            raise HarnessError(f"rank {self.rank} wants cuda:{self.local_rank}, but only "
                               f"{torch.cuda.device_count()} CUDA device(s) are visible; use --nproc-per-node "
                               f"{torch.cuda.device_count()} or fewer")
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)

    def assigned(self, task: Any, sequences: list[str]) -> list[str]:
        """This rank's sequences (all of them in a one-process run)."""
        if not self.sharded:
            return list(sequences)
        return balance({name: frame_count(task, name) for name in sequences}, self.world)[self.rank]

    def gather(self, folder: Any, sequences: list[str], *parts: Any) -> list[Any]:
        """Every rank's ``parts`` merged, and every rank's files listed in rank 0's manifest.

        A dict part is keyed by sequence and comes back in the split's order; a list part comes back
        concatenated in rank order. Non-main ranks get empty parts back: only rank 0 writes the record.
        """
        if not self.sharded:
            return list(parts)
        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, (parts, folder.files, folder.hashes))
        if not self.is_main:
            return [type(part)() for part in parts]
        merged: list[Any] = []
        for i, part in enumerate(parts):
            if isinstance(part, list):
                merged.append([item for rank_parts, *_ in gathered for item in rank_parts[i]])
                continue
            union: dict[str, Any] = {}
            for rank_parts, *_ in gathered:
                union.update(rank_parts[i])
            merged.append({name: union[name] for name in sequences if name in union})
        folder.add([f for _, files, _ in gathered for f in files],
                   {rel: sha for _, _, hashes in gathered for rel, sha in hashes.items()})
        return merged


def _start(shard: Shard) -> None:
    if not dist.is_initialized():
        dist.init_process_group("gloo", rank=shard.rank, world_size=shard.world, timeout=TIMEOUT)


def _say(shard: Shard, message: str | None) -> str | None:
    """Rank 0's ``message`` on every rank."""
    box = [message if shard.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def run_sharded(shard: Shard, out_dir: Path, identity: RunIdentity, force: bool, flag: str,
                work: Callable[[OutputFolder], object]) -> Path:
    """One rank of a torchrun job: rank 0 claims ``out_dir`` for the run ``identity`` (``force`` and ``flag``
    as :func:`harness.runs.outdir.claim` takes them), every rank calls ``work(folder)`` in it (the runner's
    evaluation, which gathers on rank 0 and writes the record there), and the record's path is returned."""
    _start(shard)
    try:
        if shard.is_main:
            try:
                folder = claim(out_dir, identity, force=force, flag=flag)
            except HarnessError as err:
                _say(shard, str(err))
                raise
            _say(shard, None)
        else:
            problem = _say(shard, None)
            if problem is not None:
                raise HarnessError(f"rank 0 could not claim the output folder: {problem}")
            folder = join(out_dir, identity)
        with folder:
            work(folder)
        dist.barrier()  # the record is written when every rank gets past this
    finally:
        dist.destroy_process_group()
    return (out_dir / RECORD).resolve()
