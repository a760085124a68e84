"""timm backbones as feature extractors: which level, which weights, which surgery.

This is the heavy half of ``methods.timm_models`` and ``methods.effnet_lite`` (it imports torch
and timm), kept apart so that registering those methods costs nothing at ``harness list``.

Choices that move the numbers, made explicit because published baselines differ on them:
- The level is a timm ``feature_info`` entry, read with ``forward_intermediates`` (so its stride and
  width come from timm's own bookkeeping and the unused tail of the network is pruned away).
- ``@crw`` is CRW's surgery on a ResNet: every conv in layer3/layer4 gets stride 1 and *no*
  dilation. timm's ``output_stride=8`` dilates instead, which is a different network.
- ViTs run with a dynamic image size, padded to a multiple of the patch, prefix tokens dropped and
  the final norm applied (as DINO's evaluation does), so a 480×854 frame gives a 30×54 grid.
"""

from __future__ import annotations

import inspect
import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import timm
import torch
import torch.nn.functional as F
from torch import nn

from harness.declared import did_you_mean
from harness.errors import CheckpointError, HarnessError, MethodError
from harness.io import sha256_file
from harness.method import Method, count_parameters
from harness.safe_load import load_weights_only

CRW_SUFFIX = "@crw"
CRW_LEVEL = "layer3"
TARGET_STRIDE = 8
HUB_TIMEOUT_S = 3.0
_SHOWN_KEYS = 10


@dataclass(frozen=True)
class Level:
    """One ``feature_info`` entry: its index for ``forward_intermediates``, module, width and stride."""

    index: int
    module: str
    dim: int
    stride: int

    def label(self) -> str:
        return f"{self.module} ({self.dim}-d, stride {self.stride})"


# -- names -------------------------------------------------------------------------------------
def parse_name(name: str) -> tuple[str, bool]:
    """``resnet18@crw`` → ``("resnet18", True)``; the model name must be one timm knows."""
    crw = name.endswith(CRW_SUFFIX)
    model_name = name[: -len(CRW_SUFFIX)] if crw else name
    arch, _tag = timm.models.split_model_name_tag(model_name)
    if not timm.is_model(arch):
        hint = did_you_mean(arch, timm.list_models())
        raise HarnessError(f"timm has no model {arch!r}.{hint} `python -c \"import timm; print(timm.list_models())\"` lists them.")
    return model_name, crw


def meta_model(model_name: str) -> nn.Module:
    """The model built on the meta device: its feature_info and pretrained config, no memory or init cost."""
    with torch.device("meta"):
        return timm.create_model(model_name, pretrained=False, num_classes=0)


def _create_kwargs(model_name: str) -> dict[str, Any]:
    """ViT-like models take any frame size (padded to the patch) instead of their training size."""
    accepted = inspect.signature(type(meta_model(model_name)).__init__).parameters
    return {key: True for key in ("dynamic_img_size", "dynamic_img_pad") if key in accepted}


# -- levels ------------------------------------------------------------------------------------
def feature_levels(model: nn.Module, crw: bool = False) -> list[Level]:
    """The model's ``feature_info`` as :class:`Level` s; after CRW surgery layer3/4 keep layer2's stride."""
    info = getattr(model, "feature_info", None)
    if not info:
        raise MethodError(f"timm model {type(model).__name__} declares no feature levels (feature_info)")
    levels = [Level(i, f["module"], int(f["num_chs"]), int(f["reduction"])) for i, f in enumerate(info)]
    if crw:
        _require_resnet(model)
        base = next(lv.stride for lv in levels if lv.module == "layer2")
        levels = [Level(lv.index, lv.module, lv.dim, base) if lv.module in ("layer3", "layer4") else lv
                  for lv in levels]
    return levels


def default_level(levels: list[Level]) -> Level:
    """The deepest level at stride 8; failing that, the deepest at the finest stride coarser than 8.

    CNNs thus give their stride-8 stage and ViTs (stride = patch size everywhere) their last block.
    """
    coarse = [lv for lv in levels if lv.stride >= TARGET_STRIDE] or levels
    finest = min(lv.stride for lv in coarse)
    return [lv for lv in coarse if lv.stride == finest][-1]


def choose_level(levels: list[Level], layer: Any) -> Level:
    """``layer`` is a feature_info index (negative counts from the end) or a module name (``blocks.4``)."""
    if layer is None:
        return default_level(levels)
    text = str(layer).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if -len(levels) <= index < len(levels):
            return levels[index]
    for level in levels:
        if level.module == text:
            return level
    options = ", ".join(f"{lv.index}={lv.label()}" for lv in levels)
    raise HarnessError(f"method.layer={layer!r} is not a feature level of this model; choose one of: {options}")


# -- CRW surgery -------------------------------------------------------------------------------
def crw_surgery(model: nn.Module) -> None:
    """Stride 1 for every conv in layer3/layer4 (downsample convs included), no dilation added.

    Refuses networks where that would not give CRW's encoder: dilated convs (timm
    ``output_stride``) or strided pools/blur layers that a stride change cannot remove.
    """
    _require_resnet(model)
    for stage in ("layer3", "layer4"):
        for name, module in getattr(model, stage).named_modules():
            where = f"{stage}.{name}"
            if isinstance(module, nn.Conv2d):
                if module.dilation != (1, 1):
                    raise MethodError(f"{where} is dilated {module.dilation}; CRW surgery expects an undilated ResNet")
                module.stride = (1, 1)
            elif next(module.children(), None) is None and _stride_above_one(getattr(module, "stride", 1)):
                raise MethodError(f"{where} ({type(module).__name__}) downsamples; CRW surgery cannot remove it")


def _require_resnet(model: nn.Module) -> None:
    if not isinstance(model, timm.models.ResNet):
        raise HarnessError(f"'{CRW_SUFFIX}' applies to timm ResNets only, not {type(model).__name__}")


def _stride_above_one(stride: Any) -> bool:
    values = stride if isinstance(stride, (tuple, list)) else (stride,)
    return any(int(v) > 1 for v in values)


# -- weights -----------------------------------------------------------------------------------
def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` or torch file (``weights_only=True``); ``state_dict``/``model`` wrappers and
    a DDP ``module.`` prefix are unwrapped. Anything else is a :class:`CheckpointError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state: Any = load_file(str(path))
        except Exception as err:  # a corrupt file: the user's to fix, not a bug
            raise CheckpointError(f"weights file {path}: cannot be read as a state dict ({err})") from err
    else:
        state = load_weights_only(path, "weights file")
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"weights file {path}: expected a mapping of parameter names to tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _head_prefixes(model: nn.Module) -> tuple[str, ...]:
    classifier = getattr(model, "pretrained_cfg", {}).get("classifier") or ()
    names = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    return tuple(f"{n}." for n in names)


def _listing(keys: list[str]) -> str:
    more = f" … and {len(keys) - _SHOWN_KEYS} more" if len(keys) > _SHOWN_KEYS else ""
    return ", ".join(keys[:_SHOWN_KEYS]) + more


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` strictly, except for the classifier head (named by timm's pretrained config), which the
    features never use. Missing, unexpected or misshapen keys raise :class:`CheckpointError` naming them."""
    heads = _head_prefixes(model)
    wanted = {k: v for k, v in model.state_dict().items() if not k.startswith(heads)}
    given = {k: v for k, v in state.items() if not k.startswith(heads)}
    missing = [k for k in wanted if k not in given]
    unexpected = [k for k in given if k not in wanted]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}")
    misshapen = [f"{k} {tuple(given[k].shape)} vs {tuple(v.shape)}" for k, v in wanted.items()
                 if k in given and given[k].shape != v.shape]
    if misshapen:
        problems.append(f"{len(misshapen)} keys of the wrong shape (file vs model): {_listing(misshapen)}")
    if problems:
        ignored = f" (classifier keys {', '.join(heads)}* are ignored)" if heads else ""
        raise CheckpointError(f"{source} does not fit {type(model).__name__}{ignored}: " + "; ".join(problems))
    model.load_state_dict(given, strict=False)


def _cached_hub_file(cfg: dict[str, Any]) -> str | None:
    """A pretrained file already in the local Hugging Face or torch hub cache, if any."""
    if cfg.get("hf_hub_id"):
        from huggingface_hub import try_to_load_from_cache

        for filename in (cfg.get("hf_hub_filename") or "model.safetensors", "pytorch_model.bin"):
            hit = try_to_load_from_cache(cfg["hf_hub_id"], filename)
            if isinstance(hit, str):
                return hit
    if cfg.get("url"):
        local = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(cfg["url"]).path)
        if local.is_file():
            return str(local)
    return None


def _hub_host(cfg: dict[str, Any]) -> str:
    if cfg.get("hf_hub_id"):
        from huggingface_hub import constants

        return urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    return urlparse(cfg["url"]).hostname or ""


def _reachable(host: str) -> bool:
    """One quick TCP connect, so an offline machine does not sit through the hub client's retries."""
    try:
        socket.create_connection((host, 443), timeout=HUB_TIMEOUT_S).close()
    except OSError:
        return False
    return True


def create_random(model_name: str, kwargs: dict[str, Any], seed: int) -> nn.Module:
    """Random weights from a fixed seed, so a random-init baseline is the same network in every run."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return timm.create_model(model_name, pretrained=False, num_classes=0, **kwargs)


def create_pretrained(model_name: str, kwargs: dict[str, Any]) -> tuple[nn.Module, str]:
    """The model with timm's hub weights, and an honest description of what it got.

    Order: local hub cache → download when the hub answers. Weights that cannot be had are an error,
    never random weights in their place: a run asked for pretrained features, and a number from a
    random network under that name is read as the pretrained one.
    """
    cfg = dict(meta_model(model_name).pretrained_cfg)
    label = f"timm hub {cfg.get('architecture', model_name)}.{cfg.get('tag') or 'default'}"
    advice = "Pass --weights PATH (a state dict or .safetensors) or use random weights with --set method.pretrained=false."
    if not (cfg.get("hf_hub_id") or cfg.get("url")):
        raise HarnessError(f"timm has no pretrained weights for {model_name!r}. {advice}")
    cached = _cached_hub_file(cfg)
    if cached:
        model = timm.create_model(model_name, pretrained=True, num_classes=0,
                                  pretrained_cfg_overlay={"file": cached}, **kwargs)
        return model, f"{label} (cached {cached})"
    host = _hub_host(cfg)
    if not _reachable(host):
        raise HarnessError(f"the pretrained weights of {model_name!r} are not in the local hub cache and {host} "
                           f"is unreachable, so they cannot be loaded. {advice}")
    try:
        model = timm.create_model(model_name, pretrained=True, num_classes=0, **kwargs)
    except Exception as err:  # network or hub errors of several libraries; all mean "no weights"
        raise HarnessError(f"could not fetch pretrained weights for {model_name!r} from {host}: {err}. {advice}") from err
    return model, label


# -- the method --------------------------------------------------------------------------------
class TimmBackbone(Method):
    """A timm network truncated after one feature level; raw maps at ``stride`` (upsampled if asked)."""

    def __init__(self, name: str, model: nn.Module, level: Level, *, stride: int, norm: bool, backbone: str,
                 pretraining: str, checkpoint: str | None, config: dict[str, Any],
                 mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None) -> None:
        super().__init__(config)
        cfg = model.pretrained_cfg
        self.name = name
        self.model = model.eval()
        self.level = level
        self.stride = stride
        self.dim = level.dim
        self.mean = tuple(mean or cfg["mean"])
        self.std = tuple(std or cfg["std"])
        self.backbone = backbone
        self.pretraining = pretraining
        self.checkpoint = checkpoint
        accepted = inspect.signature(model.forward_intermediates).parameters
        self._kwargs = {k: v for k, v in {"norm": norm, "stop_early": True}.items() if k in accepted}

    def to(self, device: torch.device) -> Method:
        self.model.to(device)
        return super().to(device)

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        maps = self.model.forward_intermediates(frames, indices=[self.level.index], intermediates_only=True,
                                                **self._kwargs)[0]
        if self.stride != self.level.stride:
            size = (math.ceil(frames.shape[-2] / self.stride), math.ceil(frames.shape[-1] / self.stride))
            maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
        return maps

    def describe(self) -> dict[str, Any]:
        resampled = f", bilinearly upsampled to stride {self.stride}" if self.stride != self.level.stride else ""
        checkpoint = {"path": self.checkpoint, "sha256": sha256_file(self.checkpoint)} if self.checkpoint else None
        return {
            "backbone": f"{self.backbone}, {self.level.label()}{resampled}",
            "parameters": count_parameters(self.model),
            "pretraining": self.pretraining,
            "checkpoint": checkpoint,
            "level": self.level.module,
            "final_norm": self._kwargs.get("norm", False),
            "input_mean": list(self.mean),
            "input_std": list(self.std),
        }


def _flag(config: dict[str, Any], key: str, default: bool) -> bool:
    value = config.get(key, default)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise HarnessError(f"method.{key} must be true or false, got {value!r}")


def _output_stride(config: dict[str, Any], level: Level, default: int | None) -> int:
    """``method.stride`` below the level's stride upsamples the maps (e.g. 16 → 8 keeps protocol radii in pixels)."""
    value = config.get("stride", default) or level.stride
    try:
        stride = int(value)
    except (TypeError, ValueError):
        raise HarnessError(f"method.stride must be an integer, got {value!r}") from None
    if stride < 1 or level.stride % stride:
        raise HarnessError(f"method.stride={stride} must divide the stride {level.stride} of level {level.module}")
    return stride


def make_backbone(name: str, model: nn.Module, *, backbone: str, pretraining: str, checkpoint: str | None,
                  config: dict[str, Any], crw: bool = False, default_layer: str | None = None,
                  default_stride: int | None = None, mean: tuple[float, ...] | None = None,
                  std: tuple[float, ...] | None = None) -> TimmBackbone:
    """Pick the level (``method.layer``), apply CRW surgery if asked, prune the unused tail, wrap as a Method.

    ``mean``/``std`` default to timm's pretrained config of the model.
    """
    if not hasattr(model, "prune_intermediate_layers"):
        raise MethodError(f"timm {timm.__version__} has no forward_intermediates() for {type(model).__name__}; "
                          "upgrade timm (the timm 1.0 series added it across architectures)")
    if crw:
        crw_surgery(model)
        backbone += " (CRW surgery: stride 1, no dilation in layer3/layer4)"
    levels = feature_levels(model, crw)
    level = choose_level(levels, config.get("layer", default_layer))
    stride = _output_stride(config, level, default_stride)
    norm = _flag(config, "norm", True)
    model.prune_intermediate_layers([level.index], prune_norm=not norm, prune_head=True)
    return TimmBackbone(name, model, level, stride=stride, norm=norm, backbone=backbone, pretraining=pretraining,
                        checkpoint=checkpoint, config=config, mean=mean, std=std)


def build_timm_method(name: str, config: dict[str, Any]) -> TimmBackbone:
    """``timm:<model>[@crw]`` from ``method.weights`` (a file), timm's hub (``method.pretrained``), or random init
    (``method.seed``, default 0)."""
    model_name, crw = parse_name(name.removeprefix("timm:"))
    kwargs = _create_kwargs(model_name)
    weights = config.get("weights")
    seed = config.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise HarnessError(f"method.seed must be a whole number, got {seed!r}")
    if weights:
        model = timm.create_model(model_name, pretrained=False, num_classes=0, **kwargs)
        load_weights(model, read_state_dict(weights), f"weights file {weights}")
        pretraining = f"weights file {weights}"
    elif _flag(config, "pretrained", True):
        model, pretraining = create_pretrained(model_name, kwargs)
    else:
        model, pretraining = create_random(model_name, kwargs, seed), f"random init (seed {seed})"
    default_layer = CRW_LEVEL if crw else None
    return make_backbone(name, model, backbone=model_name, pretraining=pretraining,
                         checkpoint=str(weights) if weights else None, config=config, crw=crw,
                         default_layer=default_layer)


def declared_shape(name: str) -> tuple[int, int]:
    """Stride and width of ``timm:<model>[@crw]`` at its default level, read from a meta-device model."""
    model_name, crw = parse_name(name.removeprefix("timm:"))
    levels = feature_levels(meta_model(model_name), crw)
    level = choose_level(levels, CRW_LEVEL if crw else None)
    return level.stride, level.dim
