"""The example plug-in (examples/plugin) installed with pip, outside the repository: its task and its trainable
method are listed through their entry points, and the command block of its README, run line by line as
written, scores the task by its primary metric, trains the method with evaluations and a curve, runs a 2-cell
sweep and builds a leaderboard that ranks by PCK@0.2 and lists the one-clip run as a smoke run."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "plugin"
#: the README's install line; the test installs the same folder without network into a folder of its own
INSTALL = "pip install ./examples/plugin"
#: what the README's commands call, pointed at this interpreter and checkout
PRELUDE = 'harness() { "$PYTHON" -m harness "$@"; }; python() { "$PYTHON" "$@"; }\n'


def guide_commands(readme: Path = EXAMPLE / "README.md") -> list[str]:
    """The lines of the README's one ```bash block (comments and blank lines left out)."""
    blocks = re.findall(r"^```bash\n(.*?)^```", readme.read_text(), flags=re.S | re.M)
    assert len(blocks) == 1, f"{readme} must hold exactly one ```bash block, found {len(blocks)}"
    return [line for line in blocks[0].splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of examples/plugin built and installed by pip into a folder of its own: no network, no build
    isolation (setuptools from this environment), nothing written into the checkout."""
    pytest.importorskip("setuptools", reason="building the example package needs setuptools installed")
    root = tmp_path_factory.mktemp("plugin")
    source = root / "source"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                           "--disable-pip-version-check", "--quiet", "--target", str(root / "site"), str(source)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in (root / "site").glob("*.dist-info")) == ["crwbench_example_plugin-0.1.0.dist-info"]
    return root / "site"


def shell(line: str, site: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """One README line in bash from the checkout, with the plug-in importable only from ``site``."""
    clean = {k: v for k, v in os.environ.items() if k not in ("HARNESS_DATA", "HARNESS_RESULTS")}
    env = {**clean, "PYTHON": sys.executable, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]), **env}
    return subprocess.run(["bash", "-c", PRELUDE + line], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600, check=False)


def listed(output: str) -> dict[str, str]:
    return {line.split()[0]: line for line in output.splitlines() if line.startswith("  ")}


def test_the_installed_plugin_is_listed(site: Path) -> None:
    lines = guide_commands()
    assert lines[:2] == [INSTALL, "harness list"]
    done = shell(lines[1], site)
    assert done.returncode == 0, done.stderr
    entries = listed(done.stdout)
    assert "PCK@0.2" in entries["toykp"] and "crwbench_example plug-in" in entries["toykp"]
    assert "stride 8, dim 32" in entries["toynet"] and entries["toynet"].endswith("[trainable]")
    assert not entries["pixels"].endswith("[trainable]")
    if importlib.util.find_spec("crwbench_example") is None:  # not installed elsewhere too: listed thanks to `site`
        absent = shell("harness list", site.parent / "nothing-installed")
        assert absent.returncode == 0 and not {"toykp", "toynet"} & set(listed(absent.stdout))


def reference_scores(data: Path, run: Path) -> tuple[float, float]:
    """PCK@0.2 and EPE of a run's written predictions, by hand: frames after the first, every point scored, hit when
    within 0.2 x 0.6 x the diagonal of the frame's ground-truth box; EPE over predicted points, / the frame diagonal."""
    hits = points = predicted = 0
    distance = 0.0
    for truth in sorted((data / "points").glob("*.json")):
        gt = np.array(json.loads(truth.read_text()))[:, :, 1:]
        pred = np.array(json.loads((run / truth.name).read_text()))[:, :, 1:]
        for t in range(gt.shape[2]):
            box = gt[:, :, t].max(axis=1) - gt[:, :, t].min(axis=1)
            for j in range(gt.shape[1]):
                error = float(np.hypot(*(pred[:, j, t] - gt[:, j, t])))
                points += 1
                if pred[0, j, t] >= 0:
                    predicted += 1
                    distance += error / np.hypot(64, 64)
                    hits += error <= 0.2 * 0.6 * float(np.hypot(*box))
    return hits / points, distance / predicted


@pytest.mark.slow
def test_the_readme_commands_run_train_sweep_and_rank(site: Path, tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    done = {}
    for line in guide_commands()[1:]:
        done[line] = result = shell(line, site, DATA=str(data), OUT=str(out))
        assert result.returncode == 0, f"{line}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    outputs = list(done.values())
    assert "OK: Toy keypoints" in outputs[2].stdout  # harness data check

    # harness run: the record names the split and carries the task's metrics; its scores are the predictions'
    records = [json.loads(Path(r.stdout.strip().splitlines()[-1]).read_text()) for r in (outputs[3], outputs[5], outputs[6])]
    pixels, toynet, smoke = records
    for record in records:
        assert record["task"] == "toykp" and set(record["metrics"]) == {"PCK@0.2", "EPE"}
    assert pixels["data"]["dataset"]["label"] == "ToyKP test, all 20 clips" and not pixels["smoke"]
    assert smoke["data"]["dataset"]["label"] == "ToyKP test, 1 of 20 clips" and smoke["smoke"]
    pixels_dir = Path(outputs[3].stdout.strip().splitlines()[-1]).parent
    pck, epe = reference_scores(data / "toykp", pixels_dir)
    assert pixels["metrics"]["PCK@0.2"] == pytest.approx(pck, abs=1e-12)
    assert pixels["metrics"]["EPE"] == pytest.approx(epe, rel=1e-9)
    assert toynet["checkpoint"]["path"] == str(out / "train" / "toynet-eval.pt")

    # harness train: 40 steps, evaluated at 20 and 40 through the runner, with the curve
    train = out / "train"
    entries = [json.loads(line) for line in (train / "metrics.jsonl").read_text().splitlines()]
    steps = [e for e in entries if e.get("kind") != "eval"]
    evals = [e for e in entries if e.get("kind") == "eval"]
    assert [e["step"] for e in steps] == list(range(1, 41)) and all("walk_acc" in e for e in steps)
    assert [(e["step"], e["task"], e["metric"]) for e in evals] == [(20, "toykp", "PCK@0.2"), (40, "toykp", "PCK@0.2")]
    assert evals[-1]["score"] == toynet["metrics"]["PCK@0.2"]  # the final weights, scored again by `harness run`
    assert (train / "curve.svg").stat().st_size > 1000

    # harness sweep: 2 cells done, the report plots the primary metric
    with open(out / "sweeps" / "toynet-topk" / "report.csv") as handle:
        cells = list(csv.DictReader(handle))
    assert [(c["cell"], c["protocol.topk"], c["status"]) for c in cells] == [("topk-1", "1", "done"), ("topk-3", "3", "done")]
    assert all(0 <= float(c["PCK@0.2"]) <= 1 for c in cells)
    assert (out / "sweeps" / "toynet-topk" / "plot-topk.svg").is_file()

    # harness leaderboard: the full runs ranked by PCK@0.2 (EPE sorts first), the one-clip run a smoke run
    with open(out / "leaderboard.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r["task"] == "toykp"]
    ranked = sorted((r for r in rows if r["smoke"] == "false"), key=lambda r: int(r["rank"]))
    by_pck = sorted((pixels, toynet), key=lambda r: -r["metrics"]["PCK@0.2"])
    assert [r["method"] for r in ranked] == [r["method"] for r in by_pck]
    assert [float(r["PCK@0.2"]) for r in ranked] == [round(100 * r["metrics"]["PCK@0.2"], 4) for r in by_pck]
    assert {r["primary_metric"] for r in rows} == {"PCK@0.2"}
    (smoke_row,) = [r for r in rows if r["smoke"] == "true"]
    assert smoke_row["rank"] == "" and "1 of 20 clips (under 10% of the split)" in smoke_row["smoke_reasons"]
    board = (out / "leaderboard.md").read_text()
    section = board.split("### Protocol `crw`")[1].split("\n## ")[0]
    header = next(line for line in section.splitlines() if line.startswith("| rank"))
    assert header.split(" | ")[3:5] == ["PCK@0.2 %", "EPE %"]
    smoke_part = board.split("## Smoke runs (not ranked)")[1]
    assert "ToyKP test, 1 of 20 clips" in smoke_part and "under 10% of the split" in smoke_part
