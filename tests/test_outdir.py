"""Output folders a run owns: no result lost or misattributed.

Each data-loss case of issue 13 is run through the CLI on a small copy of the shipped real sample
(3 frames per sequence, shrunk 4x so a run takes a second): a foreign file survives ``--force``; a
refused folder is unchanged byte for byte; a second concurrent run refuses; a rerun after the
checkpoint or the data changed recomputes and equals a fresh run; differently configured runs land in
different default folders with both records intact.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from filelock import FileLock
from PIL import Image

from harness.cli import main
from harness.errors import HarnessError
from harness.runs import runner
from harness.runs.outdir import LOCK, MANIFEST, remove_listed

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "datasets" / "sample" / "davis"
SEQS = ("car-shadow", "motocross-jump")


def tiny_davis_root(dest: Path, frames: int = 3, shrink: int = 4) -> Path:
    """The first ``frames`` real frames and masks of each sample sequence, ``shrink`` times smaller."""
    for seq in SEQS:
        for sub, ext, resample in (("JPEGImages", "jpg", Image.BILINEAR), ("Annotations", "png", Image.NEAREST)):
            out = dest / sub / "480p" / seq
            out.mkdir(parents=True)
            for path in sorted((SAMPLE / sub / "480p" / seq).glob(f"*.{ext}"))[:frames]:
                with Image.open(path) as image:
                    small = image.resize((image.width // shrink, image.height // shrink), resample)
                    small.save(out / path.name)
    (dest / "ImageSets" / "2017").mkdir(parents=True)
    (dest / "ImageSets" / "2017" / "val.txt").write_text("\n".join(SEQS) + "\n")
    return dest


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) by relative path → sha256 of its bytes."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(["run", *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def record_of(out: str) -> dict:
    return json.loads(Path(out.strip().splitlines()[-1]).read_text())


@pytest.fixture
def root(tmp_path):
    return tiny_davis_root(tmp_path / "davis")


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    """Default folders go under a temporary results root, never the repository's."""
    target = tmp_path / "results" / "runs"
    monkeypatch.setattr(runner, "RUNS_DIR", target)
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "results"))
    return target


def pixels(root: Path, *more: str) -> list[str]:
    return ["--method", "pixels", "--task", "davis", "--data-root", str(root), *more]


# ----------------------------------------------------------------------------------------- --force


def test_force_removes_only_the_runs_own_files(root, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "figure.svg").write_text("<svg>my figure</svg>")
    (out / "notes").mkdir()
    (out / "notes" / "todo.txt").write_text("keep me")
    assert run(pixels(root, "--out-dir", str(out)), capsys)[0] == 0
    manifest = json.loads((out / MANIFEST).read_text())
    assert "figure.svg" not in manifest["files"] and "record.json" in manifest["files"]
    assert "car-shadow/00001.png" in manifest["files"]
    first = json.loads((out / "record.json").read_text())
    code, _, err = run(pixels(root, "--out-dir", str(out), "--force"), capsys)
    assert code == 0, err
    assert (out / "figure.svg").read_text() == "<svg>my figure</svg>"
    assert (out / "notes" / "todo.txt").read_text() == "keep me"
    assert json.loads((out / "record.json").read_text())["metrics"] == first["metrics"]


def test_killed_run_resumes_and_force_removes_what_it_had_written(root, tmp_path, capsys):
    """Killed before its manifest and state caught up with the predictions it wrote: a rerun resumes
    (no refusal of its own files), and ``--force`` from another configuration removes them, not the user's."""
    out = tmp_path / "o"
    assert run(pixels(root, "--out-dir", str(out)), capsys)[0] == 0
    (out / "notes.txt").write_text("foreign")
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["files"] = [f for f in manifest["files"] if not f.startswith(("motocross-jump/", ".state/moto"))]
    (out / MANIFEST).write_text(json.dumps(manifest))
    (out / "record.json").unlink()
    (out / ".state" / "motocross-jump.json").unlink()
    code, _, err = run(pixels(root, "--out-dir", str(out)), capsys)
    assert code == 0, err
    assert "motocross-jump/00001.png" in json.loads((out / MANIFEST).read_text())["files"]
    code, _, err = run(pixels(root, "--out-dir", str(out), "--seed", "3", "--force"), capsys)
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "foreign"
    assert json.loads((out / "record.json").read_text())["seed"] == 3


def test_foreign_predictions_or_the_data_itself_are_never_overwritten(root, tmp_path, capsys):
    annotations = root / "Annotations" / "480p"
    before = tree(annotations)
    for extra in ([], ["--force"]):
        code, _, err = run(pixels(root, "--out-dir", str(annotations), *extra), capsys)
        assert code == 2 and "already holds" in err and "car-shadow" in err
        assert tree(annotations) == before
    other_tool = tmp_path / "osvos"
    (other_tool / "car-shadow").mkdir(parents=True)
    (other_tool / "car-shadow" / "00001.png").write_bytes(b"their mask")
    code, _, err = run(pixels(root, "--out-dir", str(other_tool)), capsys)
    assert code == 2 and str(other_tool / "car-shadow" / "00001.png") in err
    assert (other_tool / "car-shadow" / "00001.png").read_bytes() == b"their mask"


def test_remove_listed_never_leaves_the_folder(tmp_path):
    folder = tmp_path / "run"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "p.png").write_text("ours")
    outside = tmp_path / "outside.txt"
    outside.write_text("not ours")
    (folder / "link.txt").symlink_to(outside)
    (folder / "linkdir").symlink_to(tmp_path)
    removed = remove_listed(folder, ["a/p.png", "../outside.txt", str(outside), "linkdir/outside.txt",
                                     "link.txt", LOCK, "missing.png"])
    assert removed == ["a/p.png"]
    assert outside.read_text() == "not ours"
    assert not (folder / "a").exists()  # left empty by the removal
    assert folder.is_dir()


# ----------------------------------------------------------------------------------------- ownership


def test_folder_of_another_run_is_refused_unchanged(root, tmp_path, capsys):
    out = tmp_path / "o"
    (out).mkdir()
    (out / "figure.svg").write_text("mine")
    assert run(pixels(root, "--out-dir", str(out)), capsys)[0] == 0
    before = tree(out)
    digest = json.loads((out / MANIFEST).read_text())["digest"]
    for other in (["--seed", "1"], ["--set", "protocol.topk=5"], ["--limit", "1"]):
        code, _, err = run(pixels(root, "--out-dir", str(out), *other), capsys)
        assert code == 2
        assert "another run" in err and digest in err and "--force" in err
        assert tree(out) == before
    code, _, err = run(["--method", "random-resnet18", "--task", "davis", "--data-root", str(root),
                        "--out-dir", str(out)], capsys)
    assert code == 2 and "method pixels" in err
    assert tree(out) == before


def test_record_without_manifest_adopted_only_when_it_matches(root, tmp_path, capsys):
    out = tmp_path / "o"
    code, stdout, _ = run(pixels(root, "--out-dir", str(out)), capsys)
    assert code == 0
    original = record_of(stdout)
    # as written before manifests existed: no manifest, no run digest in the record
    (out / MANIFEST).unlink()
    legacy = {k: v for k, v in original.items() if k != "run_digest"}
    (out / "record.json").write_text(json.dumps(legacy))
    foreign = dict(legacy, method="timm:resnet18")
    (out / "record.json").write_text(json.dumps(foreign))
    before = tree(out)
    for extra in ([], ["--force"]):
        code, _, err = run(pixels(root, "--out-dir", str(out), *extra), capsys)
        assert code == 2 and "no manifest" in err and "timm:resnet18" in err
        assert tree(out) == before
    (out / "record.json").write_text(json.dumps(legacy))
    code, stdout, err = run(pixels(root, "--out-dir", str(out)), capsys)
    assert code == 0, err
    assert "recomputing" not in err  # adopted: every sequence resumed
    assert record_of(stdout)["metrics"] == original["metrics"]
    manifest = json.loads((out / MANIFEST).read_text())
    assert "car-shadow/00000.png" in manifest["files"] and "record.json" in manifest["files"]


def test_resume_state_without_manifest_is_refused(root, tmp_path, capsys):
    out = tmp_path / "o"
    (out / ".state").mkdir(parents=True)
    (out / ".state" / "car-shadow.json").write_text('{"config_hash": "x"}')
    before = tree(out)
    code, _, err = run(pixels(root, "--out-dir", str(out)), capsys)
    assert code == 2 and "resume state" in err
    assert tree(out) == before


def test_second_concurrent_run_refuses_at_once(root, tmp_path, capsys):
    out = tmp_path / "o"
    assert run(pixels(root, "--out-dir", str(out)), capsys)[0] == 0
    before = tree(out)
    with FileLock(out / LOCK, timeout=0):  # the first run, still writing
        code, stdout, err = run(pixels(root, "--out-dir", str(out), "--force"), capsys)
        assert code == 2 and stdout == ""
        assert "another harness run is writing into" in err and str(out) in err
        assert tree(out) == before
    assert run(pixels(root, "--out-dir", str(out)), capsys)[0] == 0  # free again once it ends


# ----------------------------------------------------------------------------------------- resume by content


def crw_checkpoint(path: Path, seed: int) -> Path:
    from methods.crw.checkpoint import save_eval_checkpoint
    from methods.crw.model import CRWNet

    torch.manual_seed(seed)
    return save_eval_checkpoint(path, CRWNet().state_dict(), {"name": f"random-{seed}"}, step=0)


@pytest.mark.slow
def test_replaced_checkpoint_is_recomputed_and_equals_a_fresh_run(root, tmp_path, runs_dir, capsys, single_thread):
    ckpt = crw_checkpoint(tmp_path / "crw.pt", seed=1)
    args = ["--method", "crw", "--task", "davis", "--data-root", str(root), "--checkpoint", str(ckpt)]
    code, stdout, err = run(args, capsys)
    assert code == 0, err
    first_path = Path(stdout.strip().splitlines()[-1])
    first = first_path.read_text()
    crw_checkpoint(tmp_path / "other.pt", seed=2)
    shutil.copy(tmp_path / "other.pt", ckpt)  # retrained in place: same path, new content
    code, stdout, err = run(args, capsys)
    assert code == 0, err
    second_path = Path(stdout.strip().splitlines()[-1])
    assert second_path.parent != first_path.parent
    assert first_path.read_text() == first  # the first result is intact
    second = record_of(stdout)
    assert second["checkpoint"]["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    code, stdout, err = run([*args[:-1], str(tmp_path / "other.pt"), "--out-dir", str(tmp_path / "fresh")], capsys)
    fresh = record_of(stdout)
    assert second["metrics"] == fresh["metrics"] and second["per_object"] == fresh["per_object"]
    assert second["metrics"] != json.loads(first)["metrics"]
    # the same into an explicit folder: refused (another digest), then recomputed with --force
    explicit = ["--out-dir", str(first_path.parent)]
    code, _, err = run([*args, *explicit], capsys)
    assert code == 2 and "another run" in err
    code, stdout, err = run([*args, *explicit, "--force"], capsys)
    assert code == 0 and record_of(stdout)["metrics"] == fresh["metrics"]


def test_changed_data_is_recomputed_and_equals_a_fresh_run(root, tmp_path, runs_dir, capsys):
    code, stdout, _ = run(pixels(root), capsys)
    first_path = Path(stdout.strip().splitlines()[-1])
    first = first_path.read_text()
    masks = root / "Annotations" / "480p" / "car-shadow"
    shutil.copy(masks / "00000.png", masks / "00001.png")  # the ground truth of frame 1 changes
    code, stdout, err = run(pixels(root), capsys)
    assert code == 0, err
    assert Path(stdout.strip().splitlines()[-1]).parent != first_path.parent
    assert first_path.read_text() == first
    changed = record_of(stdout)
    fresh_root = shutil.copytree(root, tmp_path / "fresh-root")
    fresh = record_of(run(pixels(fresh_root, "--out-dir", str(tmp_path / "fresh")), capsys)[1])
    assert changed["per_object"] == fresh["per_object"]
    assert changed["per_object"] != json.loads(first)["per_object"]


def test_stale_or_damaged_state_is_recomputed_and_said(root, tmp_path, capsys):
    out = tmp_path / "o"
    clean = record_of(run(pixels(root, "--out-dir", str(out)), capsys)[1])
    state = out / ".state" / "car-shadow.json"
    saved = json.loads(state.read_text())
    state.write_text(json.dumps(dict(saved, fingerprint="0" * 64)))  # computed from other data
    code, stdout, err = run(pixels(root, "--out-dir", str(out)), capsys)
    assert code == 0 and "recomputing car-shadow: its data" in err and "motocross-jump" not in err
    assert record_of(stdout)["per_object"] == clean["per_object"]
    state.write_text(json.dumps(dict(saved, weights={"checkpoint": "f" * 64})))
    code, stdout, err = run(pixels(root, "--out-dir", str(out)), capsys)
    assert "recomputing car-shadow: the checkpoint" in err
    (out / "motocross-jump" / "00001.png").unlink()  # a prediction lost beside its state
    code, stdout, err = run(pixels(root, "--out-dir", str(out)), capsys)
    assert "recomputing motocross-jump: its prediction motocross-jump/00001.png is missing" in err
    assert (out / "motocross-jump" / "00001.png").is_file()
    assert record_of(stdout)["per_object"] == clean["per_object"]
    code, stdout, err = run(pixels(root, "--out-dir", str(out)), capsys)
    assert "recomputing" not in err


def test_interrupted_recompute_leaves_no_record_beside_changed_masks(root, tmp_path, capsys, monkeypatch):
    out = tmp_path / "o"
    clean = record_of(run(pixels(root, "--out-dir", str(out)), capsys)[1])
    (out / "car-shadow" / "00001.png").unlink()

    def interrupted(*args):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(runner.Runner, "_run_sequence", interrupted)
        code, _, err = run(pixels(root, "--out-dir", str(out)), capsys)
    assert code == 130 and not (out / "record.json").exists()
    code, stdout, err = run(pixels(root, "--out-dir", str(out)), capsys)
    assert code == 0 and record_of(stdout)["per_object"] == clean["per_object"]


def test_ranks_of_a_sharded_run_join_the_folder_rank_0_claimed(tmp_path):
    from harness.runs.outdir import FolderRefused, RunIdentity, claim, join

    me = RunIdentity("abc123", "pixels", "davis", "h", 0, ("a", "b"), None)
    other = RunIdentity("def456", "pixels", "davis", "h", 0, ("a", "b"), None)
    with pytest.raises(HarnessError):
        join(tmp_path / "run", me)  # nothing claimed yet
    with claim(tmp_path / "run", me) as folder:
        rank1 = join(tmp_path / "run", me)  # no lock taken: rank 0 holds it for the job
        rank1.add(["a/0.png"])
        assert json.loads((tmp_path / "run" / MANIFEST).read_text())["files"] == []  # rank 0 writes the manifest
        with pytest.raises(HarnessError):
            join(tmp_path / "run", other)
        with pytest.raises(FolderRefused, match="another harness run"):
            claim(tmp_path / "run", me)
        folder.add(rank1.files)
    assert json.loads((tmp_path / "run" / MANIFEST).read_text())["files"] == ["a/0.png"]


# ----------------------------------------------------------------------------------------- default folders


def test_limit_then_full_run_land_in_different_folders(root, runs_dir, capsys):
    code, stdout, _ = run(pixels(root, "--limit", "1"), capsys)
    smoke_path = Path(stdout.strip().splitlines()[-1])
    smoke = smoke_path.read_text()
    code, stdout, _ = run(pixels(root), capsys)
    full_path = Path(stdout.strip().splitlines()[-1])
    assert code == 0 and full_path.parent != smoke_path.parent
    assert full_path.parent.parent == smoke_path.parent.parent  # same method and protocol level
    assert smoke_path.read_text() == smoke
    assert len(json.loads(smoke)["per_sequence"]) == 1 and len(record_of(stdout)["per_sequence"]) == 2
    assert full_path.parent.name == record_of(stdout)["run_digest"]
    assert full_path.parent.is_relative_to(runs_dir / "davis" / "pixels")


def test_sample_then_data_root_land_in_different_folders(tmp_path, runs_dir, monkeypatch, capsys):
    from harness.data import roots

    sample = tiny_davis_root(tmp_path / "sample" / "davis")
    monkeypatch.setattr(roots, "SAMPLE_DIR", sample.parent)
    monkeypatch.delenv("HARNESS_DATA", raising=False)
    code, stdout, err = run(["--method", "pixels", "--task", "davis"], capsys)
    assert code == 0 and "shipped real sample" in err
    sample_path = Path(stdout.strip().splitlines()[-1])
    sample_record = sample_path.read_text()
    copy = shutil.copytree(sample, tmp_path / "elsewhere" / "davis")
    code, stdout, _ = run(pixels(copy), capsys)
    copy_path = Path(stdout.strip().splitlines()[-1])
    assert code == 0 and copy_path.parent != sample_path.parent
    assert sample_path.read_text() == sample_record
    copy_record = record_of(stdout)
    assert copy_record["data"]["fingerprint"] == json.loads(sample_record)["data"]["fingerprint"]  # same content
    assert copy_record["metrics"] == json.loads(sample_record)["metrics"]


# ----------------------------------------------------------------------------------------- unusable folders


def test_out_dir_naming_a_file(root, tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("x")
    code, _, err = run(pixels(root, "--out-dir", str(target)), capsys)
    assert code == 2 and f"--out-dir {target} is a file" in err
    code, _, err = run(pixels(root, "--out-dir", str(target / "sub")), capsys)
    assert code == 2 and "is a file" in err
    assert target.read_text() == "x"


def test_read_only_out_dir_refused_before_any_compute(root, tmp_path, capsys, monkeypatch):
    from harness.runs import outdir

    out = tmp_path / "ro"
    out.mkdir()
    real_access = outdir.os.access
    monkeypatch.setattr(outdir.os, "access", lambda p, mode: False if Path(p) == out else real_access(p, mode))
    computed = []
    monkeypatch.setattr(runner.Runner, "_run_sequence", lambda *a: computed.append(a))
    code, _, err = run(pixels(root, "--out-dir", str(out)), capsys)
    assert code == 2 and "not writable" in err and str(out) in err
    assert computed == [] and list(out.iterdir()) == []


@pytest.mark.skipif(hasattr(__import__("os"), "geteuid") and __import__("os").geteuid() == 0,
                    reason="root writes into read-only folders; the monkeypatched test above covers the check")
def test_read_only_out_dir_for_real(root, tmp_path, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        code, _, err = run(pixels(root, "--out-dir", str(out)), capsys)
        assert code == 2 and "not writable" in err
    finally:
        out.chmod(0o755)


def test_tiny_root_is_valid_real_data(root):
    """The shrunk copy keeps every object of the first frame (what the tests above propagate)."""
    for seq in SEQS:
        first = np.asarray(Image.open(root / "Annotations" / "480p" / seq / "00000.png"))
        assert (first == 1).sum() > 50
