"""``harness sweep``: grid expansion, cost estimates, debug/local/Slurm executors, resume, failures, report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from harness.cli import main
from harness.errors import HarnessError
from harness.sweeps import plan
from harness.sweeps.cost import estimate
from harness.sweeps.state import process_alive
from tests.test_feature_cache import tiny_davis_root

REPO = Path(__file__).resolve().parents[1]


def write_spec(path: Path, root: Path, **extra) -> Path:
    """A 2x2 evaluation sweep (top-k x context) of `pixels` on a 3-frame real sequence: seconds per cell."""
    spec = {"name": "t2x2", "task": "davis", "data_root": str(root), "device": "cpu",
            "grid": {"method": ["pixels"], "protocol.topk": [5, 10], "protocol.context": [1, 2]},
            "cost": {"source": "test figures", "features_ms_per_frame": 10, "propagation_ms_per_frame": 5},
            "local": {"timeout_min": 10}}
    spec.update(extra)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture
def sweep_setup(tmp_path):
    root = tiny_davis_root(tmp_path / "davis", frames=3)
    return write_spec(tmp_path / "spec.yaml", root), tmp_path / "sweep"


# -- spec, grid and cost (no cell runs) ----------------------------------------------------------
def test_grid_cells_commands_and_hand_computed_cost(sweep_setup):
    spec_path, out = sweep_setup
    spec, layout, cells = plan(str(spec_path), out_dir=out)
    assert [c.id for c in cells] == ["topk-5__context-1", "topk-5__context-2", "topk-10__context-1", "topk-10__context-2"]
    first = cells[0].run_args
    assert first[:3] == ["run", "--method", "pixels"]
    assert "protocol.topk=5" in first and "protocol.context=1" in first
    assert first[first.index("--out-dir") + 1] == str(out / "topk-5__context-1")
    assert first[first.index("--feature-cache") + 1] == str(out / "features")
    assert len({c.feature_group for c in cells}) == 1 and len({c.digest for c in cells}) == 4
    # by hand: 3 frames; the first cell computes features (10 + 5 ms/frame), the other three read them (5 ms/frame)
    seconds = [c.seconds for c in estimate(spec, cells)]
    assert seconds == pytest.approx([3 * 15 / 1000, 3 * 5 / 1000, 3 * 5 / 1000, 3 * 5 / 1000])


def test_dry_run_lists_cells_and_total(sweep_setup, capsys):
    spec_path, out = sweep_setup
    assert main(["sweep", str(spec_path), "--out-dir", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert text.count("missing") == 4
    assert "to run: 4 of 4 cells" in text and "(0.1 s)" in text  # 45 + 3 x 15 ms = 0.09 s
    assert not (out / "state").exists()  # a dry run writes nothing


def test_path_length_preset_cost_by_hand():
    spec, _, cells = plan("path-length", out_dir="/tmp/never-written")
    assert [c.params["recipe.data.clip_len"] for c in cells] == [4, 6, 8, 10]
    assert all(c.kind == "train" and "--set" in c.train_args and "data.clip_len=" + str(c.params["recipe.data.clip_len"])
               in c.train_args for c in cells)
    hours = [c.seconds / 3600 for c in estimate(spec, cells)]
    # 30 M clips at 132 x 4 / L clips/s, plus 1,999 frames x (20 + 30) ms of evaluation
    expected = [(30e6 / (132 * 4 / L) + 1999 * 0.05) / 3600 for L in (4, 6, 8, 10)]
    assert hours == pytest.approx(expected)
    assert sum(hours) == pytest.approx(441.9, abs=0.2)


@pytest.mark.parametrize("change, message", [
    ({"grid": {"method": ["pixels"], "protocol.topk": [5, 5]}}, "repeats a value"),
    ({"grid": {"method": ["pixels"], "topk": [5]}}, "grid axis 'topk'"),
    ({"grid": {"method": ["pixels"], "recipe.loss.edge_dropout": [0.1]}}, "no `train`"),
    ({"timeout": 3}, "unknown key 'timeout'"),
    ({"name": "a/b"}, "names a folder"),
])
def test_bad_specs_are_refused_with_the_reason(tmp_path, change, message):
    path = write_spec(tmp_path / "bad.yaml", tmp_path, **change)
    with pytest.raises(HarnessError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan(str(path), out_dir=tmp_path / "o")


def test_unknown_preset_and_scale_are_named():
    with pytest.raises(HarnessError, match="presets: crw-vs-vfs, edge-dropout, eval-knobs, path-length"):
        plan("no-such-sweep")
    with pytest.raises(HarnessError, match="no scale 'huge'"):
        plan("eval-knobs", scale="huge")


def test_checkpoint_series_in_step_order(tmp_path):
    training = tmp_path / "train"
    for step in (100, 20, 3):
        (training / "eval" / f"step-{step}").mkdir(parents=True)
        (training / "eval" / f"step-{step}" / "crw-eval.pt").write_bytes(b"x")
    spec = write_spec(tmp_path / "s.yaml", tmp_path, grid={"method": ["crw"], "checkpoint": {"series": str(training)}})
    _, _, cells = plan(str(spec), out_dir=tmp_path / "o")
    assert [c.params["step"] for c in cells] == [3, 20, 100]
    assert [c.id for c in cells] == ["step-3", "step-20", "step-100"]
    assert cells[0].run_args[cells[0].run_args.index("--checkpoint") + 1].endswith("step-3/crw-eval.pt")


def test_report_of_a_checkpoint_series_from_records(tmp_path):
    """Report rows come from the records in step order; the series is plotted against the training step."""
    from harness.io import sha256_file
    from harness.sweeps.report import write_report
    from harness.sweeps.state import write_state

    training = tmp_path / "train"
    for step in (50, 10):
        (training / "eval" / f"step-{step}").mkdir(parents=True)
        (training / "eval" / f"step-{step}" / "crw-eval.pt").write_bytes(f"weights {step}".encode())
    spec_path = write_spec(tmp_path / "s.yaml", tmp_path, grid={"method": ["crw"], "checkpoint": {"series": str(training)},
                                                                "protocol.topk": [5, 10]})
    spec, layout, cells = plan(str(spec_path), out_dir=tmp_path / "o")
    written = {}
    for i, cell in enumerate(cells):
        metrics = {"J&F-Mean": 0.1 + i / 7, "J-Mean": 0.2 + i / 9, "F-Mean": i / 11}
        cell.record.parent.mkdir(parents=True)
        cell.record.write_text(json.dumps({"metrics": metrics, "timing": {"frames": 3},
                                           "checkpoint": {"sha256": sha256_file(cell.checkpoint)}}))
        write_state(layout, cell, status="done")
        written[cell.id] = metrics
    report = write_report(spec, cells, layout)
    table = pd.read_csv(layout.root / "report.csv")
    assert list(table["step"]) == [10, 10, 50, 50] and list(table["protocol.topk"]) == [5, 10, 5, 10]
    for row in table.to_dict("records"):
        assert {k: row[k] for k in written[row["cell"]]} == written[row["cell"]]
    assert (layout.root / "plot-step.svg").is_file() and (layout.root / "plot-topk.svg").is_file()
    assert "![plot-step](plot-step.svg)" in report.read_text()
    # a checkpoint replaced after its cell ran makes that cell stale
    Path(cells[0].checkpoint).write_bytes(b"retrained")
    write_report(spec, cells, layout)
    assert list(pd.read_csv(layout.root / "report.csv")["status"]) == ["missing", "missing", "done", "done"]


def test_changed_spec_recomputes_a_cell_with_force(sweep_setup, monkeypatch):
    """A cell whose commands changed since its record was written is rerun with --force (its folder is the sweep's)."""
    from harness.sweeps import cell as cell_module
    from harness.sweeps.state import is_redefined, write_state

    spec_path, out = sweep_setup
    _, layout, cells = plan(str(spec_path), out_dir=out)
    first = cells[0]
    first.record.parent.mkdir(parents=True)
    first.record.write_text("{}")
    write_state(layout, first, status="done")
    assert not is_redefined(layout, first)
    state = json.loads(layout.state_path(first.id).read_text())
    layout.state_path(first.id).write_text(json.dumps({**state, "digest": "an older one"}))
    assert is_redefined(layout, first)
    seen = []
    monkeypatch.setattr(cell_module, "_run", lambda args, *rest: seen.append(args) or 1)
    cell_module.run_cell(first, layout, redefined=True)
    assert seen == [[*first.run_args, "--force"]]


# -- Slurm: a fake sbatch records what it is given --------------------------------------------------
def _fake_slurm(tmp_path: Path, monkeypatch) -> Path:
    bin_dir, calls = tmp_path / "bin", tmp_path / "sbatch-calls"
    bin_dir.mkdir()
    calls.mkdir()
    (bin_dir / "sbatch").write_text(
        "#!/bin/sh\n"
        f'n=$(ls "{calls}" | grep -c "^script-")\n'
        f'cp "$1" "{calls}/script-$n.sh"\n'
        f'echo "$@" > "{calls}/args-$n.txt"\n'
        'echo "Submitted batch job $((4200 + n))"\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def _sbatch_flags(script: Path) -> dict[str, str]:
    flags = {}
    for line in script.read_text().splitlines():
        if line.startswith("#SBATCH --"):
            key, _, value = line[len("#SBATCH --"):].partition("=")
            flags[key] = value
    return flags


def test_slurm_sweep_submits_partition_gpus_time_and_array(tmp_path, monkeypatch, capsys):
    calls = _fake_slurm(tmp_path, monkeypatch)
    root = tiny_davis_root(tmp_path / "davis", frames=3)
    spec = write_spec(tmp_path / "spec.yaml", root,
                      grid={"method": ["pixels", "random-resnet18"], "protocol.topk": [5, 10]},
                      resources={"eval": {"gpus": 2, "timeout_min": 45, "cpus": 6}},
                      slurm={"partition": "gpu-test", "array_parallelism": 1})
    out = tmp_path / "sweep"
    assert main(["sweep", str(spec), "--out-dir", str(out), "--executor", "slurm"]) == 0
    scripts = sorted(calls.glob("script-*.sh"))
    assert len(scripts) == 2  # the cells that compute features, then those that reuse them
    leaders, followers = (_sbatch_flags(s) for s in scripts)
    for flags in (leaders, followers):
        assert flags["partition"] == "gpu-test"
        assert flags["gpus-per-node"] == "2"
        assert flags["time"] == "45"
        assert flags["cpus-per-task"] == "6"
        assert flags["array"] == "0-1%1"  # two cells per array, one at a time as the spec asks
    assert "dependency" not in leaders and followers["dependency"] == "afterany:4200"
    jobs = sorted(json.loads(p.read_text())["job_id"] for p in (out / "state").glob("*.job.json"))
    assert jobs == ["4200_0", "4200_1", "4201_0", "4201_1"]
    # flags override the spec
    capsys.readouterr()
    out2 = tmp_path / "sweep2"
    assert main(["sweep", str(spec), "--out-dir", str(out2), "--executor", "slurm", "--partition", "big",
                 "--gpus", "1", "--timeout-min", "30", "--array-parallelism", "2"]) == 0
    flags = _sbatch_flags(sorted(calls.glob("script-*.sh"))[2])
    assert (flags["partition"], flags["gpus-per-node"], flags["time"], flags["array"]) == ("big", "1", "30", "0-1%2")


def test_slurm_training_cells_ask_for_training_resources(tmp_path, monkeypatch):
    calls = _fake_slurm(tmp_path, monkeypatch)
    spec = write_spec(tmp_path / "spec.yaml", tmp_path, grid={"recipe.data.clip_len": [4, 6, 8]},
                      train={"method": "crw", "recipe": "crw-cpu-demo", "data": [str(tmp_path)]},
                      resources={"train": {"gpus": 8, "timeout_min": 2880, "cpus": 64}},
                      slurm={"partition": "train-part"})
    assert main(["sweep", str(spec), "--out-dir", str(tmp_path / "s"), "--executor", "slurm"]) == 0
    (script,) = calls.glob("script-*.sh")
    flags = _sbatch_flags(script)
    assert (flags["partition"], flags["gpus-per-node"], flags["time"], flags["array"]) == ("train-part", "8", "2880", "0-2%3")
    assert flags["job-name"] == "t2x2-train"


# -- cells that really run ---------------------------------------------------------------------------
def _records(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/record.json")}


@pytest.mark.slow
def test_debug_sweep_writes_four_records_and_a_report_equal_to_them(sweep_setup, capsys):
    spec_path, out = sweep_setup
    assert main(["sweep", str(spec_path), "--out-dir", str(out), "--executor", "debug"]) == 0
    report_md = Path(capsys.readouterr().out.strip().splitlines()[-1])
    records = _records(out)
    assert len(records) == 4
    table = pd.read_csv(out / "report.csv")
    assert len(table) == 4 and set(table["status"]) == {"done"}
    for row in table.to_dict("records"):
        record = records[row["cell"]]
        assert record["protocol"]["settings"]["topk"] == row["protocol.topk"]
        assert record["protocol"]["settings"]["context"] == row["protocol.context"]
        for key, value in record["metrics"].items():
            assert row[key] == value  # exactly: the CSV keeps the records' floats
        markdown_row = next(line for line in report_md.read_text().splitlines() if line.startswith(f"| {row['cell']} |"))
        assert f"| {100 * record['metrics']['J&F-Mean']:.1f} |" in markdown_row
    assert (out / "plot-topk.svg").is_file() and (out / "plot-context.svg").is_file()
    assert len(list((out / "features").rglob("*.pt"))) == 1  # features computed once for the four cells
    assert sorted(table["features_cached"]) == [False, True, True, True]  # one cell computed, three loaded
    # a rerun skips every current cell
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/record.json")}
    assert main(["sweep", str(spec_path), "--out-dir", str(out), "--executor", "debug"]) == 0
    assert "4 done (skipped)" in capsys.readouterr().err
    assert stamps == {p: p.stat().st_mtime_ns for p in out.glob("*/record.json")}
    # changed data under the same path: no cell is current any more
    spec = yaml.safe_load(spec_path.read_text())
    mask = next((Path(spec["data_root"]) / "Annotations" / "480p" / "car-shadow").glob("*.png"))
    mask.write_bytes(mask.read_bytes() + b"\0")
    assert main(["sweep", str(spec_path), "--out-dir", str(out), "--status"]) == 0
    assert capsys.readouterr().out.count("missing") == 4


@pytest.mark.slow
def test_failing_cell_is_reported_and_the_others_finish(tmp_path, capsys):
    root = tiny_davis_root(tmp_path / "davis", frames=3)
    spec = write_spec(tmp_path / "spec.yaml", root,
                      grid={"method": ["pixels"], "checkpoint": [None, str(tmp_path / "missing.pt")],
                            "protocol.topk": [5, 10]})
    out = tmp_path / "sweep"
    assert main(["sweep", str(spec), "--out-dir", str(out), "--executor", "debug"]) == 1
    err = capsys.readouterr().err
    assert "cell missing__topk-5 failed" in err and "cell missing__topk-10 failed" in err
    assert str(out / "logs" / "missing__topk-5.log") in err
    assert "missing.pt" in (out / "logs" / "missing__topk-5.log").read_text()
    assert set(_records(out)) == {"default__topk-5", "default__topk-10"}
    table = pd.read_csv(out / "report.csv").set_index("cell")
    assert table.loc["missing__topk-5", "status"] == "failed" and table.loc["default__topk-5", "status"] == "done"
    assert main(["sweep", str(spec), "--out-dir", str(out), "--status"]) == 0
    status = capsys.readouterr().out
    assert status.count(" done ") == 2 and status.count(" failed ") == 2


@pytest.mark.slow
@pytest.mark.multiprocess
def test_killed_local_sweep_reruns_only_missing_cells(sweep_setup):
    spec_path, out = sweep_setup
    command = [sys.executable, "-m", "harness", "sweep", str(spec_path), "--out-dir", str(out),
               "--executor", "local", "--parallel", "1"]
    sweep = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    third = "topk-10__context-1"  # cells run in grid order with --parallel 1
    state_file = out / "state" / f"{third}.json"
    try:
        deadline = time.monotonic() + 540
        while time.monotonic() < deadline:  # wait until two cells are done and the third one's command runs
            state = json.loads(state_file.read_text()) if state_file.is_file() else {}
            if state.get("child_pid") and len(list(out.glob("*/record.json"))) == 2:
                break
            assert sweep.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail("the sweep did not reach its third cell in time")
        sweep.send_signal(signal.SIGKILL)  # no clean-up: its local job is left running
        sweep.wait()
    finally:
        if sweep.poll() is None:
            sweep.kill()
    leftover_job = int(json.loads((out / "state" / f"{third}.job.json").read_text())["job_id"])
    leftover_child = int(json.loads(state_file.read_text())["child_pid"])
    finished = {p: p.read_bytes() for p in out.glob("*/record.json")}
    stamps = {p: p.stat().st_mtime_ns for p in finished}
    rerun = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=540)
    assert rerun.returncode == 0, rerun.stderr
    assert f"stopped 1 job(s) left running by a killed sweep: {third}" in rerun.stderr
    assert "2 done (skipped)" in rerun.stderr and "2 to run" in rerun.stderr
    assert not process_alive(leftover_job, "submitit") and not process_alive(leftover_child, "harness")
    assert len(_records(out)) == 4
    assert {p: p.stat().st_mtime_ns for p in finished} == stamps  # the finished cells were not rerun
    assert all(p.read_bytes() == data for p, data in finished.items())
    for cell in ("topk-5__context-1", "topk-5__context-2"):
        assert (out / "logs" / f"{cell}.log").read_text().count("$ harness run") == 1
