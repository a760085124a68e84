"""The VFS training recipe, declared: every key of ``methods/vfs/recipes/*.yaml`` with its rules
(methods/vfs/README.md lists where each published value comes from).

Recipes are read by the harness's generic recipe machinery (:mod:`harness.training.recipes`: a name
or a path, ``base:`` merged, ``--set a.b=v`` applied, typos named with the closest keys). The shared
``name``/``seed``/``train`` come from :class:`~harness.training.recipe_model.Recipe`; VFS adds its
data, augmentation, model and loss sections and replaces ``optim`` (SGD with momentum and a cosine
decay per iteration, where the default optimiser is Adam with milestones). Every key is required:
the comments of ``vfs-paper.yaml`` say where each value comes from, and a key added later gets the
default that reproduces what runs before it did (``harness train --resume`` fills it in).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from harness.declared import Declared
from harness.training.recipe_model import Recipe

Pair = list[float]


def _pair(name: str, value: Pair, low_bound: float) -> None:
    if not low_bound < value[0] <= value[1]:
        raise ValueError(f"{name} must satisfy {low_bound} < low <= high, got {value}")


class DataSection(Declared):
    """Which frames make a sample (methods/vfs/pairs.py)."""

    segments: int = Field(ge=2, description="frames drawn per video, one per equal segment; half per view")
    repeat: int = Field(ge=1, description="passes over the video list per epoch (the original's RepeatDataset)")
    fps: float | None = Field(gt=0, description="resample videos to this rate first; null = every frame")
    frame_folder_fps: float | None = Field(gt=0, description="frame rate of frame-folder videos")
    workers: int = Field(ge=0, description="decoding processes per rank")
    cache_dir: str | None = Field(description="video-index cache; null = the harness cache")

    @model_validator(mode="after")
    def _even(self) -> DataSection:
        if self.segments % 2:
            raise ValueError(f"segments must be even (half of them per view), got {self.segments}")
        return self


class AugmentSection(Declared):
    """Per-frame augmentation (methods/vfs/augment.py; field names are FrameAugment's)."""

    size: int = Field(ge=8)
    area: Pair = Field(min_length=2, max_length=2)
    ratio: Pair = Field(min_length=2, max_length=2)
    flip: float = Field(ge=0, le=1)
    jitter_p: float = Field(ge=0, le=1)
    brightness: float = Field(ge=0)
    contrast: float = Field(ge=0)
    saturation: float = Field(ge=0)
    hue: float = Field(ge=0, le=0.5)
    grayscale_p: float = Field(ge=0, le=1)
    blur_p: float = Field(ge=0, le=1)
    blur_sigma: Pair = Field(min_length=2, max_length=2)
    mean: list[float] = Field(min_length=3, max_length=3)
    std: list[float] = Field(min_length=3, max_length=3)

    @model_validator(mode="after")
    def _ranges(self) -> AugmentSection:
        _pair("area", self.area, 0)
        if self.area[1] > 1:
            raise ValueError(f"area must be at most 1 (a fraction of the frame), got {self.area}")
        _pair("ratio", self.ratio, 0)
        _pair("blur_sigma", self.blur_sigma, 0)
        return self


class ModelSection(Declared):
    """Trunk and heads (methods/vfs/model.py)."""

    arch: Literal["resnet18", "resnet50"]
    zero_init_residual: bool
    projector_layers: int = Field(ge=1)
    projector_hidden: int = Field(ge=1)
    projector_out: int = Field(ge=1)
    predictor_layers: int = Field(ge=1)
    predictor_hidden: int = Field(ge=1)
    predictor_out: int = Field(ge=1)

    @model_validator(mode="after")
    def _prediction_matches_projection(self) -> ModelSection:
        if self.predictor_out != self.projector_out:
            raise ValueError(f"predictor_out ({self.predictor_out}) must equal projector_out ({self.projector_out}): "
                             "a prediction is compared with the other view's projection")
        return self


class LossSection(Declared):
    """methods/vfs/loss.py."""

    all_pairs: bool = Field(description="compare every frame of view 1 with every frame of view 2")


class OptimSection(Declared):
    """SGD with momentum on every parameter, cosine decay per iteration from ``lr`` to ``min_lr``."""

    batch_size: int = Field(ge=1, description="GLOBAL batch of videos, split evenly over the ranks")
    lr: float = Field(gt=0)
    momentum: float = Field(ge=0, lt=1)
    weight_decay: float = Field(ge=0)
    schedule: Literal["cosine"]
    min_lr: float = Field(ge=0)
    epochs: int = Field(ge=1, description="passes over the repeated video list (data.repeat per epoch)")


class VFSRecipe(Recipe):
    """A VFS recipe: the shared ``name``/``seed``/``train``, VFS's optimiser and its data, augmentation,
    model and loss."""

    optim: OptimSection  # type: ignore[assignment]  # SGD + cosine, not the default Adam + milestones
    data: DataSection
    augment: AugmentSection
    model: ModelSection
    loss: LossSection
