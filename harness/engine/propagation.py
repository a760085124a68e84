"""Label propagation: carry frame 0's labels to every later frame by feature affinity.

For each target frame the context is the first frame plus a queue of previous frames (see
:func:`context_slots`); each target node takes the softmax-weighted mean of the labels of its top-k
most similar context nodes. Short-term frames (and, for ``restrict_first`` protocols, the first frame)
are searched only inside a disk or square of ``radius`` cells around the node, so computing the dense
``(n+1)·N × N`` affinity the way CRW and DINO do wastes most of its work and memory (CRW needs ~40 GB
on DAVIS, DINO runs out of GPU memory on wide videos).

This engine gives the same top-k as the dense computation while touching only what can win:

- the query grid is cut into small rectangular *tiles*; the keys a tile can reach in a windowed context
  frame are the tile grown by the window reach on every side, so one batched matmul scores a whole
  tile against its window, and an additive 0/-inf bias removes what lies outside the disk/square or
  the image. Tiles are handled one *tile column* at a time: a context frame's keys for a column are
  copied once into a strip in which each tile's window is a contiguous block, and a batched matmul
  reads the windows in place through an overlapping view;
- which nodes win depends on features only (labels are what gets fed back), so the neighbours of a
  *block* of consecutive target frames are found together: a context frame's strip is built once and
  scored against the queries of every target in the block that sees it, in one matmul. This divides
  the copying by the block size and makes the matmuls large enough to run near peak speed. Windowed
  frames that the same targets see are scored a few at a time (longer score rows make top-k cheaper);
- the top-k over the union of all context nodes is contained in the union of top-k's over any split of
  the context, so each context frame is reduced to its own top-k and merged into a running top-k. A
  frame that fills several context slots (CRW pads the queue with copies of frame 0) has its candidates
  repeated once per slot (at most k times), which reproduces the dense top-k exactly;
- blocks, score chunks and strips are sized to a memory budget, so the working memory depends neither
  on the video length nor on the context size.

Pure tensor math: no task, method, CLI or file I/O here. Runs on whatever device the features are on.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness.engine import batched
from harness.engine.protocol import Protocol, resolve_protocol
from harness.engine.window import context_slots, fit_to_video, window_admits, window_reach
from harness.errors import HarnessError, MethodError

#: working-memory budget of one propagation on CPU (query tiles, key strips, score chunks, one block's
#: neighbours), in MiB, besides the features and the returned labels. At DAVIS 480p, 32 MiB already
#: allows blocks of 8 targets; 16 MiB forces single-target blocks and costs ~1.8x the time.
DEFAULT_MEMORY_MIB = 32
#: on CUDA, larger chunks mean fewer kernel launches; still far below the dense affinity's ~3.5 GiB
CUDA_MEMORY_MIB = 512
#: (rows, columns) of the query tiles. A tile scores (rows + 2·reach)·(columns + 2·reach) keys per query
#: against ~πr² in the disk (676 against 437 at radius 12), so smaller tiles waste less arithmetic but
#: make smaller matmuls and longer strips (each key is copied (columns + 2·reach)/columns times). With
#: blocks of 8 targets the matmuls stay large; 4x4 tied with 3x4 and 4x6 and beat 8x12 by ~20% at
#: DAVIS 480p on CPU.
TILE = (4, 4)
#: most target frames whose neighbours are found together (bounded further by the memory budget);
#: 16 was no faster than 8 on CPU
MAX_BLOCK = 8
#: most windowed context frames scored by one matmul (longer score rows make top-k cheaper per score)
MAX_GROUP = 4


class _Scratch:
    """Reusable flat buffers for the large per-chunk tensors (key strips, score chunks).

    Chunks of many sizes allocated and freed in turn fragment the C allocator's heap, so the process
    would keep several times the budget resident; serving every chunk from the same few buffers keeps
    the resident working memory at the budget.
    """

    def __init__(self, like: torch.Tensor) -> None:
        self.like = like
        self.buffers: dict[str, torch.Tensor] = {}

    def take(self, name: str, *shape: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A [shape] view of buffer ``name`` (contents undefined), grown if too small."""
        size = math.prod(shape)
        buffer = self.buffers.get(name)
        if buffer is None or buffer.numel() < size:
            buffer = self.buffers[name] = self.like.new_empty(size, dtype=dtype)
        return buffer[:size].view(shape)


@dataclass(frozen=True)
class _Tiling:
    """Index tables of the tiled grid, built once per video (their size depends on h, w and radius only).

    Tiles are addressed by tile column ``tx`` and tile row ``ty``; a tile has Q = th·tw query cells and
    its window kw = (th + 2·reach)·(tw + 2·reach) key cells.
    """

    h: int
    w: int
    th: int
    tw: int
    reach: int
    nty: int
    ntx: int
    query_nodes: torch.Tensor  # [ntx, nty, Q] flat node of each tile cell, -1 outside the grid
    key_nodes: torch.Tensor  # [ntx, nty, kw] flat node of each window cell, 0 outside the grid
    offset_bias: torch.Tensor  # [Q, kw] 0 where the window admits the offset, -inf elsewhere
    outside_bias: torch.Tensor  # [ntx, nty, kw] 0 for window cells inside the grid, -inf outside

    @classmethod
    def build(cls, h: int, w: int, protocol: Protocol, dtype: torch.dtype, device: torch.device) -> _Tiling:
        th, tw, reach = min(TILE[0], h), min(TILE[1], w), window_reach(protocol)
        nty, ntx = -(-h // th), -(-w // tw)
        wh, ww = th + 2 * reach, tw + 2 * reach
        tx = torch.arange(ntx, device=device).view(ntx, 1, 1, 1)
        ty = torch.arange(nty, device=device).view(1, nty, 1, 1)
        # query cells: absolute position of cell (qy, qx) of tile (tx, ty)
        qy = (ty * th + torch.arange(th, device=device).view(1, 1, th, 1)).expand(ntx, nty, th, tw)
        qx = (tx * tw + torch.arange(tw, device=device).view(1, 1, 1, tw)).expand(ntx, nty, th, tw)
        query_nodes = torch.where((qy < h) & (qx < w), qy * w + qx, -1).reshape(ntx, nty, th * tw)
        # window cells: absolute position of cell (ky, kx) of the window of tile (tx, ty)
        ky = (ty * th - reach + torch.arange(wh, device=device).view(1, 1, wh, 1)).expand(ntx, nty, wh, ww)
        kx = (tx * tw - reach + torch.arange(ww, device=device).view(1, 1, 1, ww)).expand(ntx, nty, wh, ww)
        inside = (ky >= 0) & (ky < h) & (kx >= 0) & (kx < w)
        key_nodes = torch.where(inside, ky * w + kx, 0).reshape(ntx, nty, wh * ww)
        # offsets between a tile cell and a window cell are the same for every tile
        cy, cx = torch.meshgrid(torch.arange(th, device=device), torch.arange(tw, device=device), indexing="ij")
        wy, wx = torch.meshgrid(torch.arange(wh, device=device), torch.arange(ww, device=device), indexing="ij")
        dy = wy.reshape(1, -1) - reach - cy.reshape(-1, 1)
        dx = wx.reshape(1, -1) - reach - cx.reshape(-1, 1)
        blocked = torch.full((), float("-inf"), dtype=dtype, device=device)
        offset_bias = torch.where(window_admits(dy, dx, protocol), 0.0, blocked)
        outside_bias = torch.where(inside.reshape(ntx, nty, wh * ww), 0.0, blocked)
        return cls(h, w, th, tw, reach, nty, ntx, query_nodes, key_nodes, offset_bias, outside_bias)

    @property
    def cells(self) -> int:
        return self.th * self.tw

    @property
    def window_cells(self) -> int:
        return (self.th + 2 * self.reach) * (self.tw + 2 * self.reach)

    @property
    def strip_cells(self) -> int:
        return (self.nty * self.th + 2 * self.reach) * (self.tw + 2 * self.reach)

    def column_queries(self, frames: torch.Tensor, tx: int) -> torch.Tensor:
        """Features of tile column ``tx`` of ``frames`` [B, C, h, w] as [nty, B, Q, C] (zeros outside the grid)."""
        B, C = frames.shape[:2]
        x0 = tx * self.tw
        part = frames[:, :, :, x0 : x0 + self.tw]
        part = F.pad(part, (0, self.tw - part.shape[3], 0, self.nty * self.th - self.h))
        part = part.reshape(B, C, self.nty, self.th, self.tw).permute(2, 0, 3, 4, 1)
        return part.reshape(self.nty, B, self.cells, C)

    def column_windows(self, frames: list[torch.Tensor], tx: int, scratch: _Scratch) -> torch.Tensor:
        """The windows of tile column ``tx`` in G ``frames`` [C, h, w]: [nty, wh·G·ww, C], an overlapping view.

        The keys the column can reach are copied once into a strip (grid row, frame, window column,
        channels last; zeros outside the grid, whose scores are masked) in which the windows of tile row
        ``ty`` in all G frames form one contiguous block starting at strip row ``ty·th``; its order is
        (window row, frame, window column).
        """
        C, r, th, G = frames[0].shape[0], self.reach, self.th, len(frames)
        ww = self.tw + 2 * r
        lo, hi = tx * self.tw - r, tx * self.tw + self.tw + r
        strip = scratch.take("strip", self.nty * th + 2 * r, G, ww, C)
        left, right = max(-lo, 0), ww - max(hi - self.w, 0)
        # zero only what lies outside the grid (masked, but must not hold NaN from earlier contents)
        strip[:r].zero_()
        strip[r + self.h :].zero_()
        strip[r : r + self.h, :, :left].zero_()
        strip[r : r + self.h, :, right:].zero_()
        for g, frame in enumerate(frames):
            strip[r : r + self.h, g, left:right] = frame[:, :, max(lo, 0) : min(hi, self.w)].permute(1, 2, 0)
        return strip.as_strided((self.nty, self.window_cells * G, C), (th * G * ww * C, C, 1))

    def column_bias(self, tx: int) -> torch.Tensor:
        """0/-inf bias of tile column ``tx`` [nty, 1, Q, wh, 1, ww]: window shape and grid border together."""
        wh, ww = self.th + 2 * self.reach, self.tw + 2 * self.reach
        bias = self.offset_bias.view(1, self.cells, wh, ww) + self.outside_bias[tx].view(self.nty, 1, wh, ww)
        return bias.view(self.nty, 1, self.cells, wh, 1, ww)


@dataclass(frozen=True)
class _Plan:
    """How a block of target frames is cut to fit the memory budget."""

    block: int  # target frames whose neighbours are found together
    group: int  # windowed context frames scored by one matmul
    window_rows: int  # tile rows per matmul against windowed frames
    full_rows: int  # tile rows per matmul against a whole (unrestricted) frame


def _plan(tiling: _Tiling, channels: int, targets: int, k: int, itemsize: int, memory_mib: float) -> _Plan:
    """Sizes such that the buffers alive at once fit the budget.

    Fixed: a column of window biases. Per target
    frame of a block: its column of query tiles (and their padded copy), its running top-k with the
    merge's temporaries, and its neighbours. What is left is split between the strips of a group of
    windowed frames and the score chunk (shared by whole-frame and windowed scores), cut by tile rows.
    One tile row of one target against one frame is the floor: a smaller budget cannot split it.
    """
    budget = memory_mib * 2**20
    n, q, kw = tiling.h * tiling.w, tiling.cells, tiling.window_cells
    fixed = tiling.nty * q * kw * itemsize
    per_target = tiling.nty * q * (2 * channels * itemsize + 3 * k * (itemsize + 8)) + n * k * (itemsize + 8)
    block = max(1, min(MAX_BLOCK, targets, int((budget / 2 - fixed) // per_target)))
    half = max(budget - fixed - block * per_target, 0) / 2
    strip, row_scores = tiling.strip_cells * channels * itemsize, block * q * kw * itemsize
    group = max(1, min(MAX_GROUP, int(half // strip)))
    window_rows = int(half // (group * row_scores))
    full_rows = int(half // (block * q * n * itemsize))
    return _Plan(block, group, max(1, min(tiling.nty, window_rows)), max(1, min(tiling.nty, full_rows)))


def _merge(values: torch.Tensor, indices: torch.Tensor, top: torch.Tensor, nodes: torch.Tensor, repeats: int) -> None:
    """Fold candidates ``(top, nodes)`` (each repeated ``repeats`` times) into the running top-k, in place."""
    k = values.shape[-1]
    pooled, where = torch.cat([values, top.repeat_interleave(repeats, -1)], -1).topk(k, dim=-1)
    values.copy_(pooled)
    indices.copy_(torch.cat([indices, nodes.repeat_interleave(repeats, -1)], -1).gather(-1, where))


def _runs(counts: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """Maximal runs ``(start, stop, count)`` of equal nonzero counts in ``counts``."""
    runs, start = [], 0
    for i in range(1, len(counts) + 1):
        if i == len(counts) or counts[i] != counts[start]:
            if counts[start]:
                runs.append((start, i, counts[start]))
            start = i
    return runs


def _context_of_block(targets: range, protocol: Protocol, group: int) -> tuple[list, list]:
    """The context frames of a block of targets, as matmul groups.

    Returns ``(full, windowed)``: ``full`` lists ``(frame, counts)`` of unrestricted frames, ``windowed``
    lists ``(frames, counts)`` of up to ``group`` windowed frames that every target sees in the same
    number of slots (``counts[b]`` for the b-th target, 0 if it does not see them).
    """
    counts: dict[tuple[int, bool], list[int]] = defaultdict(lambda: [0] * len(targets))
    for b, t in enumerate(targets):
        for s, windowed, count in context_slots(t, protocol):
            counts[(s, windowed)][b] = count
    full = [(s, tuple(c)) for (s, windowed), c in counts.items() if not windowed]
    alike: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for (s, windowed), c in counts.items():
        if windowed:
            alike[tuple(c)].append(s)
    windowed = [(frames[i : i + group], c) for c, frames in alike.items() for i in range(0, len(frames), group)]
    return full, windowed


def _block_neighbours(
    features: torch.Tensor, targets: range, protocol: Protocol, tiling: _Tiling, plan: _Plan, scratch: _Scratch
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k scores and context indices (frame·N + node) of every node of ``targets``: each [B, N, k].

    The returned tensors live in ``scratch`` and are overwritten by the next call.
    """
    _, C, h, w = features.shape
    N, k, B, Q, ww = h * w, protocol.topk, len(targets), tiling.cells, tiling.tw + 2 * tiling.reach
    full, windowed = _context_of_block(targets, protocol, plan.group)
    out_values = scratch.take("values", B, N, k)  # every node lies in one tile: all rows get written
    out_indices = scratch.take("indices", B, N, k, dtype=torch.long)
    frame_offsets = [torch.tensor(frames, device=features.device) * N for frames, _ in windowed]
    for tx in range(tiling.ntx):
        queries = tiling.column_queries(features[targets.start : targets.stop], tx)  # nty, B, Q, C
        values = features.new_full((tiling.nty, B, Q, k), float("-inf"))
        indices = torch.zeros(tiling.nty, B, Q, k, dtype=torch.long, device=features.device)
        for s, counts in full:
            for b0, b1, count in _runs(counts):
                for y0 in range(0, tiling.nty, plan.full_rows):
                    y1 = min(y0 + plan.full_rows, tiling.nty)
                    query = queries[y0:y1, b0:b1].reshape(-1, C)
                    scores = torch.mm(query, features[s].reshape(C, N), out=scratch.take("scores", query.shape[0], N))
                    top, nodes = scores.topk(min(k, N), dim=-1)
                    shape = (y1 - y0, b1 - b0, Q, -1)
                    _merge(values[y0:y1, b0:b1], indices[y0:y1, b0:b1], top.view(shape), (nodes + s * N).view(shape), min(count, k))
        bias = tiling.column_bias(tx)
        for (frames, counts), offsets in zip(windowed, frame_offsets, strict=True):
            G = len(frames)
            windows = tiling.column_windows([features[s] for s in frames], tx, scratch)
            for b0, b1, count in _runs(counts):
                for y0 in range(0, tiling.nty, plan.window_rows):
                    y1 = min(y0 + plan.window_rows, tiling.nty)
                    rows, nb = y1 - y0, b1 - b0
                    query = queries[y0:y1, b0:b1].reshape(rows, nb * Q, C)
                    scores = scratch.take("scores", rows, nb * Q, windows.shape[1])
                    torch.bmm(query, windows[y0:y1].transpose(1, 2), out=scores)
                    scores.view(rows, nb, Q, -1, G, ww).add_(bias[y0:y1])
                    top, pos = scores.topk(min(k, scores.shape[-1]), dim=-1)  # pos = (row · G + frame) · ww + column
                    cells = pos // (G * ww) * ww + pos % ww
                    nodes = tiling.key_nodes[tx, y0:y1].gather(1, cells.flatten(1)).view_as(pos) + offsets[pos // ww % G]
                    shape = (rows, nb, Q, -1)
                    _merge(values[y0:y1, b0:b1], indices[y0:y1, b0:b1], top.view(shape), nodes.view(shape), min(count, k))
        cells = tiling.query_nodes[tx].reshape(-1)
        inside = cells >= 0
        out_values[:, cells[inside]] = values.transpose(0, 1).reshape(B, -1, k)[:, inside]
        out_indices[:, cells[inside]] = indices.transpose(0, 1).reshape(B, -1, k)[:, inside]
    return out_values.div_(protocol.temperature), out_indices


def _budget(features: torch.Tensor, memory_mib: float | None) -> float:
    if memory_mib is not None:
        return memory_mib
    return CUDA_MEMORY_MIB if features.device.type == "cuda" else DEFAULT_MEMORY_MIB


#: the two neighbour searches: ``tiled`` (this module, CPU-shaped) and ``batched`` (:mod:`harness.engine.batched`)
PATHS = ("tiled", "batched")
#: environment variable that forces a search path (tests, benchmarks); the ``path`` argument wins over it
PATH_ENV = "HARNESS_PROPAGATION_PATH"

Search = Callable[[range], tuple[torch.Tensor, torch.Tensor]]


def search_path(device: torch.device, path: str | None = None) -> str:
    """``path``, else ``$HARNESS_PROPAGATION_PATH``, else by device: ``batched`` on CUDA, ``tiled`` elsewhere."""
    chosen = path or os.environ.get(PATH_ENV) or ("batched" if device.type == "cuda" else "tiled")
    if chosen not in PATHS:
        raise HarnessError(f"propagation path must be one of {', '.join(PATHS)}, got {chosen!r} (argument or ${PATH_ENV})")
    return chosen


def _search(features: torch.Tensor, protocol: Protocol, targets: int, memory_mib: float | None,
            path: str | None) -> tuple[int, Search]:
    """``(block size, search)``: ``search(block)`` gives the top-k scores and indices of a block of targets."""
    T, C, h, w = features.shape
    budget = _budget(features, memory_mib)
    if search_path(features.device, path) == "batched":
        geometry = batched.Geometry.build(h, w, protocol, features.dtype, features.device)
        context = protocol.context + int(protocol.keep_first)
        bplan = batched.plan(geometry, C, targets, protocol.topk, features.element_size(), budget, context)
        return bplan.block, lambda block: batched.block_neighbours(features, block, protocol, geometry, bplan)
    tiling = _Tiling.build(h, w, protocol, features.dtype, features.device)
    tplan = _plan(tiling, C, targets, protocol.topk, features.element_size(), budget)
    scratch = _Scratch(features)
    return tplan.block, lambda block: _block_neighbours(features, block, protocol, tiling, tplan, scratch)


def _reachable_topk(t: int, protocol: Protocol, nodes: int) -> int:
    """k' = min(topk, context slots · N): the width of the dense top-k for target ``t``."""
    return min(protocol.topk, sum(count for _, _, count in context_slots(t, protocol)) * nodes)


def frame_neighbours(
    features: torch.Tensor,
    t: int,
    protocol: str | Protocol = "crw",
    memory_mib: float | None = None,
    path: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of every node of target frame ``t`` over its context: ``(scores, index)``, each [N, k'].

    ``scores`` are similarity / temperature in decreasing order; ``index`` is ``frame * N + node`` of the
    context node (a node that fills several context slots may appear several times, as in the dense
    computation). ``k' = min(topk, number of context slots · N)``; scores of masked nodes are ``-inf``
    (only when fewer than k nodes are reachable) and their index is meaningless.
    """
    protocol = resolve_protocol(protocol) if isinstance(protocol, str) else protocol
    T, C, h, w = features.shape
    _, search = _search(features, protocol, 1, memory_mib, path)
    scores, index = search(range(t, t + 1))
    kept = _reachable_topk(t, protocol, h * w)
    return scores[0, :, :kept], index[0, :, :kept]


def _check_inputs(features: torch.Tensor, first_labels: torch.Tensor) -> None:
    if features.dim() != 4 or not features.is_floating_point():
        raise HarnessError(f"propagate: features must be a float tensor [T, C, h, w], got {features.dtype} {tuple(features.shape)}")
    if first_labels.dim() != 3 or tuple(first_labels.shape[1:]) != tuple(features.shape[2:]):
        raise HarnessError(
            f"propagate: first_labels must be [K, h, w] with the grid of the features {tuple(features.shape[2:])}, "
            f"got {tuple(first_labels.shape)}"
        )
    if features.shape[0] < 1 or features.shape[1] < 1 or features[0, 0].numel() < 1:
        raise HarnessError(f"propagate: empty features {tuple(features.shape)}")
    for t, frame in enumerate(features):  # frame by frame: no video-sized temporary
        if not bool(torch.isfinite(frame).all()):
            raise MethodError(f"propagate: features of frame {t} contain NaN or infinite values")


def propagate(
    features: torch.Tensor,
    first_labels: torch.Tensor,
    protocol: str | Protocol = "crw",
    memory_mib: float | None = None,
    path: str | None = None,
) -> torch.Tensor:
    """Soft labels ``[T, K, h, w]`` for every frame of one video, in the dtype and on the device of ``features``.

    ``features``: ``[T, C, h, w]`` L2-normalised; ``first_labels``: ``[K, h, w]`` soft labels of frame 0.
    Frame 0 of the output is ``first_labels``; later frames are fed back, unnormalised, as context.
    ``memory_mib`` bounds the working memory besides the features and the returned labels (default:
    :data:`DEFAULT_MEMORY_MIB` on CPU, :data:`CUDA_MEMORY_MIB` on CUDA). ``path`` picks the neighbour
    search (see :func:`search_path`); both give the same top-k.
    """
    protocol = resolve_protocol(protocol) if isinstance(protocol, str) else protocol
    _check_inputs(features, first_labels)
    T, C, h, w = features.shape
    protocol = fit_to_video(protocol, T, h, w)  # out-of-range settings lowered to the video's bounds
    K, N = first_labels.shape[0], h * w
    labels = features.new_zeros(T, K, N)
    labels[0] = first_labels.reshape(K, N).to(labels)
    size, search = _search(features, protocol, T - 1, memory_mib, path)
    by_node = labels.permute(0, 2, 1)  # T, N, K view: the label vector of (frame, node)
    for start in range(1, T, size):
        block = range(start, min(start + size, T))
        scores, index = search(block)
        for b, t in enumerate(block):  # in order: frame t's context labels include frames of this block
            weights = torch.softmax(scores[b], dim=1)  # masked nodes (-inf) get weight exactly 0
            context = by_node[index[b] // N, index[b] % N]  # N, k, K
            labels[t] = torch.bmm(weights.unsqueeze(1), context).squeeze(1).T
    return labels.reshape(T, K, h, w)
