"""What a run's inputs *are*, by content: the fingerprint of its data and of its weights files.

A result belongs to the data and checkpoint it was computed from, not to the paths they had: a
checkpoint retrained in place or a dataset re-downloaded under the same root must not inherit old
scores, and a frame replaced by another of the same size must not either. Every file — frames and
annotations — counts by its name relative to the root, its size and the sha256 of its bytes; the
fingerprint ignores modification times, which change on every clone and copy. Hashes are remembered
per file (:mod:`harness.data.hashcache`), so a rerun on unchanged data reads no frame again.

The file layout per sequence comes from the task's dataset card (``check.frames`` /
``check.annotations``), so every task is fingerprinted the same way. ``harness.data.identify`` uses
the same fingerprint to name datasets.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.data.cards import CheckSpec, find_card
from harness.data.hashcache import HashCache
from harness.data.rules import sequence_files
from harness.errors import DataError
from harness.io import sha256_file

#: method config keys whose values are weights files (their content, not their path, identifies a run)
WEIGHTS_KEYS = ("checkpoint", "weights")


def _spec(task: str) -> CheckSpec:
    spec = find_card(task).check
    if spec is None:
        raise DataError(f"the dataset card of task {task!r} declares no file layout to fingerprint")
    return spec


def _files(path: Path, suffix: str) -> list[Path]:
    """The files a task reads at ``path``: the file itself, or a folder's files with ``suffix``."""
    if path.is_file():
        return [path]
    return sequence_files(path, suffix)[0]


def sequence_fingerprint(task: str, root: str | Path, name: str, cache: HashCache | None = None) -> dict[str, Any]:
    """Content facts of one sequence of ``task`` under ``root``, as plain JSON.

    ``{"frames": [[relative name, size, sha256], ...], "annotations": [[relative name, size, sha256], ...]}``;
    names are relative to ``root``, so a copy of the data elsewhere has the same fingerprint. ``cache``
    supplies the hashes of files unchanged since they were last hashed.
    """
    root = Path(root)
    spec = _spec(task)
    frames = _files(root / spec.frames.format(sequence=name), spec.frame_suffix)
    annotations = _files(root / spec.annotations.format(sequence=name), spec.annotation_suffix)
    return {"frames": [_facts(root, p, cache) for p in frames], "annotations": [_facts(root, p, cache) for p in annotations]}


def _facts(root: Path, path: Path, cache: HashCache | None) -> list:
    key = path.relative_to(root).as_posix()
    return [key, path.stat().st_size, cache.sha256(path, key) if cache is not None else sha256_file(path)]


def digest(payload: Any) -> str:
    """sha256 of a JSON-able value in canonical form (sorted keys, no whitespace)."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def sequence_digest(task: str, root: str | Path, name: str) -> str:
    """sha256 of :func:`sequence_fingerprint` (what a resumed sequence's saved state is checked against)."""
    return digest(sequence_fingerprint(task, root, name))


def data_fingerprints(task: str, root: str | Path, names: Iterable[str]) -> dict[str, str]:
    """:func:`sequence_digest` of each named sequence, in the given order (file hashes cached per root)."""
    cache = HashCache(root)
    try:
        return {name: digest(sequence_fingerprint(task, root, name, cache)) for name in names}
    finally:
        cache.save()


def data_fingerprint(task: str, root: str | Path, names: Iterable[str] | None = None,
                     per_sequence: dict[str, str] | None = None) -> str:
    """One sha256 for the data of ``names`` (order matters: it is the evaluation order).

    Pass ``per_sequence`` (from :func:`data_fingerprints`) to avoid hashing the files twice.
    """
    if per_sequence is None:
        if names is None:
            raise ValueError("data_fingerprint needs names or per_sequence")
        per_sequence = data_fingerprints(task, root, names)
    return digest([[name, value] for name, value in per_sequence.items()])


def weights_fingerprint(method_config: dict[str, Any]) -> dict[str, str]:
    """sha256 of each weights file named in a method config (``checkpoint``, ``weights``), by key."""
    out = {}
    for key in WEIGHTS_KEYS:
        path = method_config.get(key)
        if path:
            out[key] = sha256_file(path)
    return out
