"""Run-record environment: the dirty flag counts source files only; device, CPU model, load, version."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from harness.runs.record import code_state, environment, git_state

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True,
                   capture_output=True)


def test_dirty_flag_counts_source_files_only(tmp_path: Path) -> None:
    for name in ("harness/run.py", "methods/m.py", "pyproject.toml", "results/leaderboard.md",
                 "results/runs/davis/x/record.json", "README.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("v1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "init")
    commit, dirty = git_state(tmp_path)
    assert commit and len(commit) == 40 and dirty is False
    # Re-measured records, a rebuilt leaderboard, docs, new result files: still clean code.
    for name in ("results/leaderboard.md", "results/runs/davis/x/record.json", "README.md"):
        (tmp_path / name).write_text("v2\n")
    (tmp_path / "results" / "runs" / "new.json").write_text("{}")
    assert git_state(tmp_path) == (commit, False)
    for change in ("harness/run.py", "methods/m.py", "pyproject.toml", "methods/new_method.py"):
        path = tmp_path / change
        before = path.read_text() if path.exists() else None
        path.write_text("changed\n")
        assert git_state(tmp_path) == (commit, True), change
        if before is None:
            path.unlink()
        else:
            path.write_text(before)
    assert git_state(tmp_path) == (commit, False)


def test_environment_names_device_cpu_threads_load_and_version() -> None:
    env = environment(torch.device("cpu"))
    assert env["device"] == "cpu"
    assert env["device_name"] == env["cpu_model"] and env["cpu_model"] not in ("", "cpu")
    assert env["threads"] == torch.get_num_threads()
    assert env["load_avg"] is None or (len(env["load_avg"]) == 3 and all(v >= 0 for v in env["load_avg"]))
    assert "package_version" in env


def test_code_state_is_the_start_state_and_dirty_if_the_checkout_moved() -> None:
    a, b = "a" * 40, "b" * 40
    assert code_state((a, False), (a, False)) == (a, False)
    assert code_state((a, True), (a, True)) == (a, True)
    # committed (or edited) while the run was going: the code it imported has no clean name
    assert code_state((a, False), (b, False)) == (a, True)
    assert code_state((a, False), (a, True)) == (a, True)
    assert code_state((None, None), (None, None)) == (None, None)  # an installed copy: nothing to say


def test_a_run_records_the_git_state_it_started_with(tmp_path: Path, capsys, monkeypatch) -> None:
    """A commit landing beside a running evaluation must not be written into its record as clean."""
    import json

    import harness.runs.runner as runner
    from harness.cli import main
    from tests.test_runner import small_davis_root

    states = iter([("a" * 40, False), ("b" * 40, False)])  # at the start, then at the end
    monkeypatch.setattr(runner, "git_state", lambda: next(states))
    root = small_davis_root(tmp_path / "davis", frames=3, sequences=("car-shadow",))
    code = main(["run", "--method", "pixels", "--task", "davis", "--data-root", str(root),
                 "--out-dir", str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert code == 0, err
    env = json.loads((tmp_path / "run" / "record.json").read_text())["env"]
    assert (env["git_commit"], env["git_dirty"]) == ("a" * 40, True)
