"""The VFS training recipe, declared once as pydantic models (methods/vfs/README.md lists where each
published value comes from).

A recipe is a YAML file in ``methods/vfs/recipes/`` (or a path) with the sections below; ``base: NAME``
starts from another recipe and overrides only the keys it names, and ``--set a.b=v`` overrides
apply last. Every key is declared, so a typo is an error naming the key and its closest known ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from harness.config import parse_assignment
from harness.declared import Declared, did_you_mean, read_model
from harness.errors import HarnessError
from harness.io import read_yaml

RECIPE_DIR = Path(__file__).resolve().parent / "recipes"

Pair = tuple[float, float]


class DataSection(Declared):
    """Which frames make a sample (methods/vfs/pairs.py)."""

    segments: int = Field(8, ge=2, description="frames drawn per video, one per equal segment; half per view")
    repeat: int = Field(2, ge=1, description="passes over the video list per epoch (the original's RepeatDataset)")
    fps: float | None = Field(None, gt=0, description="resample videos to this rate first; null = every frame")
    frame_folder_fps: float | None = Field(None, gt=0, description="frame rate of frame-folder videos")
    workers: int = Field(8, ge=0, description="decoding processes per rank")
    cache_dir: str | None = Field(None, description="video-index cache; null = $HARNESS_CACHE or ~/.cache/harness")

    @model_validator(mode="after")
    def _even(self) -> DataSection:
        if self.segments % 2:
            raise ValueError(f"segments must be even (half of them per view), got {self.segments}")
        return self

    @property
    def frames_per_view(self) -> int:
        return self.segments // 2


class AugmentSection(Declared):
    """Per-frame augmentation (methods/vfs/augment.py; field names are FrameAugment's)."""

    size: int = Field(224, ge=8)
    area: Pair = (0.2, 1.0)
    ratio: Pair = (0.75, 1.3333333333333333)
    flip: float = Field(0.5, ge=0, le=1)
    jitter_p: float = Field(0.0, ge=0, le=1)
    brightness: float = Field(0.4, ge=0)
    contrast: float = Field(0.4, ge=0)
    saturation: float = Field(0.4, ge=0)
    hue: float = Field(0.1, ge=0, le=0.5)
    grayscale_p: float = Field(0.0, ge=0, le=1)
    blur_p: float = Field(0.0, ge=0, le=1)
    blur_sigma: Pair = (0.1, 0.2)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    @model_validator(mode="after")
    def _ranges(self) -> AugmentSection:
        if not 0 < self.area[0] <= self.area[1] <= 1:
            raise ValueError(f"area must satisfy 0 < low <= high <= 1, got {self.area}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < low <= high, got {self.ratio}")
        if not 0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"blur_sigma must satisfy 0 < low <= high, got {self.blur_sigma}")
        return self


class ModelSection(Declared):
    """Trunk and heads (methods/vfs/model.py)."""

    arch: Literal["resnet18", "resnet50"] = "resnet18"
    zero_init_residual: bool = True
    projector_layers: int = Field(3, ge=1)
    projector_hidden: int = Field(512, ge=1)
    projector_out: int = Field(512, ge=1)
    predictor_layers: int = Field(2, ge=1)
    predictor_hidden: int = Field(128, ge=1)
    predictor_out: int = Field(512, ge=1)

    @model_validator(mode="after")
    def _prediction_matches_projection(self) -> ModelSection:
        if self.predictor_out != self.projector_out:
            raise ValueError(f"predictor_out ({self.predictor_out}) must equal projector_out ({self.projector_out}): "
                             "a prediction is compared with the other view's projection")
        return self


class LossSection(Declared):
    """methods/vfs/loss.py."""

    all_pairs: bool = Field(True, description="compare every frame of view 1 with every frame of view 2")


class OptimSection(Declared):
    """SGD with momentum, cosine decay per iteration to ``min_lr``."""

    batch_size: int = Field(64, ge=1, description="GLOBAL batch of videos, split evenly over ranks")
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    schedule: Literal["cosine"] = "cosine"
    min_lr: float = Field(0.0, ge=0)
    epochs: int = Field(100, ge=1)


class TrainSection(Declared):
    """Loop settings that do not change what is learnt."""

    checkpoint_every: int = Field(2000, ge=1, description="steps; a checkpoint is also written at the end")


class VFSRecipe(Declared):
    """A whole VFS recipe."""

    name: str
    seed: int = 0
    data: DataSection = DataSection()
    augment: AugmentSection = AugmentSection()
    model: ModelSection = ModelSection()
    loss: LossSection = LossSection()
    optim: OptimSection = OptimSection()
    train: TrainSection = TrainSection()


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def _recipe_path(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    path = RECIPE_DIR / f"{name}.yaml"
    if not path.is_file():
        raise HarnessError(f"unknown VFS recipe {name!r}.{did_you_mean(name, recipe_names())} "
                           f"Known: {', '.join(recipe_names())}")
    return path


def _merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _raw(name: str, seen: tuple[Path, ...]) -> dict[str, Any]:
    path = _recipe_path(name).resolve()
    if path in seen:
        raise HarnessError(f"recipe {path} includes itself through `base:`")
    raw = read_yaml(path, "VFS recipe") or {}
    if not isinstance(raw, dict):
        raise HarnessError(f"recipe {path} must be a mapping of sections")
    base = raw.pop("base", None)
    if base is None:
        return raw
    merged = _raw(str(base), (*seen, path))
    _merge(merged, raw)
    return merged


def _set(recipe: dict[str, Any], dotted: str, value: Any) -> None:
    *sections, key = dotted.split(".")
    node = recipe
    for part in sections:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise HarnessError(f"--set {dotted}: {part!r} is not a section")
    node[key] = value


def load_recipe(name: str, overrides: list[str] | None = None) -> VFSRecipe:
    """A recipe by name (``methods/vfs/recipes/NAME.yaml``) or YAML path, ``base:`` resolved, ``a.b=v`` overrides applied."""
    raw = _raw(name, ())
    for item in overrides or []:
        _set(raw, *parse_assignment(item))
    return read_model(VFSRecipe, raw, f"VFS recipe {name}")
