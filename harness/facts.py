"""What a method declares about itself, once: read by the registry (``harness list``, without building
anything) and by the method class (which takes stride, width and input normalisation from it).

Kept free of torch so that listing methods stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class MethodFacts:
    """A method's fixed facts.

    - ``stride``/``dim``: feature grid step in pixels and channels of the default level (``None`` when
      they depend on the model or config, as in a family such as ``timm:``).
    - ``mean``/``std``: the input normalisation the method's weights were trained with.
    - ``weights``/``weights_sha256``: the default weights file (path relative to the method's package)
      and its digest; ``license`` and ``paper`` say where the method and its weights come from.
    - ``settings``: the method-config keys it reads (``--set method.<key>``; ``checkpoint`` and ``weights``
      for those flags); anything else is refused before a run. ``None``: not declared, nothing checked.
    """

    stride: int | None = None
    dim: int | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    weights: str | None = None
    weights_sha256: str | None = None
    license: str | None = None
    paper: str | None = None
    settings: tuple[str, ...] | None = None
