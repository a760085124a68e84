"""Downloading a dataset described by its card: resumable HTTP(S), bounded retries, sha256, safe unpacking.

Dataset servers are slow and connections drop, so a download writes to ``<name>.part`` and resumes it
with a Range request after any failure, retrying with exponential back-off a bounded number of times.
A file whose checksum contradicts the card is renamed ``<name>.bad`` and never unpacked; a file whose
checksum nobody has verified gets its sha256 recorded in a manifest beside the data, so a later
download can be compared with it. Only the standard library talks to the network.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from tqdm import tqdm

from harness.data.cards import Card, RemoteFile
from harness.data.extract import safe_extract
from harness.errors import DataError
from harness.io import atomic_write_json, sha256_file

MIRROR_ENV = "HARNESS_MIRROR"
DATA_ENV = "HARNESS_DATA"
DOWNLOAD_DIR = ".downloads"
MANIFEST = "download-manifest.json"
_CHUNK = 1 << 16
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: ``retries`` extra attempts, sleeping ``backoff * 2**k`` (at most ``max_sleep``) s."""

    retries: int = 5
    backoff: float = 2.0
    max_sleep: float = 60.0
    timeout: float = 60.0


class _Retryable(Exception):
    """A failure worth another attempt (dropped connection, short read, 5xx)."""


def download_root(card: Card, data_root: str | Path | None, create: bool = True) -> Path:
    """Where a download goes: ``--data-root``, else ``$HARNESS_DATA/<task>``; created if missing (and asked)."""
    if data_root is not None:
        root = Path(data_root).expanduser()
    elif os.environ.get(DATA_ENV):
        root = Path(os.environ[DATA_ENV]).expanduser() / card.default_task
    else:
        raise DataError(
            f"where should {card.name} go? pass --data-root DIR, or set {DATA_ENV} to a folder that will "
            f"hold '{card.default_task}/'"
        )
    if root.exists() and not root.is_dir():
        raise DataError(f"data root {root} exists and is not a folder")
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return root


def manual_instructions(card: Card, root: Path | None) -> str:
    """What a user must fetch by hand and where to put it (for datasets behind a browser or a form)."""
    where = str(root) if root is not None else f"${DATA_ENV}/{card.default_task}"
    text = (card.instructions or "").replace("{root}", where).rstrip()
    return f"{card.title} must be downloaded by hand.\nHomepage: {card.homepage}\n\n{text}\n"


def selected_files(card: Card, parts: list[str] | None) -> list[RemoteFile]:
    """The card's default files, or those of the named ``parts``; an unknown part is an error."""
    if not parts:
        return [f for f in card.files if f.default]
    known = {f.part for f in card.files}
    unknown = [p for p in parts if p not in known]
    if unknown:
        raise DataError(f"{card.name} has no part(s) {', '.join(unknown)}; parts: {', '.join(sorted(known))}")
    return [f for f in card.files if f.part in parts]


def file_url(card: Card, remote: RemoteFile, mirror: str | None) -> str:
    """The URL of a file: ``--mirror``/``$HARNESS_MIRROR`` replaces the card's base URL."""
    base = mirror or os.environ.get(MIRROR_ENV) or card.base_url or ""
    return base.rstrip("/") + "/" + remote.name


def download_dataset(
    card: Card,
    root: Path,
    *,
    mirror: str | None = None,
    force: bool = False,
    parts: list[str] | None = None,
    policy: RetryPolicy = RetryPolicy(),
) -> list[Path]:
    """Fetch, verify and unpack the card's files into ``root``; return the archives' paths.

    A file already downloaded and unpacked (according to the manifest) is skipped unless ``force``.
    """
    if card.method != "http":
        raise DataError(f"{card.name} is a manual download; see `harness data download {card.name}`")
    manifest_path = root / MANIFEST
    manifest = _read_manifest(manifest_path)
    archives = []
    for remote in selected_files(card, parts):
        url = file_url(card, remote, mirror)
        archive = root / DOWNLOAD_DIR / remote.name
        done = manifest["files"].get(remote.name, {})
        if not force and archive.is_file() and done.get("extracted"):
            _log(f"{remote.name}: already downloaded and unpacked (use --force to fetch it again)")
            archives.append(archive)
            continue
        if force:
            for stale in (archive, _part(archive)):
                stale.unlink(missing_ok=True)
        if not archive.is_file():
            fetch(url, _part(archive), policy=policy, expected_size=remote.size)
            os.replace(_part(archive), archive)
        digest = verify(archive, remote)
        if done.get("sha256") not in (None, digest):
            _log(f"warning: {remote.name} has sha256 {digest}, but an earlier download recorded {done['sha256']}")
        entry = {"url": url, "size": archive.stat().st_size, "sha256": digest, "card_sha256": remote.sha256,
                 "verified_against_card": remote.sha256 is not None,
                 "downloaded": datetime.now(timezone.utc).isoformat(timespec="seconds"), "extracted": False}
        manifest["files"][remote.name] = entry
        atomic_write_json(manifest_path, manifest)
        if remote.extract:
            _log(f"{remote.name}: unpacking into {root}")
            try:
                created = safe_extract(archive, root)
            except DataError as err:
                os.replace(archive, _bad(archive))
                raise DataError(f"{err}. The archive was moved aside to {_bad(archive)}.") from err
            if remote.unpacks_to and remote.unpacks_to not in created:
                _log(f"warning: {remote.name} unpacked into {', '.join(created) or 'nothing'}, not "
                     f"'{remote.unpacks_to}/' as the card expects; check the layout with `harness data check`")
            entry["extracted"] = True
            entry["unpacked"] = created
            atomic_write_json(manifest_path, manifest)
        archives.append(archive)
    return archives


def _part(archive: Path) -> Path:
    return archive.with_name(archive.name + ".part")


def _bad(archive: Path) -> Path:
    return archive.with_name(archive.name + ".bad")


def _read_manifest(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {"files": {}}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable download manifest ({err}); delete it to start afresh") from err
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        raise DataError(f"{path}: malformed download manifest (no 'files' mapping); delete it to start afresh")
    return data


def verify(archive: Path, remote: RemoteFile) -> str:
    """The file's sha256; a size or checksum that contradicts the card sets the file aside as ``*.bad``."""
    size = archive.stat().st_size
    digest = sha256_file(archive)
    problem = None
    if remote.size is not None and size != remote.size:
        problem = f"size {size} bytes, the card says {remote.size}"
    elif remote.sha256 is not None and digest != remote.sha256:
        problem = f"sha256 {digest}, the card says {remote.sha256}"
    if problem is None:
        if remote.sha256 is None:
            _log(f"{remote.name}: sha256 {digest} (not verified: the card has no checksum; recorded in {MANIFEST})")
        return digest
    bad = _bad(archive)
    os.replace(archive, bad)
    raise DataError(f"{archive.name}: {problem}; the file was moved aside to {bad} and NOT unpacked. "
                    f"Rerun with --force to download it again (or use another --mirror).")


def fetch(url: str, part: Path, *, policy: RetryPolicy = RetryPolicy(), expected_size: int | None = None) -> int:
    """Download ``url`` into ``part``, resuming what is there; return the final size in bytes."""
    part.parent.mkdir(parents=True, exist_ok=True)
    attempt = 0
    while True:
        try:
            return _fetch_once(url, part, policy.timeout, expected_size)
        except _Retryable as err:
            attempt += 1
            if attempt > policy.retries:
                raise DataError(f"{url}: download failed after {policy.retries} retries ({err}); the partial "
                                f"file {part} is kept, rerun the same command to resume") from err
            pause = min(policy.max_sleep, policy.backoff * 2 ** (attempt - 1))
            _log(f"{url}: {err}; retry {attempt}/{policy.retries} in {pause:g} s")
            time.sleep(pause)


def _fetch_once(url: str, part: Path, timeout: float, expected_size: int | None) -> int:
    offset = part.stat().st_size if part.exists() else 0
    request = Request(url, headers={"User-Agent": "crwbench-data/1"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urlopen(request, timeout=timeout)
    except HTTPError as err:
        if err.code == 416 and offset:
            total = _range_total(err.headers.get("Content-Range", ""))
            if total == offset:
                return offset  # the partial file was already complete
            part.unlink()
            raise _Retryable(f"server refused to resume at byte {offset}; starting over") from err
        if err.code in (408, 429) or err.code >= 500:
            raise _Retryable(f"HTTP {err.code} {err.reason}") from err
        raise DataError(f"{url}: HTTP {err.code} {err.reason}") from err
    except (URLError, OSError, http.client.HTTPException) as err:
        raise _Retryable(f"cannot connect: {getattr(err, 'reason', err)}") from err
    with response:
        if offset and response.status == 206:
            start, total = _content_range(response.headers.get("Content-Range", ""))
            if start != offset:
                part.unlink()
                raise _Retryable(f"server resumed at byte {start}, not {offset}; starting over")
            mode = "ab"
        else:
            offset, mode = 0, "wb"  # a 200 answer to a Range request: the server sends everything again
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else expected_size
        _stream(response, part, mode, offset, total, url)
    size = part.stat().st_size
    if total is not None and size != total:
        raise _Retryable(f"connection closed at byte {size} of {total}")
    return size


def _stream(response: Any, part: Path, mode: str, offset: int, total: int | None, url: str) -> None:
    name = url.rsplit("/", 1)[-1]
    with open(part, mode) as out, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                       unit_divisor=1024, desc=name, file=sys.stderr, disable=None) as bar:
        try:
            while block := response.read(_CHUNK):
                out.write(block)
                bar.update(len(block))
        except (OSError, http.client.HTTPException) as err:
            out.flush()
            raise _Retryable(f"connection lost ({type(err).__name__}: {err})") from err
        out.flush()
        os.fsync(out.fileno())


def _content_range(header: str) -> tuple[int, int | None]:
    match = _CONTENT_RANGE.match(header.strip())
    if not match:
        raise _Retryable(f"unreadable Content-Range {header!r}")
    total = match.group(3)
    return int(match.group(1)), None if total == "*" else int(total)


def _range_total(header: str) -> int | None:
    match = re.match(r"bytes\s+\*/(\d+)", header.strip())
    return int(match.group(1)) if match else None


def _log(message: str) -> None:
    print(message, file=sys.stderr)
