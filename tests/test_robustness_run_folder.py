"""Run-folder integrity (issue 25): nothing deleted that the harness did not write, no stored number
believed without being re-derived, no name or folder that crashes a run, refusals that say what to fix.

Runs use the ``pixels`` method on a small copy of the shipped real DAVIS sample (see
:func:`tests.test_outdir.tiny_davis_root`), so each takes about a second.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch

from harness.cli import main
from harness.runs import runner
from harness.runs.outdir import MANIFEST
from tests.test_outdir import pixels, record_of, run, tiny_davis_root, tree


@pytest.fixture
def root(tmp_path):
    return tiny_davis_root(tmp_path / "davis")


def cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def hashes(folder: Path, names: list[str]) -> dict[str, str]:
    """sha256 of every file at or under each of ``names`` (relative to ``folder``)."""
    out = {}
    for name in names:
        path = folder / name
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if file.is_file():
                out[file.relative_to(folder).as_posix()] = hashlib.sha256(file.read_bytes()).hexdigest()
    return out


# ----------------------------------------------------------------------------------------- data loss


def test_force_deletes_only_unchanged_files_the_manifest_lists(root, tmp_path, capsys):
    out = tmp_path / "o"
    assert run(pixels(root, "--out-dir", str(out), "--visualize"), capsys)[0] == 0
    # every kind of user file beside the run's, named after a sequence, plus a run file the user edited
    shutil.copytree(out / "car-shadow", out / "car-shadow.bak")
    (out / "car-shadow.pdf").write_bytes(b"%PDF-1.4 my figure")
    (out / "car-shadow" / "README.txt").write_text("how these masks were made")
    (out / "visualize" / "car-shadow.png").write_bytes(b"\x89PNG my own overlay")
    (out / "motocross-jump.npy").write_bytes(b"my array")
    (out / ".tmp-notes.txt").write_text("a file whose name starts like the harness's temporaries")
    (out / ".state" / "notes.json").write_text('{"mine": true}')
    with open(out / "visualize" / "motocross-jump.jpg", "ab") as handle:
        handle.write(b"edited by the user")  # the run wrote it; the user changed it since
    user = ["car-shadow.bak", "car-shadow.pdf", "car-shadow/README.txt", "visualize/car-shadow.png",
            "motocross-jump.npy", ".tmp-notes.txt", ".state/notes.json", "visualize/motocross-jump.jpg"]
    before = hashes(out, user)
    assert len(before) == 10  # the .bak copy holds three masks
    for other in ([], ["--seed", "1"]):  # the same run again, and another configuration taking the folder over
        code, stdout, err = run(pixels(root, "--out-dir", str(out), "--force", *other), capsys)
        assert code == 0, err
        assert hashes(out, user) == before
        assert "car-shadow.pdf" in err and "car-shadow.bak/00001.png" in err and "visualize/motocross-jump.jpg" in err
        assert "visualize/motocross-jump.jpg (changed since" in err or other  # said while the manifest listed it
        assert record_of(stdout)["seed"] == (int(other[1]) if other else 0)
    # a manifest of an older harness (no hashes): nothing is deleted by pattern, the user's files stay
    manifest = json.loads((out / MANIFEST).read_text())
    del manifest["sha256"]
    (out / MANIFEST).write_text(json.dumps(manifest))
    code, _, err = run(pixels(root, "--out-dir", str(out), "--force"), capsys)
    assert code == 0, err
    assert hashes(out, user) == before
    # a run file the user edited where the new run would write: refused, the whole folder unchanged
    with open(out / "car-shadow" / "00001.png", "ab") as handle:
        handle.write(b"edited")
    whole = tree(out)
    code, stdout, err = run(pixels(root, "--out-dir", str(out), "--force", "--seed", "2"), capsys)
    assert code == 2 and stdout == "" and "car-shadow/00001.png" in err and "changed" in err
    assert tree(out) == whole


# ----------------------------------------------------------------------------------------- silent wrong numbers


def test_record_numbers_that_do_not_rederive_are_refused(root, tmp_path, capsys):
    out = tmp_path / "runs" / "o"
    assert run(pixels(root, "--out-dir", str(out)), capsys)[0] == 0
    clean = json.loads((out / "record.json").read_text())
    # J&F-Mean by hand from the record's own per-object scores: (mean J + mean F) / 2
    objects = clean["per_object"].values()
    by_hand = (sum(o["J-Mean"] for o in objects) / len(objects) + sum(o["F-Mean"] for o in objects) / len(objects)) / 2
    assert clean["metrics"]["J&F-Mean"] == pytest.approx(by_hand, rel=1e-12)
    assert cli(["schema", "--check", str(tmp_path / "runs")], capsys)[0] == 0
    edits = [("metrics", "J&F-Mean"), ("metrics", "F-Recall"), ("per_sequence", "car-shadow")]
    for block, key in edits:
        edited = json.loads(json.dumps(clean))
        if block == "per_sequence":
            edited[block][key]["J-Mean"] = 0.95
        else:
            edited[block][key] = 0.95
        (out / "record.json").write_text(json.dumps(edited))
        code, _, err = cli(["schema", "--check", str(tmp_path / "runs")], capsys)
        assert code == 1 and f"{block}.{key}" in err and str(out / "record.json") in err
        code, _, err = cli(["leaderboard", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "board"),
                            "--no-reported"], capsys)
        assert code == 2 and f"{block}.{key}" in err  # its only record skipped: nothing to rank
        assert not (tmp_path / "board" / "leaderboard.md").exists()


def test_edited_resume_state_is_recomputed_not_republished(root, tmp_path, capsys):
    out = tmp_path / "o"
    clean = record_of(run(pixels(root, "--out-dir", str(out)), capsys)[1])
    state_path = out / ".state" / "car-shadow.json"
    state = json.loads(state_path.read_text())
    for objects in state["scores"]["objects"].values():
        objects["J-Mean"] = objects["F-Mean"] = 0.9
    state_path.write_text(json.dumps(state))
    code, stdout, err = run(pixels(root, "--out-dir", str(out)), capsys)
    assert code == 0, err
    assert "recomputing car-shadow" in err and "digest" in err and "recomputing motocross-jump" not in err
    assert record_of(stdout)["metrics"] == clean["metrics"]


def test_damaged_feature_cache_entries_are_misses(root, tmp_path, capsys):
    cache = tmp_path / "cache"
    clean = record_of(run(pixels(root, "--out-dir", str(tmp_path / "a"), "--feature-cache", str(cache)), capsys)[1])
    entries = sorted(cache.rglob("*.pt"))
    assert len(entries) == 2
    for entry in entries:  # overwritten with zeros of the same shape, in whatever form the entry has
        stored = torch.load(entry, weights_only=True)
        if isinstance(stored, dict):
            stored = {k: torch.zeros_like(v) if isinstance(v, torch.Tensor) else v for k, v in stored.items()}
        else:
            stored = torch.zeros_like(stored)
        torch.save(stored, entry)
    code, stdout, err = run(pixels(root, "--out-dir", str(tmp_path / "b"), "--feature-cache", str(cache)), capsys)
    assert code == 0, err
    assert err.count("feature cache:") == 2 and "recomputing" in err
    again = record_of(stdout)
    assert again["metrics"] == clean["metrics"] and again["timing"]["feature_cache"] == {"hits": 0, "misses": 2}


def test_copies_of_one_run_are_ranked_once(root, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert run(pixels(root, "--out-dir", str(runs / "o")), capsys)[0] == 0
    shutil.copytree(runs / "o", runs / "o-copy")
    assert run(pixels(root, "--out-dir", str(runs / "p"), "--seed", "1"), capsys)[0] == 0
    code, _, err = cli(["leaderboard", str(runs), "--out-dir", str(tmp_path / "board"), "--no-reported"], capsys)
    assert code == 0, err
    assert "duplicate" in err and str(runs / "o-copy" / "record.json") in err
    assert "2 run record(s), 1 skipped" in err
    rows = (tmp_path / "board" / "leaderboard.csv").read_text().strip().splitlines()[1:]
    assert len(rows) == 2


# ----------------------------------------------------------------------------------------- tracebacks


def test_names_and_folders_a_run_cannot_write_are_refused_up_front(root, tmp_path, capsys, monkeypatch):
    long = "s" * 252
    for sub in ("JPEGImages/480p", "Annotations/480p"):
        (root / sub / "car-shadow").rename(root / sub / long)
    (root / "ImageSets" / "2017" / "val.txt").write_text(f"{long}\nmotocross-jump\n")
    computed = []
    monkeypatch.setattr(runner.Runner, "_run_sequence", lambda *a: computed.append(a))
    out = tmp_path / "o"
    for _ in range(2):  # the rerun says the same
        code, stdout, err = run(pixels(root, "--out-dir", str(out)), capsys)
        assert code == 2 and stdout == "" and "252-character name" in err and "--sequences" in err
    assert computed == [] and (not out.exists() or not any(out.iterdir()))
    monkeypatch.undo()
    (root / "ImageSets" / "2017" / "val.txt").write_text("motocross-jump\n")
    for machinery, make in ((".harness.lock", Path.mkdir), (".state", Path.touch), ("record.json", Path.mkdir),
                            ("motocross-jump", Path.touch)):
        folder = tmp_path / f"with-{machinery}"
        folder.mkdir()
        make(folder / machinery)
        before = tree(folder)
        code, stdout, err = run(pixels(root, "--out-dir", str(folder)), capsys)
        assert code == 2 and stdout == "" and str(folder / machinery) in err and "move it away" in err
        assert tree(folder) == before and (folder / machinery).exists()


# ----------------------------------------------------------------------------------------- messages


def test_refusal_names_the_setting_that_differs(root, tmp_path, capsys):
    out = tmp_path / "o"
    assert run(pixels(root, "--out-dir", str(out)), capsys)[0] == 0
    code, _, err = run(pixels(root, "--out-dir", str(out), "--limit", "1"), capsys)
    assert code == 2 and "--limit (that run: null; this run: 1)" in err
    code, _, err = run(pixels(root, "--out-dir", str(out), "--precision", "fp32", "--seed", "4"), capsys)
    assert code == 2 and "--seed (that run: 0; this run: 4)" in err and "--limit" not in err
    masks = root / "Annotations" / "480p" / "car-shadow"
    shutil.copy(masks / "00000.png", masks / "00002.png")  # the ground truth changes, nothing else
    code, _, err = run(pixels(root, "--out-dir", str(out)), capsys)
    assert code == 2 and "data's content" in err and "--seed" not in err and "--limit" not in err
    # a record written before manifests (no manifest, no run digest): what differs is named too
    (out / MANIFEST).unlink()
    legacy = json.loads((out / "record.json").read_text())
    del legacy["run_digest"]
    (out / "record.json").write_text(json.dumps(legacy))
    code, _, err = run(pixels(root, "--out-dir", str(out), "--seed", "4"), capsys)
    assert code == 2 and "no manifest" in err and "it differs in --seed" in err


def test_problems_name_the_flag_the_user_set(root, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HARNESS_RESULTS", raising=False)
    not_a_folder = tmp_path / "results.txt"
    not_a_folder.write_text("x")
    code, _, err = run(pixels(root, "--results-dir", str(not_a_folder)), capsys)
    assert code == 2 and "--results-dir" in err and "--out-dir" not in err
    code, _, err = cli(["leaderboard", "--results-dir", str(not_a_folder)], capsys)
    assert code == 2 and "--results-dir" in err and "--out-dir" not in err
    assert not_a_folder.read_text() == "x"
    code, stdout, err = run(pixels(root, "--out-dir", str(tmp_path / "t"), "--device", "cpu", "--precision", "tf32"),
                            capsys)
    assert code == 2 and stdout == "" and "tf32" in err and "CUDA" in err
    assert not (tmp_path / "t").exists()


def test_stop_and_resume_are_said(root, tmp_path, capsys, monkeypatch):
    out = tmp_path / "o"
    real = runner.Runner._run_sequence

    def terminated_on_second(self, method, name, bar):
        if name == "motocross-jump":
            os.kill(os.getpid(), signal.SIGTERM)  # what a scheduler's stop or `kill` sends
        return real(self, method, name, bar)

    def unhandled(signum, frame):  # stands in for the default action (death) so that pytest survives
        raise RuntimeError("SIGTERM was not handled by the run")

    previous = signal.signal(signal.SIGTERM, unhandled)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(runner.Runner, "_run_sequence", terminated_on_second)
            code, stdout, err = run(pixels(root, "--out-dir", str(out)), capsys)
        assert signal.getsignal(signal.SIGTERM) is unhandled  # the run's handler does not outlive it
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == 143 and stdout == ""
    assert "SIGTERM" in err and "1 of 2 sequences finished" in err and "rerun the same command" in err
    code, stdout, err = run(pixels(root, "--out-dir", str(out)), capsys)
    assert code == 0, err
    assert "resumed: 1 of 2 sequences reused" in err
