"""The CRW encoder surgery and the two entry points, against a functional re-implementation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from methods.crw.model import CRWNet, build_encoder

pytestmark = pytest.mark.usefixtures("single_thread")


def _randomise_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial affine parameters and running statistics."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.weight.data = 0.5 + torch.rand(n, generator=gen)
            module.bias.data = 0.1 * torch.randn(n, generator=gen)
            module.running_mean.data = 0.1 * torch.randn(n, generator=gen)
            module.running_var.data = 0.5 + torch.rand(n, generator=gen)


def _reference_layer3(state: dict[str, torch.Tensor], x: torch.Tensor, padding: str) -> torch.Tensor:
    """ResNet-18 up to layer3 written with F.pad + F.conv2d, strides spelled out per the spec."""

    def conv(name: str, h: torch.Tensor, stride: int, pad: int) -> torch.Tensor:
        if pad:
            h = F.pad(h, [pad] * 4, mode="reflect") if padding == "reflect" else F.pad(h, [pad] * 4)
        return F.conv2d(h, state[name + ".weight"], stride=stride)

    def bn(name: str, h: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            h, state[name + ".running_mean"], state[name + ".running_var"], state[name + ".weight"], state[name + ".bias"], eps=1e-5
        )

    def block(prefix: str, h: torch.Tensor, stride: int, downsample: bool) -> torch.Tensor:
        out = F.relu(bn(prefix + ".bn1", conv(prefix + ".conv1", h, stride, 1)))
        out = bn(prefix + ".bn2", conv(prefix + ".conv2", out, 1, 1))
        skip = bn(prefix + ".downsample.1", conv(prefix + ".downsample.0", h, stride, 0)) if downsample else h
        return F.relu(out + skip)

    h = F.relu(bn("bn1", conv("conv1", x, 2, 3)))
    h = F.max_pool2d(h, 3, 2, 1)
    h = block("layer1.1", block("layer1.0", h, 1, False), 1, False)
    h = block("layer2.1", block("layer2.0", h, 2, True), 1, False)
    # Stride surgery: layer3's first block (and its downsample) run at stride 1.
    return block("layer3.1", block("layer3.0", h, 1, True), 1, False)


@pytest.mark.parametrize("padding", ["reflect", "zeros"])
def test_eval_features_match_functional_reference(padding: str) -> None:
    torch.manual_seed(0)
    net = CRWNet(padding=padding)
    _randomise_bn(net)
    net.eval()
    x = torch.randn(2, 3, 45, 67)
    with torch.no_grad():
        got = net.eval_features(x)
        expected = _reference_layer3({k: v for k, v in net.encoder.state_dict().items()}, x, padding)
    assert got.shape == (2, 256, math.ceil(45 / 8), math.ceil(67 / 8))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_padding_variants_differ() -> None:
    torch.manual_seed(0)
    reflect = CRWNet("reflect").eval()
    zeros = CRWNet("zeros").eval()
    zeros.load_state_dict(reflect.state_dict())
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(reflect.eval_features(x), zeros.eval_features(x))


def test_surgery() -> None:
    encoder = build_encoder()
    for name, module in encoder.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            assert module.dilation == (1, 1), name
            if name.startswith(("layer3", "layer4")):
                assert module.stride == (1, 1), name
            expected_mode = "reflect" if any(module.padding) else "zeros"
            assert module.padding_mode == expected_mode, name
    assert encoder.layer2[0].conv1.stride == (2, 2)
    assert encoder.conv1.stride == (2, 2)
    keys = set(encoder.state_dict())
    assert not any(k.startswith(("fc.", "avgpool")) for k in keys)
    assert "layer4.1.bn2.running_var" in keys and "layer3.0.downsample.0.weight" in keys
    assert all(m.padding_mode == "zeros" for m in build_encoder("zeros").modules() if isinstance(m, torch.nn.Conv2d))
    with pytest.raises(ValueError, match="padding"):
        build_encoder("circular")


@pytest.mark.parametrize("size", [(64, 64), (480, 854), (33, 17)])
def test_output_stride_is_8(size: tuple[int, int]) -> None:
    encoder = build_encoder().eval()
    with torch.no_grad():
        out3 = encoder(torch.zeros(1, 3, *size), last="layer3")
    assert out3.shape == (1, 256, math.ceil(size[0] / 8), math.ceil(size[1] / 8))


def test_embed_nodes_matches_per_patch_computation_in_eval() -> None:
    torch.manual_seed(1)
    net = CRWNet()
    _randomise_bn(net, 1)
    net.eval()
    patches = torch.randn(2, 3, 4, 3, 32, 32)
    with torch.no_grad():
        emb = net.embed_nodes(patches)
        assert emb.shape == (2, 3, 4, 128)
        torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2, 3, 4))
        b, t, n = 1, 2, 3
        maps = net.encoder(patches[b, t, n][None], last="layer4")
        assert maps.shape == (1, 512, 4, 4)
        expected = F.normalize(maps.mean(dim=(2, 3)) @ net.head.weight.T + net.head.bias, dim=-1)[0]
        torch.testing.assert_close(emb[b, t, n], expected, rtol=1e-4, atol=1e-5)


def test_train_mode_uses_batch_statistics() -> None:
    torch.manual_seed(2)
    net = CRWNet()
    patches = torch.randn(1, 3, 2, 3, 32, 32)
    net.train()
    with torch.no_grad():
        joint = net.embed_nodes(patches)
        alone = net.embed_nodes(patches[:, :1])
    # Batch statistics couple the patches in train mode; running statistics do not in eval mode.
    assert not torch.allclose(joint[:, :1], alone, atol=1e-4)
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net.embed_nodes(patches)[:, :1], net.embed_nodes(patches[:, :1]), rtol=1e-4, atol=1e-5)


def test_embed_nodes_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match="patches"):
        CRWNet().embed_nodes(torch.zeros(2, 3, 32, 32))
