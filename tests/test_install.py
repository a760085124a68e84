"""An installed copy runs like any other package: build the wheel, install it into a fresh target
without the source tree on the path, and run the CLI from an unrelated folder. The default CRW
weights, the dataset cards and the real sample come from the wheel; the record lands under that
folder's ``results/`` and says which package version made it (and no git commit: there is none)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: what a build needs from the checkout (the rest of the tree, results and tests, stays out)
BUILD_INPUTS = ("harness", "methods", "datasets", "docs", "results/reported.yaml", "pyproject.toml", "setup.py",
                "MANIFEST.in", "README.md")


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=1500, check=False)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the source (the checkout gets no build/ folder), installed with
    ``pip install --no-deps --target``."""
    base = tmp_path_factory.mktemp("install")
    source = base / "source"
    for name in BUILD_INPUTS:
        src, dst = REPO / name, source / name
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "_shipped"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    _run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-w", str(base / "dist"),
          str(source)], base, env)
    (wheel,) = (base / "dist").glob("crwbench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not any(n.startswith("datasets/") for n in names), "a top-level datasets/ would shadow `import datasets`"
    for shipped in ("harness/_shipped/datasets/davis2017.yaml", "harness/_shipped/reported.yaml",
                    "harness/_shipped/datasets/sample/davis/ImageSets/2017/val.txt",
                    "harness/runs/record.schema.json", "methods/crw/recipes/crw-cpu-demo.yaml"):
        assert shipped in names, shipped
    assert any(n.startswith("methods/crw/weights/") and n.endswith(".pt") for n in names)
    target = base / "target"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)], base, env)
    return target


@pytest.mark.slow
@pytest.mark.timeout(1800)  # building, installing and a CRW run on 40 real frames, on a shared CPU
def test_installed_wheel_lists_and_runs_from_an_unrelated_folder(installed: Path, tmp_path: Path) -> None:
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("HARNESS_RESULTS", "HARNESS_DATA")}
    env["PYTHONPATH"] = str(installed)  # replaces any path to the checkout
    where = _run([sys.executable, "-c", "import harness, methods; print(harness.__file__, methods.__file__)"], work, env)
    assert str(REPO) not in where.stdout and str(installed) in where.stdout

    listed = _run([sys.executable, "-m", "harness", "list"], work, env)
    assert "crw" in listed.stdout and "davis" in listed.stdout

    ran = _run([sys.executable, "-m", "harness", "run", "--method", "crw", "--task", "davis", "--limit", "1"],
               work, env)
    record_path = Path(ran.stdout.strip().splitlines()[-1])
    assert record_path.is_relative_to(work / "results" / "runs"), record_path
    record = json.loads(record_path.read_text())
    assert record["env"]["package_version"] == "0.1.0"
    assert record["env"]["git_commit"] is None and record["env"]["git_dirty"] is None
    assert record["data"]["sample"] is True and Path(record["data"]["root"]).is_relative_to(installed)
    assert Path(record["checkpoint"]["path"]).is_relative_to(installed)
    assert 0 < record["metrics"]["J&F-Mean"] <= 1
    assert not (installed / "results").exists()
