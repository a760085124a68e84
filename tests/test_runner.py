"""End-to-end runs through the CLI: records, resume, official output format, bad inputs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.cli import main
from harness.tasks.davis import PALETTE

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "datasets" / "sample" / "davis"
SHARED = REPO.parent / "shared"
RECORD_KEYS = {"schema_version", "method", "task", "protocol", "checkpoint", "config", "env", "seed", "data",
               "started", "finished", "metrics", "per_sequence", "per_object", "timing"}
DAVIS_KEYS = {"J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"}


def small_davis_root(dest: Path, frames: int = 6, sequences=("car-shadow", "motocross-jump"),
                     scale: int = 4) -> Path:
    """A DAVIS-2017 root with the first few real frames of the shipped sample's sequences.

    Frames and masks are shrunk ``scale`` times on each side (masks by nearest neighbour, so ids stay ids):
    what these tests check (records, resume, files, refusals) does not depend on the size, and propagation at
    480p costs ``scale**2`` times more. ``scale=1`` copies the files byte for byte.
    """
    for seq in sequences:
        for sub, ext in (("JPEGImages", "jpg"), ("Annotations", "png")):
            out = dest / sub / "480p" / seq
            out.mkdir(parents=True)
            for path in sorted((SAMPLE / sub / "480p" / seq).glob(f"*.{ext}"))[:frames]:
                if scale == 1:
                    shutil.copy(path, out / path.name)
                    continue
                with Image.open(path) as image:
                    size = (image.width // scale, image.height // scale)
                    small = image.resize(size, Image.NEAREST if ext == "png" else Image.BILINEAR)
                    if ext == "png":
                        small.putpalette(image.getpalette())
                    small.save(out / path.name, **({"quality": 95} if ext == "jpg" else {}))
    (dest / "ImageSets" / "2017").mkdir(parents=True)
    (dest / "ImageSets" / "2017" / "val.txt").write_text("\n".join(sequences) + "\n")
    return dest


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_run_writes_record_and_official_predictions(tmp_path, capsys):
    root = small_davis_root(tmp_path / "davis")
    out_dir = tmp_path / "run"
    code, out, err = run_cli(["run", "--method", "pixels", "--task", "davis", "--data-root", str(root),
                              "--out-dir", str(out_dir)], capsys)
    assert code == 0, err
    record_path = Path(out.strip().splitlines()[-1])
    assert record_path == (out_dir / "record.json").resolve()
    record = json.loads(record_path.read_text())
    assert RECORD_KEYS <= set(record)
    assert set(record["metrics"]) == DAVIS_KEYS
    assert all(0.0 <= v <= 1.0 for k, v in record["metrics"].items() if not k.endswith("Decay"))
    assert set(record["per_object"]) == {"car-shadow_1", "motocross-jump_1"}
    assert record["protocol"]["name"] == "crw" and len(record["protocol"]["hash"]) == 10
    for key in ("features_ms_per_frame", "propagation_ms_per_frame", "scoring_s", "total_s", "peak_rss_mib"):
        assert record["timing"][key] > 0
    assert record["timing"]["frames"] == 12
    png = Image.open(out_dir / "car-shadow" / "00003.png")
    assert png.mode == "P" and png.getpalette()[:30] == PALETTE[:30]
    assert set(np.unique(np.asarray(png))) <= {0, 1}
    # the written PNGs score the same under `harness score`
    code, out, err = run_cli(["score", "--task", "davis", "--data-root", str(root), "--predictions", str(out_dir),
                              "--out", str(tmp_path / "scores.json")], capsys)
    assert code == 0, err
    rescored = json.loads((tmp_path / "scores.json").read_text())
    for key in DAVIS_KEYS:
        assert rescored["metrics"][key] == pytest.approx(record["metrics"][key], abs=1e-12)


def test_rerun_resumes_and_force_recomputes(tmp_path, capsys):
    root = small_davis_root(tmp_path / "davis", frames=4)
    args = ["run", "--method", "pixels", "--task", "davis", "--data-root", str(root), "--out-dir", str(tmp_path / "r")]
    assert run_cli(args, capsys)[0] == 0
    first = json.loads((tmp_path / "r" / "record.json").read_text())
    state = tmp_path / "r" / ".state" / "car-shadow.json"
    stamp = state.stat().st_mtime_ns
    assert run_cli(args, capsys)[0] == 0
    assert state.stat().st_mtime_ns == stamp  # resumed, not recomputed
    second = json.loads((tmp_path / "r" / "record.json").read_text())
    assert second["metrics"] == first["metrics"] and second["config"] == first["config"]
    assert run_cli([*args, "--force"], capsys)[0] == 0
    assert state.stat().st_mtime_ns != stamp


@pytest.mark.smoke
def test_sigkill_mid_run_then_rerun_matches_uninterrupted(tmp_path, capsys):
    """Kill `harness run` while it writes predictions; the rerun ends where an uninterrupted run ends."""
    root = small_davis_root(tmp_path / "davis", frames=10, sequences=("car-shadow", "motocross-jump"))
    args = ["run", "--method", "pixels", "--task", "davis", "--data-root", str(root)]
    base = [sys.executable, "-m", "harness", *args]
    code, clean_out, err = run_cli([*args, "--out-dir", str(tmp_path / "clean")], capsys)  # in-process: no kill
    assert code == 0, err
    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen([*base, "--out-dir", str(killed_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not (killed_dir / "car-shadow" / "00003.png").exists():
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed_dir / "record.json").exists()
    rerun = subprocess.run([*base, "--out-dir", str(killed_dir)], capture_output=True, text=True, check=True)
    a = json.loads(Path(clean_out.strip().splitlines()[-1]).read_text())
    b = json.loads(Path(rerun.stdout.strip().splitlines()[-1]).read_text())
    assert a["metrics"] == b["metrics"]
    assert a["per_object"] == b["per_object"]
    assert a["protocol"]["hash"] == b["protocol"]["hash"]
    assert {k: v for k, v in a["config"].items()} == b["config"]
    assert not [p for p in killed_dir.rglob("*") if p.name.startswith(".tmp-")]


@pytest.mark.shared
@pytest.mark.slow
def test_davis2016_and_2017_layouts_give_equal_scores(tmp_path, capsys):
    """The same real sequences in the 2016 and 2017 layouts score identically, and re-score the same.

    Two sequences keep CI short; the committed records in results/runs/ show all ten.
    """
    if not SHARED.is_dir():
        pytest.skip(f"needs the real data in {SHARED}")
    records = {}
    for task, root in (("davis2016", SHARED / "data" / "davis2016-val10"),
                       ("davis", SHARED / "data" / "davis2017-layout-val10")):
        code, out, err = run_cli(["run", "--method", "pixels", "--task", task, "--data-root", str(root),
                                  "--sequences", "car-shadow,motocross-jump", "--out-dir", str(tmp_path / task)],
                                 capsys)
        assert code == 0, err
        records[task] = json.loads(Path(out.strip().splitlines()[-1]).read_text())
    a, b = records["davis2016"], records["davis"]
    assert len(a["per_sequence"]) == 2
    assert a["metrics"] == b["metrics"]
    assert a["per_object"] == b["per_object"]
    code, out, err = run_cli(["score", "--task", "davis2016", "--data-root", str(SHARED / "data" / "davis2016-val10"),
                              "--predictions", str(tmp_path / "davis2016"), "--sequences", "car-shadow,motocross-jump",
                              "--out", str(tmp_path / "s.json")], capsys)
    assert code == 0, err
    rescored = json.loads((tmp_path / "s.json").read_text())
    assert rescored["metrics"] == pytest.approx(a["metrics"], abs=1e-12)
