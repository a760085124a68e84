"""The VFS network: a plain ResNet trained at stride 32, a projector and a predictor on its pooled
res5 map, and the stride-8 res4 encoder evaluation reads (methods/vfs/README.md §Model).

Training runs torchvision's ResNet-18/50 unchanged (strides 1, 2, 2, 2 for layer1..layer4, zero
padding, the last BatchNorm of every residual block initialised to zero), global-average-pools
layer4, and feeds it to

- the projector: ``projector_layers`` Linear layers, each followed by BatchNorm1d, with ReLU after
  all but the last (so the projection ends in a BatchNorm, no ReLU);
- the predictor: ``predictor_layers`` Linear layers, BatchNorm1d + ReLU after all but the last
  (a bottleneck: 512→128→512 for ResNet-18, 2048→512→2048 for ResNet-50).

Evaluation keeps the same weights and switches the strides to 1, 2, 1, 1: every convolution of
layer3 (the strided 3x3 and the 1x1 shortcut) runs at stride 1, without dilation, so layer3 ("res4")
comes out at stride 8. That is the change CRW's encoder makes too (methods/crw/model.py), except
that VFS keeps zero padding where CRW pads by reflection. Module names match torchvision's, so a
state dict reads ``conv1.weight``, ``layer3.0.downsample.0.weight``.
"""

from __future__ import annotations

import torch
from torch import nn

ARCHS = ("resnet18", "resnet50")
TRUNK_STAGES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
EVAL_STAGES = TRUNK_STAGES[:-1]
#: channels of layer4 (what the projector reads) and of layer3 (the evaluated features), per architecture
POOLED_DIM = {"resnet18": 512, "resnet50": 2048}
EVAL_DIM = {"resnet18": 256, "resnet50": 1024}


def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")


def _torchvision_resnet(arch: str, zero_init_residual: bool) -> nn.Module:
    """A randomly initialised torchvision ResNet (Kaiming fan-out convs, BatchNorm 1/0: VFS's init too)."""
    _check_arch(arch)
    from torchvision import models

    return getattr(models, arch)(weights=None, zero_init_residual=zero_init_residual)


class Trunk(nn.Module):
    """ResNet stages ``conv1`` … ``layer4`` (no avgpool/fc) whose forward can stop after any stage."""

    def __init__(self, arch: str = "resnet18", zero_init_residual: bool = True, stages: tuple[str, ...] = TRUNK_STAGES):
        super().__init__()
        net = _torchvision_resnet(arch, zero_init_residual)
        self.arch = arch
        self.stages = stages
        for name in stages:
            setattr(self, name, getattr(net, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.stages:
            x = getattr(self, name)(x)
        return x


class EvalEncoder(Trunk):
    """The evaluation encoder: stages through layer3, layer3 at stride 1 (output stride 8), zero padding.

    Loads the ``conv1`` … ``layer3`` keys of a training trunk's state dict unchanged.
    """

    def __init__(self, arch: str = "resnet18") -> None:
        super().__init__(arch, zero_init_residual=False, stages=EVAL_STAGES)
        for module in self.layer3.modules():
            if isinstance(module, nn.Conv2d):
                module.stride = (1, 1)


def mlp(in_dim: int, hidden: int, out: int, layers: int, norm_last: bool) -> nn.Sequential:
    """``layers`` Linear layers (``in → hidden … hidden → out``); BatchNorm1d + ReLU after every one but
    the last, which gets a BatchNorm1d only when ``norm_last`` (the projector) and nothing otherwise (the
    predictor)."""
    if layers < 1:
        raise ValueError(f"an MLP needs at least one layer, got {layers}")
    modules: list[nn.Module] = []
    width = in_dim
    for i in range(layers):
        last = i == layers - 1
        target = out if last else hidden
        modules.append(nn.Linear(width, target))
        if not last:
            modules += [nn.BatchNorm1d(target), nn.ReLU(inplace=True)]
        elif norm_last:
            modules.append(nn.BatchNorm1d(target))
        width = target
    return nn.Sequential(*modules)


class VFSNet(nn.Module):
    """Trunk + projector + predictor: frames → projections ``z`` and predictions ``p``.

    Frames ``[N, 3, H, W]`` are one batch. A training batch ``[B, V, T, 3, H, W]`` (``B`` videos, ``V``
    views of ``T`` frames) is encoded one view at a time, each view's ``B·T`` frames a batch of their
    own, so BatchNorm normalises each view by its own statistics, as the original's two
    ``extract_feat`` calls do; both views go through one ``forward`` call (what DDP needs).
    """

    def __init__(
        self,
        arch: str = "resnet18",
        projector: tuple[int, int, int] = (3, 512, 512),
        predictor: tuple[int, int, int] = (2, 128, 512),
        zero_init_residual: bool = True,
    ) -> None:
        """``projector`` and ``predictor`` are ``(layers, hidden, out)``; the predictor's input is the projection."""
        super().__init__()
        self.arch = arch
        self.encoder = Trunk(arch, zero_init_residual)
        proj_layers, proj_hidden, proj_out = projector
        pred_layers, pred_hidden, pred_out = predictor
        self.projector = mlp(POOLED_DIM[arch], proj_hidden, proj_out, proj_layers, norm_last=True)
        self.predictor = mlp(proj_out, pred_hidden, pred_out, pred_layers, norm_last=False)
        #: set by the training loop with ``train.channels_last``: frames are converted to NHWC on entry
        self.channels_last = False

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z, p)``: projection and prediction of the globally pooled layer4 map, ``[N, out]`` for frames
        ``[N, 3, H, W]``, ``[B, V, T, out]`` for a training batch ``[B, V, T, 3, H, W]``."""
        if frames.dim() == 6:
            views = [self(frames[:, v].flatten(0, 1)) for v in range(frames.shape[1])]
            batch, frames_per_view = frames.shape[0], frames.shape[2]
            z, p = (torch.stack([view[i].unflatten(0, (batch, frames_per_view)) for view in views], dim=1)
                    for i in (0, 1))
            return z, p
        if frames.dim() != 4:
            raise ValueError(f"frames must be [N, 3, H, W] or [B, V, T, 3, H, W], got {tuple(frames.shape)}")
        if self.channels_last:
            frames = frames.contiguous(memory_format=torch.channels_last)
        pooled = self.encoder(frames).mean(dim=(-2, -1))
        z = self.projector(pooled)
        return z, self.predictor(z)

    def eval_encoder(self) -> EvalEncoder:
        """A stride-8 evaluation encoder holding a copy of this trunk's weights through layer3."""
        encoder = EvalEncoder(self.arch)
        encoder.load_state_dict(eval_state(self.state_dict()))
        return encoder.eval()


def eval_state(model_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``encoder.`` keys through layer3 of a :class:`VFSNet` state, prefix stripped (what evaluation loads)."""
    return {k[len("encoder."):]: v for k, v in model_state.items()
            if k.startswith("encoder.") and not k.startswith("encoder.layer4.")}


def arch_of(state: dict[str, torch.Tensor]) -> str:
    """``resnet50`` when the blocks are bottlenecks (a ``conv3``), else ``resnet18``, from trunk keys."""
    return "resnet50" if any(".conv3." in k for k in state) else "resnet18"
