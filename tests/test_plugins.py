"""The registry is the only plug-in point: a third-party distribution (nothing edited under
``harness/``) registers a method and its trainer through an entry point, and ``harness run`` and
``harness train`` use both; and no harness module names a method module."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.test_runner import small_davis_root

REPO = Path(__file__).resolve().parents[1]

PLUGIN = '''
"""A third-party method and its trainer, registered on import (the entry point names this module)."""
from harness.facts import MethodFacts
from harness.registry import register_method, register_trainer

FACTS = MethodFacts(stride=8, dim=3, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), license="MIT", paper="none")

register_trainer("meanrgb", "meanrgb_train:Train", summary="fits a 1x1 conv to the identity")


@register_method("meanrgb", summary="mean RGB over 8x8 cells (third-party)", facts=FACTS)
def create(config):
    import torch.nn.functional as F

    from harness.method import Method

    class MeanRGB(Method):
        name = "meanrgb"
        facts = FACTS

        def embed(self, frames):
            return F.avg_pool2d(frames, 8, ceil_mode=True)

        def describe(self):
            return {"backbone": "none", "parameters": 0, "pretraining": "none", "checkpoint": None}

    return MeanRGB(config)
'''

TRAINER = '''
"""Its trainer, in a module of its own: imported (with torch) only when `harness train` loads it."""
from pathlib import Path

# -- the trainer contract (harness.training.contract): a recipe model and four methods ---------
import torch
from pydantic import Field

from harness.training.contract import Trainer
from harness.training.data import TrainData
from harness.training.recipe_model import Recipe


class TinyRecipe(Recipe):
    a: int = Field(0, ge=0)


class Noise(torch.utils.data.Dataset):
    def __getitem__(self, key):
        return torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(key)), 0


class Batches(torch.utils.data.Sampler):
    def __init__(self, start, total):
        self.start, self.total = start, total

    def __iter__(self):
        return iter([[2 * step, 2 * step + 1] for step in range(self.start, self.total)])


class Item:
    def __init__(self, path):
        self.path, self.size, self.sha256 = path, path.stat().st_size, "unhashed"


class Train(Trainer):
    method = "meanrgb"
    recipe_model = TinyRecipe
    recipe_dir = Path(__file__).parent / "meanrgb_recipes"
    curve_metric = "err"

    def build_model(self, recipe):
        return torch.nn.Conv2d(3, 3, 1)

    def build_data(self, recipe, roots, *, device, rank, world_size, local_batch):
        items = [Item(p) for root in roots for p in sorted(Path(root).rglob("*.png"))]
        return TrainData(Noise(), lambda start=0, total=None: Batches(start, total or 100),
                         lambda samples: (torch.stack([s[0] for s in samples]), 0), 100, items)

    def training_step(self, forward, batch, generator, recipe):
        loss = ((forward(batch) - batch) ** 2).mean()
        return loss, {"err": float(loss.detach())}

    def export_eval(self, model_state, recipe, step, path):
        torch.save({"model": model_state, "step": step}, path)
        return path
'''


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway installed distribution: a module plus a dist-info with an entry point."""
    site = tmp_path_factory.mktemp("site")
    (site / "meanrgb_plugin.py").write_text(textwrap.dedent(PLUGIN))
    (site / "meanrgb_train.py").write_text(textwrap.dedent(TRAINER))
    (site / "meanrgb_recipes").mkdir()
    (site / "meanrgb_recipes" / "tiny.yaml").write_text(
        "name: tiny\nseed: 0\noptim: {batch_size: 2, lr: 0.01, weight_decay: 0, epochs: 1, milestones: [], gamma: 1}\n"
        "train: {amp: off, checkpoint_every: 2}\n")
    info = site / "meanrgb_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: meanrgb-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[harness.methods]\nmeanrgb = meanrgb_plugin\n")
    return site


def _harness(args: list[str], site: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


def test_third_party_method_and_trainer_run_through_the_cli(plugin_dir: Path, tmp_path: Path) -> None:
    listed = _harness(["list", "methods"], plugin_dir, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "meanrgb" in listed.stdout and "mean RGB over 8x8 cells (third-party) [trainable]" in listed.stdout

    root = small_davis_root(tmp_path / "davis", frames=3, sequences=("car-shadow",))
    ran = _harness(["run", "--method", "meanrgb", "--task", "davis", "--data-root", str(root),
                    "--out-dir", str(tmp_path / "run")], plugin_dir, tmp_path)
    assert ran.returncode == 0, ran.stderr
    record = json.loads(Path(ran.stdout.strip().splitlines()[-1]).read_text())
    assert record["method"] == "meanrgb" and record["method_info"]["dim"] == 3
    assert 0 <= record["metrics"]["J&F-Mean"] <= 1

    trained = _harness(["train", "--method", "meanrgb", "--recipe", "tiny", "--data", str(root),
                        "--out-dir", str(tmp_path / "train"), "--max-steps", "3", "--set", "a=1"], plugin_dir, tmp_path)
    assert trained.returncode == 0, trained.stderr
    import torch

    checkpoint = Path(trained.stdout.strip().splitlines()[-1])
    assert checkpoint == tmp_path / "train" / "train-state.pt"  # the contract's default state file
    state = torch.load(checkpoint, weights_only=True)
    assert state["step"] == 3 and state["recipe"]["name"] == "tiny" and state["recipe"]["a"] == 1
    assert torch.load(tmp_path / "train" / "meanrgb-eval.pt", weights_only=True)["step"] == 3
    lines = [json.loads(line) for line in (tmp_path / "train" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3] and all(line["err"] >= 0 for line in lines)


def test_unknown_trainer_suggests_the_registered_ones(tmp_path: Path) -> None:
    from harness.errors import HarnessError
    from harness.registry import get_trainer, list_trainers

    assert "crw" in list_trainers() and "pixels" not in list_trainers()
    with pytest.raises(HarnessError, match="Did you mean: crw"):
        get_trainer("crww")


def _names_a_method_module(node: ast.AST) -> str | None:
    if isinstance(node, ast.Import):
        return next((a.name for a in node.names if a.name == "methods" or a.name.startswith("methods.")), None)
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return node.module if node.module == "methods" or node.module.startswith("methods.") else None
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("methods."):
        return node.value  # importlib.import_module("methods.x") or a table of module names
    return None


def test_no_harness_module_names_a_method_module() -> None:
    offenders = []
    for path in sorted((REPO / "harness").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
        offenders += [f"{path.relative_to(REPO)}:{getattr(n, 'lineno', '?')}: {name}"
                      for n in ast.walk(tree) if id(n) not in docstrings and (name := _names_a_method_module(n))]
    assert not offenders, offenders


def test_every_declared_weights_file_matches_its_digest() -> None:
    import importlib

    from harness import registry
    from harness.io import sha256_file

    for name in registry.list_methods():
        entry = registry.get_method(name)
        if entry.facts.weights:
            package = Path(importlib.import_module(entry.factory.__module__).__file__).parent
            assert sha256_file(package / entry.facts.weights) == entry.facts.weights_sha256, name
