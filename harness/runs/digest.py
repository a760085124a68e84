"""The run digest: one hash of everything that decides a run's numbers, taken before anything is computed.

It covers the fully resolved configuration (task, method and its settings, protocol, sequences,
limit, seed, feature precision), the content of the weights files (not their paths) and of the data
(:mod:`harness.data.fingerprint`), and where the data lives (the shipped sample, or the root's
path), so that differently configured runs never share a default folder and a rerun of the same
run finds its own.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.data.fingerprint import (
    WEIGHTS_KEYS,
    data_fingerprint,
    data_fingerprints,
    digest,
    weights_fingerprint,
)
from harness.runs.outdir import SHOWN_COMPONENTS, RunIdentity, default_out_dir, safe_name

#: hex digits of the run digest in folder names and records
DIGEST_LENGTH = 12


@dataclass(frozen=True)
class RunInputs:
    """What a run is computed from, by content: per-sequence data fingerprints, data and weights hashes."""

    identity: RunIdentity
    sequences: dict[str, str]
    data: str
    weights: dict[str, str]


def fingerprint_inputs(resolved: dict[str, Any], default_weights: str | None = None) -> RunInputs:
    """Fingerprint the inputs named by a runner's resolved config (keys as in ``Runner._resolved_config``,
    which include the feature ``precision``); ``default_weights`` is the sha256 the method declares for the
    weights it loads when no file is given (``MethodFacts.weights_sha256``)."""
    method_config = dict(resolved.get("method_config") or {})
    weights = weights_fingerprint(method_config)
    names = list(resolved["sequences"])
    per_sequence = data_fingerprints(resolved["task"], resolved["data_root"], names)
    data = data_fingerprint(resolved["task"], resolved["data_root"], per_sequence=per_sequence)
    payload = {
        **{k: v for k, v in resolved.items() if k not in ("data_root", "method_config")},
        "method_config": {k: v for k, v in method_config.items() if k not in WEIGHTS_KEYS},
        # the sample is the same wherever the repository is cloned; a real root is identified by its path
        "data_root": "<shipped sample>" if resolved.get("sample") else str(Path(resolved["data_root"]).resolve()),
        "precision": resolved.get("precision", "fp32"), "weights": weights or {"default": default_weights}, "data": data,
    }
    protocol = resolved.get("protocol") or {}
    identity = RunIdentity(
        digest=digest(payload)[:DIGEST_LENGTH], method=resolved["method"], task=resolved["task"],
        protocol_hash=str(protocol.get("hash")), seed=int(resolved.get("seed", 0)), sequences=tuple(names),
        limit=resolved.get("limit"), weights=weights, components=digest_components(payload),
    )
    return RunInputs(identity, per_sequence, data, weights)


def digest_components(payload: dict[str, Any]) -> dict[str, str]:
    """Each ingredient of the run digest by itself, stored in the folder's manifest so that a refusal can
    name the ingredient that differs (data, weights, limit, ...) instead of only "another run"."""
    return {key: json.dumps(value) if key in SHOWN_COMPONENTS else digest(value)[:DIGEST_LENGTH]
            for key, value in sorted(payload.items())}


def method_dir(method: str, method_config: dict[str, Any]) -> str:
    """``<method>``, or ``<method>+<digest of its settings>`` when run with a checkpoint, weights or ``--set method.*``."""
    name = safe_name(method)
    if method_config:
        name += "+" + hashlib.sha256(json.dumps(method_config, sort_keys=True).encode()).hexdigest()[:8]
    return name


def run_out_dir(runs_dir: Path, resolved: dict[str, Any], inputs: RunInputs) -> Path:
    """The default folder: ``<runs_dir>/<task>/<method>[+<cfg>]/<protocol>-<hash>/<run digest>/``."""
    protocol = resolved["protocol"]
    return default_out_dir(runs_dir, resolved["task"], method_dir(resolved["method"], resolved.get("method_config") or {}),
                           f"{protocol['name']}-{protocol['hash']}", inputs.identity.digest)
