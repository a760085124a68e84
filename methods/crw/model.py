"""The CRW network: a stride-8 ResNet-18 encoder and the Linear(512→128) node head.

Architecture follows the original code (docs/protocol.md §1): torchvision's ResNet-18 with every
conv of ``layer3`` and ``layer4`` (1x1 downsample convs included) set to stride 1 and no dilation,
so the output stride is 8; ``avgpool``/``fc`` removed; reflect padding on every conv that pads
(the ``scratch`` model type) or zero padding (``scratch_zeropad``). Training embeds image patches
through layer4 + head; evaluation reads the 256-channel layer3 map and never touches the head —
the author found layer3 transfers better (issue #8).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ENCODER_STAGES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
EVAL_LAST_STAGE = "layer3"
EMBED_DIM = 128
PADDING_MODES = ("reflect", "zeros")


class Encoder(nn.Module):
    """ResNet-18 trunk (conv1 … layer4) whose forward can stop after any stage.

    Module names match torchvision's so a state dict reads ``conv1.weight``, ``layer3.0.conv1.weight``.
    """

    def __init__(self, padding: str = "reflect") -> None:
        super().__init__()
        if padding not in PADDING_MODES:
            raise ValueError(f"padding must be one of {PADDING_MODES}, got {padding!r}")
        from torchvision.models import resnet18

        net = resnet18(weights=None)
        for name in ENCODER_STAGES:
            setattr(self, name, getattr(net, name))
        for layer in (self.layer3, self.layer4):
            for module in layer.modules():
                if isinstance(module, nn.Conv2d):
                    module.stride = (1, 1)
        if padding == "reflect":
            for module in self.modules():
                # Conv2d precomputes the explicit pad amounts for non-zero modes in __init__,
                # so switching the mode afterwards is enough.
                if isinstance(module, nn.Conv2d) and any(p > 0 for p in module.padding):
                    module.padding_mode = "reflect"
        self.padding = padding

    def forward(self, x: torch.Tensor, last: str = "layer4") -> torch.Tensor:
        """Run the stages in order up to and including ``last`` (``"layer3"`` or ``"layer4"``)."""
        if last not in ENCODER_STAGES:
            raise ValueError(f"unknown stage {last!r}; expected one of {ENCODER_STAGES}")
        for name in ENCODER_STAGES:
            x = getattr(self, name)(x)
            if name == last:
                break
        return x


def build_encoder(padding: str = "reflect") -> nn.Module:
    """The stride-8 ResNet-18 encoder; ``padding="zeros"`` is the ``scratch_zeropad`` variant."""
    return Encoder(padding)


class CRWNet(nn.Module):
    """Encoder + projection head, with the two entry points training and evaluation need."""

    def __init__(self, padding: str = "reflect") -> None:
        super().__init__()
        self.encoder = Encoder(padding)
        self.head = nn.Linear(512, EMBED_DIM)
        #: feed the encoder NHWC patches (set together with ``.to(memory_format=torch.channels_last)``:
        #: faster convolutions on tensor cores; no effect on the weights or the state dict)
        self.channels_last = False

    def embed_nodes(self, patches: torch.Tensor) -> torch.Tensor:
        """Unit-norm node embeddings ``[B, T, N, 128]`` of patches ``[B, T, N, 3, P, P]``.

        All B·T·N patches go through the encoder as one batch, as in the original, so in train
        mode BatchNorm normalises with statistics pooled over every patch of every clip.
        """
        if patches.dim() != 6 or patches.shape[3] != 3:
            raise ValueError(f"expected patches [B, T, N, 3, P, P], got {tuple(patches.shape)}")
        batch, time, nodes = patches.shape[:3]
        images = patches.flatten(0, 2)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        maps = self.encoder(images, last="layer4")
        pooled = maps.mean(dim=(-2, -1))
        return F.normalize(self.head(pooled), dim=-1).view(batch, time, nodes, EMBED_DIM)

    def eval_features(self, x: torch.Tensor) -> torch.Tensor:
        """Raw layer3 maps ``[B, 256, ceil(H/8), ceil(W/8)]`` of normalised frames ``[B, 3, H, W]``.

        Not L2-normalised: :meth:`harness.method.Method.features` does that for every method.
        """
        return self.encoder(x, last=EVAL_LAST_STAGE)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.embed_nodes(patches)
