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
import json
from pathlib import Path

from harness.facts import MethodFacts
from harness.registry import register_method, register_trainer

FACTS = MethodFacts(stride=8, dim=3, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), license="MIT", paper="none")

register_trainer("meanrgb", "meanrgb_plugin", summary="counts to a number")


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


# -- the trainer protocol: load_recipe, TrainOptions, train ------------------------------------
def load_recipe(name, overrides=None):
    return {"name": name, "overrides": list(overrides or [])}


class TrainOptions:
    def __init__(self, **options):
        self.__dict__.update(options)


def train(recipe, options):
    out = Path(options.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "checkpoint.json"
    path.write_text(json.dumps({"recipe": recipe, "steps": options.max_steps}))
    return path
'''


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway installed distribution: a module plus a dist-info with an entry point."""
    site = tmp_path_factory.mktemp("site")
    (site / "meanrgb_plugin.py").write_text(textwrap.dedent(PLUGIN))
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
    checkpoint = Path(trained.stdout.strip().splitlines()[-1])
    assert checkpoint == tmp_path / "train" / "checkpoint.json"
    assert json.loads(checkpoint.read_text()) == {"recipe": {"name": "tiny", "overrides": ["a=1"]}, "steps": 3}


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
