"""What a training run was trained on: its videos' (files') names, sizes and content hashes, kept in its checkpoint.

``harness train --resume`` compares the checkpoint's fingerprint with the videos found now. Training
on, after a video was replaced, added or removed, would give weights that came from two data sets
while the run claims one; so a change is refused, naming the videos, unless ``--allow-data-change``
says it is meant, and then the change is written into the checkpoint's ``data_changes``. A trainer
lists its training items in :class:`~harness.training.data.TrainData`; anything with a ``path``, a
``size`` and a ``sha256`` will do.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from harness.errors import HarnessError

log = logging.getLogger(__name__)

#: names listed per kind of change before "… and N more"
SHOWN = 8


class TrainingItem(Protocol):
    """One video (or file) of the training data, as a trainer indexed it."""

    @property
    def path(self) -> Path: ...

    @property
    def size(self) -> int: ...

    @property
    def sha256(self) -> str: ...


def data_fingerprint(roots: Sequence[Path], videos: Sequence[TrainingItem]) -> dict[str, dict[str, Any]]:
    """``{video name: {"size", "sha256"}}``; names are paths below their ``--data`` folder (``<i>:`` in front
    when several folders are pooled), so moving the whole folder elsewhere changes nothing."""
    resolved = [Path(r).expanduser().resolve() for r in roots]
    out: dict[str, dict[str, Any]] = {}
    for video in videos:
        index, root = next(((i, r) for i, r in enumerate(resolved) if video.path.is_relative_to(r)), (0, None))
        rel = video.path.relative_to(root).as_posix() if root is not None else str(video.path)
        out[rel if len(resolved) == 1 else f"{index}:{rel}"] = {"size": int(video.size), "sha256": video.sha256}
    return out


def data_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[str]]:
    """Video names ``added``, ``removed`` and ``modified`` (same name, other content) from ``old`` to ``new``."""
    return {
        "added": sorted(set(new) - set(old)),
        "removed": sorted(set(old) - set(new)),
        "modified": sorted(k for k in set(old) & set(new) if old[k] != new[k]),
    }


def describe_changes(changes: dict[str, list[str]]) -> str:
    parts = []
    for kind, names in changes.items():
        if names:
            more = f" … and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
            parts.append(f"{len(names)} {kind} ({', '.join(names[:SHOWN])}{more})")
    return "; ".join(parts)


def check_training_data(saved: dict[str, Any], fingerprint: dict[str, Any], allow_change: bool,
                        path: Path, step: int) -> list[dict[str, Any]]:
    """Compare a checkpoint's training data with the videos found now; returns the ``data_changes`` to carry on.

    A change raises :class:`HarnessError` unless ``allow_change``; a checkpoint written before
    fingerprints were kept loads with a warning that its data cannot be verified.
    """
    history = list(saved.get("data_changes") or [])
    old = saved.get("data_fingerprint")
    if not isinstance(old, dict):
        log.warning("--resume: %s records no fingerprint of its training videos (written by an older harness), "
                    "so it cannot be verified that they are unchanged; checkpoints from now on record it", path)
        return history
    changes = data_changes(old, fingerprint)
    if not any(changes.values()):
        return history
    what = describe_changes(changes)
    if not allow_change:
        raise HarnessError(
            f"--resume: the training videos changed since {path} was written at step {step}: {what}. Resuming "
            "would train on a mix of the old and the new videos. Restore the videos, start over with --force "
            "or another --out-dir, or pass --allow-data-change to continue on the new ones (recorded in the checkpoint)"
        )
    log.warning("--resume with --allow-data-change: the training videos changed since step %d: %s", step, what)
    return [*history, {"step": step, **changes}]
