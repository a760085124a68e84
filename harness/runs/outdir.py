"""Output folders a run owns: where a run writes, which files are its own, and who may write there now.

A folder belongs to one *run digest* — the hash of everything that decides a run's numbers (task,
method and its settings, weights by content, protocol, data by content, sequences, limit, seed,
feature precision). Its ``manifest.json`` says which digest and lists the files the run wrote, so:

- the default folder ends in the digest: runs that differ in any of those never share a folder;
- a folder holding another digest's manifest, or a record of another run without a manifest, is
  refused before anything is computed or written (a folder with only foreign files is fine);
- ``--force`` deletes only the files the manifest (or a state file of the run) lists *and* whose content
  still has the sha256 recorded when the run wrote it, never a path outside the folder: a user's files,
  whatever their names, and run files the user has since edited are left and named on stderr;
- an advisory lock (``filelock``) makes a second concurrent run into the same folder stop at once.
  Ranks of one sharded run share it: rank 0 claims and locks, the others :func:`join` after a barrier.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from harness.errors import HarnessError
from harness.io import TMP_PREFIX, atomic_write_json, sha256_file

MANIFEST = "manifest.json"
RECORD = "record.json"
STATE_DIR = ".state"
LOCK = ".harness.lock"
#: files of the folder's own machinery, never listed as results and never removed by ``--force``
_MACHINERY = {MANIFEST, LOCK}


class FolderRefused(HarnessError):
    """An output folder that this run must not write into; the message says why and what to do."""


@dataclass(frozen=True)
class RunIdentity:
    """Who a folder belongs to: the run digest, plus the facts that let a record without one be matched."""

    digest: str
    method: str
    task: str
    protocol_hash: str
    seed: int
    sequences: tuple[str, ...]
    limit: int | None
    weights: dict[str, str] = field(default_factory=dict)
    #: each ingredient of the digest by itself (its value, or a short hash), so a refusal can say which differs
    components: dict[str, str] = field(default_factory=dict)
    #: where the run writes each sequence's files (globs with ``{name}``; :attr:`harness.tasks.base.Task.outputs`)
    outputs: tuple[str, ...] = ("{name}/**/*", "{name}.*", "visualize/{name}.*")

    def describe(self) -> str:
        return f"method {self.method}, task {self.task}, run digest {self.digest}"


#: what each digest component is, in the words of the flags that set it
_COMPONENTS = {
    "data": "the data's content (frames or annotations)", "data_root": "where the data lives (--data-root)",
    "sample": "the shipped sample vs. a --data-root", "weights": "the weights' content (--checkpoint/--weights)",
    "limit": "--limit", "sequences": "the sequences (--sequences, the split)", "protocol": "the protocol (--protocol, --set protocol.*)",
    "precision": "--precision", "seed": "--seed", "method": "the method", "method_config": "the method's settings (--set method.*)",
    "task": "the task", "task_config": "the task's settings (--set task.*)", "adapt": "--adapt",
    "adapt_config": "the adaptation settings (--set adapt.*)",
}
#: components kept by value (short, and what the user typed) so a message can show both; the others as a hash
SHOWN_COMPONENTS = ("limit", "seed", "precision", "method", "task", "sample")


def differing_components(stored: Any, identity: RunIdentity) -> str:
    """A phrase naming the digest components in which a manifest's run differs from ``identity``."""
    if not isinstance(stored, dict) or not stored:
        return "which setting differs is unknown (the folder's manifest predates per-component digests)"
    names = [name for name in identity.components if stored.get(name) != identity.components[name]]
    if not names:
        return "which setting differs is unknown (the harness's digest recipe changed since that run)"
    parts = []
    for name in names:
        text = _COMPONENTS.get(name, name)
        if name in SHOWN_COMPONENTS:
            text += f" (that run: {stored.get(name, '?')}; this run: {identity.components[name]})"
        parts.append(text)
    return "it differs in " + ", ".join(parts)


def default_out_dir(runs_dir: Path, task: str, method_dir: str, protocol_dir: str, digest: str) -> Path:
    """``<runs_dir>/<task>/<method>[+<cfg digest>]/<protocol>-<hash>/<run digest>/``."""
    return Path(runs_dir) / task / method_dir / protocol_dir / digest


def safe_name(name: str) -> str:
    """A method name as a folder name (``timm:resnet18@crw`` keeps its ``@``; ``:`` becomes ``_``)."""
    return re.sub(r"[^A-Za-z0-9._@+-]+", "_", name)


# ----------------------------------------------------------------------------------------- checks


def require_writable_dir(path: Path, flag: str) -> None:
    """Refuse a folder that is a file, or that cannot be created or written, before anything is computed."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FolderRefused(f"{flag} {path} is a file, not a folder")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise FolderRefused(f"{flag} {path}: {existing} is a file, so the folder cannot be created")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is" if existing == path else f"cannot be created: {existing} is"
        raise FolderRefused(f"{flag} {path} {what} not writable (read-only or owned by another user)")


def require_writable_file(path: Path, flag: str) -> None:
    """Refuse an output file path that is a folder or whose folder cannot be created or written."""
    path = Path(path)
    if path.is_dir():
        raise HarnessError(f"{flag} {path} is a folder; name the file to write")
    if path.exists() and not os.access(path, os.W_OK):
        raise HarnessError(f"{flag} {path} exists and is not writable")
    require_writable_dir(path.parent, f"{flag} {path}: its folder")


#: what :func:`harness.io.atomic_path` adds to a file's name while writing it (prefix, ``.``, 8 random characters)
_TMP_EXTRA = len(TMP_PREFIX) + 9
#: the longest file name a run derives from a sequence's: its state file, ``<name with / as __>.json``
_STATE_SUFFIX = ".json"


def state_file_name(name: str) -> str:
    """The resume-state file of sequence ``name`` inside the state folder."""
    return name.replace("/", "__") + _STATE_SUFFIX


def require_writable_names(path: Path, sequences: Iterable[str]) -> None:
    """Refuse, before anything is computed, a sequence whose name would give a file name longer than the
    file system allows (it would be computed and then fail writing its state, on every rerun)."""
    existing = Path(path)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        limit = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        limit = 255
    longest = limit - _TMP_EXTRA - len(_STATE_SUFFIX)
    for name in sequences:
        parts = name.split("/")
        if len(name.replace("/", "__")) > longest or any(len(part) > limit for part in parts):
            shown = name if len(name) <= 60 else name[:57] + "..."
            raise FolderRefused(
                f"sequence {shown!r} has a {len(name)}-character name, and the harness writes files named after "
                f"it (its resume state {STATE_DIR}/<name>.json, written through a temporary name "
                f"{_TMP_EXTRA} characters longer); the file system of {existing} allows {limit} characters per "
                f"name, so sequence names may have at most {longest}. Nothing was computed or written; rename "
                "that sequence (its frame and annotation folders and its line in the split list), or leave it "
                "out with --sequences")


# ----------------------------------------------------------------------------------------- ownership


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's manifest, None when there is none; an unreadable one is refused (never guessed at)."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FolderRefused(f"{path} cannot be read ({err}); move the folder away or choose another --out-dir") from err
    if not isinstance(manifest, dict) or not isinstance(manifest.get("digest"), str):
        raise FolderRefused(f"{path} is not a harness manifest; move it away or choose another --out-dir")
    return manifest


def record_matches(record: Any, identity: RunIdentity) -> bool:
    """Whether a record (e.g. one written before manifests existed) is a result of ``identity``'s run."""
    return isinstance(record, dict) and not record_differences(record, identity)


def record_differences(record: dict[str, Any], identity: RunIdentity) -> list[str]:
    """What differs between a record's run and ``identity``'s (empty: the same run), in the flags' words."""
    if record.get("run_digest") is not None:
        return [] if record["run_digest"] == identity.digest else [f"run digest {record['run_digest']}"]
    data = record.get("data") or {}
    checkpoint = record.get("checkpoint") or {}
    sha = checkpoint.get("sha256") if isinstance(checkpoint, dict) else None
    same = {
        "the method": record.get("method") == identity.method, "the task": record.get("task") == identity.task,
        "the protocol": (record.get("protocol") or {}).get("hash") == identity.protocol_hash,
        "--seed": record.get("seed", 0) == identity.seed,
        "the sequences": list(data.get("sequences") or []) == list(identity.sequences),
        "--limit": data.get("limit") == identity.limit,
        "the weights' content": sha in (None, *identity.weights.values()) and (sha is not None or not identity.weights),
    }
    return [what for what, equal in same.items() if not equal]


def _read_record(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _owner_check(folder: Path, identity: RunIdentity, force: bool) -> tuple[dict[str, Any] | None, list[str]]:
    """Read-only: the manifest to continue from (None: start one) and files to adopt; refuses foreign results,
    including files no run wrote (or that changed since) where this run will write (another tool's output,
    a user's edit, or the ground truth itself when ``--out-dir`` points into the data)."""
    manifest, adopted = _owner(folder, identity, force)
    if manifest is not None and manifest["digest"] == identity.digest and not force:
        return manifest, adopted  # resuming: its sequences' output paths were checked when the folder was claimed
    deletable, kept = _force_plan(folder, manifest) if force else ([], {})
    mine = set(adopted) | set(deletable) | {rel for rel, why in kept.items() if why == _UNHASHED}
    outputs = [p for name in identity.sequences for p in sequence_outputs(folder, name, identity.outputs)]
    if (folder / RECORD).is_file():
        outputs.append(folder / RECORD)
    for path in outputs:
        rel = path.relative_to(folder).as_posix()
        if rel in mine:
            continue
        if kept.get(rel) == _CHANGED:
            raise FolderRefused(
                f"{path} was written by the run in {folder} but has been changed since, and this run would "
                "overwrite it: --force deletes only run files that are unchanged. Nothing was written or deleted; "
                "move that file away (or choose another --out-dir)")
        raise FolderRefused(
            f"{folder} already holds {path}, where this run writes its results, and no manifest of a harness "
            "run lists it (another tool's output, the data itself, or the predictions of a run killed "
            "mid-sequence?). Nothing was written or deleted; move it away or choose another --out-dir")
    return manifest, adopted


_UNHASHED = "no content hash recorded (written by an older harness)"
_CHANGED = "changed since the run wrote it"


def _force_plan(folder: Path, manifest: dict[str, Any] | None) -> tuple[list[str], dict[str, str]]:
    """What ``--force`` deletes (listed files whose sha256 still is the one recorded when they were written),
    and the listed files it keeps, with why (changed since, or no hash recorded)."""
    deletable, kept = [], {}
    for rel, sha in recorded_files(folder, manifest).items():
        path = folder / rel
        if _is_machinery(rel) or not path.is_file() or path.is_symlink():
            continue
        if sha is None:
            kept[rel] = _UNHASHED
        elif sha256_file(path) == sha:
            deletable.append(rel)
        else:
            kept[rel] = _CHANGED
    return deletable, kept


def sequence_outputs(folder: Path, name: str, outputs: Iterable[str]) -> list[Path]:
    """Existing files at the paths where the run writes sequence ``name``'s outputs (``outputs``: globs with
    ``{name}``). Only these paths are checked for foreign files before a run writes there; what a run owns is
    never decided by them, only by its manifest and the hashes it records."""
    parts = Path(name).parts
    if not parts or Path(name).is_absolute() or any(part in (".", "..") for part in parts):
        return []  # never the folder itself or anything outside it
    found = {p for pattern in outputs for p in folder.glob(pattern.format(name=glob_escape(name)))}
    return sorted(p for p in found if p.is_file() and not _is_machinery(p.relative_to(folder).as_posix()))


def _owner(folder: Path, identity: RunIdentity, force: bool) -> tuple[dict[str, Any] | None, list[str]]:
    manifest = read_manifest(folder)
    if manifest is not None:
        if manifest["digest"] == identity.digest or force:
            return manifest, []
        raise FolderRefused(
            f"{folder} holds the results of another run: {differing_components(manifest.get('components'), identity)} "
            f"(manifest: method {manifest.get('method')}, task {manifest.get('task')}, run digest "
            f"{manifest['digest']}; this run's is {identity.digest}). Choose another --out-dir, or pass --force to "
            "delete that run's files (only those its manifest lists, and only while unchanged)")
    record_path = folder / RECORD
    if record_path.exists():
        record = _read_record(record_path)
        if record_matches(record, identity):
            return None, _adoptable(folder, record)
        differs = (f"it differs in {', '.join(record_differences(record, identity))}" if isinstance(record, dict)
                   else "it cannot be read as a record")
        raise FolderRefused(
            f"{folder} holds a run record of another run ({record_path}: method "
            f"{record.get('method') if isinstance(record, dict) else '?'}; {differs}) and no manifest "
            "saying which files are its, so nothing there is overwritten or deleted, even with --force. Choose "
            "another --out-dir or move it away")
    states = folder / STATE_DIR
    if states.is_dir() and any(states.iterdir()):
        raise FolderRefused(f"{folder} holds resume state ({states}) of a run without a manifest; choose another "
                            "--out-dir, or delete that folder if it is yours")
    return None, []


def _adoptable(folder: Path, record: dict[str, Any]) -> list[str]:
    """Files of a matching record's run in a folder written before manifests: record, states, predictions."""
    names = list((record.get("data") or {}).get("sequences") or [])
    found = [RECORD]
    for name in names:
        for candidate in (folder / name, folder / f"{name}.npy", folder / STATE_DIR / state_file_name(name),
                          folder / "visualize" / f"{name}.jpg"):
            if candidate.is_file():
                found.append(candidate.relative_to(folder).as_posix())
            elif candidate.is_dir():
                found += [p.relative_to(folder).as_posix() for p in sorted(candidate.rglob("*")) if p.is_file()]
    return found


# ----------------------------------------------------------------------------------------- the folder


class OutputFolder:
    """A claimed output folder: its manifest, its lock, and what the run has written into it."""

    def __init__(self, path: Path, identity: RunIdentity, lock: FileLock | None, files: Iterable[str] = (),
                 hashes: dict[str, str] | None = None) -> None:
        self.path = Path(path)
        self.identity = identity
        self._lock = lock
        self.files: list[str] = list(dict.fromkeys(files))
        #: sha256 of each listed file as the run wrote it: what ``--force`` checks before deleting it
        self.hashes: dict[str, str] = {k: v for k, v in (hashes or {}).items() if k in self.files}

    # -- manifest ----------------------------------------------------------------------------
    def add(self, files: Iterable[str], hashes: dict[str, str] | None = None) -> None:
        """List files (relative paths) as this run's, with the sha256 of those written already, and rewrite
        the manifest (rank 0 only)."""
        before = (len(self.files), dict(self.hashes))
        self.files = list(dict.fromkeys([*self.files, *files, *(hashes or {})]))
        self.hashes.update(hashes or {})
        if (len(self.files), self.hashes) != before or not (self.path / MANIFEST).exists():
            self._write_manifest()

    def add_written(self, rel: str) -> None:
        """List a file the run has just written, with its sha256."""
        self.add([rel], {rel: sha256_file(self.path / rel)})

    def _write_manifest(self) -> None:
        if self._lock is None:
            return  # ranks other than 0 leave the manifest to rank 0
        atomic_write_json(self.path / MANIFEST, {"digest": self.identity.digest, "method": self.identity.method,
                                                 "task": self.identity.task, "sequences": list(self.identity.sequences),
                                                 "components": self.identity.components,
                                                 "files": self.files, "sha256": self.hashes})

    def retract_record(self) -> None:
        """Remove the folder's record before any of its predictions is rewritten: an interrupted rerun
        must not leave a record beside masks it was not computed from (the leaderboard would publish it)."""
        record = self.path / RECORD
        if record.is_file() and RECORD in self.files:
            record.unlink()

    # -- what a step wrote -------------------------------------------------------------------
    def snapshot(self, name: str) -> dict[str, tuple[int, int, int]]:
        """Identity (inode, size, mtime) of sequence ``name``'s result files, to see later what a step wrote.

        Only the paths where the task writes the sequence's outputs are looked at (``identity.outputs``): that
        keeps this cheap and blind to other ranks' sequences and to the user's files.
        """
        out = {}
        for path in sequence_outputs(self.path, name, self.identity.outputs):
            stat = path.stat()
            out[path.relative_to(self.path).as_posix()] = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        return out

    def written_since(self, name: str, before: dict[str, tuple[int, int, int]]) -> dict[str, str]:
        """Files of ``name`` created or replaced since ``before``, with their sha256 (what a state vouches for)."""
        return {rel: sha256_file(self.path / rel) for rel, ident in sorted(self.snapshot(name).items())
                if before.get(rel) != ident}

    def unchanged(self, files: dict[str, str]) -> str | None:
        """None when every file still has its sha256, else the first one that does not (for the log)."""
        for rel, sha in files.items():
            path = self.path / rel
            if not path.is_file():
                return f"{rel} is missing"
            if sha256_file(path) != sha:
                return f"{rel} was changed"
        return None

    # -- lifetime ----------------------------------------------------------------------------
    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> OutputFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _is_machinery(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return rel in _MACHINERY or name.startswith(TMP_PREFIX)


def claim(path: Path, identity: RunIdentity, *, force: bool = False, flag: str = "--out-dir") -> OutputFolder:
    """Make ``path`` this run's folder, or refuse with a sentence — before anything is computed.

    Order matters for "refused means untouched": every check that can refuse reads only; the folder is
    created, locked and (with ``force``) cleaned only after they pass, and checked again under the lock.
    """
    path = Path(path)
    require_writable_dir(path, flag)
    require_writable_names(path, identity.sequences)
    _require_plain_machinery(path, identity)
    if path.is_dir():
        _owner_check(path, identity, force)
    path.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path / LOCK, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise FolderRefused(f"another harness run is writing into {path} right now (it holds {path / LOCK}); "
                            "wait for it to finish or choose another --out-dir") from None
    try:
        manifest, adopted = _owner_check(path, identity, force)
        files = list((manifest or {}).get("files") or []) + adopted
        hashes = (manifest or {}).get("sha256") if isinstance((manifest or {}).get("sha256"), dict) else {}
        if force:
            _force_clean(path, manifest)
            files, hashes = [], {}
        for tmp in path.rglob(TMP_PREFIX + "*"):  # half-written files of a killed run of ours
            if tmp.is_file() and _TMP_NAME.fullmatch(tmp.name):
                tmp.unlink()
        folder = OutputFolder(path, identity, lock, files, hashes)
        folder._write_manifest()
        return folder
    except BaseException:
        lock.release()
        raise


#: the names :func:`harness.io.atomic_path` gives its temporary files (``mkstemp``: 8 random characters)
_TMP_NAME = re.compile(re.escape(TMP_PREFIX) + r".+\.[A-Za-z0-9_]{8}")


def _require_plain_machinery(path: Path, identity: RunIdentity) -> None:
    """Where the harness keeps a file (lock, manifest, record) there must be no folder, and where it writes into
    a folder (state, a sequence's predictions, visualizations) no file: refused now, not a traceback later."""
    for name in (LOCK, MANIFEST, RECORD):
        if (path / name).exists() and not (path / name).is_file():
            raise FolderRefused(f"{path / name} is not a file, and the harness writes its {name} there. Nothing "
                                "was written; move it away or choose another --out-dir")
    folders = {STATE_DIR} | {Path(pattern.format(name=name)).parent.as_posix()
                             for pattern in identity.outputs for name in identity.sequences}
    for rel in sorted(folders):
        for parent in [*reversed(Path(rel).parents[:-1]), Path(rel)] if rel != "." else []:
            if (path / parent).exists() and not (path / parent).is_dir():
                raise FolderRefused(f"{path / parent} is not a folder, and the harness writes into it. Nothing "
                                    "was written; move it away or choose another --out-dir")


def _force_clean(path: Path, manifest: dict[str, Any] | None) -> None:
    """``--force``: delete the previous run's unchanged files; name on stderr everything left."""
    deletable, kept = _force_plan(path, manifest)
    removed = remove_listed(path, deletable)
    rest = _all_files(path)
    left = [f"{rel} ({kept[rel]})" for rel in rest if rel in kept] + [rel for rel in rest if rel not in kept]
    print(f"--force: removed {len(removed)} file(s) the previous run wrote into {path}", file=sys.stderr)
    if left:
        shown = ", ".join(left[:_NAMED]) + (f" and {len(left) - _NAMED} more" if len(left) > _NAMED else "")
        print(f"--force: left {len(left)} file(s) it did not write or that changed since: {shown}", file=sys.stderr)


#: files named one by one in a message before the rest are counted
_NAMED = 50


def _all_files(folder: Path) -> list[str]:
    return [rel for rel in (p.relative_to(folder).as_posix() for p in sorted(folder.rglob("*"))
                            if p.is_file() or p.is_symlink()) if not _is_machinery(rel)]


def join(path: Path, identity: RunIdentity) -> OutputFolder:
    """A folder rank 0 of the same sharded run has claimed (call after a barrier); no lock, no manifest writes."""
    manifest = read_manifest(Path(path))
    if manifest is None or manifest["digest"] != identity.digest:
        raise HarnessError(f"{path} was not claimed by rank 0 of this run (run digest {identity.digest})")
    return OutputFolder(Path(path), identity, None, manifest.get("files") or [], manifest.get("sha256") or {})


def recorded_files(folder: Path, manifest: dict[str, Any] | None) -> dict[str, str | None]:
    """Every file a manifest's run lists as its own, with the sha256 recorded when it was written (None: not
    recorded, as in manifests of older harness versions): the manifest's files, and the predictions each state
    file lists with their hashes (a killed run's manifest may lag behind its states)."""
    if manifest is None:
        return {}
    hashes = manifest.get("sha256") if isinstance(manifest.get("sha256"), dict) else {}
    out: dict[str, str | None] = {rel: hashes.get(rel) for rel in manifest.get("files") or [] if isinstance(rel, str)}
    states = folder / STATE_DIR
    for path in sorted(states.glob("*.json")) if states.is_dir() else []:
        state = _read_record(path)
        if isinstance(state, dict) and isinstance(state.get("files"), dict):
            for rel, sha in state["files"].items():
                if isinstance(rel, str) and isinstance(sha, str) and out.get(rel) is None:
                    out[rel] = sha
    return out


def remove_listed(folder: Path, files: Iterable[str]) -> list[str]:
    """Delete the listed files of ``folder`` (and folders they leave empty); never a path outside it."""
    root = Path(folder).resolve()
    removed, parents = [], set()
    for rel in dict.fromkeys(files):
        path = root / rel
        try:
            inside = path.resolve().is_relative_to(root) and path.parent.resolve().is_relative_to(root)
        except (OSError, RuntimeError):
            inside = False
        if not inside or _is_machinery(rel) or not (path.is_file() or path.is_symlink()):
            continue
        path.unlink()
        removed.append(rel)
        parents.add(path.parent)
    for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        while parent != root and parent.is_relative_to(root):
            try:
                parent.rmdir()  # only empty folders go
            except OSError:
                break
            parent = parent.parent
    return removed
