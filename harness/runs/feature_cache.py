"""A content-keyed cache of a method's features, for runs that only change propagation settings.

Features dominate a run's cost on GPU, and a sweep over protocol knobs (top-k, context, radius)
recomputes identical features in every cell. ``harness run --feature-cache DIR`` keeps each
sequence's feature tensor under a key made of everything that decides it:

- the method (its name, its resolved ``--set method.*`` options with any checkpoint or weights file
  named by its sha256 rather than its path, and what the method says about itself),
- the exact frames the method is given (a sha256 of the decoded uint8 array, so a changed file,
  resolution policy or sequence selection can never hit a stale entry),
- the feature precision and the device type (CPU and CUDA results differ in the last bits).

Each entry stores, beside the tensor, a sha256 over its key, dtype, shape and bytes; an entry whose
tensor no longer matches it (overwritten, damaged, copied under another key, or written by an older
harness without one) is a miss: it is recomputed and the run says why. A hit returns the stored
tensor bit for bit, so a run from the cache scores exactly as a plain run; only its ``features``
timing is then the time to load the file. Runs with ``--adapt`` bypass the
cache: their method changes per video.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.config import RunConfig
from harness.errors import CheckpointError
from harness.io import atomic_path, sha256_file
from harness.method import Method
from harness.safe_load import load_weights_only

KEY_VERSION = 1  # bump when the key's ingredients change


def _method_identity(config: RunConfig, method: Method) -> dict[str, Any]:
    options = dict(config.method_config())
    for name in ("checkpoint", "weights"):
        if options.get(name):
            options[name] = sha256_file(options[name])
    info = {k: v for k, v in method.describe().items() if k != "checkpoint"}
    return {"method": config.method, "options": options, "info": info,
            "stride": method.stride, "dim": method.dim}


def cache_key(config: RunConfig, method: Method, frames: np.ndarray) -> str:
    """sha256 over the method's identity, the frames' bytes, the precision and the device type."""
    frames = np.ascontiguousarray(frames)
    digest = hashlib.sha256()
    header = {
        "version": KEY_VERSION,
        "method": _method_identity(config, method),
        "frames": [list(frames.shape), str(frames.dtype)],
        "precision": getattr(method, "precision", "fp32"),
        "device": torch.device(method.device).type,
    }
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    digest.update(memoryview(frames).cast("B"))
    return digest.hexdigest()


def entry_digest(key: str, feats: torch.Tensor) -> str:
    """sha256 over an entry's key and its tensor's dtype, shape and bytes (what a hit must still match)."""
    flat = feats.detach().cpu().contiguous().reshape(-1)
    digest = hashlib.sha256(json.dumps([key, str(flat.dtype), list(feats.shape)]).encode())
    digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _load(path: Path, key: str, device: torch.device) -> torch.Tensor | None:
    try:
        entry = load_weights_only(path, "cached features", map_location="cpu")
    except CheckpointError as err:  # a truncated or foreign file is a miss, never a wrong result
        print(f"feature cache: ignoring it ({err}); recomputing", file=sys.stderr)
        return None
    feats = entry.get("features") if isinstance(entry, dict) else None
    if not isinstance(feats, torch.Tensor) or entry.get("sha256") != entry_digest(key, feats):
        print(f"feature cache: {path} does not match the digest stored with it (changed since it was written, "
              "or written by an older harness); recomputing", file=sys.stderr)
        return None
    return feats.to(device)


def cached_features(config: RunConfig, method: Method, frames: np.ndarray) -> tuple[torch.Tensor, bool | None]:
    """``(method.features(frames), hit)``: read from ``config.feature_cache`` when it holds them, else
    computed and stored. ``hit`` is None when no cache is used; the record counts hits, because the
    ``features`` timing of a hit is only the time to load a file."""
    if not config.feature_cache or config.adapt:
        return method.features(frames), None
    key = cache_key(config, method, frames)
    path = Path(config.feature_cache) / key[:2] / f"{key}.pt"
    if path.is_file():
        feats = _load(path, key, torch.device(method.device))
        if feats is not None:
            return feats, True
    feats = method.features(frames)
    stored = feats.detach().cpu()
    with atomic_path(path) as tmp:
        torch.save({"features": stored, "sha256": entry_digest(key, stored)}, tmp)
    return feats, False
