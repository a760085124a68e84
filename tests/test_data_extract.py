"""Safe extraction: good archives unpack exactly; hostile ones are refused by entry name and write nothing."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from harness.data.extract import safe_extract
from harness.errors import DataError


def _snapshot(folder: Path) -> set[str]:
    """Every path below ``folder`` (links not followed), to prove nothing appeared anywhere."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _zip(path: Path, entries: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def _tar(path: Path, members: list[tuple[str, bytes | None, bytes, str | None]]) -> Path:
    """members: (name, data or None, tar type, linkname)."""
    with tarfile.open(path, "w:gz") as tf:
        for name, data, kind, link in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if link is not None:
                info.linkname = link
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def test_good_zip_unpacks_exactly(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "good.zip", {"DAVIS/": b"", "DAVIS/a/b.txt": b"hello", "DAVIS/./c.txt": b"x" * 5000})
    dest = tmp_path / "out"
    assert safe_extract(archive, dest) == ["DAVIS"]
    assert (dest / "DAVIS/a/b.txt").read_bytes() == b"hello"
    assert (dest / "DAVIS/c.txt").read_bytes() == b"x" * 5000


def test_good_tar_with_inside_links(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "good.tar.gz", [
        ("root/data/f.txt", b"payload", tarfile.REGTYPE, None),
        ("root/alias", None, tarfile.SYMTYPE, "data/f.txt"),
        ("root/sub/up", None, tarfile.SYMTYPE, "../data"),
        ("root/copy.txt", None, tarfile.LNKTYPE, "root/data/f.txt"),
    ])
    dest = tmp_path / "out"
    assert safe_extract(archive, dest) == ["root"]
    assert (dest / "root/alias").is_symlink() and (dest / "root/alias").read_bytes() == b"payload"
    assert (dest / "root/sub/up/f.txt").read_bytes() == b"payload"
    assert (dest / "root/copy.txt").read_bytes() == b"payload" and not (dest / "root/copy.txt").is_symlink()


HOSTILE_ZIPS = {
    "dotdot": ({"ok.txt": b"fine", "../evil": b"owned"}, {}, "../evil"),
    "nested-dotdot": ({"a/../../evil": b"owned"}, {}, "a/../../evil"),
    "absolute": ({"ok.txt": b"fine", "/tmp/crwbench-evil": b"owned"}, {}, "/tmp/crwbench-evil"),
    "backslash": ({"..\\evil": b"owned"}, {}, "..\\evil"),
    "symlink-out": ({"ok.txt": b"fine"}, {"link": "../outside"}, "link"),
    "symlink-abs": ({}, {"link": "/etc"}, "link"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_ZIPS))
def test_hostile_zip_refused_and_nothing_written(tmp_path: Path, case: str) -> None:
    files, links, bad_entry = HOSTILE_ZIPS[case]
    box = tmp_path / "box"
    box.mkdir()
    archive = _zip(tmp_path / "hostile.zip", files, links)
    assert bad_entry in zipfile.ZipFile(archive).namelist()  # the hostile name really is in the archive
    before = _snapshot(tmp_path)
    with pytest.raises(DataError) as err:
        safe_extract(archive, box / "dest")
    assert repr(bad_entry) in str(err.value)
    assert "nothing was extracted" in str(err.value)
    assert _snapshot(tmp_path) == before  # not even the target folder was created
    assert not Path("/tmp/crwbench-evil").exists()


HOSTILE_TARS = {
    "dotdot": [("ok.txt", b"fine", tarfile.REGTYPE, None), ("../evil", b"owned", tarfile.REGTYPE, None)],
    "absolute": [("/tmp/crwbench-evil", b"owned", tarfile.REGTYPE, None)],
    "symlink-out": [("d/link", None, tarfile.SYMTYPE, "../../outside")],
    "symlink-abs": [("link", None, tarfile.SYMTYPE, "/etc/passwd")],
    "through-symlink": [("link", None, tarfile.SYMTYPE, "."), ("link/evil", b"owned", tarfile.REGTYPE, None)],
    "symlink-chain": [("a", None, tarfile.SYMTYPE, "."), ("d/x", None, tarfile.SYMTYPE, "../a/../..")],
    "hardlink-out": [("h", None, tarfile.LNKTYPE, "../outside.txt")],
    "hardlink-abs": [("h", None, tarfile.LNKTYPE, "/etc/passwd")],
    "fifo": [("pipe", None, tarfile.FIFOTYPE, None)],
}
HOSTILE_TAR_ENTRY = {"dotdot": "../evil", "absolute": "/tmp/crwbench-evil", "symlink-out": "d/link",
                     "symlink-abs": "link", "through-symlink": "link/evil", "symlink-chain": "d/x",
                     "hardlink-out": "h", "hardlink-abs": "h", "fifo": "pipe"}


@pytest.mark.parametrize("case", sorted(HOSTILE_TARS))
def test_hostile_tar_refused_and_nothing_written(tmp_path: Path, case: str) -> None:
    box = tmp_path / "box"
    box.mkdir()
    archive = _tar(tmp_path / "hostile.tar.gz", HOSTILE_TARS[case])
    before = _snapshot(tmp_path)
    with pytest.raises(DataError) as err:
        safe_extract(archive, box / "dest")
    assert repr(HOSTILE_TAR_ENTRY[case]) in str(err.value)
    assert _snapshot(tmp_path) == before
    assert not Path("/tmp/crwbench-evil").exists()


def test_existing_symlink_in_target_cannot_redirect_writes(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(outside, dest / "DAVIS")
    archive = _zip(tmp_path / "a.zip", {"DAVIS/sub/evil.txt": b"owned"})
    with pytest.raises(DataError, match="DAVIS/sub/evil.txt"):
        safe_extract(archive, dest)
    assert list(outside.iterdir()) == []


def test_not_an_archive(tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"<html>404 not found</html>")
    with pytest.raises(DataError, match="not a zip or tar archive"):
        safe_extract(junk, tmp_path / "dest")


def test_corrupt_member_is_a_data_error(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 64
    archive = _zip(tmp_path / "a.zip", {"f.bin": payload})
    raw = bytearray(archive.read_bytes())
    at = raw.index(payload[:64])
    raw[at + 100] ^= 0xFF  # one flipped byte in the stored data: the CRC check must catch it
    archive.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="corrupt archive"):
        safe_extract(archive, tmp_path / "dest")


def test_truncated_tar_gz_is_a_data_error(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "a.tar.gz", [(f"d/f{i}.bin", os.urandom(20000), tarfile.REGTYPE, None) for i in range(5)])
    archive.write_bytes(archive.read_bytes()[:40000])
    with pytest.raises(DataError, match=r"a\.tar\.gz"):
        safe_extract(archive, tmp_path / "dest")
