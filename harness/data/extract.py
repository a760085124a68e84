"""Safe extraction of zip and tar(.gz) archives.

Archives come from the network, so they are treated as hostile: every entry is checked *before*
anything is written (absolute paths, ``..`` components, links leaving the target, entries inside
links, device files), and a single bad entry refuses the whole archive with the entry's name. A tar
archive is then written by the standard library's own ``extractall(filter="data")`` (Python 3.12,
3.11.4+), which checks every real path again as it writes; zip archives (no such filter) and older
Pythons get our writer, which re-checks each real path on disk too, so a symlink already lying in the
target cannot redirect a write outside it either.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from harness.errors import DataError

_CHUNK = 1 << 20
_MAX_LINK = 4096


@dataclass(frozen=True)
class Entry:
    """One archive member after checking: a safe relative POSIX path and what to create there."""

    name: str
    kind: str  # "dir" | "file" | "symlink" | "hardlink"
    link: str | None  # symlink: the target as stored; hardlink: the member it copies
    member: Any  # ZipInfo or TarInfo

    @property
    def member_name(self) -> str:
        """The name exactly as stored in the archive, for error messages."""
        return getattr(self.member, "filename", None) or self.member.name


def safe_extract(archive: str | Path, dest: str | Path) -> list[str]:
    """Unpack ``archive`` into ``dest``; return the sorted top-level names it created.

    Raises :class:`DataError` naming the archive and the offending entry when any entry is unsafe;
    in that case nothing at all has been written.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        return _extract(archive, dest)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as err:
        raise DataError(f"{archive}: corrupt archive ({type(err).__name__}: {err}); files unpacked before the "
                        f"error may be incomplete — download it again with --force") from err
    except OSError as err:  # disk full, permissions, a file where the archive needs a folder
        raise DataError(f"{archive}: cannot unpack into {dest}: {err}") from err


def _extract(archive: Path, dest: Path) -> list[str]:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            entries = _plan(archive, [_zip_entry(archive, zf, info) for info in zf.infolist()])
            dest.mkdir(parents=True, exist_ok=True)
            _write(dest, entries, lambda e: zf.open(e.member))
    elif _is_tar(archive):
        with tarfile.open(archive, "r:*") as tf:
            entries = _plan(archive, [_tar_entry(archive, m) for m in tf.getmembers()])  # refuse before writing
            dest.mkdir(parents=True, exist_ok=True)
            if hasattr(tarfile, "data_filter"):
                try:
                    tf.extractall(dest, members=[e.member for e in entries], filter="data")
                except tarfile.FilterError as err:
                    raise DataError(f"{archive}: refusing to extract entry {err.tarinfo.name!r}: {err}") from err
            else:
                _write(dest, entries, lambda e: tf.extractfile(e.member))
    else:
        raise DataError(f"{archive}: not a zip or tar archive (cannot extract it)")
    return sorted({e.name.split("/", 1)[0] for e in entries})


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def _refuse(archive: Path, raw: str, reason: str) -> DataError:
    return DataError(f"{archive}: refusing to extract entry {raw!r}: {reason}; nothing was extracted")


def _relative(archive: Path, raw: str) -> str:
    """The entry's path as safe relative POSIX parts, or an error naming it."""
    name = raw.replace("\\", "/")
    if "\x00" in name:
        raise _refuse(archive, raw, "NUL byte in the name")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":" and name[0].isalpha()):
        raise _refuse(archive, raw, "absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _refuse(archive, raw, "'..' path component (would write outside the target folder)")
    return "/".join(parts)


def _zip_entry(archive: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Entry | None:
    name = _relative(archive, info.filename)
    if not name:
        return None
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        if info.file_size > _MAX_LINK:
            raise _refuse(archive, info.filename, f"symlink target of {info.file_size} bytes")
        return Entry(name, "symlink", zf.read(info).decode("utf-8", "surrogateescape"), info)
    return Entry(name, "dir" if info.is_dir() else "file", None, info)


def _tar_entry(archive: Path, member: tarfile.TarInfo) -> Entry | None:
    name = _relative(archive, member.name)
    if not name:
        return None
    if member.isdir():
        return Entry(name, "dir", None, member)
    if member.isfile():
        return Entry(name, "file", None, member)
    if member.issym():
        return Entry(name, "symlink", member.linkname, member)
    if member.islnk():
        return Entry(name, "hardlink", member.linkname, member)
    raise _refuse(archive, member.name, "device, FIFO or other special file")


def _plan(archive: Path, entries: list[Entry | None]) -> list[Entry]:
    """Check all entries together (links need the whole list) and return them in a safe write order."""
    kept = [e for e in entries if e is not None]
    symlinks = {e.name for e in kept if e.kind == "symlink"}
    files = {e.name for e in kept if e.kind == "file"}
    dirs = {e.name for e in kept if e.kind == "dir"}
    checked = []
    for e in kept:
        parts = e.name.split("/")
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in symlinks:
                raise _refuse(archive, e.member_name, f"it lies inside the symlink {'/'.join(parts[:depth])!r}")
        if e.kind == "symlink":
            _check_symlink(archive, e, symlinks)
            if e.name in files or e.name in dirs:
                raise _refuse(archive, e.member_name, "a symlink with the name of another entry")
        elif e.kind == "hardlink":
            try:
                target = _relative(archive, e.link or "")
            except DataError:
                raise _refuse(archive, e.member_name, f"hard link to {e.link!r} outside the target folder") from None
            if target not in files:
                raise _refuse(archive, e.member_name, f"hard link to {e.link!r}, which is not a file of this archive")
            e = Entry(e.name, "hardlink", target, e.member)
        checked.append(e)
    order = {"dir": 0, "file": 1, "hardlink": 2, "symlink": 3}
    return sorted(checked, key=lambda e: order[e.kind])


def _check_symlink(archive: Path, e: Entry, symlinks: set[str]) -> None:
    """A symlink may point anywhere inside the target, but never out of it, and never through another link."""
    target = e.link or ""
    if not target or target.startswith("/") or "\\" in target or (len(target) > 1 and target[1] == ":"):
        raise _refuse(archive, e.member_name, f"symlink to {target!r} (absolute or empty target)")
    where = e.name.split("/")[:-1]
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not where:
                raise _refuse(archive, e.member_name, f"symlink to {target!r} points outside the target folder")
            where.pop()
        else:
            where.append(part)
            if "/".join(where) in symlinks:
                raise _refuse(archive, e.member_name, f"symlink to {target!r} goes through another symlink")


def _inside(root: Path, path: Path) -> bool:
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root + os.sep)


def _write(dest: Path, entries: list[Entry], open_member: Any) -> None:
    for e in entries:
        target = dest / e.name
        if not _inside(dest, target.parent):
            raise DataError(f"{dest}: entry {e.member_name!r} would be written outside the target folder "
                            f"through an existing symlink; stopped")
        if e.kind == "dir":
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            target.unlink()
        if e.kind == "file":
            source: IO[bytes] | None = open_member(e)
            with source as src, open(target, "wb") as dst:  # type: ignore[union-attr]
                shutil.copyfileobj(src, dst, _CHUNK)
        elif e.kind == "hardlink":
            shutil.copyfile(dest / (e.link or ""), target)
        else:
            os.symlink(e.link or "", target)
