"""``harness train --eval-every``: scores equal to a separate ``harness run`` of the saved checkpoint; resume continues them.

Training runs the tiny recipe of test_crw_train on synthetic frame-folder videos; evaluation runs
on real frames kept cheap: the first 5 frames of the shipped DAVIS sample's car-shadow, at a
quarter of their size.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.data.roots import SAMPLE_DIR
from harness.training.curve import CURVE_NAME
from harness.training.state import LOG_NAME
from tests.test_crw_train import _recipe_file, videos  # noqa: F401  (the fixture is used by name)

pytestmark = pytest.mark.usefixtures("single_thread")
SEQUENCE = "car-shadow"


@pytest.fixture(scope="module")
def davis_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DAVIS-2017 layout root with the first 5 real car-shadow frames and masks, downscaled 4x."""
    source = SAMPLE_DIR / "davis"
    frames = sorted((source / "JPEGImages" / "480p" / SEQUENCE).glob("*.jpg"))[:5]
    if not frames:
        pytest.skip(f"the shipped DAVIS sample ({source}) has no {SEQUENCE} frames")
    root = tmp_path_factory.mktemp("davis")
    images, masks = root / "JPEGImages" / "480p" / SEQUENCE, root / "Annotations" / "480p" / SEQUENCE
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    for frame in frames:
        image = Image.open(frame)
        size = (image.width // 4, image.height // 4)
        image.resize(size, Image.BILINEAR).save(images / frame.name, quality=95)
        mask = Image.open(source / "Annotations" / "480p" / SEQUENCE / f"{frame.stem}.png")
        small = mask.resize(size, Image.NEAREST)
        assert small.mode == "P" and np.asarray(small).max() >= 1
        small.save(masks / f"{frame.stem}.png")
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text(f"{SEQUENCE}\n")
    return root


def _entries(out_dir: Path) -> tuple[list[dict], list[dict]]:
    lines = [json.loads(line) for line in (out_dir / LOG_NAME).read_text().splitlines() if line.strip()]
    return [e for e in lines if e.get("kind") != "eval"], [e for e in lines if e.get("kind") == "eval"]


def test_eval_every_matches_harness_run_and_resumes(videos: Path, davis_root: Path, tmp_path: Path,  # noqa: F811
                                                    capsys: pytest.CaptureFixture) -> None:
    from harness.cli import main as cli

    recipe = _recipe_file(tmp_path, edge_dropout=0.1)
    base = ["train", "--method", "crw", "--recipe", str(recipe), "--data", str(videos), "--device", "cpu",
            "--no-progress", "--eval-every", "2", "--eval-data-root", str(davis_root), "--eval-sequences", SEQUENCE]
    straight, broken = tmp_path / "straight", tmp_path / "broken"

    assert cli([*base, "--out-dir", str(straight), "--max-steps", "4"]) == 0
    steps, evals = _entries(straight)
    assert [e["step"] for e in steps] == [1, 2, 3, 4]
    assert [e["step"] for e in evals] == [2, 4]
    for entry in evals:
        assert entry["task"] == "davis" and entry["metric"] == "J&F-Mean" and 0 <= entry["score"] <= 1
        assert entry["checkpoint"] == f"eval/step-{entry['step']}/crw-eval.pt"
        assert entry["data"]["sequences"] == [SEQUENCE] and entry["timing"]["wall_s"] > 0
    assert (straight / CURVE_NAME).read_text().lstrip().startswith(("<?xml", "<svg"))

    # The same checkpoint through `harness run`: the same scores and protocol hash.
    capsys.readouterr()
    for entry in evals:
        assert cli(["run", "--method", "crw", "--task", "davis", "--data-root", str(davis_root), "--sequences", SEQUENCE,
                    "--checkpoint", str(straight / entry["checkpoint"]), "--device", "cpu",
                    "--out-dir", str(tmp_path / f"separate-{entry['step']}")]) == 0
        record = json.loads(Path(capsys.readouterr().out.strip().splitlines()[-1]).read_text())
        assert record["metrics"] == entry["metrics"]
        assert record["protocol"]["hash"] == entry["protocol_hash"]
        assert record["checkpoint"]["sha256"] == entry["checkpoint_sha256"]

    # Stopped after step 2 (its evaluation logged), then resumed: step 2 is not evaluated again, step 4 is.
    assert cli([*base, "--out-dir", str(broken), "--max-steps", "2"]) == 0
    assert [e["step"] for e in _entries(broken)[1]] == [2]
    assert cli([*base, "--out-dir", str(broken), "--max-steps", "4", "--resume"]) == 0
    resumed_steps, resumed_evals = _entries(broken)
    assert [e["step"] for e in resumed_steps] == [1, 2, 3, 4]
    assert [e["step"] for e in resumed_evals] == [2, 4]
    assert [e["metrics"] for e in resumed_evals] == [e["metrics"] for e in evals]  # exact resume: same weights


def test_eval_flags_need_eval_every(videos: Path, tmp_path: Path) -> None:  # noqa: F811
    from harness.cli import main as cli

    recipe = _recipe_file(tmp_path, edge_dropout=0.0)
    code = cli(["train", "--method", "crw", "--recipe", str(recipe), "--data", str(videos), "--out-dir", str(tmp_path / "x"),
                "--eval-sequences", SEQUENCE])
    assert code != 0
