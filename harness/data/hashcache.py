"""sha256 of data files, remembered by path, size and modification time, so that fingerprinting data
that has not changed reads none of it again.

A fingerprint must follow the content of every frame (a frame replaced by another of the same size
must change it), but reading a whole benchmark before every run would cost more than many runs.
A file whose size, ``mtime_ns`` and ``ctime_ns`` are what they were when it was hashed is taken to hold
the same bytes: any write changes the modification time, and a copy that keeps it (``cp -p``,
``rsync -t``) still changes the inode's change time, which no user tool sets back.

The cache is one JSON file per data root in a per-user cache folder (``$HARNESS_CACHE``, else
``$XDG_CACHE_HOME/harness``, else ``~/.cache/harness``), not in a run's folder: the fingerprint is
taken before a run knows its folder (the folder is named by it), and ``harness sweep`` checks records
without any run folder, so a per-user place is the one both find. A missing, unreadable or unwritable
cache only costs time: the files are then hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from harness.io import atomic_write_json, sha256_file

CACHE_ENV = "HARNESS_CACHE"
#: entries for files modified this recently are not kept: a write within the same timestamp tick as
#: the hashing would leave size and mtime unchanged (the "racy" case), so such files are hashed again
RACY_SECONDS = 2.0
VERSION = 2


def cache_dir() -> Path:
    """The per-user cache folder of the harness."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen:
        return Path(chosen).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "harness"


class HashCache:
    """sha256 of the files under one data root; :meth:`save` writes what was learnt (atomically)."""

    def __init__(self, root: str | Path, folder: Path | None = None) -> None:
        self.root = Path(root).resolve()
        key = hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
        self.path = (folder or cache_dir()) / "file-hashes" / f"{key}.json"
        self.entries: dict[str, list] = self._read()
        self.changed = False

    def _read(self) -> dict[str, list]:
        try:
            payload = json.loads(self.path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return {}
        if not isinstance(payload, dict) or payload.get("version") != VERSION or payload.get("root") != str(self.root):
            return {}
        files = payload.get("files")
        return files if isinstance(files, dict) else {}

    def sha256(self, path: Path, key: str) -> str:
        """sha256 of ``path``'s bytes (``key``: its name relative to the root): from the cache while its
        size, mtime and ctime are unchanged, else read."""
        stat = path.stat()
        facts = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]
        known = self.entries.get(key)
        if isinstance(known, list) and len(known) == 4 and known[:3] == facts:
            return str(known[3])
        value = sha256_file(path)
        if time.time() - max(stat.st_mtime, stat.st_ctime) > RACY_SECONDS:
            self.entries[key] = [*facts, value]
            self.changed = True
        return value

    def save(self) -> None:
        """Write the cache if anything was added; a cache that cannot be written is skipped."""
        if not self.changed:
            return
        try:
            atomic_write_json(self.path, {"version": VERSION, "root": str(self.root), "files": self.entries})
        except OSError:
            return
        self.changed = False
