"""VFS training through the harness's trainer contract: the loop equals a hand-written VFS step, resume is exact,
DDP averages the ranks' gradients, evaluation while training and the training benchmark run.

Tiny shapes throughout (64-px views of 2 frames each, batch 2, synthetic frame-folder videos), so a step of the
full-width ResNet-18 takes a fraction of a second on a CPU.
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from harness.cli import main as cli
from harness.errors import DataError, HarnessError
from harness.training import loop, recipes
from harness.training.acceleration import resolve_switch
from harness.training.curve import CURVE_NAME
from harness.training.options import TrainOptions
from harness.training.rng import seed_everything
from harness.training.state import LOG_NAME
from methods.vfs.checkpoint import read_checkpoint
from methods.vfs.pairs import PairSampler, ShardedPairSampler, collate_pairs
from methods.vfs.trainer import VFSTrainer, cosine_factor
from tests.test_crw_train import _assert_tensors_equal, videos  # noqa: F401  (the fixture is used by name)
from tests.test_vfs_fidelity import _reference_loss

pytestmark = pytest.mark.usefixtures("single_thread")

TRAINER = VFSTrainer()
REPO = Path(__file__).resolve().parents[1]
TINY = {
    "base": "vfs-cpu-demo",
    "seed": 5,
    "data": {"segments": 4, "repeat": 8, "workers": 0},
    "augment": {"size": 64},
    "optim": {"batch_size": 2},
    "train": {"checkpoint_every": 2},
}
#: the three synthetic videos x data.repeat 8, in batches of 2
STEPS_PER_EPOCH = 12


def _recipe_file(tmp_path: Path, **data: object) -> Path:
    tiny = copy.deepcopy(TINY)
    tiny["data"].update({"cache_dir": str(tmp_path / "cache"), **data})
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny))
    return path


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _log(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / LOG_NAME).read_text().splitlines() if line.strip()]


def _train_args(recipe: Path, data: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return ["train", "--method", "vfs", "--recipe", str(recipe), "--data", str(data), "--out-dir", str(out),
            "--max-steps", str(steps), "--device", "cpu", "--no-progress", *extra]


def _annealed(step: int, total: int, lr: float = 0.05) -> float:
    """mmcv's annealing_cos(lr, 0, step / total), written out."""
    return 0.5 * lr * (math.cos(math.pi * step / total) + 1)


def test_three_steps_equal_a_hand_written_vfs_loop(videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:  # noqa: F811
    """`harness train --method vfs` (three steps) == seed, VFSNet, SGD with the annealed lr, each view encoded
    on its own, the original's roll-based loss; and it writes the log, the state file and vfs-eval.pt."""
    recipe_path = _recipe_file(tmp_path)
    out = tmp_path / "run"
    assert cli(_train_args(recipe_path, videos, out, 3, "--set", "train.compile=auto")) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str((out / TRAINER.state_file).resolve())

    log = _log(out)
    assert [e["step"] for e in log] == [1, 2, 3]
    assert all({"loss", "cosine", "z_std", "lr", "clips_per_s"} <= set(e) for e in log)
    assert not any("compile_s" in e for e in log)  # train.compile: auto is off on the CPU
    assert all(-1 <= e["cosine"] <= 1 and 0 < e["z_std"] < 1 and e["loss"] == pytest.approx(2 - 2 * e["cosine"], abs=1e-5)
               for e in log)
    total = 1000 * STEPS_PER_EPOCH
    assert [e["lr"] for e in log] == pytest.approx([_annealed(k, total) for k in range(3)], rel=1e-12)
    state = _state(out / TRAINER.state_file)
    assert state["step"] == 3 and state["sampler"]["steps_per_epoch"] == STEPS_PER_EPOCH

    evaluation = read_checkpoint(out / TRAINER.eval_file)
    assert evaluation.source == "harness" and evaluation.step == 3 and evaluation.arch == "resnet18"
    assert not any(k.startswith("layer4.") for k in evaluation.eval_state)
    for key, value in evaluation.eval_state.items():
        assert torch.equal(value, state["model"][f"encoder.{key}"]), key

    # the reference: written out from the recipe, not through the trainer's step or optimiser
    recipe = recipes.load_recipe(TRAINER, str(recipe_path))
    dataset = TRAINER.build_data(recipe, [videos], device=torch.device("cpu"), rank=0, world_size=1,
                                 local_batch=2).dataset
    seed_everything(recipe["seed"])
    model = TRAINER.build_model(recipe).train()
    init = copy.deepcopy(model.state_dict())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    losses = []
    for step in range(3):
        for group in optimizer.param_groups:
            group["lr"] = _annealed(step, total)
        samples = [dataset[index] for index in (2 * step, 2 * step + 1)]  # epoch 0, positions in order
        views = [torch.cat([sample[v] for sample in samples]) for v in (0, 1)]  # [B*T, 3, S, S], video-major
        (z1, p1), (z2, p2) = model(views[0]), model(views[1])
        loss = _reference_loss(p1, z1, p2, z2, clip_len=2, intra_video=True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert [e["loss"] for e in log] == pytest.approx(losses, rel=1e-5)
    expected = model.state_dict()
    assert expected.keys() == state["model"].keys()
    # float32 noise (the loss summed in another order) grows over the steps through the small BatchNorm batches:
    # each tensor must match to within 2% of how far the three steps moved it (a wrong lr, momentum or a joint
    # BatchNorm over both views moves it by as much again)
    for key, value in expected.items():
        moved = (value.double() - init[key].double()).abs().max().item()
        off = (state["model"][key].double() - value.double()).abs().max().item()
        assert off <= 0.02 * moved + 1e-6, (key, off, moved)
    assert (expected["encoder.conv1.weight"] - init["encoder.conv1.weight"]).abs().max() > 0.01


def test_resume_continues_exactly(videos: Path, tmp_path: Path) -> None:  # noqa: F811
    """Stopped after step 2 (and a step-3 line logged but not checkpointed), resumed to 3: bit for bit the straight run."""
    recipe_path = _recipe_file(tmp_path, workers=1)  # a decoding process: samples take their randomness from their keys
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    assert cli(_train_args(recipe_path, videos, straight, 3)) == 0
    assert cli(_train_args(recipe_path, videos, broken, 2)) == 0
    assert _state(broken / TRAINER.state_file)["step"] == 2
    with open(broken / LOG_NAME, "a") as log:  # as if killed after logging step 3, before its checkpoint
        log.write(json.dumps({"step": 3, "loss": -1.0, "cosine": -1.0, "z_std": -1.0}) + "\n")
    assert cli(_train_args(recipe_path, videos, broken, 3, "--resume")) == 0

    a, b = _state(straight / TRAINER.state_file), _state(broken / TRAINER.state_file)
    assert a["step"] == b["step"] == 3
    for key in ("model", "optimizer", "scheduler", "sampler", "rng", "recipe"):
        _assert_tensors_equal(a[key], b[key], key)
    assert a["scheduler"]["last_epoch"] == 3 and a["optimizer"]["state"]  # the momentum buffers were restored
    keys = ("step", "loss", "cosine", "z_std", "lr")
    assert [[e[k] for k in keys] for e in _log(straight)] == [[e[k] for k in keys] for e in _log(broken)]
    assert _state(straight / TRAINER.eval_file)["model"].keys() == _state(broken / TRAINER.eval_file)["model"].keys()


def test_sampler_shards_epochs_and_does_not_depend_on_its_start(videos: Path, tmp_path: Path) -> None:  # noqa: F811
    from methods.crw.data import index_videos

    entries, _ = index_videos(videos, cache_dir=tmp_path / "cache")
    pairs = PairSampler(entries, segments=4, seed=1, repeat=3)  # 9 samples an epoch
    ranks = [ShardedPairSampler(pairs, batch_size=2, rank=r, world_size=2) for r in range(2)]
    assert ranks[0].steps_per_epoch == 2  # ceil(9 / 2) = 5 per rank, 2 whole batches
    # epoch 1 (keys 9..17): rank 0 takes positions 0, 2, 4, 6; rank 1 positions 1, 3, 5, 7
    assert [ranks[0].batch_at(s) for s in (2, 3)] == [[9, 11], [13, 15]]
    assert [ranks[1].batch_at(s) for s in (2, 3)] == [[10, 12], [14, 16]]
    late = ShardedPairSampler(pairs, 2, 1, 2, start_step=3, total_steps=6)
    assert list(late) == [ranks[1].batch_at(s) for s in (3, 4, 5)] and len(late) == 3
    # padding wraps: 3 ranks, 9 samples -> 3 each; batch 3 is one step
    assert ShardedPairSampler(pairs, 3, 2, 3).batch_at(0) == [2, 5, 8]
    with pytest.raises(DataError, match="raise data.repeat"):
        ShardedPairSampler(pairs, batch_size=8, world_size=2)

    views, failures = collate_pairs([(torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4), 1),
                                     (torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4), 0)])
    assert views.shape == (2, 2, 2, 3, 4, 4) and failures == 1
    assert views[:, 0].eq(0).all() and views[:, 1].eq(1).all()


def test_cosine_schedule_by_hand() -> None:
    assert cosine_factor(0, 100, 0.05, 0.0) == 1.0
    assert cosine_factor(50, 100, 0.05, 0.0) == pytest.approx(0.5)
    assert cosine_factor(100, 100, 0.05, 0.0) == pytest.approx(0.0, abs=1e-15)
    assert cosine_factor(150, 100, 0.05, 0.01) == pytest.approx(0.2)  # held at min_lr past the end
    assert cosine_factor(25, 100, 0.04, 0.01) * 0.04 == pytest.approx(0.01 + 0.03 * (1 + math.sqrt(0.5)) / 2)


def test_sync_batchnorm_only_across_cuda_ranks() -> None:
    recipe = recipes.load_recipe(TRAINER, "vfs-cpu-demo")

    def prepared(device: str, world: int) -> torch.nn.Module:
        return TRAINER.prepare_model(TRAINER.build_model(recipe), recipe, device=torch.device(device), world_size=world)

    def kinds(model: torch.nn.Module) -> set[str]:
        return {type(m).__name__ for m in model.modules() if "BatchNorm" in type(m).__name__}

    assert kinds(prepared("cpu", 2)) == kinds(prepared("cuda", 1)) == {"BatchNorm1d", "BatchNorm2d"}
    synced = prepared("cuda", 2)  # converting needs no GPU; running it does
    assert kinds(synced) == {"SyncBatchNorm"}
    assert synced.state_dict().keys() == TRAINER.build_model(recipe).state_dict().keys()


def test_the_loop_calls_prepare_model(videos: Path, tmp_path: Path) -> None:  # noqa: F811
    calls = []

    class Recording(VFSTrainer):
        def prepare_model(self, model, recipe, *, device, world_size):
            calls.append((type(model).__name__, device.type, world_size))
            return model

    recipe = recipes.load_recipe(TRAINER, str(_recipe_file(tmp_path)))
    loop.train(Recording(), recipe, TrainOptions(data=[videos], out_dir=tmp_path / "run", max_steps=1, device="cpu",
                                                 progress=False))
    assert calls == [("VFSNet", "cpu", 1)]


def test_recipe_switches_and_refusals(tmp_path: Path) -> None:
    demo = recipes.load_recipe(TRAINER, "vfs-cpu-demo", ["train.compile=auto", "train.channels_last=off"])
    assert demo["train"]["compile"] == "auto" and not resolve_switch(demo["train"]["compile"], torch.device("cpu"),
                                                                      "train.compile")
    assert resolve_switch(demo["train"]["compile"], torch.device("cuda"), "train.compile")
    assert (demo["optim"]["batch_size"], demo["data"]["segments"], demo["data"]["repeat"]) == (8, 4, 8)
    with pytest.raises(HarnessError, match=r"optim\.momentum"):
        recipes.load_recipe(TRAINER, "vfs-cpu-demo", ["optim.momentom=0.5"])
    adam_like = tmp_path / "adam-like.yaml"  # the default optimiser's keys are not VFS's
    adam_like.write_text(yaml.safe_dump({"base": "vfs-cpu-demo", "optim": {"milestones": [1]}}))
    with pytest.raises(HarnessError, match="unknown key 'optim.milestones'"):
        recipes.load_recipe(TRAINER, str(adam_like))
    batch = TRAINER.synthetic_batch(demo, torch.device("cpu"))
    assert batch.shape == (8, 2, 2, 3, 128, 128)


def test_harness_list_marks_vfs_trainable(capsys: pytest.CaptureFixture) -> None:
    assert cli(["list", "methods"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.split()[:1] == ["vfs"])
    assert "[trainable]" in line


@pytest.mark.multiprocess
def test_ddp_matches_averaged_per_rank_gradients(videos: Path, tmp_path: Path) -> None:  # noqa: F811
    """Two gloo ranks under torchrun == one replica per rank on its own shard, gradients averaged, SGD + cosine."""
    recipe_path = _recipe_file(tmp_path)
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "harness", *_train_args(recipe_path, videos, out, 2),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == str((out / TRAINER.state_file).resolve())
    assert "SyncBatchNorm needs CUDA" in done.stderr
    ddp = _state(out / TRAINER.state_file)
    assert ddp["world_size"] == 2 and ddp["step"] == 2 and len(ddp["rng"]) == 2

    recipe = recipes.load_recipe(TRAINER, str(recipe_path))
    data = [TRAINER.build_data(recipe, [videos], device=torch.device("cpu"), rank=r, world_size=2, local_batch=1)
            for r in range(2)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seed_everything(recipe["seed"])
        replicas = [TRAINER.build_model(recipe)]
        replicas.append(copy.deepcopy(replicas[0]))
        optimizers = [TRAINER.build_optimizer(m, recipe, data[0].steps_per_epoch) for m in replicas]
        for step in range(2):
            for model, rank_data in zip(replicas, data, strict=True):
                batch, _ = collate_pairs([rank_data.dataset[key] for key in rank_data.sampler().batch_at(step)])
                loss, _ = TRAINER.training_step(model, batch, torch.Generator(), recipe)
                model.zero_grad()
                loss.backward()
            for p0, p1 in zip(*(m.parameters() for m in replicas), strict=True):
                mean = (p0.grad + p1.grad) / 2
                p0.grad, p1.grad = mean.clone(), mean.clone()
            for optimizer, scheduler in optimizers:
                optimizer.step()
                scheduler.step()
            replicas[1].load_state_dict(replicas[0].state_dict())  # DDP broadcasts rank 0's buffers
    finally:
        torch.set_num_threads(threads)
    expected = replicas[0].state_dict()
    assert expected.keys() == ddp["model"].keys()
    for key, value in expected.items():
        torch.testing.assert_close(ddp["model"][key], value, rtol=1e-4, atol=1e-6, msg=key)
    # the two ranks saw different videos' samples (else averaging would prove nothing)
    assert data[0].sampler().batch_at(0) != data[1].sampler().batch_at(0)


def test_eval_every_writes_the_checkpoint_the_entry_and_the_curve(videos: Path, tmp_path: Path,  # noqa: F811
                                                                  capsys: pytest.CaptureFixture) -> None:
    from tests.test_runner import small_davis_root

    davis = small_davis_root(tmp_path / "davis", frames=4, sequences=("car-shadow",), scale=4)
    out = tmp_path / "run"
    assert cli(_train_args(_recipe_file(tmp_path), videos, out, 2, "--eval-every", "2", "--eval-data-root", str(davis),
                           "--eval-sequences", "car-shadow", "--eval-limit", "1")) == 0
    entries = _log(out)
    evals = [e for e in entries if e.get("kind") == "eval"]
    assert [e["step"] for e in evals] == [2]
    entry = evals[0]
    assert entry["checkpoint"] == "eval/step-2/vfs-eval.pt" and (out / entry["checkpoint"]).is_file()
    assert entry["task"] == "davis" and 0 <= entry["score"] <= 1 and entry["data"]["sequences"] == ["car-shadow"]
    assert (out / CURVE_NAME).read_text().lstrip().startswith(("<?xml", "<svg"))
    # the step checkpoint is what `harness run --method vfs --checkpoint` scores the same
    capsys.readouterr()
    assert cli(["run", "--method", "vfs", "--task", "davis", "--data-root", str(davis), "--sequences", "car-shadow",
                "--checkpoint", str(out / entry["checkpoint"]), "--device", "cpu", "--out-dir", str(tmp_path / "sep")]) == 0
    record = json.loads(Path(capsys.readouterr().out.strip().splitlines()[-1]).read_text())
    assert record["metrics"] == entry["metrics"] and record["protocol"]["hash"] == entry["protocol_hash"]


def test_bench_train_times_vfs(videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:  # noqa: F811
    report_path = tmp_path / "bench.json"
    recipe = _recipe_file(tmp_path)
    assert cli(["bench", "train", "--method", "vfs", "--recipe", str(recipe), "--data", str(videos), "--steps", "1",
                "--warmup", "1", "--log", str(tmp_path / "none.jsonl"), "--out", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    throughput, step = report["throughput"], report["model_step"]
    assert throughput["recipe"] == "vfs-cpu-demo" and throughput["batch_size"] == 2 and throughput["timed_steps"] == 1
    assert throughput["clips_per_s_median"] > 0
    assert step["batch_shape"] == [2, 2, 2, 3, 64, 64] and step["configured_same_as_float32_eager"]
    assert step["float32_eager"]["step_s_median"] > 0
