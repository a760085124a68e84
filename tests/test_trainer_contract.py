"""The trainer contract: the registry refuses incomplete trainers; a toy trainer (one conv on random tensors, no
video) trains through the harness's loop, logs its own diagnostics, resumes exactly, and equals a hand-written
loop; recipes merge ``base:``, read ``--set`` numbers and suggest known keys."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from pydantic import Field

from harness.declared import Declared
from harness.errors import HarnessError
from harness.registry import TrainerEntry, get_trainer, register_trainer
from harness.training import loop
from harness.training.contract import Trainer
from harness.training.data import TrainData
from harness.training.options import TrainOptions
from harness.training.recipe_model import Recipe
from harness.training.recipes import load_recipe
from harness.training.rng import mix_seed, seed_everything
from harness.training.state import LOG_NAME

pytestmark = pytest.mark.usefixtures("single_thread")

TOY = {
    "name": "toy",
    "seed": 3,
    "data": {"samples": 12, "workers": 0},
    "model": {"channels": 3},
    "optim": {"batch_size": 2, "lr": 0.01, "weight_decay": 0.0, "epochs": 2, "milestones": [1], "gamma": 0.5},
    "train": {"amp": "auto", "checkpoint_every": 2},
}


class ToyData(Declared):
    samples: int = Field(ge=1)
    workers: int = Field(0, ge=0)


class ToyModel(Declared):
    channels: int = Field(ge=1)


class ToyRecipe(Recipe):
    data: ToyData
    model: ToyModel


@dataclass(frozen=True)
class ToyFile:
    path: Path
    size: int
    sha256: str


class ToySampler(torch.utils.data.Sampler):
    """Batches of ``(index, seed)`` keys; a step's keys depend only on (seed, epoch, position)."""

    def __init__(self, samples: int, batch: int, seed: int, rank: int, world: int, start: int = 0,
                 total: int | None = None) -> None:
        self.samples, self.batch, self.seed, self.rank, self.world = samples, batch, seed, rank, world
        self.start, self.total = start, total
        self.steps_per_epoch = samples // world // batch

    def batch_at(self, step: int) -> list[tuple[int, int]]:
        epoch, i = divmod(step, self.steps_per_epoch)
        order = torch.randperm(self.samples, generator=torch.Generator().manual_seed(mix_seed(self.seed, epoch))).tolist()
        mine = order[self.rank :: self.world][i * self.batch : (i + 1) * self.batch]
        return [(p, mix_seed(self.seed, epoch, p)) for p in mine]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start
        while self.total is None or step < self.total:
            yield self.batch_at(step)
            step += 1

    def __len__(self) -> int:
        return (self.total or self.steps_per_epoch) - self.start


class ToyDataset(torch.utils.data.Dataset):
    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:  # type: ignore[override]
        return torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(key[1])), 0

    def __len__(self) -> int:
        return 0


def toy_collate(samples: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, int]:
    return torch.stack([s[0] for s in samples]), sum(s[1] for s in samples)


class ToyTrainer(Trainer):
    """Learns to shift an image one pixel to the right, with a random mask over the loss."""

    method = "toy"
    recipe_model = ToyRecipe
    recipe_dir = Path("/nonexistent")  # set per test (tmp folders)
    curve_metric = "mse"

    def build_model(self, recipe: dict[str, Any]) -> torch.nn.Module:
        return torch.nn.Conv2d(3, recipe["model"]["channels"], 3, padding=1)

    def build_data(self, recipe: dict[str, Any], roots: list[Path], *, device: torch.device, rank: int,
                   world_size: int, local_batch: int) -> TrainData:
        files = sorted(p for root in roots for p in Path(root).rglob("*") if p.is_file())
        items = [ToyFile(p, p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest()) for p in files]

        def sampler(start: int = 0, total: int | None = None) -> ToySampler:
            return ToySampler(recipe["data"]["samples"], local_batch, recipe["seed"], rank, world_size, start, total)

        return TrainData(ToyDataset(), sampler, toy_collate, sampler().steps_per_epoch, items, recipe["data"]["workers"])

    def training_step(self, forward: Any, batch: torch.Tensor, generator: torch.Generator,
                      recipe: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        out = forward(batch)
        error = (out - batch.roll(1, dims=-1)) ** 2
        mask = (torch.rand(error.shape, generator=generator) > 0.2).float()
        loss = (error * mask).mean()
        error = error.detach()
        return loss, {"mse": float(error.mean()), "parts": {"left": float(error[..., :4].mean()),
                                                          "right": float(error[..., 4:].mean())}}

    def export_eval(self, model_state: dict[str, torch.Tensor], recipe: dict[str, Any], step: int, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": model_state, "step": step}, path)
        return path


@pytest.fixture
def toy(tmp_path: Path) -> Trainer:
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "toy.yaml").write_text(yaml.safe_dump(TOY))
    (recipes / "toy-wide.yaml").write_text(yaml.safe_dump({"base": "toy", "name": "toy-wide", "model": {"channels": 3},
                                                           "optim": {"lr": 0.05}}))
    return type("ToyHere", (ToyTrainer,), {"recipe_dir": recipes})()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    for i in range(3):
        (root / f"item{i}.bin").write_bytes(bytes([i]) * (10 + i))
    return root


def _run(trainer: Trainer, data: Path, out: Path, steps: int, resume: bool = False) -> dict[str, Any]:
    recipe = load_recipe(trainer, "toy")
    final = loop.train(trainer, recipe, TrainOptions(data=[data], out_dir=out, max_steps=steps, resume=resume,
                                                      device="cpu", progress=False))
    assert final == out / "train-state.pt"
    return torch.load(final, weights_only=True)


class Incomplete(Trainer):
    """Declares its method and a model, nothing else."""

    method = "incomplete"

    def build_model(self, recipe: dict[str, Any]) -> torch.nn.Module:
        return torch.nn.Identity()


def test_registering_an_incomplete_trainer_is_refused_naming_what_lacks() -> None:
    with pytest.raises(HarnessError, match=r"lacks class attributes recipe_model, recipe_dir, curve_metric and "
                                           r"methods build_data, export_eval, training_step"):
        register_trainer("incomplete-toy", Incomplete, summary="lacks members")
    with pytest.raises(HarnessError, match="not a subclass of harness.training.Trainer"):
        register_trainer("not-a-trainer", dict, summary="a dict")
    with pytest.raises(HarnessError, match="expected 'module:Class'"):
        register_trainer("bad-target", "tests.test_trainer_contract", summary="no class")
    with pytest.raises(HarnessError, match="unknown trainer 'incomplete-toy'"):
        get_trainer("incomplete-toy")  # the refused registration left nothing behind
    # a trainer named by "module:Class" is checked when loaded
    with pytest.raises(HarnessError, match="lacks class attributes recipe_model"):
        TrainerEntry("later", f"{__name__}:Incomplete", "checked on load").load()
    with pytest.raises(HarnessError, match="has no 'Missing'"):
        TrainerEntry("later", f"{__name__}:Missing", "no such class").load()
    assert isinstance(TrainerEntry("toy", f"{__name__}:ToyTrainer", "complete").load(), ToyTrainer)


def test_toy_trainer_trains_logs_its_diagnostics_and_resumes_exactly(toy: Trainer, data: Path, tmp_path: Path) -> None:
    straight = _run(toy, data, tmp_path / "straight", 3)
    assert straight["step"] == 3 and straight["world_size"] == 1 and sorted(straight["data_fingerprint"]) == [
        "item0.bin", "item1.bin", "item2.bin"]
    lines = [json.loads(line) for line in (tmp_path / "straight" / LOG_NAME).read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3]
    assert list(lines[0])[:5] == ["step", "epoch", "loss", "mse", "parts"] and set(lines[0]["parts"]) == {"left", "right"}
    assert (tmp_path / "straight" / "toy-eval.pt").is_file() and (tmp_path / "straight" / "recipe.yaml").is_file()

    with pytest.raises(HarnessError, match="train-state.pt exists: pass --resume"):
        _run(toy, data, tmp_path / "straight", 3)

    broken = tmp_path / "broken"
    assert _run(toy, data, broken, 2)["step"] == 2
    resumed = _run(toy, data, broken, 3, resume=True)
    for key, value in straight["model"].items():
        assert torch.equal(resumed["model"][key], value), key
    assert straight["optimizer"]["state"][0]["exp_avg"].equal(resumed["optimizer"]["state"][0]["exp_avg"])
    again = [json.loads(line) for line in (broken / LOG_NAME).read_text().splitlines()]
    assert [(e["loss"], e["mse"], e["parts"]) for e in again] == [(e["loss"], e["mse"], e["parts"]) for e in lines]


def test_the_loop_equals_a_hand_written_loop(toy: Trainer, data: Path, tmp_path: Path) -> None:
    """Seed, build, Adam, and a masked step with the generator of (seed, step, rank): written out by hand."""
    state = _run(toy, data, tmp_path / "run", 3)
    recipe = load_recipe(toy, "toy")
    seed_everything(recipe["seed"])
    model = torch.nn.Conv2d(3, 3, 3, padding=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    sampler = ToySampler(12, 2, 3, 0, 1)
    losses = []
    for step in range(3):
        batch = torch.stack([ToyDataset()[key][0] for key in sampler.batch_at(step)])
        error = (model(batch) - batch.roll(1, dims=-1)) ** 2
        mask = (torch.rand(error.shape, generator=torch.Generator().manual_seed(mix_seed(3, step, 2, 0))) > 0.2).float()
        loss = (error * mask).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    for key, value in model.state_dict().items():
        torch.testing.assert_close(state["model"][key], value, rtol=0, atol=1e-7, msg=key)
    logged = [json.loads(line)["loss"] for line in (tmp_path / "run" / LOG_NAME).read_text().splitlines()]
    assert logged == pytest.approx(losses, rel=1e-6)


def test_recipes_merge_their_base_read_numbers_and_suggest_keys(toy: Trainer) -> None:
    wide = load_recipe(toy, "toy-wide")
    assert wide["name"] == "toy-wide" and wide["optim"]["lr"] == 0.05
    assert wide["optim"]["batch_size"] == 2 and wide["data"] == {"samples": 12, "workers": 0}  # from the base
    assert wide["train"]["compile"] == "auto"  # a declared default

    tuned = load_recipe(toy, "toy", ["optim.lr=3e-4", "optim.batch_size=4"])  # YAML 1.1 reads 3e-4 as a string
    assert tuned["optim"]["lr"] == 3e-4 and isinstance(tuned["optim"]["lr"], float)
    assert tuned["optim"]["batch_size"] == 4 and isinstance(tuned["optim"]["batch_size"], int)

    with pytest.raises(HarnessError, match=r"--set optim\.lrr: unknown recipe key\. Did you mean: optim\.lr\b"):
        load_recipe(toy, "toy", ["optim.lrr=1"])
    with pytest.raises(HarnessError, match="--set optim: is a section"):
        load_recipe(toy, "toy", ["optim=1"])
    with pytest.raises(HarnessError, match=r"key 'optim.lr': .*greater than 0"):
        load_recipe(toy, "toy", ["optim.lr=0"])
    with pytest.raises(HarnessError, match=r"key 'optim.batch_size': .*integer"):
        load_recipe(toy, "toy", ["optim.batch_size=2.5"])
    with pytest.raises(HarnessError, match="unknown recipe 'toyy'. Did you mean: toy"):
        load_recipe(toy, "toyy")


def test_a_recipe_file_with_a_typo_names_the_key(toy: Trainer, tmp_path: Path) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump({"base": "toy", "optim": {"bacth_size": 4}}))
    with pytest.raises(HarnessError, match=r"unknown key 'optim.bacth_size'. Did you mean: optim.batch_size"):
        load_recipe(toy, str(typo))
