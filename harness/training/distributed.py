"""The ``torchrun`` process group of a training run: joining it, gathering objects, averaging numbers.

A lone process (``WORLD_SIZE`` unset or 1) needs no group and every helper here is then a no-op.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

#: how long a rank waits at a collective: long enough for rank 0 to evaluate a checkpoint meanwhile
DIST_TIMEOUT = datetime.timedelta(hours=3)


@dataclass(frozen=True)
class Dist:
    """This process's place in the run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    """Join the process group torchrun describes in the environment (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL collectives (all_gather_object) use the current device
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo", init_method="env://", timeout=DIST_TIMEOUT
        )
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def gather(obj: Any, ctx: Dist) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if ctx.world_size == 1:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: Dist) -> None:
    if ctx.world_size > 1:
        dist.barrier()


def mean_over_ranks(values: list[float], ctx: Dist, device: torch.device) -> list[float]:
    """Element-wise mean of ``values`` over the ranks (float64); unchanged in a lone process."""
    if ctx.world_size == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return (tensor / ctx.world_size).tolist()
