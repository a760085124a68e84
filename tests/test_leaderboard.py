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
from harness.data.identify import official_splits
from harness.errors import HarnessError
from harness.leaderboard import build_leaderboard
from harness.leaderboard.collect import RecordError, validate_record
from harness.leaderboard.document import GENERATED_PREFIX
from harness.leaderboard.reported import ReportedError, load_reported

REPO = Path(__file__).resolve().parents[1]
REPORTED = REPO / "results" / "reported.yaml"
# Real DAVIS-2017 val names with their object counts (3 of 30: the smallest share that is ranked).
OBJECTS = {"bike-packing": 2, "blackswan": 1, "dogs-jump": 3}
SEQUENCES = tuple(OBJECTS)
JHMDB_CLIPS = tuple(sorted(official_splits("jhmdb")[0].objects))[:27]  # 10% of the 268 split-1 test clips
VIP_VIDEOS = tuple(f"video{i}" for i in range(5))  # 10% of 50 (VIP's names are not known here)


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
    names = {"davis": SEQUENCES, "jhmdb": JHMDB_CLIPS}.get(task, VIP_VIDEOS)
    # Like the tasks' blocks: the score plus counts and matrices that are not fractions.
    per_sequence = {s: {primary: score + 0.01 * (i - 1), "frames": 40, "confusion": [[3, 1], [0, 2]], "other": None}
                    for i, s in enumerate(names)}  # fmt: skip
    if task == "davis":
        for name, values in per_sequence.items():
            values["n_objects"] = OBJECTS[name]
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
        "data": {"root": "/data/davis2017-layout-val10", "sample": False, "sequences": list(names), "limit": None},
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
    assert md.count("### Protocol") == 2
    assert "hash `aaaaaaaaaa`" in md and "hash `bbbbbbbbbb`" in md
    section_a = md.split("hash `aaaaaaaaaa`")[1].split("###")[0]
    assert "dino-run" not in section_a and "| 1 | [crw [layer3]](<" in section_a


def test_runs_on_different_data_are_not_ranked_together_and_samples_are_flagged(tmp_path: Path) -> None:
    write_record(tmp_path, make_record("crw", score=0.60))
    sample = make_record("pixels", score=0.90)
    sample["data"].update(root="/repo/datasets/sample/davis", sample=True)
    write_record(tmp_path, sample)
    other = make_record("other-seqs", score=0.20)
    other["data"]["sequences"] = ["bike-packing", "blackswan", "bmx-trees"]
    other["per_sequence"] = {s: {"J&F-Mean": 0.2, "n_objects": 2 if s != "blackswan" else 1} for s in other["data"]["sequences"]}
    write_record(tmp_path, other)
    out = tmp_path / "out"
    build_leaderboard([tmp_path / "runs"], out)
    rows = {r["method"]: r for r in csv.DictReader(io.StringIO((out / "leaderboard.csv").read_text()))}
    # Same size, different sequences: two groups, each ranked on its own; the sample is never ranked.
    assert rows["crw"]["rank"] == rows["other-seqs"]["rank"] == "1"
    assert rows["pixels"]["rank"] == "" and rows["pixels"]["smoke"] == "true"
    assert rows["pixels"]["smoke_reasons"] == "the shipped sample"
    assert rows["crw"]["data"] == "DAVIS-2017 val, 3 of 30 sequences"
    assert (out / "leaderboard.md").read_text().count("### Protocol") == 2


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
    clips = sorted(official_splits("jhmdb")[0].objects)[:45]
    many["per_sequence"] = {clip: {"PCK@0.1": i / 100, "frames": 40} for i, clip in enumerate(clips)}
    many["data"]["sequences"] = clips
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
    assert clips[44] not in jhmdb.read_text() and "PCK@0.1 (%) per sequence" in jhmdb.read_text()
    assert all(seq in davis.read_text() for seq in SEQUENCES)  # one row per sequence
    md = (out / "leaderboard.md").read_text()
    assert "## my-task, 5 sequences (no official split list)" not in md and "my-task" in md
    # A task no longer registered has no known split size: it renders, by its first metric, but is never ranked.
    smoke = md.split("## Smoke runs (not ranked)")[1]
    assert "| mIoU % | why not ranked |" in smoke and "no official split size is known for 'my-task'" in smoke
    rows = list(csv.DictReader(io.StringIO((out / "leaderboard.csv").read_text())))
    (row,) = [r for r in rows if r["task"] == "my-task"]
    assert row["mIoU"] and row["pixel_acc"] and row["smoke"] == "true"


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
    assert validate_record(record).as_json() == record  # typed, and the same record
    record["protocol"] = {"name": "crw"}
    with pytest.raises(RecordError, match="protocol.hash"):
        validate_record(record)
    record = make_record()
    record["metrics"] = {"J-Mean": 0.5}
    with pytest.raises(RecordError, match="primary metric 'J&F-Mean'"):
        validate_record(record)
    record = make_record(task="vip")
    record["metrics"]["pixel_acc"] = None  # undefined metrics are allowed, except the primary one
    assert validate_record(record).metrics["pixel_acc"] is None
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
    # DAVIS: score vs runtime (one device, 3 runs) + two per-sequence groups; VIP: one per-sequence group (no timings).
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
    # Published numbers are for the full split: only a run on all 30 sequences is compared with them.
    full = make_record("crw", score=0.652, checkpoint_sha="abcdef0123" + "0" * 54)
    val = official_splits("davis2017")[0].objects
    full["data"]["sequences"] = list(val)
    full["per_sequence"] = {s: {"J&F-Mean": 0.652, "n_objects": n} for s, n in val.items()}
    write_record(tmp_path, full)
    write_record(tmp_path, make_record("crw-other", score=0.652, checkpoint_sha="ffffffffff" + "0" * 54))
    write_record(tmp_path, make_record("crw-subset", score=0.652, checkpoint_sha="abcdef0123" + "0" * 54))
    out = tmp_path / "out"
    build_leaderboard([tmp_path / "runs"], out, reported)
    rows = {r["method"]: r for r in csv.DictReader(io.StringIO((out / "leaderboard.csv").read_text()))}
    assert float(rows["crw"]["delta_pts"]) == pytest.approx(65.2 - 67.6)
    assert rows["crw"]["delta_vs_reported"] == "-2.4 vs paper (67.6)"
    assert rows["crw-other"]["delta_pts"] == ""
    assert rows["crw-subset"]["delta_pts"] == "" and rows["crw-subset"]["rank"] == "1"  # 3 of 30: not compared
    assert rows["CRW"]["kind"] == "reported" and rows["CRW"]["rank"] == ""


def test_reported_yaml_loads_and_every_entry_has_a_source() -> None:
    entries = load_reported(REPORTED)
    assert len(entries) >= 20
    assert all(e.source.strip() for e in entries)
    by_id = {e.id: e for e in entries}
    # Spot checks against each entry's source (docs/protocol.md §6 for CRW; numbers as published, in percent).
    assert by_id["crw-paper-davis"].metrics["J&F-Mean"] == 67.6
    assert by_id["crw-paper-davis"].group.family == "crw"
    assert not by_id["crw-paper-davis"].is_confirmed("J-Recall")
    assert by_id["dino-vitb8-davis"].metrics == {"J&F-Mean": 71.4, "J-Mean": 67.9, "F-Mean": 74.9}
    assert by_id["dino-vitb8-davis"].group.family == "dino"
    assert by_id["imagenet-resnet18-davis"].confirmed is False  # †: docs/published-numbers.md §3
    methods = {e.method for e in entries}
    for name in ("CRW", "VFS", "DINO", "MAST", "UVC", "TimeCycle", "CorrFlow", "SFC", "Spa-then-Temp", "SiamMAE"):
        assert name in methods, name


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["entries"][1].pop("source"), r"entry 1 \(b\): key 'source' is missing"),
        (lambda d: d["entries"][0].update(metrics={"J&F": 60.0}),
         r"entry 0 \(a\): key 'metrics.J&F': not a davis metric. Did you mean: J&F-Mean"),
        (lambda d: d["entries"][0].update(group="Z"), r"entry 0 \(a\): key 'group': 'Z' is not one of A"),
        (lambda d: d["entries"][1].update(id="a"), r"'a' is used twice"),
        (lambda d: d["entries"][0].update(confirmed="yes"), r"entry 0 \(a\): key 'confirmed'"),
        (lambda d: d["entries"][0].update(weights=["sha256:xyz"]), r"key 'weights'.*weights tag"),
        (lambda d: d["entries"][0].update(sourse="x"), r"entry 0 \(a\): unknown key 'sourse'. Did you mean: source\?"),
        (lambda d: d["entries"][0].update(metrics={"J&F-Mean": "60"}), r"entry 0 \(a\): key 'metrics.J&F-Mean'"),
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


@pytest.mark.browser
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


# --- what was measured, smoke runs, comparable runtimes, the page at 1440 px -------------------------


def _rows_by_record(out: Path) -> dict[str, dict[str, str]]:
    return {r["record"]: r for r in csv.DictReader(io.StringIO((out / "leaderboard.csv").read_text())) if r["record"]}


def _html_tables(html: str) -> list[tuple[str, list[str], list[tuple[str, list[str]]]]]:
    """(section id, headers, [(row data-id, cell texts)]) of every table, via the stdlib parser."""

    class Tables(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.section, self.tables, self.cell, self.row = "", [], None, None

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "section":
                self.section = attrs.get("id") or ""
            elif tag == "table":
                self.tables.append((self.section, [], []))
            elif tag == "tr" and self.tables:
                self.row = (attrs.get("data-id") or "", [])
            elif tag in ("td", "th"):
                self.cell = []

        def handle_endtag(self, tag):
            if tag in ("td", "th") and self.cell is not None and self.row is not None:
                self.row[1].append("".join(self.cell).strip())
                self.cell = None
            elif tag == "tr" and self.row is not None:
                if self.row[0]:
                    self.tables[-1][2].append(self.row)
                else:
                    self.tables[-1][1].extend(self.row[1])
                self.row = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell.append(data)

    parser = Tables()
    parser.feed(html)
    return parser.tables


def test_smoke_runs_land_in_the_unranked_section(tmp_path: Path) -> None:
    ranked = write_record(tmp_path, make_record("crw", score=0.6))
    limited = make_record("limited", score=0.9)
    limited["data"]["limit"] = 3
    limited_path = write_record(tmp_path, limited)
    sample = make_record("sampled", score=0.95)
    sample["data"].update(root="datasets/sample/davis", sample=False, sequences=["car-shadow", "motocross-jump"])
    sample["per_sequence"] = {s: {"J&F-Mean": 0.9, "n_objects": 1} for s in ("car-shadow", "motocross-jump")}
    sample_path = write_record(tmp_path, sample)
    clip = make_record("one-clip", task="jhmdb", score=0.4)
    name = "catch/Goal_Keeping_Tips_catch_f_cm_np1_fr_med_2"
    clip["data"]["sequences"], clip["per_sequence"] = [name], {name: {"PCK@0.1": 0.4}}
    clip_path = write_record(tmp_path, clip)
    out = tmp_path / "out"
    build_leaderboard([tmp_path / "runs"], out, REPORTED)
    rows = _rows_by_record(out)
    rel = {p: os.path.relpath(p, out) for p in (ranked, limited_path, sample_path, clip_path)}
    assert rows[rel[ranked]]["rank"] == "1" and rows[rel[ranked]]["smoke"] == "false"
    for path, reason in ((limited_path, "--limit 3"), (sample_path, "the shipped sample"), (clip_path, "1 of 268 clips")):
        row = rows[rel[path]]
        assert row["smoke"] == "true" and row["rank"] == "" and reason in row["smoke_reasons"], row
    assert rows[rel[sample_path]]["dataset"] == "DAVIS-2016 val, 2 of 20 sequences"
    tables = _html_tables((out / "leaderboard.html").read_text())
    smoke_ids = {ident for section, _, body in tables if section == "smoke" for ident, _ in body}
    ranked_ids = {ident for section, _, body in tables if section not in ("smoke", "summary") for ident, _ in body}
    assert smoke_ids == {rel[limited_path], rel[sample_path], rel[clip_path]}
    assert rel[ranked] in ranked_ids and not smoke_ids & ranked_ids
    md = (out / "leaderboard.md").read_text()
    smoke_md = md.split("## Smoke runs (not ranked)")[1]
    assert all(name in smoke_md for name in ("limited", "sampled", "one-clip")) and "crw" not in smoke_md.replace("crw-", "")
    # The summary never names a smoke run as the best (the --limit run scores highest).
    assert "limited" not in md.split("## At a glance")[1].split("## ")[0]


def test_different_devices_or_thread_counts_never_share_a_runtime_column_or_plot(tmp_path: Path) -> None:
    envs = {
        "a1": {"device": "cpu", "cpu_model": "Xeon A", "threads": 2}, "a2": {"device": "cpu", "cpu_model": "Xeon A", "threads": 2},
        "t1": {"device": "cpu", "cpu_model": "Xeon A", "threads": 1}, "t2": {"device": "cpu", "cpu_model": "Xeon A", "threads": 1},
        "other-cpu": {"device": "cpu", "cpu_model": "EPYC B", "threads": 2},
        "gpu": {"device": "cuda", "device_name": "NVIDIA H200", "threads": 2},
    }  # fmt: skip
    paths = {}
    for i, (method, env) in enumerate(envs.items()):
        record = make_record(method, score=0.3 + 0.05 * i)
        record["env"].update(env)
        paths[method] = write_record(tmp_path, record)
    out = tmp_path / "out"
    board = build_leaderboard([tmp_path / "runs"], out)
    assert board.runs == 6
    classes = {r["method"]: r["runtime_class"] for r in _rows_by_record(out).values()}
    assert len(set(classes.values())) == 4 and classes["a1"] == "CPU Xeon A, 2 threads" and classes["gpu"] == "GPU NVIDIA H200, 2 threads"
    by_record = {os.path.relpath(p, out): classes[m] for m, p in paths.items()}
    (table,) = [t for t in _html_tables((out / "leaderboard.html").read_text()) if t[0] not in ("summary", "smoke")]
    _, headers, body = table
    runtime = [i for i, h in enumerate(headers) if h.startswith("ms/frame")]
    assert len(runtime) == 4
    for index in runtime:
        filled = {by_record[ident] for ident, cells in body if cells[index]}
        assert len(filled) == 1, (headers[index], filled)
    # Plots: one per class with at least two runs (Xeon A x2 threads, Xeon A x1 thread), each naming it.
    plots = sorted((out / "plots").glob("*-runtime-*.svg"))
    assert len(plots) == 2
    texts = [p.read_text() for p in plots]
    assert sum("CPU Xeon A, 2 threads" in t for t in texts) == 1 and sum("CPU Xeon A, 1 thread" in t for t in texts) == 1
    for text in texts:
        present = {m for m in envs if re.search(rf">{re.escape(m)}( |<)", text)}
        assert present in ({"a1", "a2"}, {"t1", "t2"}), present
        assert "e+0" not in text  # plain log ticks


def test_runtime_plot_labels_tell_variants_apart_and_single_points_are_not_plotted(tmp_path: Path) -> None:
    for layer in ("blocks.2", "blocks.4"):
        record = make_record("imagenet-effnet-lite0", score=0.5 if layer == "blocks.2" else 0.6)
        record["method_info"] = {"level": layer}
        write_record(tmp_path, record, name=f"effnet-{layer}")
    out = tmp_path / "out"
    build_leaderboard([tmp_path / "runs"], out)
    (plot,) = (out / "plots").glob("*-runtime-*.svg")
    text = plot.read_text()
    assert "imagenet-effnet-lite0 [blocks.2]" in text and "imagenet-effnet-lite0 [blocks.4]" in text
    lone = tmp_path / "lone"
    write_record(lone, make_record("crw", score=0.6))
    build_leaderboard([lone / "runs"], lone / "out")
    assert not list((lone / "out" / "plots").glob("*-runtime-*.svg"))


def test_paired_bootstrap_matches_a_plain_loop() -> None:
    import numpy as np

    from harness.leaderboard.summary import paired_bootstrap, run_gap

    diffs = np.array([3.0, -1.0, 4.0, 1.5, 9.0, 2.0, -6.0, 5.0, 3.5, 0.0])
    gap = paired_bootstrap(diffs, samples=2000, seed=7)
    rng = np.random.default_rng(7)
    picks = rng.integers(0, len(diffs), size=(2000, len(diffs)))
    means = sorted(sum(diffs[j] for j in row) / len(row) for row in picks)
    assert gap.points == pytest.approx(diffs.mean())
    assert gap.low == pytest.approx(np.percentile(means, 2.5)) and gap.high == pytest.approx(np.percentile(means, 97.5))
    assert gap.low < gap.points < gap.high and gap.n == 10
    # Identical per-sequence differences leave no doubt: a zero-width interval at that difference.
    same = run_gap({"a": 60.0, "b": 50.0, "c": 70.0}, {"a": 55.0, "b": 45.0, "c": 65.0, "d": 1.0})
    assert (same.points, same.low, same.high, same.n) == (pytest.approx(5.0), pytest.approx(5.0), pytest.approx(5.0), 3)


def test_summary_names_the_best_run_its_lead_and_refuses_to_compare_a_subset(tmp_path: Path) -> None:
    write_record(tmp_path, make_record("crw", score=0.60, checkpoint_sha="abcdef0123" + "0" * 54))
    write_record(tmp_path, make_record("pixels", score=0.30))
    out = tmp_path / "out"
    build_leaderboard([tmp_path / "runs"], out, REPORTED)
    md = (out / "leaderboard.md").read_text()
    glance = md.split("## At a glance")[1].split("\n## ")[0]
    davis = next(line for line in glance.splitlines() if line.startswith("| [DAVIS-2017 val]"))
    assert "crw [layer3] (crw · aaaaaaaaaa)" in davis and "60.0 (J&F-Mean)" in davis and "3 of 30 sequences" in davis
    assert "+30.0 pts [95% CI +30.0, +30.0] over 3 sequences ahead of pixels [layer3]" in davis
    assert "(group A)" in davis and "not compared: the run measured 3 of 30 sequences" in davis
    for group in load_reported(REPORTED):  # the legend comes from reported.yaml
        assert f"- {group.group.name}" in glance


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
_BOXES = """<script>
(function () {
  function box(el) { var r = el.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }
  var found = {summary: box(document.getElementById("summary")), viewport: [window.innerWidth, window.innerHeight]};
  var th = document.querySelector("section:not(#summary) th.primary");
  var td = document.querySelector("section:not(#summary) td.primary");
  if (th) { found.primary_header = box(th); }
  if (td) { found.primary_cell = box(td); }
  document.body.setAttribute("data-boxes", JSON.stringify(found));
})();
</script>"""


def _boxes(html_path: Path, profile: Path) -> dict[str, list[float]]:
    """Element boxes in CSS px at a 1440x900 window, recorded by an inline script and read from --dump-dom."""
    probe = html_path.with_name("probe.html")
    probe.write_text(html_path.read_text().replace("</body>", _BOXES + "</body>"))
    command = [CHROMIUM or "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1440,900",
               "--force-device-scale-factor=1", "--dump-dom", probe.as_uri()]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    match = re.search(r'data-boxes="([^"]*)"', result.stdout)
    assert match, result.stderr[-2000:]
    import html as html_module

    return json.loads(html_module.unescape(match.group(1)))


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")
@pytest.mark.parametrize("records", ["fixture", "committed"])
def test_summary_and_primary_metric_are_in_the_first_screen_at_1440x900(records: str, board: Path) -> None:
    if records == "committed":
        runs = REPO / "results" / "runs"
        if not list(runs.rglob("record.json")):
            pytest.skip("no committed run records")
    else:
        runs = board / "runs"
    out = board / f"out-{records}"
    build_leaderboard([runs], out, REPORTED)
    boxes = _boxes(out / "leaderboard.html", board / "profile")
    width, height = boxes["viewport"]
    assert width <= 1440 and height <= 900
    for key in ("summary", "primary_header", "primary_cell"):
        left, top, right, bottom = boxes[key]
        assert 0 <= left and right <= 1440 and 0 <= top and bottom <= 900, (key, boxes[key])


def test_sweep_reports_are_linked_and_their_cells_never_ranked(board: Path) -> None:
    out = board / "out"
    report = out / "sweeps" / "eval-knobs-demo" / "report.md"
    report.parent.mkdir(parents=True)
    report.write_text("# a sweep report\n")
    # A sweep cell's record beside its report must not become a leaderboard row.
    write_record(out / "sweeps" / "eval-knobs-demo", make_record("sweep-cell", score=0.99))
    build_leaderboard([board / "runs"], out, REPORTED)
    md = (out / "leaderboard.md").read_text()
    assert "## Sweeps (not ranked)" in md
    assert "- [eval-knobs-demo](<sweeps/eval-knobs-demo/report.md>)" in md
    assert "sweep-cell" not in md
    html = (out / "leaderboard.html").read_text()
    assert '<a href="sweeps/eval-knobs-demo/report.md">eval-knobs-demo</a>' in html
    rows = list(csv.DictReader(io.StringIO((out / "leaderboard.csv").read_text())))
    assert "sweep-cell" not in {r["method"] for r in rows}


def test_runtime_from_cached_features_is_not_compared() -> None:
    from harness.leaderboard.runtime import ms_per_frame
    from harness.runs.schema import TimingBlock

    stages = {"read": 1.0, "features": 30.0, "propagation": 70.0, "labels": 1.0, "write": 1.0, "score": 1.0}
    assert ms_per_frame(TimingBlock(stages=stages)) == 100.0
    assert ms_per_frame(TimingBlock(stages=stages, feature_cache={"hits": 0, "misses": 3})) == 100.0  # all computed
    assert ms_per_frame(TimingBlock(stages=stages, feature_cache={"hits": 1, "misses": 2})) is None
