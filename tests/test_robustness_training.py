"""Training, checkpoints, pretrained weights and sweeps: inputs that used to give a silent wrong result
or an unusable message (issue 25, second round).

Training uses the tiniest recipe of tests/test_crw_train.py (48-px frames, 3x3 nodes, 3-frame clips,
synthetic frame-folder videos), so a step takes a fraction of a second on a CPU.
"""

from __future__ import annotations

import copy
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from harness.errors import HarnessError

TINY = {
    "base": "crw-cpu-demo",
    "seed": 5,
    "data": {"fps": None, "clip_len": 3, "clips_per_video": 5, "workers": 0},
    "augment": {"frame_size": 48, "patch_size": 16, "patch_stride": 16},
    "optim": {"batch_size": 2, "lr": 1.0e-3},
    "train": {"checkpoint_every": 2},
}


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
    from methods.crw.train import load_recipe

    tiny = copy.deepcopy(TINY)
    tiny["data"]["cache_dir"] = str(tmp_path / "cache")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny))
    return load_recipe(str(path))


# -- 1. resume notices changed training videos ------------------------------------------------


def test_resume_refuses_training_videos_that_changed(videos: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from methods.crw.train import CHECKPOINT_NAME, TrainOptions, train

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
