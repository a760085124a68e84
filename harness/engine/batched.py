"""GPU-shaped neighbour search: a few large batched kernels per block of target frames.

The tiled path (:mod:`harness.engine.propagation`) walks tile columns and groups of frames in Python,
which suits a CPU (small working set, no launch cost) but leaves a GPU idle between hundreds of small
kernel launches per frame. Here every step covers *all* query tiles of a block of target frames at once:

- the grid is cut into tiles of ``TILE`` cells; the keys a tile can reach in a windowed frame are the
  tile grown by the window reach. For a group of G windowed context frames, one gather copies every
  tile's window out of the zero-padded frames ([tiles, C, G·window]), and one batched matmul scores all
  tiles of all B targets against them ([tiles, B·Q, G·window]);
- two additive 0/-inf biases (the window shape, the same for every tile; the grid border, per tile)
  mask what the window does not admit, and one top-k per context frame (over ~1k candidates, not over the
  ~135k of all context nodes at once) keeps each frame's best k;
- a frame that fills c context slots (CRW pads the queue with copies of frame 0) contributes its top-k
  values repeated c times; the first k of that list are entries ``j // c`` of the frame's own sorted
  top-k, a fixed-width gather, so targets with different counts share the same kernels (a count of 0,
  a frame the target does not see, gives -inf);
- the per-frame lists are merged into a running top-k, one small top-k per group. Unrestricted frames
  (CRW's first frame) are scored whole, in row chunks, through the same expansion and merge.

The top-k over all context nodes is contained in the union of per-frame top-k's, so the result is the
dense top-k exactly (up to the order of equal scores). Blocks, groups and tile chunks are sized to the
memory budget. Pure torch: it runs (and is tested) on CPU too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness.engine.protocol import Protocol
from harness.engine.window import context_slots, window_admits, window_reach

#: (rows, columns) of a query tile: larger tiles waste more window area (a 8x8 tile scores 30x30 keys per
#: query at radius 12, ~2x the disk) but make fewer, larger matmuls, which is what a GPU needs
TILE = (8, 8)
#: most target frames whose neighbours are found together
MAX_BLOCK = 8
#: most windowed context frames gathered and scored by one matmul
MAX_GROUP = 8


@dataclass(frozen=True)
class Geometry:
    """Index tables of the tiled, padded grid (built once per video; sizes depend on h, w, radius only).

    Tiles are numbered row-major, ``P`` of them, each with ``Q`` query cells and a window of ``kw`` cells.
    Frames are zero-padded by ``reach`` on every side (and to whole tiles) to ``hp x wp``.
    """

    h: int
    w: int
    reach: int
    tiled_h: int  # nty·th
    tiled_w: int  # ntx·tw
    tiles: int  # P
    cells: int  # Q
    window_cells: int  # kw
    query_pos: torch.Tensor  # [P·Q] flat position of each tile cell in the tiled grid tiled_h x tiled_w
    query_nodes: torch.Tensor  # [P, Q] node of each tile cell, -1 outside the grid
    key_pos: torch.Tensor  # [P·kw] flat position of each window cell in the padded frame
    key_nodes: torch.Tensor  # [P, kw] node of each window cell (0 outside the grid, masked by the bias)
    offset_bias: torch.Tensor  # [Q, kw] 0 where the window admits the offset, -inf elsewhere (same for all tiles)
    outside_bias: torch.Tensor  # [P, kw] 0 for window cells inside the grid, -inf outside

    @classmethod
    def build(cls, h: int, w: int, protocol: Protocol, dtype: torch.dtype, device: torch.device,
              tile: tuple[int, int] = TILE) -> Geometry:
        th, tw, r = min(tile[0], h), min(tile[1], w), window_reach(protocol)
        nty, ntx = -(-h // th), -(-w // tw)
        wh, ww = th + 2 * r, tw + 2 * r
        wp = ntx * tw + 2 * r

        def spans(n: int, size: int, span: int) -> torch.Tensor:  # [n, span]: tile i covers i·size + 0..span-1
            return (torch.arange(n, device=device) * size).view(n, 1) + torch.arange(span, device=device).view(1, span)

        qy, qx = spans(nty, th, th).view(nty, 1, th, 1), spans(ntx, tw, tw).view(1, ntx, 1, tw)
        query_nodes = torch.where((qy < h) & (qx < w), qy * w + qx, -1).reshape(nty * ntx, th * tw)
        query_pos = (qy * (ntx * tw) + qx).expand(nty, ntx, th, tw).reshape(-1)
        ky, kx = spans(nty, th, wh).view(nty, 1, wh, 1), spans(ntx, tw, ww).view(1, ntx, 1, ww)  # padded coords
        key_pos = (ky * wp + kx).expand(nty, ntx, wh, ww).reshape(-1)
        gy, gx = ky - r, kx - r  # grid coordinates of the window cells
        inside = ((gy >= 0) & (gy < h) & (gx >= 0) & (gx < w)).expand(nty, ntx, wh, ww).reshape(nty * ntx, wh * ww)
        key_nodes = torch.where(inside, (gy * w + gx).expand(nty, ntx, wh, ww).reshape(nty * ntx, -1), 0)
        cy, cx = torch.meshgrid(torch.arange(th, device=device), torch.arange(tw, device=device), indexing="ij")
        wy, wx = torch.meshgrid(torch.arange(wh, device=device), torch.arange(ww, device=device), indexing="ij")
        dy = wy.reshape(1, -1) - r - cy.reshape(-1, 1)
        dx = wx.reshape(1, -1) - r - cx.reshape(-1, 1)
        offset_bias = torch.zeros(dy.shape, dtype=dtype, device=device).masked_fill_(
            ~window_admits(dy, dx, protocol), float("-inf"))
        outside_bias = torch.zeros(inside.shape, dtype=dtype, device=device).masked_fill_(~inside, float("-inf"))
        return cls(h, w, r, nty * th, ntx * tw, nty * ntx, th * tw, wh * ww, query_pos, query_nodes, key_pos,
                   key_nodes, offset_bias, outside_bias)

    def queries(self, frames: torch.Tensor) -> torch.Tensor:
        """Features of ``frames`` [B, C, h, w] cut into tiles: [P, B·Q, C] (zeros outside the grid)."""
        B, C = frames.shape[:2]
        tiled = F.pad(frames, (0, self.tiled_w - self.w, 0, self.tiled_h - self.h)).reshape(B, C, -1)
        cut = tiled.index_select(2, self.query_pos).view(B, C, self.tiles, self.cells)
        return cut.permute(2, 0, 3, 1).reshape(self.tiles, B * self.cells, C)

    def windows(self, frames: torch.Tensor, p0: int, p1: int) -> torch.Tensor:
        """Windows of tiles ``p0:p1`` in ``frames`` [G, C, h, w]: [p1-p0, C, G·kw] (zeros outside the grid)."""
        G, C = frames.shape[:2]
        r = self.reach
        padded = F.pad(frames, (r, r + self.tiled_w - self.w, r, r + self.tiled_h - self.h)).reshape(G, C, -1)
        kw = self.window_cells
        cut = padded.index_select(2, self.key_pos[p0 * kw : p1 * kw]).view(G, C, p1 - p0, kw)
        return cut.permute(2, 1, 0, 3).reshape(p1 - p0, C, G * kw)


@dataclass(frozen=True)
class Plan:
    """How a block of target frames is cut to fit the memory budget."""

    block: int  # target frames whose neighbours are found together
    group: int  # windowed context frames per gather + matmul
    tile_chunk: int  # tiles per matmul
    full_rows: int  # query rows per matmul against a whole (unrestricted) frame


def plan(geometry: Geometry, channels: int, targets: int, k: int, itemsize: int, memory_mib: float,
         context_frames: int) -> Plan:
    """Sizes such that the large buffers alive at once fit the budget (one tile chunk of one group is the floor).

    Per tile and target: the queries, the running top-k and the merge temporaries; per tile, target and
    frame of a group: the scores (and the bias add in place) plus the per-frame top-k; per tile and
    frame: the gathered windows (and the padded copy of the frames).
    """
    budget = memory_mib * 2**20
    P, Q, kw, N = geometry.tiles, geometry.cells, geometry.window_cells, geometry.h * geometry.w
    fixed = (geometry.offset_bias.numel() + geometry.outside_bias.numel()) * itemsize
    block = max(1, min(MAX_BLOCK, targets))
    group = max(1, min(MAX_GROUP, context_frames))

    def tile_bytes(b: int, g: int) -> float:
        per_target = Q * (channels * itemsize + 3 * k * (itemsize + 8)) + g * Q * (kw * itemsize + 2 * k * (itemsize + 8))
        return b * per_target + g * kw * channels * itemsize * 2

    while block * group > 1 and fixed + tile_bytes(block, group) > budget:  # large matmuls first, then tiles
        if group >= block and group > 1:
            group -= 1
        else:
            block -= 1
    tile_chunk = int(max(budget - fixed, 0) // tile_bytes(block, group))
    full_rows = int(max(budget - fixed, 0) / 2 // (N * itemsize + k * (itemsize + 8)))
    return Plan(block, group, max(1, min(P, tile_chunk)), max(Q, full_rows))


def _expand(top: torch.Tensor, where: torch.Tensor, counts: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each frame's sorted top-k' repeated ``counts`` times, cut to the first k: ``[..., B, rows, G, k]``.

    ``top``/``where``: [..., B, rows, G, k'] (values and positions); ``counts``: [B, G]. Entry j of the
    repeated list is entry ``j // c`` of the frame's own list; past ``c·k'`` (or for c = 0) it is -inf.
    """
    kk = top.shape[-1]
    j = torch.arange(k, device=top.device)
    c = counts.clamp_min(1).unsqueeze(-1)  # B, G, 1
    src = (j // c).clamp_max(kk - 1)  # B, G, k
    valid = (j < counts.unsqueeze(-1) * kk)  # B, G, k
    shape = list(top.shape[:-1]) + [k]
    src = src.unsqueeze(-3).expand(shape)  # broadcast over the rows of each target
    values = top.gather(-1, src).masked_fill_(~valid.unsqueeze(-3).expand(shape), float("-inf"))
    return values, where.gather(-1, src)


def _merge(values: torch.Tensor, indices: torch.Tensor, top: torch.Tensor, nodes: torch.Tensor) -> None:
    """Fold candidates [..., m] into the running top-k [..., k], in place."""
    k = values.shape[-1]
    pooled, pick = torch.cat([values, top], -1).topk(k, dim=-1)
    values.copy_(pooled)
    indices.copy_(torch.cat([indices, nodes], -1).gather(-1, pick))


def _context_counts(targets: range, protocol: Protocol) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """``(windowed, full)``: per context frame, how many slots each target of the block gives it."""
    windowed: dict[int, list[int]] = {}
    full: dict[int, list[int]] = {}
    for b, t in enumerate(targets):
        for s, is_windowed, count in context_slots(t, protocol):
            (windowed if is_windowed else full).setdefault(s, [0] * len(targets))[b] = count
    return windowed, full


def block_neighbours(features: torch.Tensor, targets: range, protocol: Protocol, geometry: Geometry,
                     plan: Plan) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k scores / temperature and context indices (frame·N + node) of every node of ``targets``: [B, N, k]."""
    T, C, h, w = features.shape
    N, k, B = h * w, protocol.topk, len(targets)
    P, Q, kw = geometry.tiles, geometry.cells, geometry.window_cells
    device = features.device
    windowed, full = _context_counts(targets, protocol)
    queries = geometry.queries(features[targets.start : targets.stop])  # P, B·Q, C
    values = features.new_full((P, B, Q, k), float("-inf"))
    indices = torch.zeros(P, B, Q, k, dtype=torch.long, device=device)
    frames = sorted(windowed)
    for g0 in range(0, len(frames), plan.group):
        group = frames[g0 : g0 + plan.group]
        G = len(group)
        counts = torch.tensor([windowed[s] for s in group], device=device).T  # B, G
        offsets = torch.tensor(group, device=device) * N
        stack = features[group]
        kk = min(k, kw)
        for p0 in range(0, P, plan.tile_chunk):
            p1 = min(p0 + plan.tile_chunk, P)
            scores = torch.bmm(queries[p0:p1], geometry.windows(stack, p0, p1))  # p, B·Q, G·kw
            scores = scores.view(p1 - p0, B, Q, G, kw).add_(geometry.offset_bias.view(1, 1, Q, 1, kw))
            scores.add_(geometry.outside_bias[p0:p1].view(p1 - p0, 1, 1, 1, kw))
            top, pos = scores.topk(kk, dim=-1)  # p, B, Q, G, kk
            del scores
            nodes = geometry.key_nodes[p0:p1].gather(1, pos.flatten(1)).view_as(pos) + offsets.view(G, 1)
            top, nodes = _expand(top, nodes, counts, k)  # p, B, Q, G, k
            _merge(values[p0:p1], indices[p0:p1], top.flatten(-2), nodes.flatten(-2))
    for s, per_target in full.items():
        counts = torch.tensor(per_target, device=device).view(B, 1)
        keys = features[s].reshape(C, N)
        kk = min(k, N)
        rows = max(1, plan.full_rows // (B * Q))  # tiles per chunk
        for p0 in range(0, P, rows):
            p1 = min(p0 + rows, P)
            scores = torch.mm(queries[p0:p1].reshape(-1, C), keys)
            top, nodes = scores.topk(kk, dim=-1)
            del scores
            shape = (p1 - p0, B, Q, 1, kk)
            top, nodes = _expand(top.view(shape), (nodes + s * N).view(shape), counts, k)
            _merge(values[p0:p1], indices[p0:p1], top.flatten(-2), nodes.flatten(-2))
    cells = geometry.query_nodes.reshape(-1)
    inside = cells >= 0
    out_values = values.transpose(0, 1).reshape(B, P * Q, k)[:, inside]
    out_indices = indices.transpose(0, 1).reshape(B, P * Q, k)[:, inside]
    order = torch.empty_like(cells[inside]).scatter_(0, cells[inside], torch.arange(int(inside.sum()), device=device))
    return out_values[:, order].div_(protocol.temperature), out_indices[:, order]
