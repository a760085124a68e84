"""Resume by content: a finished sequence's saved state is reused only while it still describes the inputs.

Each finished sequence leaves ``.state/<name>.json`` with its scores, timings, the fingerprint of its
data, the sha256 of the weights it was computed with, the sha256 of every prediction file it
wrote, and a digest over all of that. A rerun reuses it only when all of these still match what is
on disk and the digest still matches the state's content (an edited score is never republished);
otherwise the sequence is computed again and the run says why. So a record is always assembled from
states whose predictions are the ones beside it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.io import atomic_write_json, json_digest
from harness.runs.outdir import STATE_DIR, OutputFolder, state_file_name

#: key of the digest over everything else in a state file
DIGEST = "state_sha256"


def state_path(folder: OutputFolder, name: str) -> Path:
    return folder.path / STATE_DIR / state_file_name(name)


def load_state(folder: OutputFolder, name: str, fingerprint: str,
               weights: dict[str, str]) -> tuple[dict[str, Any] | None, str | None]:
    """``(state, None)`` when reusable; ``(None, why)`` when it must be recomputed (``why`` None: no state)."""
    path = state_path(folder, name)
    if not path.is_file():
        return None, None
    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None, "its saved state is unreadable"
    if not isinstance(state, dict) or "fingerprint" not in state or not isinstance(state.get("files"), dict):
        return None, "its saved state predates content checks"
    if state.get("run_digest") != folder.identity.digest:
        return None, "its saved state belongs to another run configuration"
    if state["fingerprint"] != fingerprint:
        return None, "its data (frames or annotations) changed since it was computed"
    if state.get("weights", {}) != weights:
        return None, "the checkpoint/weights file changed since it was computed"
    problem = folder.unchanged(state["files"])
    if problem:
        return None, f"its prediction {problem}"
    if state.get(DIGEST) != json_digest({k: v for k, v in state.items() if k != DIGEST}):
        return None, (f"its saved state ({path}) does not match its digest: its scores or what they were "
                      "computed from were edited or damaged after it was written"
                      if DIGEST in state else "its saved state has no digest of its scores (older harness)")
    return state, None


def save_state(folder: OutputFolder, name: str, state: dict[str, Any], fingerprint: str,
               weights: dict[str, str], files: dict[str, str]) -> dict[str, Any]:
    """Stamp ``state`` with what it was computed from and the files it wrote; write it; list it all as the run's."""
    stamped = {**state, "run_digest": folder.identity.digest, "fingerprint": fingerprint, "weights": weights,
               "files": files}
    stamped[DIGEST] = json_digest(stamped)
    path = state_path(folder, name)
    atomic_write_json(path, stamped)
    folder.add(list(files), files)
    folder.add_written(path.relative_to(folder.path).as_posix())
    return stamped
