"""The walk loss against a naive per-sample loop and against hand-computed closed forms."""

from __future__ import annotations

import json
import math
from functools import reduce

import pytest
import torch

from methods.crw.loss import transition_logits, walk_loss


def _rowsoftmax(logits: torch.Tensor) -> torch.Tensor:
    weights = torch.exp(logits - logits.max(dim=1, keepdim=True).values)
    return weights / weights.sum(dim=1, keepdim=True)


def _naive_walk_loss(
    emb: torch.Tensor,
    tau: float,
    drop_fwd: torch.Tensor | None = None,
    drop_bwd: torch.Tensor | None = None,
) -> tuple[float, dict[int, float]]:
    """One clip at a time, one walk at a time, with every matrix product spelled out."""
    batch, time, nodes, _ = emb.shape
    per_walk: dict[int, list[float]] = {k: [] for k in range(2, time)}
    for b in range(batch):
        fwd, bwd = [], []
        for t in range(time - 1):
            logits_f = emb[b, t] @ emb[b, t + 1].T / tau
            logits_b = emb[b, t + 1] @ emb[b, t].T / tau
            if drop_fwd is not None:
                logits_f = torch.where(drop_fwd[b, t], torch.tensor(-1e20, dtype=emb.dtype), logits_f)
                logits_b = torch.where(drop_bwd[b, t], torch.tensor(-1e20, dtype=emb.dtype), logits_b)
            fwd.append(_rowsoftmax(logits_f))
            bwd.append(_rowsoftmax(logits_b))
        for k in range(2, time):
            steps = fwd[:k] + bwd[:k][::-1]
            walk = reduce(torch.matmul, steps)
            per_walk[k].append(float(sum(-math.log(float(walk[n, n]) + 1e-20) for n in range(nodes)) / nodes))
    means = {k: sum(v) / len(v) for k, v in per_walk.items()}
    return sum(means.values()) / len(means), means


def _random_embeddings(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(shape, generator=gen, dtype=torch.float64), dim=-1)


@pytest.mark.parametrize("time", [3, 4, 6])
def test_matches_naive_loop(time: int) -> None:
    emb = _random_embeddings(time, (3, time, 7, 5))
    loss, diag = walk_loss(emb, temperature=0.1)
    expected, per_walk = _naive_walk_loss(emb, 0.1)
    assert float(loss) == pytest.approx(expected, rel=1e-10)
    assert sorted(diag["xent"]) == [f"k{k}" for k in range(2, time)]
    for k, value in per_walk.items():
        assert diag["xent"][f"k{k}"] == pytest.approx(value, rel=1e-10)


def test_hand_computed_symmetric_case() -> None:
    # Frames alternate between [e1, e2] and [e2, e1]; every transition is the 2x2 matrix
    # [[x, y], [y, x]], whose products have diagonal (1 + Π(x - y)) / 2. With τ = 0.5 the
    # forward 0→1 matrix has x - y = tanh(1/(2τ)) and the crossed ones x - y = -tanh(1/(2τ)).
    e1, e2 = [1.0, 0.0], [0.0, 1.0]
    emb = torch.tensor([[[e1, e2], [e1, e2], [e2, e1], [e1, e2]]], dtype=torch.float64)
    tau = 0.5
    d = math.tanh(1 / (2 * tau))
    loss_k2 = -math.log((1 + d**4) / 2)  # 0→1→2→1→0: four transitions
    loss_k3 = -math.log((1 + d**6) / 2)  # 0→…→3→…→0: six transitions
    loss, diag = walk_loss(emb, temperature=tau)
    assert diag["xent"]["k2"] == pytest.approx(loss_k2, rel=1e-12)
    assert diag["xent"]["k3"] == pytest.approx(loss_k3, rel=1e-12)
    assert float(loss) == pytest.approx((loss_k2 + loss_k3) / 2, rel=1e-12)
    # T=3 holds only the k=2 walk: including the skipped 0→1→0 cycle would change the value.
    loss3, _ = walk_loss(emb[:, :3], temperature=tau)
    assert float(loss3) == pytest.approx(loss_k2, rel=1e-12)
    assert float(loss3) != pytest.approx((loss_k2 - math.log((1 + d**2) / 2)) / 2, rel=1e-6)


def test_hand_computed_backward_is_renormalised_transpose() -> None:
    # Frame 0 holds the same vector twice, so S_0 = [[1, 0], [1, 0]]. The backward step
    # rowsoftmax(S_0ᵀ) is uniform, hence every return probability is exactly 1/2 and the loss
    # is log 2; using the transpose of the forward matrices instead gives about 0.649 nats.
    e1, e2 = [1.0, 0.0], [0.0, 1.0]
    emb = torch.tensor([[[e1, e1], [e1, e2], [e2, e1]]], dtype=torch.float64)
    loss, diag = walk_loss(emb, temperature=1.0)
    assert float(loss) == pytest.approx(math.log(2), rel=1e-12)
    assert diag["acc"]["k2"] in (0.0, 0.5, 1.0)


def test_dropout_matches_naive_with_the_same_masks() -> None:
    emb = _random_embeddings(1, (2, 4, 6, 3))
    rate = 0.3
    loss, _ = walk_loss(emb, 0.2, edge_dropout=rate, generator=torch.Generator().manual_seed(5))
    # Masks are drawn forward first, then backward, from the generator (documented order).
    gen = torch.Generator().manual_seed(5)
    drop_fwd = torch.rand((2, 3, 6, 6), generator=gen) < rate
    drop_bwd = torch.rand((2, 3, 6, 6), generator=gen) < rate
    expected, _ = _naive_walk_loss(emb, 0.2, drop_fwd, drop_bwd)
    assert float(loss) == pytest.approx(expected, rel=1e-10)
    leaky, _ = walk_loss(emb, 0.2, edge_dropout=rate, generator=torch.Generator().manual_seed(5), leak_dropout=True)
    expected_leaky, _ = _naive_walk_loss(emb, 0.2, drop_fwd, drop_bwd | drop_fwd.transpose(-1, -2))
    assert float(leaky) == pytest.approx(expected_leaky, rel=1e-10)


def test_dropout_reproducible_with_generator() -> None:
    emb = _random_embeddings(2, (2, 4, 10, 8))
    first, d1 = walk_loss(emb, 0.07, edge_dropout=0.1, generator=torch.Generator().manual_seed(0))
    again, d2 = walk_loss(emb, 0.07, edge_dropout=0.1, generator=torch.Generator().manual_seed(0))
    other, _ = walk_loss(emb, 0.07, edge_dropout=0.1, generator=torch.Generator().manual_seed(1))
    clean, _ = walk_loss(emb, 0.07)
    assert torch.equal(first, again) and d1 == d2
    assert float(first) != float(other)
    assert float(first) != float(clean)


def test_leak_fraction() -> None:
    emb = _random_embeddings(3, (2, 4, 150, 4))
    fwd, bwd = transition_logits(emb, 0.05, 0.1, torch.Generator().manual_seed(0), leak_dropout=False)
    assert float((fwd <= -1e19).double().mean()) == pytest.approx(0.10, abs=0.005)
    assert float((bwd <= -1e19).double().mean()) == pytest.approx(0.10, abs=0.005)
    fwd, bwd = transition_logits(emb, 0.05, 0.1, torch.Generator().manual_seed(0), leak_dropout=True)
    dropped_fwd, dropped_bwd = fwd <= -1e19, bwd <= -1e19
    assert float(dropped_fwd.double().mean()) == pytest.approx(0.10, abs=0.005)
    assert float(dropped_bwd.double().mean()) == pytest.approx(1 - 0.9**2, abs=0.005)  # ≈ 0.19
    assert bool(dropped_bwd[dropped_fwd.transpose(-1, -2)].all())


def test_diagnostics_and_gradient() -> None:
    emb = _random_embeddings(4, (2, 5, 6, 4)).float().requires_grad_(True)
    loss, diag = walk_loss(torch.nn.functional.normalize(emb, dim=-1), 0.1, edge_dropout=0.1)
    json.dumps(diag)
    assert set(diag) == {"xent", "acc", "acc_mean"}
    assert set(diag["acc"]) == {"k2", "k3", "k4"}
    assert all(0.0 <= v <= 1.0 for v in diag["acc"].values())
    assert diag["acc_mean"] == pytest.approx(sum(diag["acc"].values()) / 3)
    loss.backward()
    assert emb.grad is not None and bool(torch.isfinite(emb.grad).all())


def test_identical_frames_give_perfect_accuracy() -> None:
    frame = torch.eye(5, dtype=torch.float64)
    emb = frame.expand(1, 4, 5, 5)
    loss, diag = walk_loss(emb, temperature=0.01)
    assert float(loss) < 1e-6
    assert diag["acc_mean"] == 1.0


def test_clip_too_short() -> None:
    with pytest.raises(ValueError, match="at least 3 frames"):
        walk_loss(torch.zeros(1, 2, 4, 3), 0.05)


@pytest.mark.gpu
def test_cuda_matches_cpu() -> None:
    emb = _random_embeddings(5, (2, 4, 49, 128)).float()
    cpu, _ = walk_loss(emb, 0.05)
    gpu, _ = walk_loss(emb.cuda(), 0.05)
    assert float(gpu) == pytest.approx(float(cpu), rel=1e-4)
    gen = torch.Generator(device="cuda").manual_seed(0)
    first, _ = walk_loss(emb.cuda(), 0.05, 0.1, gen, leak_dropout=True)
    again, _ = walk_loss(emb.cuda(), 0.05, 0.1, torch.Generator(device="cuda").manual_seed(0), leak_dropout=True)
    assert torch.equal(first, again)
