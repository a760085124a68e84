"""Dense label propagation, written the way CRW's ``test.py`` and DINO's evaluator do it.

It builds each target frame's context as an explicit list of frames (CRW's padding copies of frame 0
included), scores every target node against *every* context node — the full ``(n+1)·N × N`` affinity —
masks the window, and takes top-k, softmax and the weighted label sum. It shares no code with
:mod:`harness.engine.propagation`: it is the yardstick the engine is tested against (tests) and measured
against (``harness bench propagation``).
"""

from __future__ import annotations

import torch

from harness.engine.protocol import Protocol


def context_frames(t: int, protocol: Protocol) -> list[tuple[int, bool]]:
    """The context of target ``t`` slot by slot, as ``(source frame, windowed)``; repeats are kept."""
    slots = [(0, protocol.restrict_first)] if protocol.keep_first else []
    for s in range(t - protocol.context, t):
        if s < 0 and not protocol.pad_with_first:
            continue  # the queue grows from empty
        slots.append((max(s, 0), True))  # frame 0 stands in for frames before the video
    return slots


def window_mask(h: int, w: int, protocol: Protocol, device: torch.device | str = "cpu") -> torch.Tensor:
    """[N, N] bool: may target node i (row) see context node j (column) of a windowed frame."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    ys, xs = ys.flatten().double(), xs.flatten().double()
    dy = ys[:, None] - ys[None, :]
    dx = xs[:, None] - xs[None, :]
    if protocol.window == "disk":
        return dy**2 + dx**2 < protocol.radius**2
    return (dy.abs() <= protocol.radius) & (dx.abs() <= protocol.radius)


def dense_topk(
    features: torch.Tensor, t: int, protocol: Protocol, blocked: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k over the dense affinity of frame ``t``: ``(scores [N, k], frame·N + node [N, k])``.

    ``blocked`` is ``~window_mask(...)``, passed in so that a video builds it once.
    """
    T, C, h, w = features.shape
    N = h * w
    blocked = ~window_mask(h, w, protocol, features.device) if blocked is None else blocked
    flat = features.reshape(T, C, N)
    slots = context_frames(t, protocol)
    keys = torch.cat([flat[s] for s, _ in slots], dim=1)  # C, S·N
    affinity = flat[t].T @ keys  # N, S·N: the whole dense affinity
    affinity.div_(protocol.temperature)
    for i, (_, windowed) in enumerate(slots):
        if windowed:
            affinity[:, i * N : (i + 1) * N].masked_fill_(blocked, float("-inf"))
    scores, pos = affinity.topk(min(protocol.topk, affinity.shape[1]), dim=1)
    source = torch.tensor([s for s, _ in slots], device=features.device)[pos // N]
    return scores, source * N + pos % N


def propagate_dense(
    features: torch.Tensor, first_labels: torch.Tensor, protocol: Protocol, frames: int | None = None
) -> torch.Tensor:
    """Soft labels ``[T, K, h, w]``; with ``frames`` only targets ``1..frames`` are computed (rest zero)."""
    T, C, h, w = features.shape
    K, N = first_labels.shape[0], h * w
    last = T if frames is None else min(T, frames + 1)
    blocked = ~window_mask(h, w, protocol, features.device)
    labels = features.new_zeros(T, N, K)
    labels[0] = first_labels.reshape(K, N).T.to(labels)
    for t in range(1, last):
        scores, index = dense_topk(features, t, protocol, blocked)
        weights = torch.softmax(scores, dim=1)
        labels[t] = (weights.unsqueeze(-1) * labels.reshape(T * N, K)[index]).sum(1)
    return labels.permute(0, 2, 1).reshape(T, K, h, w)


def topk_disagreement(
    scores_a: torch.Tensor, index_a: torch.Tensor, scores_b: torch.Tensor, index_b: torch.Tensor
) -> float:
    """Fraction of nodes whose top-k (as a multiset of context nodes, masked entries ignored) differs."""
    a = torch.where(torch.isfinite(scores_a), index_a, -1).sort(dim=1).values
    b = torch.where(torch.isfinite(scores_b), index_b, -1).sort(dim=1).values
    if a.shape != b.shape:
        return 1.0
    return float((a != b).any(dim=1).double().mean())
