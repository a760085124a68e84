"""Sanity floors that run anywhere, with no weights to fetch.

- ``pixels``: Lab colour averaged over 8×8 cells. Any learned feature should beat it; if one does
  not, the pipeline (not the model) is the suspect.
- ``random-resnet18``: ResNet-18 with CRW's stride surgery and random weights from a fixed seed —
  the architecture's prior alone, the floor a trained CRW must clear.
"""

from __future__ import annotations

from typing import Any

from harness.errors import HarnessError
from harness.facts import MethodFacts
from harness.registry import register_method

RANDOM_SEED = 0
PIXELS = MethodFacts(stride=8, dim=3, license="none (no weights)", settings=())
RANDOM_RESNET18 = MethodFacts(stride=8, dim=256, license="none (random weights)", settings=("seed",),
                              paper="He et al. Deep Residual Learning for Image Recognition. CVPR 2016")


def _pixels_class() -> type:
    import torch
    import torch.nn.functional as F

    from harness.method import Method

    class PixelsMethod(Method):
        name = "pixels"
        facts = PIXELS
        batch_size = 16

        def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
            """uint8 RGB → CIE Lab (D65), scaled so each channel spans about [-1, 1]."""
            rgb = frames.to(self.device).permute(0, 3, 1, 2).double() / 255.0
            linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
            to_xyz = torch.tensor([[0.412453, 0.357580, 0.180423],
                                   [0.212671, 0.715160, 0.072169],
                                   [0.019334, 0.119193, 0.950227]], dtype=torch.float64, device=self.device)
            xyz = torch.einsum("ij,bjhw->bihw", to_xyz, linear)
            xyz = xyz / torch.tensor([0.950456, 1.0, 1.088754], dtype=torch.float64, device=self.device).view(1, 3, 1, 1)
            f = torch.where(xyz > 0.008856, xyz.clamp(min=1e-12) ** (1 / 3), 7.787 * xyz + 16 / 116)
            lightness = 116 * f[:, 1] - 16
            a = 500 * (f[:, 0] - f[:, 1])
            b = 200 * (f[:, 1] - f[:, 2])
            return torch.stack([(lightness - 50) / 50, a / 128, b / 128], dim=1).float()

        def embed(self, frames: torch.Tensor) -> torch.Tensor:
            return F.avg_pool2d(frames, self.stride, ceil_mode=True, count_include_pad=False)

        def describe(self) -> dict[str, Any]:
            return {"backbone": "Lab colour, 8x8 average", "parameters": 0, "pretraining": "none", "checkpoint": None}

    return PixelsMethod


def _random_resnet_class() -> type:
    import torch

    from harness.method import Method, count_parameters
    from methods.crw.model import build_encoder

    class RandomResNet18(Method):
        name = "random-resnet18"
        facts = RANDOM_RESNET18

        def __init__(self, config: dict[str, Any] | None = None) -> None:
            super().__init__(config)
            seed = self.config.get("seed", RANDOM_SEED)
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise HarnessError(f"method.seed must be a whole number, got {seed!r}")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                encoder = build_encoder()
            self.encoder = torch.nn.Sequential(*[getattr(encoder, n) for n in
                                                 ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3")])
            self.encoder.eval()
            self.seed = seed

        def to(self, device: torch.device) -> Method:
            self.encoder.to(device)
            return super().to(device)

        def embed(self, frames: torch.Tensor) -> torch.Tensor:
            return self.encoder(frames)

        def describe(self) -> dict[str, Any]:
            return {"backbone": "resnet18 (CRW stride-8 surgery, layer3)", "parameters": count_parameters(self.encoder),
                    "pretraining": f"none (random init, seed {self.seed})", "checkpoint": None}

    return RandomResNet18


@register_method("pixels", summary="Lab colour averaged over 8x8 cells (sanity floor)", facts=PIXELS)
def create_pixels(config: dict[str, Any]) -> Any:
    return _pixels_class()(config)


@register_method("random-resnet18", summary="ResNet-18, CRW stride surgery, random weights (seed 0)",
                 facts=RANDOM_RESNET18)
def create_random_resnet18(config: dict[str, Any]) -> Any:
    return _random_resnet_class()(config)
