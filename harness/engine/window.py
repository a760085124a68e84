"""Which context frames a target sees, which grid offsets a window admits, and how a protocol fits a video:
shared by both search paths."""

from __future__ import annotations

import math
from collections import Counter

import torch

from harness.engine.protocol import Protocol


def context_slots(t: int, protocol: Protocol) -> list[tuple[int, bool, int]]:
    """The context of target frame ``t`` as ``(source frame, windowed, multiplicity)`` triples.

    The slots are the first frame (windowed only if ``restrict_first``) and the previous ``context``
    frames; with ``pad_with_first`` missing frames before 0 are copies of frame 0 (CRW), otherwise the
    queue grows from empty (DINO). Slots that see the same frame under the same restriction are
    identical and are merged into one entry with their count.
    """
    slots: Counter[tuple[int, bool]] = Counter()
    if protocol.keep_first:
        slots[(0, protocol.restrict_first)] += 1
    start = t - protocol.context
    for s in range(max(start, 0), t):
        slots[(s, True)] += 1
    if start < 0 and protocol.pad_with_first:  # slots before frame 0 are copies of it
        slots[(0, True)] += -start
    return [(s, windowed, count) for (s, windowed), count in slots.items()]


def window_reach(protocol: Protocol) -> int:
    """Largest integer offset |dy| (or |dx|) that the window admits."""
    if protocol.window == "disk":  # dy² + dx² < r²  =>  |dy| < r
        return max(math.ceil(protocol.radius) - 1, 0)
    return math.floor(protocol.radius)  # |dy| <= r


def window_admits(dy: torch.Tensor, dx: torch.Tensor, protocol: Protocol) -> torch.Tensor:
    """Whether integer grid offsets lie inside the protocol's window (computed in float64, as documented)."""
    dy, dx = dy.double(), dx.double()
    if protocol.window == "disk":
        return dy**2 + dx**2 < float(protocol.radius) ** 2
    return (dy.abs() <= protocol.radius) & (dx.abs() <= protocol.radius)


def fit_to_video(protocol: Protocol, frames: int, height: int, width: int) -> Protocol:
    """The protocol as it acts on a video of ``frames`` frames and a ``height`` x ``width`` feature grid.

    A ``--set`` value past what any video allows (``context=10**11``, ``radius=1e300``) would otherwise
    hang, exhaust memory or overflow; it is lowered here, before anything is computed, to the bound of
    the video, which gives the same labels:

    - ``radius`` above ``height + width``: a disk or square that large already admits every offset; a
      radius below 1 admits only a node's own cell, as 0.5 does (a tiny one, 1e-300, would square to 0
      and admit not even that);
    - ``context`` above ``frames - 1``: the queue holds nothing more, except copies of frame 0 with
      ``pad_with_first``, and a node counts at most ``topk`` times among the candidates, so
      ``frames - 1 + topk`` slots are as many as any larger number;
    - ``topk`` above the most candidates any target has (its context slots, each counted at most
      ``topk`` times, times the grid's cells): every candidate is taken either way.

    Values within these bounds are returned unchanged (the same object), and the recorded protocol (its
    settings and hash) is always the one the user asked for.
    """
    radius = 0.5 if protocol.radius < 1 else min(protocol.radius, float(height + width))
    context = min(protocol.context, frames - 1 + (protocol.topk if protocol.pad_with_first else 0))
    fitted = protocol.model_copy(update={"radius": radius, "context": context})
    candidates = max((sum(min(count, protocol.topk) for _, _, count in context_slots(t, fitted))
                      for t in range(1, frames)), default=1) * height * width
    topk = min(protocol.topk, candidates)
    if (radius, topk, context) == (protocol.radius, protocol.topk, protocol.context):
        return protocol
    return fitted.model_copy(update={"topk": topk})
