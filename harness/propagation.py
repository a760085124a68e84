"""Label propagation: carry frame 0's labels to every later frame by feature affinity.

Pure tensor math: no task, method, CLI or file I/O here.
"""

from __future__ import annotations

import torch

from harness.protocol import Protocol, resolve_protocol


def _window_mask(h: int, w: int, protocol: Protocol, device: torch.device) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    ys, xs = ys.flatten().double(), xs.flatten().double()
    dy = ys[:, None] - ys[None, :]
    dx = xs[:, None] - xs[None, :]
    if protocol.window == "disk":
        return dy**2 + dx**2 < protocol.radius**2
    return (dy.abs() <= protocol.radius) & (dx.abs() <= protocol.radius)


def propagate(features: torch.Tensor, first_labels: torch.Tensor, protocol: str | Protocol = "crw") -> torch.Tensor:
    """Soft labels ``[T, K, h, w]`` for every frame of one video.

    ``features``: ``[T, C, h, w]`` L2-normalised; ``first_labels``: ``[K, h, w]`` soft labels of frame 0.
    Frame 0 of the output is ``first_labels``; later frames are fed back as context.
    """
    protocol = resolve_protocol(protocol) if isinstance(protocol, str) else protocol
    T, C, h, w = features.shape
    K = first_labels.shape[0]
    n = h * w
    feats = features.flatten(2).transpose(1, 2)  # T, N, C
    labels = [first_labels.reshape(K, n).T.to(features.dtype)]
    mask = _window_mask(h, w, protocol, features.device)
    for t in range(1, T):
        keys, values, masks = [], [], []
        if protocol.keep_first:
            keys.append(feats[0])
            values.append(labels[0])
            masks.append(mask if protocol.restrict_first else torch.ones_like(mask))
        for s in range(t - protocol.context, t):
            if s < 0 and not protocol.pad_with_first:
                continue
            src = max(s, 0)
            keys.append(feats[src])
            values.append(labels[src])
            masks.append(mask)
        sim = feats[t] @ torch.cat(keys).T / protocol.temperature
        sim = sim.masked_fill(~torch.cat(masks, dim=1), float("-inf"))
        k = min(protocol.topk, sim.shape[1])
        top, idx = sim.topk(k, dim=1)
        weights = torch.softmax(top, dim=1).nan_to_num(0.0)
        labels.append((weights.unsqueeze(-1) * torch.cat(values)[idx]).sum(1))
    return torch.stack([lab.T.reshape(K, h, w) for lab in labels])
