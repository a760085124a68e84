"""Sharded evaluation: a 2-rank gloo ``harness run`` under torchrun writes the record a 1-rank run writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.runs.sharding import Shard, balance, frame_count
from harness.tasks.davis import DavisTask
from tests.test_runner import SAMPLE, small_davis_root

REPO = Path(__file__).resolve().parents[1]


def test_balance_by_frame_count_hand_computed():
    counts = {"a": 10, "b": 50, "c": 30, "d": 25, "e": 5}
    # longest first to the least loaded rank: b->0 (50), c->1 (30), d->1 (55), a->0 (60), e->1 (60)
    assert balance(counts, 2) == [["a", "b"], ["c", "d", "e"]]
    assert balance(counts, 1) == [list(counts)]
    assert balance({"x": 3}, 3) == [["x"], [], []]  # more ranks than sequences: idle ranks
    shares = balance(counts, 3)
    assert sorted(n for share in shares for n in share) == sorted(counts)  # each sequence exactly once


def test_frame_count_reads_the_image_folder():
    task = DavisTask(SAMPLE, {})
    assert frame_count(task, "car-shadow") == 40
    assert frame_count(task, "no-such-sequence") == 1


def test_one_process_shard_is_the_whole_run(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    shard = Shard.from_env()
    assert not shard.sharded and shard.is_main
    parts = shard.gather(None, ["a"], {"a": 1}, [2])
    assert parts == [{"a": 1}, [2]]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert Shard.from_env() == Shard(rank=1, world=2, local_rank=0)


def _run(args: list[str], out_dir: Path, ranks: int | None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}  # torchrun's per-rank thread count
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    launcher = [sys.executable, "-m", "harness"] if ranks is None else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}", "-m", "harness"]
    done = subprocess.run([*launcher, "run", *args, "--device", "cpu", "--out-dir", str(out_dir)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == str((out_dir / "record.json").resolve())
    return json.loads((out_dir / "record.json").read_text())


def _compare(one: dict, two: dict) -> None:
    assert two["metrics"] == one["metrics"]
    assert two["per_object"] == one["per_object"] and two["per_sequence"] == one["per_sequence"]
    assert list(two["per_sequence"]) == list(one["per_sequence"])  # the split's order
    assert two["run_digest"] == one["run_digest"] and two["timing"]["frames"] == one["timing"]["frames"]


def _check_folder(out_dir: Path, sequences: list[str]) -> None:
    manifest = json.loads((out_dir / "manifest.json").read_text())
    for name in sequences:  # rank 1's predictions and states are listed by rank 0's manifest
        assert any(f.startswith(f"{name}/") for f in manifest["files"]), name
        assert f".state/{name}.json" in manifest["files"]


@pytest.mark.multiprocess
def test_two_rank_gloo_run_equals_one_rank_run_small(tmp_path):
    root = small_davis_root(tmp_path / "davis", frames=4)
    args = ["--method", "pixels", "--task", "davis", "--data-root", str(root)]
    one = _run(args, tmp_path / "one", None)
    two = _run(args, tmp_path / "two", 2)
    _compare(one, two)
    _check_folder(tmp_path / "two", ["car-shadow", "motocross-jump"])


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.timeout(3600)  # two full 480p runs of 80 frames each on a shared 2-core machine
def test_two_rank_gloo_run_equals_one_rank_run_on_the_sample(tmp_path):
    """The two shipped sample sequences, 40 frames each at 480p."""
    args = ["--method", "pixels", "--task", "davis", "--data-root", str(SAMPLE)]
    one = _run(args, tmp_path / "one", None)
    two = _run(args, tmp_path / "two", 2)
    _compare(one, two)
    assert set(one["per_object"]) == {"car-shadow_1", "motocross-jump_1"}
