"""Label propagation: carry frame 0's labels to every later frame by feature affinity.

For each target frame the context is the first frame plus a queue of previous frames (see
:func:`context_slots`); each target node takes the softmax-weighted mean of the labels of its top-k
most similar context nodes. Short-term frames (and, for ``restrict_first`` protocols, the first frame)
are searched only inside a disk or square of ``radius`` cells around the node, so computing the dense
``(n+1)·N × N`` affinity the way CRW and DINO do wastes most of its work and memory (CRW needs ~40 GB
on DAVIS, DINO runs out of GPU memory on wide videos).

This engine gives the same top-k as the dense computation while touching only what can win:

- the query grid is cut into small rectangular *tiles*; for a tile, the keys of a windowed context frame
  are the tile grown by the window reach on every side, so one batched matmul scores a whole tile
  against everything its window can reach, and an additive 0/-inf bias removes what lies outside the
  disk/square or the image. The windows are read in place: context frames are copied once into column
  strips (see :meth:`_Tiling.strips`) in which every window is a contiguous block, instead of being
  gathered window by window (which copies each key ~10 times and cost as much as the matmul);
- the top-k over the union of all context nodes is contained in the union of top-k's over any split of
  the context, so the unrestricted first frame, each group of windowed frames (scored by one matmul)
  and each repeated frame are reduced to their own top-k and the candidates merged. A frame that fills
  several context slots (CRW pads the queue with copies of frame 0) has its candidates repeated once per
  slot (at most k times), which reproduces the dense top-k exactly;
- queries are processed in chunks of tile rows, and windowed frames in groups, sized to a memory
  budget, so the working memory does not depend on video length or context size.

Top-k depends on features only, but context labels are the fed-back predictions, so frames are
processed in order: the neighbours of frame t are found just before its labels are computed.

Pure tensor math: no task, method, CLI or file I/O here. Runs on whatever device the features are on.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness.errors import HarnessError, MethodError
from harness.protocol import Protocol, resolve_protocol

#: working-memory budget of one propagation (score chunks, key strips), in MiB; halving it to 64 cost
#: no measurable speed at DAVIS 480p
DEFAULT_MEMORY_MIB = 128
#: (rows, columns) of the query tiles. A tile scores (rows + 2·reach)·(columns + 2·reach) keys per query
#: (1020 at radius 12, against 441 in the disk) while strips copy each key (columns + 2·reach)/columns
#: times; 8x12 was the fastest of 8x8, 8x12, 12x12, 6x12, 4x16 at DAVIS 480p on CPU.
TILE = (8, 12)


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
    for s in range(t - protocol.context, t):
        if s >= 0 or protocol.pad_with_first:
            slots[(max(s, 0), True)] += 1
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


@dataclass(frozen=True)
class _Tiling:
    """Index tables of the tiled grid, built once per video (their size depends on h, w and radius only)."""

    h: int
    w: int
    th: int
    tw: int
    reach: int
    nty: int
    ntx: int
    query_nodes: torch.Tensor  # [tiles, th*tw] flat node of each tile cell, -1 outside the grid
    key_nodes: torch.Tensor  # [tiles, wh*ww] flat node of each window cell, 0 outside the grid
    offset_bias: torch.Tensor  # [th*tw, wh*ww] 0 where the window admits the offset, -inf elsewhere
    outside_bias: torch.Tensor  # [tiles, wh*ww] 0 for window cells inside the grid, -inf outside

    @classmethod
    def build(cls, h: int, w: int, protocol: Protocol, dtype: torch.dtype, device: torch.device) -> _Tiling:
        th, tw, reach = min(TILE[0], h), min(TILE[1], w), window_reach(protocol)
        nty, ntx = -(-h // th), -(-w // tw)
        wh, ww = th + 2 * reach, tw + 2 * reach
        ty = torch.arange(nty, device=device).view(nty, 1, 1, 1)
        tx = torch.arange(ntx, device=device).view(1, ntx, 1, 1)
        # query cells: absolute position of cell (qy, qx) of tile (ty, tx)
        qy = (ty * th + torch.arange(th, device=device).view(1, 1, th, 1)).expand(nty, ntx, th, tw)
        qx = (tx * tw + torch.arange(tw, device=device).view(1, 1, 1, tw)).expand(nty, ntx, th, tw)
        query_nodes = torch.where((qy < h) & (qx < w), qy * w + qx, -1).reshape(nty * ntx, th * tw)
        # window cells: absolute position of cell (ky, kx) of the window of tile (ty, tx)
        ky = (ty * th - reach + torch.arange(wh, device=device).view(1, 1, wh, 1)).expand(nty, ntx, wh, ww)
        kx = (tx * tw - reach + torch.arange(ww, device=device).view(1, 1, 1, ww)).expand(nty, ntx, wh, ww)
        inside = (ky >= 0) & (ky < h) & (kx >= 0) & (kx < w)
        key_nodes = torch.where(inside, ky * w + kx, 0).reshape(nty * ntx, wh * ww)
        # offsets between a tile cell and a window cell are the same for every tile
        cy, cx = torch.meshgrid(torch.arange(th, device=device), torch.arange(tw, device=device), indexing="ij")
        wy, wx = torch.meshgrid(torch.arange(wh, device=device), torch.arange(ww, device=device), indexing="ij")
        dy = wy.reshape(1, -1) - reach - cy.reshape(-1, 1)
        dx = wx.reshape(1, -1) - reach - cx.reshape(-1, 1)
        blocked = torch.full((), float("-inf"), dtype=dtype, device=device)
        offset_bias = torch.where(window_admits(dy, dx, protocol), 0.0, blocked)
        outside_bias = torch.where(inside.reshape(nty * ntx, wh * ww), 0.0, blocked)
        return cls(h, w, th, tw, reach, nty, ntx, query_nodes, key_nodes, offset_bias, outside_bias)

    @property
    def window_cells(self) -> int:
        return (self.th + 2 * self.reach) * (self.tw + 2 * self.reach)

    def queries(self, frame: torch.Tensor) -> torch.Tensor:
        """Features of ``frame`` [C, h, w] tile by tile, as [tiles, th*tw, C] (zeros outside the grid)."""
        C = frame.shape[0]
        part = F.pad(frame, (0, self.ntx * self.tw - self.w, 0, self.nty * self.th - self.h))
        part = part.reshape(C, self.nty, self.th, self.ntx, self.tw).permute(1, 3, 2, 4, 0)
        return part.reshape(self.nty * self.ntx, self.th * self.tw, C)

    def strips(self, frames: list[torch.Tensor]) -> torch.Tensor:
        """Column strips of several frames [C, h, w], laid out so that matmuls need no gather.

        Returns [ntx, nty·th + 2·reach, G, ww, C]: strip ``tx`` holds the columns that the windows of
        tile column ``tx`` cover, each grid row holding the G frames one after the other. The window of
        tile (ty, tx) over all G frames is then one contiguous [wh·G·ww, C] block (order: window row,
        frame, window column), and consecutive tile rows are a fixed stride apart, so a batched matmul
        reads the windows in place through an overlapping view. Cells outside the grid are zeros (their
        scores are masked).
        """
        r, C = self.reach, frames[0].shape[0]
        ww = self.tw + 2 * r
        out = frames[0].new_empty(self.ntx, self.nty * self.th + 2 * r, len(frames), ww, C)
        for g, frame in enumerate(frames):
            part = frame.permute(1, 2, 0)
            part = F.pad(part, (0, 0, r, self.ntx * self.tw - self.w + r, r, self.nty * self.th - self.h + r))
            out[:, :, g] = part.unfold(1, ww, self.tw).permute(1, 0, 3, 2)  # rows, ntx, C, ww -> ntx, rows, ww, C
        return out

    def windows(self, strips: torch.Tensor, tx: int) -> torch.Tensor:
        """The [nty, wh·G·ww, C] windows of tile column ``tx``: an overlapping view into ``strips``."""
        strip = strips[tx]
        _, G, ww, C = strip.shape
        wh = self.th + 2 * self.reach
        return strip.as_strided((self.nty, wh * G * ww, C), (self.th * G * ww * C, C, 1), strip.storage_offset())


@dataclass(frozen=True)
class _Plan:
    """How one target frame is cut to fit the memory budget."""

    rows: int  # tile rows per chunk of first-frame scores
    group: int  # windowed context frames scored by one matmul


def _plan(tiling: _Tiling, channels: int, frames: int, itemsize: int, memory_mib: float) -> _Plan:
    """Chunk sizes so that the largest tensors alive at once fit the budget.

    Those are a chunk of first-frame scores (tile rows against a whole frame), or the column strips of a
    group of windowed frames plus one tile column's scores against them. One frame's strips (about 4x
    its features at radius 12) are the floor: a smaller budget cannot split them.
    """
    budget = memory_mib * 2**20
    q, kw, ww = tiling.th * tiling.tw, tiling.window_cells, tiling.tw + 2 * tiling.reach
    first = tiling.ntx * q * tiling.h * tiling.w * itemsize
    strips = tiling.ntx * (tiling.nty * tiling.th + 2 * tiling.reach) * ww * channels * itemsize
    scores = tiling.nty * q * kw * itemsize
    rows = max(1, min(tiling.nty, int(budget // first)))
    return _Plan(rows, max(1, min(frames, int(budget // (strips + scores)))))


def _top(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    return scores.topk(min(k, scores.shape[-1]), dim=-1)


def _tile_neighbours(
    features: torch.Tensor, t: int, protocol: Protocol, tiling: _Tiling, plan: _Plan
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k scores and context indices (frame·N + node) of every tile cell of frame ``t``: [tiles, Q, k]."""
    k, N, ntx = protocol.topk, tiling.h * tiling.w, tiling.ntx
    queries = tiling.queries(features[t])  # tiles, Q, C
    B, Q, C = queries.shape
    values, indices = [], []

    def add(top: torch.Tensor, index: torch.Tensor, count: int) -> None:
        repeats = min(count, k)  # identical slots: the dense top-k may take a node once per slot
        values.append(top.repeat(1, 1, repeats))
        indices.append(index.repeat(1, 1, repeats))

    windowed = []
    for s, restricted, count in context_slots(t, protocol):
        if restricted:
            windowed.append((s, count))
            continue
        keys, chunk = features[s].reshape(C, N), plan.rows * ntx  # every node of frame s
        found = [_top(queries[i : i + chunk] @ keys, k) for i in range(0, B, chunk)]
        add(torch.cat([top for top, _ in found]), torch.cat([nodes for _, nodes in found]) + s * N, count)
    # frames filling one slot share a matmul and a top-k; a repeated frame is scored on its own
    groups = [[s] for s, count in windowed if count > 1]
    single = [s for s, count in windowed if count == 1]
    groups += [single[i : i + plan.group] for i in range(0, len(single), plan.group)]
    counts = dict(windowed)
    R, kw, wh, ww = tiling.nty, tiling.window_cells, tiling.th + 2 * tiling.reach, tiling.tw + 2 * tiling.reach
    for group in groups:
        G = len(group)
        strips = tiling.strips([features[s] for s in group])
        offsets = torch.tensor([s * N for s in group], device=queries.device)
        tops, found = [], []
        for tx in range(ntx):
            column = slice(tx, None, ntx)  # the tiles of tile column tx, one per tile row
            scores = torch.bmm(queries[column], tiling.windows(strips, tx).transpose(1, 2))
            bias = tiling.offset_bias.unsqueeze(0) + tiling.outside_bias[column].unsqueeze(1)  # R, Q, kw
            scores.view(R, Q, wh, G, ww).add_(bias.view(R, Q, wh, 1, ww))
            top, pos = _top(scores, k)  # pos = (window row · G + frame) · ww + window column
            cell = pos // (G * ww) * ww + pos % ww
            nodes = tiling.key_nodes[column].unsqueeze(1).expand(R, Q, kw).gather(2, cell)
            found.append(offsets.expand(R, Q, G).gather(2, pos // ww % G) + nodes)
            tops.append(top)
        # back to tile order (tile row major): [tx, R, Q, k] -> [R, tx, Q, k]
        add(torch.stack(tops, 1).flatten(0, 1), torch.stack(found, 1).flatten(0, 1), counts[group[0]])
    top, pos = _top(torch.cat(values, dim=2), k)
    return top / protocol.temperature, torch.cat(indices, dim=2).gather(2, pos)


def frame_neighbours(
    features: torch.Tensor,
    t: int,
    protocol: str | Protocol = "crw",
    memory_mib: float = DEFAULT_MEMORY_MIB,
    _tiling: _Tiling | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of every node of target frame ``t`` over its context: ``(scores, index)``, each [N, k'].

    ``scores`` are similarity / temperature in decreasing order; ``index`` is ``frame * N + node`` of the
    context node (a node that fills several context slots may appear several times, as in the dense
    computation). ``k' = min(topk, number of context slots · N)``; scores of masked nodes are ``-inf``
    (only when fewer than k nodes are reachable) and their index is meaningless.
    """
    protocol = resolve_protocol(protocol) if isinstance(protocol, str) else protocol
    T, C, h, w = features.shape
    tiling = _tiling or _Tiling.build(h, w, protocol, features.dtype, features.device)
    plan = _plan(tiling, C, protocol.context + 1, features.element_size(), memory_mib)
    top, idx = _tile_neighbours(features, t, protocol, tiling, plan)
    nodes = tiling.query_nodes.reshape(-1)
    inside = nodes >= 0
    scores = top.new_empty(h * w, top.shape[2])
    index = idx.new_empty(h * w, idx.shape[2])
    scores[nodes[inside]] = top.reshape(-1, top.shape[2])[inside]
    index[nodes[inside]] = idx.reshape(-1, idx.shape[2])[inside]
    return scores, index


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
    memory_mib: float = DEFAULT_MEMORY_MIB,
) -> torch.Tensor:
    """Soft labels ``[T, K, h, w]`` for every frame of one video, in the dtype and on the device of ``features``.

    ``features``: ``[T, C, h, w]`` L2-normalised; ``first_labels``: ``[K, h, w]`` soft labels of frame 0.
    Frame 0 of the output is ``first_labels``; later frames are fed back, unnormalised, as context.
    ``memory_mib`` bounds the working memory besides the features and the returned labels.
    """
    protocol = resolve_protocol(protocol) if isinstance(protocol, str) else protocol
    _check_inputs(features, first_labels)
    T, C, h, w = features.shape
    K, N = first_labels.shape[0], h * w
    labels = features.new_zeros(T, K, N)
    labels[0] = first_labels.reshape(K, N).to(labels)
    tiling = _Tiling.build(h, w, protocol, features.dtype, features.device)
    by_node = labels.permute(0, 2, 1)  # T, N, K view: the label vector of (frame, node)
    for t in range(1, T):
        scores, index = frame_neighbours(features, t, protocol, memory_mib, _tiling=tiling)
        weights = torch.softmax(scores, dim=1)  # masked nodes (-inf) get weight exactly 0
        context = by_node[index // N, index % N]  # N, k, K
        labels[t] = torch.bmm(weights.unsqueeze(1), context).squeeze(1).T
    return labels.reshape(T, K, h, w)
