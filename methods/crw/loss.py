"""The contrastive random-walk loss (docs/protocol.md §2).

Nodes of adjacent frames are joined by softmax-normalised cosine similarities. A walker leaves
each node of frame 0, walks forward to frame k and back along a palindrome, and the loss asks it
to come home: -log of the return probability, for every k = 2 … T-1. This follows the released
code rather than the paper's pseudocode in three respects that move the numbers:

- the backward step is ``rowsoftmax(Sᵀ/τ)``, a re-normalised transposed similarity, not the
  transpose of the forward stochastic matrix;
- the shortest cycle 0→1→0 is skipped (author, issue #21), so T must be at least 3;
- the walks are averaged, not summed.

Edge dropout masks logits to -1e20 before the softmax with independent forward and backward
masks. The original masked in place on a view shared by both directions, so its backward
matrices also lost the forward matrices' dropped edges (transposed); ``leak_dropout=True``
replays that (effective backward rate 1-(1-p)² ≈ 0.19 at p = 0.1), which is how the released
``pretrained.pth`` was trained.
"""

from __future__ import annotations

from typing import Any

import torch

EPS = 1e-20
DROPPED = -1e20


def _edge_mask(shape: torch.Size, rate: float, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device) < rate


def transition_logits(
    embeddings: torch.Tensor,
    temperature: float,
    edge_dropout: float = 0.0,
    generator: torch.Generator | None = None,
    leak_dropout: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward and backward logits ``[B, T-1, N, N]`` between adjacent frames, dropout applied.

    ``forward[:, t]`` scores the step t→t+1 and ``backward[:, t]`` the step t+1→t. The forward
    mask is drawn before the backward one, so a seeded ``generator`` gives the same masks.
    """
    sim = torch.einsum("btnd,btmd->btnm", embeddings[:, :-1], embeddings[:, 1:])
    forward = sim / temperature
    backward = sim.transpose(-1, -2) / temperature
    if edge_dropout > 0:
        drop_forward = _edge_mask(forward.shape, edge_dropout, forward.device, generator)
        drop_backward = _edge_mask(backward.shape, edge_dropout, backward.device, generator)
        if leak_dropout:
            drop_backward = drop_backward | drop_forward.transpose(-1, -2)
        forward = forward.masked_fill(drop_forward, DROPPED)
        backward = backward.masked_fill(drop_backward, DROPPED)
    return forward, backward


def walk_loss(
    embeddings: torch.Tensor,
    temperature: float,
    edge_dropout: float = 0.0,
    generator: torch.Generator | None = None,
    leak_dropout: bool = False,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Mean cycle-consistency loss of unit-norm node embeddings ``[B, T, N, D]``, plus diagnostics.

    Diagnostics are plain floats: ``{"xent": {"k2": …}, "acc": {"k2": …}, "acc_mean": …}`` where
    ``k`` is the frame the walk turns back at (a walk to frame k has 2k steps) and accuracy is the
    fraction of nodes whose most likely return node is themselves.
    """
    if embeddings.dim() != 4:
        raise ValueError(f"walk_loss expects embeddings [B, T, N, D], got {tuple(embeddings.shape)}")
    time = embeddings.shape[1]
    if time < 3:
        raise ValueError(
            f"walk_loss needs clips of at least 3 frames, got T={time}: the shortest cycle 0→1→0 "
            "is skipped as in the original code, so T=2 leaves no walk and no gradient"
        )
    forward, backward = transition_logits(embeddings, temperature, edge_dropout, generator, leak_dropout)
    step_forward = forward.softmax(dim=-1)
    step_backward = backward.softmax(dim=-1)

    nodes = embeddings.shape[2]
    losses: list[torch.Tensor] = []
    xent: dict[str, float] = {}
    acc: dict[str, float] = {}
    there = step_forward[:, 0]  # 0 → 1
    back = step_backward[:, 0]  # 1 → 0
    targets = torch.arange(nodes, device=embeddings.device)
    for k in range(2, time):
        there = there @ step_forward[:, k - 1]  # 0 → k
        back = step_backward[:, k - 1] @ back  # k → 0
        cycle = there @ back
        loss_k = -torch.log(torch.diagonal(cycle, dim1=-2, dim2=-1) + EPS).mean()
        losses.append(loss_k)
        with torch.no_grad():
            xent[f"k{k}"] = float(loss_k)
            acc[f"k{k}"] = float((cycle.argmax(dim=-1) == targets).float().mean())
    loss = torch.stack(losses).mean()
    return loss, {"xent": xent, "acc": acc, "acc_mean": sum(acc.values()) / len(acc)}
