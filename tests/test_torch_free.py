"""`harness list` and `harness score` import no torch: listing and scoring are numpy/PIL work, and a
torch import is seconds of every scorer run (issue 12's end-to-end timing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "datasets" / "sample" / "davis"

CHECK = """
import json, sys
from harness.cli import main
code = main(json.loads(sys.argv[1]))
heavy = sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "timm")))
assert not heavy, f"imported {heavy[:5]}"
sys.exit(code)
"""


def _run_without_torch(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CHECK, json.dumps(args)], cwd=cwd, capture_output=True, text=True,
                          timeout=600, check=False, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_list_imports_no_torch(tmp_path: Path) -> None:
    done = _run_without_torch(["list"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "crw" in done.stdout and "davis" in done.stdout and "dino" in done.stdout


@pytest.mark.parametrize("what", ["methods", "tasks"])
def test_list_parts_import_no_torch(tmp_path: Path, what: str) -> None:
    done = _run_without_torch(["list", what], tmp_path)
    assert done.returncode == 0, done.stderr


def test_score_imports_no_torch(tmp_path: Path) -> None:
    """The sample's own annotations scored as predictions: every object perfect, and no torch."""
    out = tmp_path / "scores.json"
    done = _run_without_torch(["score", "--task", "davis", "--predictions", str(SAMPLE / "Annotations" / "480p"),
                               "--out", str(out)], tmp_path)
    assert done.returncode == 0, done.stderr
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics["J-Mean"] == pytest.approx(1.0) and metrics["F-Mean"] == pytest.approx(1.0)
