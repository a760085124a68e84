"""Downloads against a real HTTP server on 127.0.0.1: verify, resume, retry, refuse bad files; dataset cards."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import socket
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main as cli_main
from harness.data.cards import CardError, card_paths, find_card, load_card, parse_card
from harness.data.check import check_dataset
from harness.data.download import (
    MANIFEST,
    RetryPolicy,
    download_dataset,
    download_root,
    file_url,
    selected_files,
)
from harness.errors import DataError

SHARED = Path(__file__).resolve().parents[2] / "shared"
FAST = RetryPolicy(retries=3, backoff=0.01, timeout=5.0)
pytestmark = pytest.mark.timeout(60)


class FileServer:
    """A real HTTP server with Range support that can drop a file's first response half-way."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_first: set[str] = set()
        self.fail_first: dict[str, int] = {}  # path -> HTTP status of the first answer
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.lstrip("/")
        range_header = h.headers.get("Range")
        with self.lock:
            first = all(p != path for p, _ in self.requests)
            self.requests.append((path, range_header))
        if path not in self.files:
            h.send_error(404, "not found")
            return
        if first and path in self.fail_first:
            h.send_error(self.fail_first[path], "try again later")
            return
        data = self.files[path]
        start = 0
        if range_header and not self.ignore_range:
            start = int(range_header.split("=", 1)[1].split("-", 1)[0])
            if start >= len(data):
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(data)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            h.send_response(200)
        body = data[start:]
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if first and path in self.cut_first:
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            h.connection.shutdown(socket.SHUT_RDWR)  # the connection drops mid-transfer
            h.close_connection = True
            return
        h.wfile.write(body)

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _no_mirror_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_MIRROR", raising=False)


@pytest.fixture
def server() -> Iterator[FileServer]:
    with FileServer() as srv:
        yield srv


def _zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return buffer.getvalue()


PAYLOAD = _zip_bytes({"DATA/a.txt": b"a" * 300_000, "DATA/sub/b.bin": bytes(range(256)) * 1000})


def _card(base_url: str, sha256: str | None = None, name: str = "data.zip") -> Any:
    return parse_card({
        "name": "fixture", "title": "Fixture dataset", "tasks": ["fixture"], "homepage": "http://example.org",
        "license": "test", "citation": "@misc{x, title={x}}", "layout": {"DATA/": "everything"},
        "download": {"method": "http", "base_url": base_url, "files": [
            {"name": name, "part": "all", "size": None, "sha256": sha256, "verified": sha256 is not None,
             "unpacks_to": "DATA"}]},
    }, "fixture-card")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_good_download_verifies_and_extracts(server: FileServer, tmp_path: Path) -> None:
    server.files["data.zip"] = PAYLOAD
    root = tmp_path / "root"
    root.mkdir()
    download_dataset(_card(server.url, _sha(PAYLOAD)), root, policy=FAST)
    assert (root / "DATA/a.txt").read_bytes() == b"a" * 300_000
    assert (root / "DATA/sub/b.bin").read_bytes() == bytes(range(256)) * 1000
    manifest = json.loads((root / MANIFEST).read_text())["files"]["data.zip"]
    assert manifest["sha256"] == _sha(PAYLOAD) and manifest["verified_against_card"] and manifest["extracted"]
    assert server.requests == [("data.zip", None)]
    # a second call finds it done and fetches nothing
    download_dataset(_card(server.url, _sha(PAYLOAD)), root, policy=FAST)
    assert len(server.requests) == 1


def test_unknown_checksum_is_recorded(server: FileServer, tmp_path: Path) -> None:
    server.files["data.zip"] = PAYLOAD
    download_dataset(_card(server.url, None), tmp_path, policy=FAST)
    manifest = json.loads((tmp_path / MANIFEST).read_text())["files"]["data.zip"]
    assert manifest["sha256"] == _sha(PAYLOAD)
    assert manifest["card_sha256"] is None and manifest["verified_against_card"] is False


def test_cut_connection_resumes_with_range(server: FileServer, tmp_path: Path) -> None:
    server.files["data.zip"] = PAYLOAD
    server.cut_first.add("data.zip")
    download_dataset(_card(server.url, _sha(PAYLOAD)), tmp_path, policy=FAST)
    assert (tmp_path / "DATA/a.txt").read_bytes() == b"a" * 300_000
    ranges = [r for p, r in server.requests if p == "data.zip"]
    assert ranges[0] is None and len(ranges) == 2
    resumed_at = int(ranges[1].split("=")[1].rstrip("-"))
    assert 0 < resumed_at < len(PAYLOAD)  # it resumed, it did not start over


def test_failed_download_keeps_part_and_next_run_resumes(server: FileServer, tmp_path: Path) -> None:
    server.files["data.zip"] = PAYLOAD
    server.cut_first.add("data.zip")
    card = _card(server.url, _sha(PAYLOAD))
    with pytest.raises(DataError, match="rerun the same command to resume"):
        download_dataset(card, tmp_path, policy=RetryPolicy(retries=0, timeout=5.0))
    part = tmp_path / ".downloads" / "data.zip.part"
    assert 0 < part.stat().st_size < len(PAYLOAD)
    assert not (tmp_path / "DATA").exists()
    download_dataset(card, tmp_path, policy=FAST)
    assert server.requests[-1] == ("data.zip", f"bytes={len(PAYLOAD) // 2}-")
    assert (tmp_path / "DATA/a.txt").is_file() and not part.exists()


def test_server_ignoring_range_restarts_cleanly(server: FileServer, tmp_path: Path) -> None:
    server.files["data.zip"] = PAYLOAD
    server.cut_first.add("data.zip")
    server.ignore_range = True
    download_dataset(_card(server.url, _sha(PAYLOAD)), tmp_path, policy=FAST)
    assert (tmp_path / "DATA/sub/b.bin").read_bytes() == bytes(range(256)) * 1000


def test_transient_server_error_is_retried(server: FileServer, tmp_path: Path) -> None:
    server.files["data.zip"] = PAYLOAD
    server.fail_first["data.zip"] = 503
    download_dataset(_card(server.url, _sha(PAYLOAD)), tmp_path, policy=FAST)
    assert len(server.requests) == 2 and (tmp_path / "DATA/a.txt").is_file()


def test_missing_file_fails_at_once(server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="HTTP 404"):
        download_dataset(_card(server.url, None, name="nothere.zip"), tmp_path, policy=FAST)
    assert len(server.requests) == 1


def test_checksum_mismatch_sets_file_aside_and_extracts_nothing(server: FileServer, tmp_path: Path) -> None:
    server.files["data.zip"] = PAYLOAD
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(DataError, match="sha256") as err:
        download_dataset(_card(server.url, _sha(b"something else")), root, policy=FAST)
    assert "NOT unpacked" in str(err.value)
    bad = root / ".downloads" / "data.zip.bad"
    assert bad.read_bytes() == PAYLOAD
    assert not (root / ".downloads" / "data.zip").exists()
    assert sorted(p.name for p in root.iterdir()) == [".downloads"]


@pytest.mark.parametrize("entry", ["../evil.txt", "/tmp/crwbench-abs-evil.txt"])
def test_hostile_archive_is_refused(server: FileServer, tmp_path: Path, entry: str) -> None:
    hostile = _zip_bytes({"DATA/ok.txt": b"fine", entry: b"owned"})
    server.files["data.zip"] = hostile
    root = tmp_path / "parent" / "root"
    root.mkdir(parents=True)
    before = sorted(p.name for p in root.parent.iterdir())
    with pytest.raises(DataError) as err:
        download_dataset(_card(server.url, None), root, policy=FAST)
    assert repr(entry) in str(err.value) and "moved aside" in str(err.value)
    assert (root / ".downloads/data.zip.bad").is_file()
    assert sorted(p.name for p in root.parent.iterdir()) == before
    assert not (root / "DATA").exists() and not Path("/tmp/crwbench-abs-evil.txt").exists()


def test_download_root_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    card = find_card("davis")
    monkeypatch.delenv("HARNESS_DATA", raising=False)
    with pytest.raises(DataError, match="--data-root"):
        download_root(card, None)
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path))
    assert download_root(card, None) == tmp_path / "davis"
    assert download_root(card, tmp_path / "x") == tmp_path / "x"


def test_manual_dataset_prints_instructions_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["data", "download", "vip", "--data-root", str(tmp_path / "vip")]) == 2
    out, err = capsys.readouterr()
    assert f"{tmp_path / 'vip'}/VIP_Fine/Images/<video>/<frame>.jpg" in out
    assert f"{tmp_path / 'vip'}/lists/val_videos.txt" in out
    assert "cannot be downloaded automatically" in err
    assert not (tmp_path / "vip").exists()  # printing instructions creates nothing
    assert cli_main(["data", "download", "kinetics400"]) == 2
    assert "kinetics400.tar.gz" in capsys.readouterr().out


@pytest.mark.skipif(not (SHARED / "data/davis2016-val10/DAVIS").is_dir(), reason="needs ../shared/data/davis2016-val10")
def test_cli_download_with_mirror_then_check(server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The real davis2016 card, served by a local mirror: the unpacked root passes `data check`."""
    src = SHARED / "data/davis2016-val10/DAVIS"
    entries = {"DAVIS/ImageSets/480p/val.txt": b"".join(
        f"/JPEGImages/480p/blackswan/{i:05d}.jpg /Annotations/480p/blackswan/{i:05d}.png\n".encode() for i in range(3))}
    for i in range(3):
        entries[f"DAVIS/JPEGImages/480p/blackswan/{i:05d}.jpg"] = (src / f"JPEGImages/480p/blackswan/{i:05d}.jpg").read_bytes()
        entries[f"DAVIS/Annotations/480p/blackswan/{i:05d}.png"] = (src / f"Annotations/480p/blackswan/{i:05d}.png").read_bytes()
    server.files["DAVIS-data.zip"] = _zip_bytes(entries)
    monkeypatch.setenv("HARNESS_MIRROR", server.url)  # the env var works; --mirror overrides it
    root = tmp_path / "davis2016"
    assert cli_main(["data", "download", "davis2016", "--data-root", str(root), "--mirror", server.url + "/"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(root.resolve())
    assert server.requests == [("DAVIS-data.zip", None)]
    assert check_dataset("davis2016", root) == []
    assert cli_main(["data", "check", "davis2016", "--data-root", str(root)]) == 0


# --------------------------------------------------------------------------------------------- cards


def test_shipped_cards_load_and_map_tasks() -> None:
    names = {load_card(p).name for p in card_paths()}
    assert {"davis2017", "davis2016", "jhmdb", "vip", "kinetics400"} <= names
    assert {task: find_card(task).name for task in ("davis", "davis2016", "jhmdb", "vip")} == {
        "davis": "davis2017", "davis2016": "davis2016", "jhmdb": "jhmdb", "vip": "vip"}
    for path in card_paths():
        card = load_card(path)
        assert card.citation.lstrip().startswith("@") and card.license and card.layout
        for remote in card.files:
            assert remote.sha256 is not None or not remote.verified
    assert find_card("davis2017").base_url == "https://data.vision.ee.ethz.ch/csergi/share/davis/"


def test_parts_selection() -> None:
    card = find_card("davis")
    assert [f.name for f in selected_files(card, None)] == ["DAVIS-2017-trainval-480p.zip"]
    assert [f.name for f in selected_files(card, ["trainval", "test-dev"])] == [
        "DAVIS-2017-trainval-480p.zip", "DAVIS-2017-test-dev-480p.zip"]
    with pytest.raises(DataError, match="test-dev, trainval"):
        selected_files(card, ["val"])
    assert file_url(card, card.files[1], None).endswith("/csergi/share/davis/DAVIS-2017-test-dev-480p.zip")


def test_unknown_card_lists_known_ones() -> None:
    with pytest.raises(DataError, match="davis2017"):
        find_card("davs")


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda d: d.pop("license"), "'license' is missing"),
    (lambda d: d["download"]["files"][0].update(sha256="abc"), "'download.files.0.sha256'"),
    (lambda d: d["download"]["files"][0].update(verified=True, sha256=None), "'download.files.0.verified'"),
    (lambda d: d["download"]["files"][0].update(size="big"), "'download.files.0.size'"),
    (lambda d: d["download"].update(method="ftp"), "'download.method'"),
    (lambda d: d.update(colour="blue"), "'colour'"),
    (lambda d: d["check"].update(default_split="test"), "'check.default_split'"),
    (lambda d: d["check"]["splits"]["val"].update(annotated="some"), "'check.splits.val.annotated'"),
    (lambda d: d.update(citation="Pont-Tuset et al."), "'citation'"),
    (lambda d: d["check"].update(labels="davis-pallete"), "'check.labels'"),
    (lambda d: d["check"].update(labels="class-ids"), "'check.num_classes'"),
    (lambda d: d["check"].update(labels="keypoints-json"), "'check.kind'"),
    (lambda d: d["check"]["splits"]["val"]["lists"][0].update(format="lines"), "'check.splits.val.lists.0.format'"),
    (lambda d: d["official"]["splits"]["val"].update(size=30), "'official.splits.val'"),
])
def test_bad_card_names_file_and_field(tmp_path: Path, mutate: Any, field: str) -> None:
    import yaml

    data = yaml.safe_load(next(p for p in card_paths() if p.stem == "davis2017").read_text())
    mutate(data)
    path = tmp_path / "davis2017.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CardError) as err:
        load_card(path)
    assert str(path) in str(err.value) and field in str(err.value)


def test_card_file_name_must_match(tmp_path: Path) -> None:
    path = tmp_path / "other.yaml"
    shutil.copy(next(p for p in card_paths() if p.stem == "vip"), path)
    with pytest.raises(CardError, match="other.yaml"):
        load_card(path)
