"""CRW training loop: DDP equals per-rank gradients averaged, resume is exact, recipes fail loudly.

Tiny shapes throughout (48-px frames, 16-px patches at stride 16 -> 3x3 nodes, 3-frame clips,
synthetic frame-folder videos), so each training step takes a fraction of a second on a CPU.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from harness.errors import HarnessError
from harness.training import loop, recipes
from harness.training.options import TrainOptions
from harness.training.rng import seed_everything
from harness.training.state import LOG_NAME
from methods.crw.data import ShardedClipSampler, collate
from methods.crw.loss import walk_loss
from methods.crw.trainer import CRWTrainer, build_clip_data

TRAINER = CRWTrainer()
CHECKPOINT_NAME = TRAINER.state_file
EVAL_CHECKPOINT_NAME = TRAINER.eval_file

REPO = Path(__file__).resolve().parents[1]


def load_recipe(name: str, overrides: list[str] | None = None) -> dict:
    return recipes.load_recipe(TRAINER, name, overrides)


def train(recipe: dict, options: TrainOptions) -> Path:
    return loop.train(TRAINER, recipe, options)


TINY = {
    "base": "crw-cpu-demo",
    "seed": 5,
    "data": {"fps": None, "clip_len": 3, "clips_per_video": 5, "workers": 0},
    "augment": {"frame_size": 48, "patch_size": 16, "patch_stride": 16},
    "optim": {"batch_size": 2, "lr": 1.0e-3},
    "train": {"checkpoint_every": 2},
}


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three frame-folder videos of a texture drifting a few pixels per frame."""
    from PIL import Image

    root = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    for v in range(3):
        texture = rng.integers(0, 255, (80, 100, 3), dtype=np.uint8)
        folder = root / f"video{v}"
        folder.mkdir()
        for t in range(8):
            Image.fromarray(texture[2 * t : 2 * t + 40, 3 * t : 3 * t + 56]).save(folder / f"{t:05d}.png")
    return root


def _recipe_file(tmp_path: Path, edge_dropout: float) -> Path:
    tiny = copy.deepcopy(TINY)
    tiny["data"]["cache_dir"] = str(tmp_path / "cache")
    tiny["loss"] = {"edge_dropout": edge_dropout}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny))
    return path


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _losses(out_dir: Path) -> list[tuple[int, float, float]]:
    lines = (out_dir / LOG_NAME).read_text().splitlines()
    return [(r["step"], r["loss"], r["acc"]) for r in map(json.loads, lines)]


def _assert_tensors_equal(a: object, b: object, where: str = "") -> None:
    """Recursive exact equality of checkpoint contents (tensors bit for bit)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            _assert_tensors_equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_tensors_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_resume_continues_exactly(videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from harness.cli import main as cli

    recipe_path = _recipe_file(tmp_path, edge_dropout=0.1)  # dropout on: its masks must replay too
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    args = ["train", "--method", "crw", "--recipe", str(recipe_path), "--data", str(videos), "--device", "cpu", "--no-progress"]

    assert cli([*args, "--out-dir", str(straight), "--max-steps", "4"]) == 0
    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert last_line == str((straight / CHECKPOINT_NAME).resolve())

    assert cli([*args, "--out-dir", str(broken), "--max-steps", "2"]) == 0
    assert _state(broken / CHECKPOINT_NAME)["step"] == 2
    with open(broken / LOG_NAME, "a") as log:  # as if killed after logging step 3, before its checkpoint
        log.write(json.dumps({"step": 3, "loss": -1.0, "acc": -1.0}) + "\n")
    assert cli([*args, "--out-dir", str(broken), "--max-steps", "4", "--resume"]) == 0

    a, b = _state(straight / CHECKPOINT_NAME), _state(broken / CHECKPOINT_NAME)
    assert a["step"] == b["step"] == 4
    for key in ("model", "optimizer", "scheduler", "sampler", "rng", "recipe"):
        _assert_tensors_equal(a[key], b[key], key)
    assert _losses(straight) == _losses(broken) and len(_losses(straight)) == 4
    evaluation = _state(broken / EVAL_CHECKPOINT_NAME)
    assert evaluation["step"] == 4 and not any(k.startswith(("head.", "encoder.layer4.")) for k in evaluation["model"])


def test_resume_refuses_a_changed_recipe(videos: Path, tmp_path: Path) -> None:
    recipe = load_recipe(str(_recipe_file(tmp_path, 0.0)))
    options = TrainOptions(data=[videos], out_dir=tmp_path / "run", max_steps=1, device="cpu", progress=False)
    train(recipe, options)
    with pytest.raises(HarnessError, match="--resume"):  # never silently overwrite a run
        train(recipe, options)
    changed = load_recipe(str(_recipe_file(tmp_path, 0.0)), ["optim.lr=0.5"])
    options.resume, options.max_steps = True, 2
    with pytest.raises(HarnessError, match="optim.lr"):
        train(changed, options)


def test_recipes_resolve_and_reject_typos() -> None:
    paper, demo = load_recipe("crw-paper"), load_recipe("crw-cpu-demo")
    assert paper["loss"] == {"temperature": 0.05, "edge_dropout": 0.1, "leak_dropout": True}
    assert (paper["optim"]["batch_size"], paper["optim"]["lr"], paper["optim"]["epochs"]) == (20, 1e-4, 25)
    assert demo["loss"] == paper["loss"] and demo["data"]["clip_len"] == paper["data"]["clip_len"] == 4
    assert (demo["augment"]["frame_size"], demo["augment"]["patch_size"]) == (128, 32)
    assert load_recipe("crw-paper", ["optim.lr=3e-4", "loss.leak_dropout=false"])["optim"]["lr"] == 3e-4
    with pytest.raises(HarnessError, match="optim.lr"):
        load_recipe("crw-paper", ["optim.lrr=1"])
    with pytest.raises(HarnessError, match="crw-paper"):
        load_recipe("crw-papr")
    with pytest.raises(HarnessError, match="data.clip_len'.*greater than or equal to 3"):
        load_recipe("crw-paper", ["data.clip_len=2"])


@pytest.mark.multiprocess
def test_ddp_matches_averaged_per_rank_gradients(videos: Path, tmp_path: Path) -> None:
    """Two gloo ranks under torchrun == one process running each rank's shard and averaging gradients."""
    recipe_path = _recipe_file(tmp_path, edge_dropout=0.0)
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "harness", "train", "--method", "crw", "--recipe", str(recipe_path), "--data", str(videos),
        "--out-dir", str(out), "--max-steps", "3", "--device", "cpu", "--no-progress",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == str((out / CHECKPOINT_NAME).resolve())
    ddp = _state(out / CHECKPOINT_NAME)
    assert ddp["world_size"] == 2 and ddp["step"] == 3 and len(ddp["rng"]) == 2

    # reference: one replica per rank, each on its own shard (BatchNorm statistics per rank)
    recipe = load_recipe(str(recipe_path))
    dataset, index = build_clip_data(recipe, [videos])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seed_everything(recipe["seed"])
        replicas = [TRAINER.build_model(recipe)]
        replicas.append(copy.deepcopy(replicas[0]))
        optimizers = [torch.optim.Adam(m.parameters(), lr=recipe["optim"]["lr"]) for m in replicas]
        samplers = [ShardedClipSampler(index, 5, 1, recipe["seed"], rank, 2) for rank in range(2)]
        for step in range(3):
            for model, sampler in zip(replicas, samplers, strict=True):
                batch, _ = collate([dataset[key] for key in sampler.batch_at(step)])
                loss, _ = walk_loss(model(batch), recipe["loss"]["temperature"])
                model.zero_grad()
                loss.backward()
            for p0, p1 in zip(*(m.parameters() for m in replicas), strict=True):
                mean = (p0.grad + p1.grad) / 2
                p0.grad, p1.grad = mean.clone(), mean.clone()
            for optimizer in optimizers:
                optimizer.step()
            replicas[1].load_state_dict(replicas[0].state_dict())  # DDP broadcasts rank 0's buffers
    finally:
        torch.set_num_threads(threads)
    expected = replicas[0].state_dict()
    assert expected.keys() == ddp["model"].keys()
    for key, value in expected.items():
        torch.testing.assert_close(ddp["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    # and the two ranks really saw different clips (else averaging would prove nothing)
    assert samplers[0].batch_at(0) != samplers[1].batch_at(0)


@pytest.mark.gpu  # mixed precision and cudnn.benchmark are CUDA-only
def test_cuda_mixed_precision_trains(videos: Path, tmp_path: Path) -> None:
    recipe = load_recipe(str(_recipe_file(tmp_path, edge_dropout=0.1)))
    out = tmp_path / "gpu"
    final = train(recipe, TrainOptions(data=[videos], out_dir=out, max_steps=3, device="cuda", progress=False))
    losses = [loss for _, loss, _ in _losses(out)]
    assert len(losses) == 3 and all(np.isfinite(losses))
    state = _state(final)
    assert state["step"] == 3 and all(torch.isfinite(v.float()).all() for v in state["model"].values())
