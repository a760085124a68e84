"""Leaderboard: determinism, grouping by protocol hash, skipped records, offline HTML, reported.yaml."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cli import main as cli_main
from harness.errors import HarnessError
from harness.leaderboard import build_leaderboard
from harness.leaderboard.collect import RecordError, validate_record
from harness.leaderboard.document import GENERATED_PREFIX
from harness.leaderboard.reported import ReportedError, load_reported

REPO = Path(__file__).resolve().parents[1]
REPORTED = REPO / "results" / "reported.yaml"
SEQUENCES = ("bike", "car", "dog")


def make_record(
    method: str = "pixels",
    task: str = "davis",
    protocol_hash: str = "aaaaaaaaaa",
    score: float = 0.5,
    checkpoint_sha: str | None = None,
    protocol: str = "crw",
    timing: bool = True,
    visualizations: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A schema-1 run record with the keys the runner writes; scores are fractions."""
    if task == "davis":
        metrics = {"J&F-Mean": score, "J-Mean": score - 0.02, "F-Mean": score + 0.02, "J-Recall": score,
                   "J-Decay": 0.1, "F-Recall": score, "F-Decay": -0.05}  # fmt: skip
    elif task == "jhmdb":
        metrics = {f"PCK@0.{i}": min(1.0, score + 0.1 * (i - 1)) for i in range(1, 6)}
    else:
        metrics = {"mIoU": score, "pixel_acc": min(1.0, score + 0.3)}
    primary = next(iter(metrics))
    # Like the tasks' blocks: the score plus counts and matrices that are not fractions.
    per_sequence = {s: {primary: score + 0.01 * (i - 1), "frames": 40, "confusion": [[3, 1], [0, 2]], "other": None}
                    for i, s in enumerate(SEQUENCES)}  # fmt: skip
    record: dict[str, Any] = {
        "schema_version": 1,
        "method": method,
        "method_info": {"backbone": "ResNet-18", "parameters": 11_689_512, "pretraining": "none",
                        "stride": 8, "dim": 256, "layer": "layer3"},  # fmt: skip
        "task": task,
        "protocol": {"name": protocol, "settings": {"context": 20, "topk": 10}, "hash": protocol_hash},
        "checkpoint": None if checkpoint_sha is None else {"path": "/ckpt/model.pth", "sha256": checkpoint_sha},
        "config": {"method": method, "task": task},
        "env": {"python": "3.11", "torch": "2.4", "timm": "1.0", "numpy": "2.0", "device": "cpu",
                "device_name": "cpu", "cuda": None, "git_commit": "0123456789abcdef", "git_dirty": False},  # fmt: skip
        "seed": 0,
        "data": {"root": "/data/davis2017-layout-val10", "sample": False, "sequences": list(SEQUENCES), "limit": None},
        "started": "2026-11-24T10:00:00+00:00",
        "finished": "2026-11-24T10:05:00+00:00",
        "metrics": metrics,
        "per_sequence": per_sequence,
        "timing": {"features_ms_per_frame": 10.0 * (1 + score), "propagation_ms_per_frame": 5.0,
                   "adapt_s_per_video": None, "scoring_s": 1.0, "total_s": 30.0,
                   "peak_rss_mib": 900.0, "peak_gpu_mib": None, "frames": 120} if timing else {},  # fmt: skip
    }
    if visualizations:
        record["visualizations"] = list(visualizations)
    return record


def write_record(root: Path, record: dict[str, Any], name: str | None = None) -> Path:
    folder = root / "runs" / record["task"] / (name or record["method"]) / f"{record['protocol']['name']}-{record['protocol']['hash']}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "record.json"
    path.write_text(json.dumps(record, indent=1))
    return path


def without_generated(text: str) -> list[str]:
    return [line for line in text.splitlines() if GENERATED_PREFIX not in line]


class _Html(HTMLParser):
    """Collects table rows, embedded images and every src/href of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str | None]] = []
        self.images: list[str] = []
        self.references: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "tr" and attributes.get("class") in ("reproduced", "reported"):
            self.rows.append(attributes)
        if tag == "img":
            self.images.append(attributes.get("src") or "")
        for key in ("src", "href"):
            if attributes.get(key):
                self.references.append(attributes[key] or "")


@pytest.fixture
def board(tmp_path: Path) -> Path:
    """Four records: three DAVIS runs under two protocol hashes, one VIP run without timings."""
    write_record(tmp_path, make_record("pixels", score=0.30))
    write_record(tmp_path, make_record("crw", score=0.60, visualizations=("strips/bike.png",)))
    write_record(tmp_path, make_record("timm:vit_small_patch16_224.dino", protocol="dino", protocol_hash="bbbbbbbbbb", score=0.55))
    write_record(tmp_path, make_record("crw", task="vip", protocol_hash="cccccccccc", score=0.35, timing=False))
    return tmp_path


def test_regeneration_is_byte_identical_apart_from_generated_at(board: Path) -> None:
    out = board / "out"
    build_leaderboard([board / "runs"], out, REPORTED, generated_at="2026-01-01T00:00:00+00:00")
    first = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    build_leaderboard([board / "runs"], out, REPORTED)  # a new generated-at stamp
    second = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert first.keys() == second.keys()
    assert {"leaderboard.md", "leaderboard.csv", "leaderboard.html"} <= {str(p) for p in first}
    assert any(str(p).startswith("plots/") and str(p).endswith(".svg") for p in first)
    for name in first:
        if name.suffix in (".md", ".html"):
            a, b = first[name].decode(), second[name].decode()
            assert a != b, f"{name}: generated-at line missing"
            assert without_generated(a) == without_generated(b), name
            assert len(a.splitlines()) - len(without_generated(a)) == 1, f"{name}: exactly one generated-at line"
        else:
            assert first[name] == second[name], name
    assert GENERATED_PREFIX not in first[Path("leaderboard.csv")].decode()
    assert not list(out.rglob(".tmp-*")), "atomic writes left temporary files"


def test_runs_are_ranked_only_within_a_protocol_hash(tmp_path: Path) -> None:
    # The dino run scores highest overall but sits under another hash: both groups start at rank 1.
    write_record(tmp_path, make_record("pixels", score=0.30))
    write_record(tmp_path, make_record("crw", score=0.60))
    write_record(tmp_path, make_record("dino-run", protocol="dino", protocol_hash="bbbbbbbbbb", score=0.70))
    out = tmp_path / "out"
    build_leaderboard([tmp_path / "runs"], out)
    rows = list(csv.DictReader(io.StringIO((out / "leaderboard.csv").read_text())))
    ranks = {(r["method"], r["protocol_hash"]): r["rank"] for r in rows}
    assert ranks == {("crw", "aaaaaaaaaa"): "1", ("pixels", "aaaaaaaaaa"): "2", ("dino-run", "bbbbbbbbbb"): "1"}
    # Percentages, not fractions, and the recalls/decays kept in the CSV.
    crw = next(r for r in rows if r["method"] == "crw")
    assert float(crw["J&F-Mean"]) == pytest.approx(60.0)
    assert float(crw["F-Decay"]) == pytest.approx(-5.0)
    assert float(crw["ms_per_frame"]) == pytest.approx(21.0)
    md = (out / "leaderboard.md").read_text()
    assert md.count("### Reproduced") == 2
    assert "hash `aaaaaaaaaa`" in md and "hash `bbbbbbbbbb`" in md
    section_a = md.split("hash `aaaaaaaaaa`")[1].split("###")[0]
    assert "dino-run" not in section_a and "| 1 | reproduced | crw |" in section_a


def test_runs_on_different_data_are_not_ranked_together_and_samples_are_flagged(tmp_path: Path) -> None:
    write_record(tmp_path, make_record("crw", score=0.60))
    sample = make_record("pixels", score=0.90)
    sample["data"].update(root="/repo/datasets/sample/davis", sample=True, sequences=["bike"])
    write_record(tmp_path, sample)
    out = tmp_path / "out"
    build_leaderboard([tmp_path / "runs"], out)
    rows = {r["method"]: r for r in csv.DictReader(io.StringIO((out / "leaderboard.csv").read_text()))}
    assert rows["crw"]["rank"] == rows["pixels"]["rank"] == "1"
    assert rows["pixels"]["data"] == "davis (1 seq), sample"
    assert rows["crw"]["data"] == "davis2017-layout-val10 (3 seq)"
    assert (out / "leaderboard.md").read_text().count("### Reproduced") == 2


def test_per_sequence_plot_falls_back_to_a_shown_metric() -> None:
    from harness.leaderboard.plots import sequence_metric
    from harness.leaderboard.spec import TASKS

    tables = [{"bike": {"F-Mean": 0.5, "J-Mean": 0.4}}, {"car": {"J-Mean": 0.3, "F-Mean": 0.2, "J&F-Mean": 0.25}}]
    assert sequence_metric(TASKS["davis"], tables) == "J-Mean"
    assert sequence_metric(TASKS["davis"], tables[1:]) == "J&F-Mean"
    assert sequence_metric(TASKS["vip"], [{"a": {"x": 0.1, "b": 0.2}}]) == "b"
    assert sequence_metric(TASKS["vip"], [{}]) is None
    assert sequence_metric(TASKS["vip"], [{"a": {"frames": 40, "n": [1]}}]) is None
    assert sequence_metric(TASKS["vip"], [{"a": {"mIoU": None, "frames": 4}, "b": {"mIoU": 0.5, "frames": 4}}]) == "mIoU"


def test_many_sequences_become_a_box_plot_and_unknown_tasks_still_render(tmp_path: Path) -> None:
    many = make_record("crw", task="jhmdb", score=0.5)
    many["per_sequence"] = {f"clip{i:02d}": {"PCK@0.1": i / 100, "frames": 40} for i in range(45)}
    write_record(tmp_path, many)
    few = make_record("crw", score=0.5)
    write_record(tmp_path, few)
    odd = make_record("crw", task="vip", score=0.4)
    odd["task"] = "my-task"
    write_record(tmp_path, odd)
    out = tmp_path / "out"
    build_leaderboard([tmp_path / "runs"], out)
    (jhmdb,) = (out / "plots").glob("jhmdb-*-per-sequence.svg")
    (davis,) = (out / "plots").glob("davis-*-per-sequence.svg")
    assert "clip44" not in jhmdb.read_text() and "PCK@0.1 (%) per sequence" in jhmdb.read_text()
    assert all(seq in davis.read_text() for seq in SEQUENCES)  # one row per sequence
    md = (out / "leaderboard.md").read_text()
    assert "## my-task (`my-task`)" in md and "| mIoU % | pixel_acc % |" in md


def test_malformed_and_partial_records_are_reported_by_path_and_skipped(tmp_path: Path, capsys) -> None:
    good = write_record(tmp_path, make_record("crw", score=0.6))
    bad_json = tmp_path / "runs" / "davis" / "broken" / "record.json"
    bad_json.parent.mkdir(parents=True)
    bad_json.write_text('{"schema_version": 1, "method": ')
    partial = make_record("partial")
    del partial["metrics"]
    partial_path = write_record(tmp_path, partial)
    old = make_record("old")
    old["schema_version"] = 0
    old_path = write_record(tmp_path, old)
    percent = make_record("percent")
    percent["metrics"]["J&F-Mean"] = 67.5
    percent_path = write_record(tmp_path, percent)

    out = tmp_path / "out"
    assert cli_main(["leaderboard", str(tmp_path / "runs"), "--out-dir", str(out), "--no-reported"]) == 0
    err = capsys.readouterr().err
    for path, reason in [(bad_json, "not valid JSON"), (partial_path, "'metrics'"),
                         (old_path, "schema_version"), (percent_path, "not a fraction")]:  # fmt: skip
        assert f"skipped {path}: " in err and reason in err, (path, err)
    md = (out / "leaderboard.md").read_text()
    assert "## Skipped records" in md and md.count("\n- `../runs/") == 4
    html = (out / "leaderboard.html").read_text()
    parser = _Html()
    parser.feed(html)
    assert [r["data-id"] for r in parser.rows if r["class"] == "reproduced"] == [os.path.relpath(good, out)]
    assert "Skipped records" in html and "partial" in html


def test_no_usable_record_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "runs" / "record.json"
    broken.parent.mkdir(parents=True)
    broken.write_text("[]")
    with pytest.raises(HarnessError, match=r"(?s)no usable run record.*record.json: top level is list"):
        build_leaderboard([tmp_path / "runs"], tmp_path / "out")
    with pytest.raises(HarnessError, match="no such file or folder"):
        build_leaderboard([tmp_path / "missing"], tmp_path / "out")
    assert not (tmp_path / "out" / "leaderboard.md").exists()


def test_validate_record_names_the_problem() -> None:
    record = make_record()
    assert validate_record(record) is record
    record["protocol"] = {"name": "crw"}
    with pytest.raises(RecordError, match="protocol.hash"):
        validate_record(record)
    record = make_record()
    record["metrics"] = {"J-Mean": 0.5}
    with pytest.raises(RecordError, match="primary metric 'J&F-Mean'"):
        validate_record(record)
    record = make_record(task="vip")
    record["metrics"]["pixel_acc"] = None  # undefined metrics are allowed, except the primary one
    assert validate_record(record) is record
    record["metrics"]["mIoU"] = None
    with pytest.raises(RecordError, match="primary metric 'mIoU'"):
        validate_record(record)
    record = make_record()
    record["timing"]["total_s"] = "slow"
    with pytest.raises(RecordError, match=r"timing.total_s"):
        validate_record(record)


def test_html_is_self_contained_with_one_row_per_record_and_embedded_plots(board: Path) -> None:
    out = board / "out"
    build_leaderboard([board / "runs"], out, REPORTED)
    parser = _Html()
    parser.feed((out / "leaderboard.html").read_text())
    reproduced = [r for r in parser.rows if r["class"] == "reproduced"]
    assert len(reproduced) == 4
    assert sorted(r["data-id"] for r in reproduced) == sorted(
        os.path.relpath(p, out) for p in (board / "runs").rglob("record.json")
    )
    assert len([r for r in parser.rows if r["class"] == "reported"]) == len(load_reported(REPORTED))
    svgs = [src for src in parser.images if src.startswith("data:image/svg+xml;base64,")]
    # DAVIS: score vs runtime + two per-sequence groups; VIP: one per-sequence group only (no timings).
    assert len(svgs) == len(parser.images) == 4
    external = [ref for ref in parser.references if ref.lower().startswith(("http://", "https://", "//"))]
    assert external == []
    for src in svgs:  # the figures themselves reference nothing outside (xmlns is a name, not a fetch)
        svg = base64.b64decode(src.split(",", 1)[1]).decode()
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg
        assert not re.search(r'(?:href|src)\s*=\s*"(?:https?:)?//', svg)
    assert any(ref.endswith("strips/bike.png") for ref in parser.references)
    md = (out / "leaderboard.md").read_text()
    for ref in [line.split("](")[1].rstrip(")") for line in md.splitlines() if line.startswith("![")]:
        assert (out / ref).is_file(), ref


def test_reproduced_minus_reported_for_matching_weights_and_protocol(tmp_path: Path) -> None:
    reported = tmp_path / "reported.yaml"
    reported.write_text(yaml.safe_dump({
        "schema_version": 1, "unit": "percent",
        "protocol_groups": {"A": {"family": "crw", "description": "CRW-style"}, "C": {"description": "own"}},
        "entries": [
            {"id": "paper", "method": "CRW", "task": "davis", "metrics": {"J&F-Mean": 67.6}, "source": "paper Tab.1",
             "group": "A", "confirmed": True, "weights": ["sha256:abcdef0123"]},
            {"id": "other-protocol", "method": "CRW", "task": "davis", "metrics": {"J&F-Mean": 60.0},
             "source": "x", "group": "C", "confirmed": False, "weights": ["sha256:abcdef0123"]},
        ],
    }))  # fmt: skip
    write_record(tmp_path, make_record("crw", score=0.652, checkpoint_sha="abcdef0123" + "0" * 54))
    write_record(tmp_path, make_record("crw-other", score=0.652, checkpoint_sha="ffffffffff" + "0" * 54))
    out = tmp_path / "out"
    build_leaderboard([tmp_path / "runs"], out, reported)
    rows = {r["method"]: r for r in csv.DictReader(io.StringIO((out / "leaderboard.csv").read_text()))}
    assert float(rows["crw"]["delta_pts"]) == pytest.approx(65.2 - 67.6)
    assert rows["crw"]["delta_vs_reported"] == "-2.4 vs paper (67.6)"
    assert rows["crw-other"]["delta_pts"] == ""
    assert rows["CRW"]["kind"] == "reported" and rows["CRW"]["rank"] == ""


def test_reported_yaml_loads_and_every_entry_has_a_source() -> None:
    entries = load_reported(REPORTED)
    assert len(entries) >= 20
    assert all(e.source.strip() for e in entries)
    by_id = {e.id: e for e in entries}
    # Spot checks against peers.md / crw-protocol.md §6 (numbers as published, in percent).
    assert by_id["crw-paper-davis"].metrics["J&F-Mean"] == 67.6
    assert by_id["crw-paper-davis"].group.family == "crw"
    assert not by_id["crw-paper-davis"].is_confirmed("J-Recall")
    assert by_id["dino-vitb8-davis"].metrics == {"J&F-Mean": 71.4, "J-Mean": 67.9, "F-Mean": 74.9}
    assert by_id["dino-vitb8-davis"].group.family == "dino"
    assert by_id["imagenet-resnet18-davis"].confirmed is False  # † in peers.md
    methods = {e.method for e in entries}
    for name in ("CRW", "VFS", "DINO", "MAST", "UVC", "TimeCycle", "CorrFlow", "SFC", "Spa-then-Temp", "SiamMAE"):
        assert name in methods, name


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["entries"][1].pop("source"), r"entry 1 \(b\): missing key\(s\) source"),
        (lambda d: d["entries"][0].update(metrics={"J&F": 60.0}), r"entry 0 \(a\): metric 'J&F' is not a davis metric"),
        (lambda d: d["entries"][0].update(group="Z"), r"entry 0 \(a\): group 'Z'"),
        (lambda d: d["entries"][1].update(id="a"), r"'a' is used twice"),
        (lambda d: d["entries"][0].update(confirmed="yes"), r"entry 0 \(a\): 'confirmed'"),
        (lambda d: d["entries"][0].update(weights=["sha256:xyz"]), r"weights tag"),
    ],
)
def test_reported_yaml_errors_name_the_entry(tmp_path: Path, edit, message: str) -> None:
    data = {
        "schema_version": 1, "unit": "percent", "protocol_groups": {"A": {"family": "crw", "description": "d"}},
        "entries": [{"id": i, "method": "m", "task": "davis", "metrics": {"J&F-Mean": 60.0}, "source": "s",
                     "group": "A", "confirmed": True} for i in ("a", "b")],
    }  # fmt: skip
    edit(data)
    path = tmp_path / "reported.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ReportedError, match=message) as info:
        load_reported(path)
    assert str(path) in str(info.value)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_html_renders_headless_in_chromium(board: Path) -> None:
    out = board / "out"
    build_leaderboard([board / "runs"], out, REPORTED)
    shot = board / "shot.png"
    command = [
        shutil.which("chromium") or "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-dev-shm-usage", f"--user-data-dir={board / 'profile'}", "--window-size=1280,2000",
        f"--screenshot={shot}", (out / "leaderboard.html").as_uri(),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), result.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as image:
        assert image.width >= 1280 and image.height >= 2000
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    # A blank or error page has a handful of colours; tables, text and plots give many.
    assert colours is not None and len(colours) > 50


def test_pretraining_cell_summarises_a_recipe():
    from harness.leaderboard.table import _pretraining_label

    recipe = {"source": "harness", "step": 50, "recipe": {"name": "crw-cpu-demo", "optim": {"lr": 1e-4}}}
    assert _pretraining_label(recipe) == "recipe crw-cpu-demo, step 50, by harness"
    assert _pretraining_label("ImageNet-1k") == "ImageNet-1k"
    assert _pretraining_label(None) == ""
    assert _pretraining_label({"other": 1}) == "see record"
