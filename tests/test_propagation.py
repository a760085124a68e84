"""The propagation engine against dense label propagation (exact in float64) and against a per-node loop.

Three levels, each checking the next: a plain Python loop over nodes (tiny cases) checks the dense
reference in ``harness.perf.dense_reference``; the dense reference checks the tiled engine on random
and real features, odd grids, short and long videos, both presets.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.engine import batched
from harness.engine.propagation import (
    DEFAULT_MEMORY_MIB,
    PATH_ENV,
    PATHS,
    _plan,
    _Tiling,
    context_slots,
    frame_neighbours,
    propagate,
    search_path,
)
from harness.engine.protocol import resolve_protocol
from harness.errors import HarnessError, MethodError
from harness.perf.dense_reference import (
    context_frames,
    dense_topk,
    propagate_dense,
    topk_disagreement,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
BLACKSWAN = SHARED / "data" / "davis2017-layout-val10" / "JPEGImages" / "480p" / "blackswan"


def unit_features(T: int, C: int, h: int, w: int, seed: int = 0, dtype=torch.float64, smooth: int = 0):
    """Random unit vectors; ``smooth`` > 0 averages neighbours so that nearby nodes look alike."""
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(T, C, h, w, generator=gen, dtype=torch.float64)
    if smooth:
        feats = torch.nn.functional.avg_pool2d(feats, 2 * smooth + 1, stride=1, padding=smooth, count_include_pad=False)
        feats = feats + 0.1 * torch.randn(T, C, h, w, generator=gen, dtype=torch.float64)
    return (feats / feats.norm(dim=1, keepdim=True)).to(dtype)


def soft_labels(K: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(K, h, w, generator=gen, dtype=torch.float64)


def loop_reference(features: np.ndarray, first: np.ndarray, p) -> np.ndarray:
    """Label propagation one node at a time, straight from the protocol text (docs/protocol.md §4.2–4.3)."""
    T, C, h, w = features.shape
    K = first.shape[0]
    labels = np.zeros((T, K, h, w))
    labels[0] = first
    for t in range(1, T):
        context = [(0, p.restrict_first)] if p.keep_first else []
        context += [(max(s, 0), True) for s in range(t - p.context, t) if s >= 0 or p.pad_with_first]
        for y in range(h):
            for x in range(w):
                candidates = []
                for s, windowed in context:
                    for yy in range(h):
                        for xx in range(w):
                            dy, dx = yy - y, xx - x
                            inside = dy * dy + dx * dx < p.radius**2 if p.window == "disk" else max(abs(dy), abs(dx)) <= p.radius
                            if windowed and not inside:
                                continue
                            score = float(features[t, :, y, x] @ features[s, :, yy, xx]) / p.temperature
                            candidates.append((score, labels[s, :, yy, xx]))
                candidates.sort(key=lambda c: -c[0])
                top = candidates[: p.topk]
                weights = np.exp(np.array([c[0] for c in top]) - top[0][0])
                weights /= weights.sum()
                labels[t, :, y, x] = sum(wgt * lab for wgt, (_, lab) in zip(weights, top, strict=True))
    return labels


@pytest.mark.parametrize(
    "family,overrides",
    [
        ("crw", {"context": 2, "topk": 3, "radius": 1.5}),
        ("dino", {"context": 2, "topk": 2, "radius": 1}),
        ("crw", {"context": 3, "topk": 30, "radius": 2}),  # top-k beyond the reachable nodes
    ],
)
def test_dense_reference_equals_node_loop(family, overrides):
    p = resolve_protocol(family, overrides=overrides)
    feats, first = unit_features(5, 4, 3, 4, seed=3), soft_labels(2, 3, 4)
    expected = loop_reference(feats.numpy(), first.numpy(), p)
    assert np.abs(propagate_dense(feats, first, p).numpy() - expected).max() <= 1e-12


def test_one_hot_features_follow_motion():
    """Each cell has its own feature; frame 1 is frame 0 shifted right by one cell, so top-1 moves labels."""
    h, w = 1, 6
    base = torch.eye(w, dtype=torch.float64).T.reshape(w, 1, w)  # C = w, cell x has feature e_x
    frame1 = torch.roll(base, shifts=1, dims=2)
    frame1[:, :, 0] = base[:, :, 0]  # the left edge keeps its own feature
    feats = torch.stack([base, frame1])
    first = torch.arange(w, dtype=torch.float64).reshape(1, h, w)
    for family in ("crw", "dino"):
        out = propagate(feats, first, resolve_protocol(family, overrides={"topk": 1}))
        assert out[1, 0, 0].tolist() == [0, 0, 1, 2, 3, 4]


# (T, h, w, K, overrides): odd grids, grids smaller than the window, single rows, T below/above context
SHAPES = [
    (1, 5, 6, 2, {}),
    (2, 7, 13, 1, {}),
    (4, 1, 40, 2, {}),
    (3, 40, 1, 3, {}),
    (6, 2, 3, 2, {"topk": 50}),
    (9, 9, 11, 3, {"context": 3}),
    (12, 17, 23, 2, {"radius": 3.5, "context": 4}),
    (8, 20, 31, 1, {"radius": 2, "topk": 7}),
    (25, 6, 29, 2, {}),
    (5, 13, 27, 4, {"keep_first": False, "context": 2, "radius": 4}),
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("family", ["crw", "dino"])
@pytest.mark.parametrize("T,h,w,K,overrides", SHAPES)
def test_engine_equals_dense_float64(family, T, h, w, K, overrides, path):
    p = resolve_protocol(family, overrides=overrides)
    feats, first = unit_features(T, 8, h, w, seed=T + h + w), soft_labels(K, h, w)
    out = propagate(feats, first, p, path=path)
    assert out.shape == (T, K, h, w) and out.dtype == torch.float64
    assert torch.equal(out[0], first)
    assert (out - propagate_dense(feats, first, p)).abs().max() <= 1e-9


@pytest.mark.parametrize("family", ["crw", "dino"])
def test_memory_budget_only_changes_chunking(family):
    """Budgets from tiny (one target, one frame, one tile row per matmul) to roomy: same labels."""
    p = resolve_protocol(family, overrides={"context": 5, "radius": 4})
    T, C, h, w = 13, 8, 17, 27
    feats, first = unit_features(T, C, h, w, seed=5, smooth=2), soft_labels(3, h, w)
    tiling = _Tiling.build(h, w, p, feats.dtype, feats.device)
    budgets = [0.01, 0.4, 1, 2, None]
    plans = {_plan(tiling, C, T - 1, p.topk, 8, b or DEFAULT_MEMORY_MIB) for b in budgets}
    assert len(plans) == len(budgets)  # each budget cuts the work differently
    dense = propagate_dense(feats, first, p)
    for budget in budgets:
        assert (propagate(feats, first, p, memory_mib=budget) - dense).abs().max() <= 1e-9, budget


def pixel_features(frames: int, stride: int) -> torch.Tensor:
    """Real features: 3x3 patches of mean-centred, box-downsampled RGB of DAVIS frames, L2-normalised."""
    from PIL import Image

    images = []
    for path in sorted(BLACKSWAN.glob("*.jpg"))[:frames]:
        img = Image.open(path).convert("RGB")
        img = img.resize((img.width // stride, img.height // stride), Image.Resampling.BOX)
        images.append(torch.from_numpy(np.asarray(img, dtype=np.float64)).permute(2, 0, 1))
    rgb = torch.stack(images) / 255.0
    rgb = rgb - rgb.mean(dim=(0, 2, 3), keepdim=True)
    T, _, h, w = rgb.shape
    patches = torch.nn.functional.unfold(rgb, 3, padding=1).reshape(T, 27, h, w)
    return patches / patches.norm(dim=1, keepdim=True).clamp_min(1e-12)


@pytest.mark.skipif(not BLACKSWAN.is_dir(), reason=f"real DAVIS frames not found at {BLACKSWAN}")
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("family", ["crw", "dino"])
def test_engine_equals_dense_on_real_frames(family, path):
    feats = pixel_features(6, 16)  # 6 frames, 30 x 53 grid
    T, _, h, w = feats.shape
    ys = torch.arange(h, dtype=torch.float64).view(h, 1)
    xs = torch.arange(w, dtype=torch.float64).view(1, w)
    blob = torch.exp(-((ys - h / 2) ** 2 + (xs - w / 2) ** 2) / 40)  # a soft object in the middle
    first = torch.stack([1 - blob, blob])
    p = resolve_protocol(family, overrides={"context": 3})
    out = propagate(feats, first, p, path=path)
    assert (out - propagate_dense(feats, first, p)).abs().max() <= 1e-9


def test_float32_topk_rarely_differs():
    """In float32 the engine sums in another order than the dense matmul; near-ties may swap."""
    p = resolve_protocol("crw", overrides={"context": 4})
    feats = unit_features(6, 32, 20, 31, seed=11, dtype=torch.float32, smooth=2)
    fractions = []
    for t in range(1, 6):
        mine = frame_neighbours(feats, t, p)
        dense = dense_topk(feats, t, p)
        fractions.append(topk_disagreement(*mine, *dense))
    assert sum(fractions) / len(fractions) < 0.01
    first = soft_labels(2, 20, 31).float()
    out = propagate(feats, first, p)
    assert out.dtype == torch.float32
    # a swapped near-tie moves a few nodes' labels by up to one weight; the mean stays tiny
    assert (out - propagate_dense(feats, first, p)).abs().mean() < 1e-4


@pytest.mark.parametrize("family", ["crw", "dino"])
@pytest.mark.parametrize("t", [1, 2, 5, 30])
def test_context_slots_count_the_dense_context(family, t):
    p = resolve_protocol(family)
    dense = context_frames(t, p)
    merged = context_slots(t, p)
    assert sum(count for _, _, count in merged) == len(dense)
    for s, windowed, count in merged:
        assert dense.count((s, windowed)) == count


def test_crw_context_pads_with_frame_zero():
    p = resolve_protocol("crw")
    assert sorted(context_slots(1, p)) == [(0, False, 1), (0, True, 20)]
    assert sorted(context_slots(25, p)) == [(0, False, 1)] + [(s, True, 1) for s in range(5, 25)]
    dino = resolve_protocol("dino")
    assert sorted(context_slots(1, dino)) == [(0, True, 2)]
    assert sorted(context_slots(3, dino)) == [(0, True, 2), (1, True, 1), (2, True, 1)]


def test_neighbours_come_from_the_window():
    """Short-term neighbours of a CRW node lie strictly inside its disk; first-frame ones may not."""
    p = resolve_protocol("crw", overrides={"radius": 3, "context": 2})
    feats = unit_features(5, 8, 15, 17, seed=2)
    N, w = 15 * 17, 17
    _, index = frame_neighbours(feats, 4, p)
    frame, node = index // N, index % N
    target = torch.arange(N).unsqueeze(1).expand_as(node)
    dist = (node // w - target // w) ** 2 + (node % w - target % w) ** 2
    assert bool((dist[frame > 0] < 9).all())
    assert bool((frame >= 2).logical_or(frame == 0).all())
    assert bool((dist[frame == 0] >= 9).any())  # the unrestricted first frame is used beyond the disk


def test_bad_input_is_reported():
    p = resolve_protocol("crw")
    feats = unit_features(3, 4, 5, 6)
    with pytest.raises(HarnessError, match="first_labels"):
        propagate(feats, torch.zeros(2, 5, 7), p)
    with pytest.raises(HarnessError, match="features"):
        propagate(feats[0], torch.zeros(2, 5, 6), p)
    bad = feats.clone()
    bad[2, 0, 1, 1] = math.nan
    with pytest.raises(MethodError, match="frame 2"):
        propagate(bad, torch.zeros(2, 5, 6), p)


def test_accepts_protocol_names_and_label_dtypes():
    feats = unit_features(4, 8, 6, 7)
    first = soft_labels(2, 6, 7).float()
    out = propagate(feats, first, "dino")
    assert out.dtype == torch.float64
    assert (out - propagate_dense(feats, first.double(), resolve_protocol("dino"))).abs().max() <= 1e-9


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")
@pytest.mark.parametrize("family", ["crw", "dino"])
def test_cuda_equals_cpu_float64(family):
    p = resolve_protocol(family, overrides={"context": 6})
    feats, first = unit_features(10, 32, 23, 41, seed=4, smooth=1), soft_labels(3, 23, 41)
    cpu = propagate(feats, first, p)
    gpu = propagate(feats.cuda(), first.cuda(), p)
    assert gpu.device.type == "cuda"
    assert (gpu.cpu() - cpu).abs().max() <= 1e-9


@pytest.mark.parametrize("family", ["crw", "dino"])
def test_batched_memory_budget_only_changes_chunking(family):
    """Budgets from one tile of one target against one frame to roomy: the batched search gives the same labels."""
    p = resolve_protocol(family, overrides={"context": 5, "radius": 4})
    T, C, h, w = 13, 8, 17, 27
    feats, first = unit_features(T, C, h, w, seed=5, smooth=2), soft_labels(3, h, w)
    geometry = batched.Geometry.build(h, w, p, feats.dtype, feats.device)
    budgets = [0.01, 0.5, 1, 2, 64]
    plans = {batched.plan(geometry, C, T - 1, p.topk, 8, b, p.context + 1) for b in budgets}
    assert len(plans) == len(budgets)  # each budget cuts the work differently
    dense = propagate_dense(feats, first, p)
    for budget in budgets:
        out = propagate(feats, first, p, memory_mib=budget, path="batched")
        assert (out - dense).abs().max() <= 1e-9, budget


@pytest.mark.parametrize("tile", [(1, 1), (2, 3), (5, 4), (16, 16)])
def test_batched_tile_sizes_equal_dense(tile):
    p = resolve_protocol("crw", overrides={"context": 3, "radius": 3})
    T, C, h, w = 7, 8, 11, 14
    feats = unit_features(T, C, h, w, seed=9)
    geometry = batched.Geometry.build(h, w, p, feats.dtype, feats.device, tile=tile)
    bplan = batched.plan(geometry, C, T - 1, p.topk, 8, 64, p.context + 1)
    for t in (1, 3, 6):
        scores, index = batched.block_neighbours(feats, range(t, t + 1), p, geometry, bplan)
        dense_scores, dense_index = dense_topk(feats, t, p)
        assert topk_disagreement(scores[0], index[0], dense_scores, dense_index) == 0.0
        assert (scores[0] - dense_scores).abs().max() <= 1e-9


def test_search_path_by_device_argument_and_environment(monkeypatch):
    monkeypatch.delenv(PATH_ENV, raising=False)
    assert search_path(torch.device("cpu")) == "tiled"
    assert search_path(torch.device("cuda")) == "batched"
    assert search_path(torch.device("cuda"), "tiled") == "tiled"
    monkeypatch.setenv(PATH_ENV, "batched")
    assert search_path(torch.device("cpu")) == "batched"
    assert search_path(torch.device("cpu"), "tiled") == "tiled"  # the argument wins
    monkeypatch.setenv(PATH_ENV, "fast")
    with pytest.raises(HarnessError, match="tiled, batched"):
        search_path(torch.device("cpu"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("family", ["crw", "dino"])
def test_cuda_equals_dense_float64(family, path):
    """On the GPU, both searches equal the dense reference computed on the same GPU, in float64."""
    p = resolve_protocol(family, overrides={"context": 6})
    feats, first = unit_features(12, 32, 30, 53, seed=4, smooth=1).cuda(), soft_labels(3, 30, 53).cuda()
    out = propagate(feats, first, p, path=path)
    assert out.device.type == "cuda"
    assert (out - propagate_dense(feats, first, p)).abs().max() <= 1e-9
