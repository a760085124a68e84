"""``timm:<model>[@crw]``: any timm model as a label-propagation baseline.

``timm:resnet18`` reads ResNet-18's stride-8 stage (layer2); ``timm:resnet18@crw`` applies CRW's
stride surgery and reads layer3 (256-d, stride 8), the ImageNet baseline of the CRW paper;
``timm:vit_small_patch16_224.dino`` gives DINO's last-block patch tokens at stride 16. Weights come
from ``--weights PATH``, else timm's hub (``method.pretrained``, default true; weights that cannot be
had are an error, never a random network under the pretrained name). ``method.layer`` picks another feature level,
``method.stride`` upsamples to a finer grid, ``method.norm`` toggles a ViT's final norm.

Only the registration lives here, so that ``harness list`` imports neither torch nor timm; the
network code is in :mod:`methods.timm_models.features`.
"""

from __future__ import annotations

from typing import Any

from harness.facts import MethodFacts
from harness.registry import MethodEntry, register_method_family

PREFIX = "timm:"


def create(name: str, config: dict[str, Any]) -> Any:
    """Build the Method for ``timm:<model>[@crw]`` under ``config`` (weights, pretrained, layer, stride, norm)."""
    from methods.timm_models.features import build_timm_method

    return build_timm_method(name, config)


def resolve(name: str) -> MethodEntry:
    """Registry entry for one family name; stride and width are those of the default level."""
    from methods.timm_models.features import declared_shape

    stride, dim = declared_shape(name)
    return MethodEntry(name=name, factory=lambda config: create(name, config),
                       summary=f"timm {name.removeprefix(PREFIX)} (see methods/timm_models/__init__.py)",
                       facts=MethodFacts(stride=stride, dim=dim, license="per model (timm's hub card)",
                                         settings=("weights", "pretrained", "layer", "stride", "norm", "seed")))


register_method_family(PREFIX, resolve, example="timm:<model>[@crw]  any timm model; stride-8 level where possible")
