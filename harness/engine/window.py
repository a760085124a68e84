"""Which context frames a target sees, and which grid offsets a window admits: shared by both search paths."""

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
