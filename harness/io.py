"""File helpers: atomic writing (a result is either entirely there or not there at all), hashing, YAML reading.

Every file the harness produces (records, predictions, tables, checkpoints) is written to a
temporary name in the same folder and renamed into place, so an interrupted run never leaves a
half-written file that a later resume would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import yaml

from harness.errors import HarnessError

TMP_PREFIX = ".tmp-"


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, _shared_mode())  # mkstemp makes 0600 files; results are meant to be shared
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _shared_mode() -> int:
    """What ``open()`` would give a new file: 0666 less the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | Path, write: Callable[[IO[Any]], None], mode: str = "w") -> None:
    """Write a file through ``write(handle)`` atomically."""
    with atomic_path(path) as tmp, open(tmp, mode) as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text))


def atomic_write_json(path: str | Path, payload: Any) -> None:
    """JSON with sorted keys and a trailing newline, written atomically."""
    atomic_write_text(path, json.dumps(payload, indent=1, sort_keys=True, default=_jsonable) + "\n")


def json_digest(payload: Any) -> str:
    """sha256 of ``payload`` as JSON reads it back (sorted keys, compact), so a value digested before it is
    written and the same value read from the file give the same digest."""
    plain = json.loads(json.dumps(payload, default=_jsonable))
    return hashlib.sha256(json.dumps(plain, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


_JSON_SCALARS = (str, int, float, bool, type(None))


def plain_json(value: Any) -> Any:
    """What JSON (and ``torch.load(weights_only=True)``) can hold: scalars, lists and string-keyed dicts kept,
    any other object replaced by its repr (recipes and argparse namespaces stored in checkpoints)."""
    if isinstance(value, _JSON_SCALARS):
        return value
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items()}
    return repr(value)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file, read in chunks (checkpoints, weights and archives can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_yaml(path: str | Path, what: str, error: type[HarnessError] = HarnessError) -> Any:
    """The parsed YAML file ``path``; an unreadable file or bad syntax raises ``error`` naming the file and ``what`` it is."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise error(f"{path}: cannot read {what}: {err}") from err
    except yaml.YAMLError as err:
        raise error(f"{path}: {what} is not valid YAML: {err}") from err
