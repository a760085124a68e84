"""The VFS loss: symmetric, negative-free similarity between frames of one video (methods/vfs/README.md §Loss).

For a prediction ``p`` of one frame and the projection ``z`` of another, the distance is
``2 − 2·cos(p, z)`` — the squared distance of the two L2-normalised vectors, so a pair costs 0 to 4
— and the target ``z`` is detached (stop-gradient: only the predicting branch learns from a pair).
Each pair counts both ways with weight ½: ``½·d(p1, z2) + ½·d(p2, z1)``. The factor is the original
code's (``CosineSimLoss(negative=False)``), not SimSiam's ``−cos``: same minimiser, twice its gradient.

Each view holds ``T`` frames of its video (``T = 1``: one frame per view, the ResNet-50 recipe).
``all_pairs=True`` compares every frame of view 1 with every frame of view 2 (``T²`` pairs per video,
the ResNet-18 recipe's "intra-video" pairs); ``False`` pairs frame ``t`` with frame ``t`` only. The loss
is the mean over videos and pairs.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def _views(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.dim() == 2:
        return x[:, None]
    if x.dim() != 3:
        raise ValueError(f"{name} must be [B, D] or [B, T, D], got {tuple(x.shape)}")
    return x


def pair_distances(p: torch.Tensor, z: torch.Tensor, all_pairs: bool) -> torch.Tensor:
    """``2 − 2·cos`` between predictions ``p [B, T, D]`` and detached targets ``z [B, T, D]``:
    ``[B, T, T]`` (row = frame of ``p``) with ``all_pairs``, else ``[B, T]``."""
    p = F.normalize(p, dim=-1)
    z = F.normalize(z.detach(), dim=-1)
    cos = torch.einsum("btd,bsd->bts", p, z) if all_pairs else (p * z).sum(dim=-1)
    return 2 - 2 * cos


def vfs_loss(
    p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor, all_pairs: bool = True
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Mean symmetric distance between the two views of each video, plus diagnostics.

    ``p*``/``z*`` are predictions/projections ``[B, D]`` or ``[B, T, D]`` of view 1 and view 2. The
    diagnostics are plain floats: ``cosine`` (mean cos(p, z) over the pairs and both directions) and
    ``z_std`` (mean over channels of the batch std of the normalised projections: about ``1/√D`` while
    healthy, 0 when the projections have collapsed to one vector).
    """
    p1, p2, z1, z2 = (_views(x, n) for x, n in ((p1, "p1"), (p2, "p2"), (z1, "z1"), (z2, "z2")))
    if not (p1.shape == p2.shape == z1.shape == z2.shape):
        raise ValueError(f"views differ in shape: p1 {tuple(p1.shape)}, p2 {tuple(p2.shape)}, "
                         f"z1 {tuple(z1.shape)}, z2 {tuple(z2.shape)}")
    forward = pair_distances(p1, z2, all_pairs)  # [b, t(view 1), s(view 2)]
    backward = pair_distances(p2, z1, all_pairs)  # [b, s(view 2), t(view 1)]
    if all_pairs:
        backward = backward.transpose(1, 2)
    loss = (0.5 * forward + 0.5 * backward).mean()
    with torch.no_grad():
        cosine = 1 - 0.5 * (forward.mean() + backward.mean()) / 2
        normed = F.normalize(torch.cat([z1, z2], dim=1).flatten(0, 1).float(), dim=-1)
        z_std = normed.std(dim=0).mean() if normed.shape[0] > 1 else normed.new_zeros(())
    return loss, {"cosine": float(cosine), "z_std": float(z_std)}
