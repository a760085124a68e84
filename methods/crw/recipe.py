"""CRW's training recipe, declared: every key of ``methods/crw/recipes/*.yaml`` with its rules.

The rules reject settings that would fail (or silently do nothing) only after minutes of indexing.
Keys with a default are keys added to the recipes later: the default reproduces what checkpoints
written before them did (``harness train --resume`` fills them in). The comments of
``crw-paper.yaml`` say where each value comes from.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from harness.declared import Declared
from harness.training.recipe_model import Recipe

Pair = list[float]


class CRWData(Declared):
    fps: int | float | None = Field(gt=0, description="clips are resampled to this frame rate; null = as stored")
    clip_len: int = Field(ge=3, description="frames per clip; the shortest cycle is skipped, so T=2 has no walk")
    clips_per_video: int = Field(ge=1)
    frame_folder_fps: int | float | None = Field(gt=0, description="frame-folder videos: their frame rate")
    workers: int = Field(ge=0, description="decoding processes per rank")
    cache_dir: str | None = Field(description="video-index cache; null = the harness cache")
    augment_on: Literal["cpu", "gpu"] = Field("cpu", description="gpu: frames resized and patches cut on the GPU")


class CRWAugment(Declared):
    frame_size: int = Field(ge=1)
    frame_scale: Pair = Field(min_length=2, max_length=2)
    frame_ratio: Pair = Field(min_length=2, max_length=2)
    patch_size: int = Field(ge=1)
    patch_stride: int = Field(ge=1)
    patch_scale: Pair = Field(min_length=2, max_length=2)
    patch_ratio: Pair = Field(min_length=2, max_length=2)
    mean: list[float] = Field(min_length=3, max_length=3)
    std: list[float] = Field(min_length=3, max_length=3)


class CRWModel(Declared):
    padding: Literal["reflect", "zeros"]


class CRWLoss(Declared):
    temperature: float = Field(gt=0)
    edge_dropout: float = Field(ge=0, lt=1)
    leak_dropout: bool


class CRWRecipe(Recipe):
    """A CRW recipe: the shared ``name``/``seed``/``optim``/``train`` and CRW's data, augmentation, model and loss."""

    data: CRWData
    augment: CRWAugment
    model: CRWModel
    loss: CRWLoss
