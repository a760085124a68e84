"""timm baselines: ``timm:<model>[@crw]`` and ``imagenet-effnet-lite0``.

References are independent of the code under test: torchvision's ResNet-18 with CRW's surgery
done by hand, a ViT's own ``forward_features`` on a hand-padded frame, the EfficientNet blocks
run one by one, and ImageNet labels of real photos.
"""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from harness.errors import CheckpointError, HarnessError, MethodError
from harness.method import IMAGENET_MEAN, IMAGENET_STD
from harness.registry import get_method
from methods import effnet_lite
from methods.timm_models import features as tf

pytestmark = pytest.mark.unit

SIZES = [(75, 101), (64, 64), (97, 131)]  # odd sizes catch floor-vs-ceil mistakes


def _frames(height: int, width: int, count: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def _build(name: str, **config):
    return get_method(name).factory(config)


def _raw(method, frames: np.ndarray) -> torch.Tensor:
    """The method's own maps, before the base class could resize a wrong grid."""
    with torch.no_grad():
        return method.embed(method.preprocess(torch.from_numpy(frames)))


def _torchvision_crw_layer3(state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """CRW's ImageNet encoder by hand: torchvision ResNet-18, stride 1 in layer3/4 convs, up to layer3."""
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    net.load_state_dict(state)
    for layer in (net.layer3, net.layer4):
        for module in layer.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.stride = (1, 1)
    return torch.nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3).eval()


# -- imagenet-effnet-lite0 ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def effnet() -> torch.nn.Module:
    return effnet_lite.load_effnet_lite0()


@pytest.mark.parametrize(("photo", "label"), [("chelsea", 285), ("coffee", 967)])  # Egyptian cat, espresso
def test_effnet_weights_classify_real_photos(effnet: torch.nn.Module, photo: str, label: int) -> None:
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image (the real test photos) is not installed")
    image = torch.from_numpy(getattr(skimage_data, photo)()).permute(2, 0, 1)[None].float() / 255
    image = F.interpolate(image, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(effnet_lite.FACTS.mean).view(1, 3, 1, 1)
    std = torch.tensor(effnet_lite.FACTS.std).view(1, 3, 1, 1)
    with torch.no_grad():
        probs = effnet((image - mean) / std).softmax(dim=1)[0]
    assert int(probs.argmax()) == label
    assert float(probs[label]) > 0.5


@pytest.mark.parametrize(("layer", "stride", "blocks", "dim"), [("blocks.2", 8, 3, 40), ("blocks.4", 8, 5, 112),
                                                                  ("blocks.4", 16, 5, 112)])
def test_effnet_features_match_blocks_run_by_hand(effnet: torch.nn.Module, layer: str, stride: int, blocks: int,
                                                  dim: int) -> None:
    method = _build(effnet_lite.NAME, layer=layer, stride=stride)
    assert (method.stride, method.dim, method.describe()["level"]) == (stride, dim, layer)
    frames = _frames(75, 101)
    x = (torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        ref = effnet.bn1(effnet.conv_stem(x))
        for block in effnet.blocks[:blocks]:
            ref = block(ref)
    ref = F.interpolate(ref, size=method.grid_size(75, 101), mode="bilinear", align_corners=False)
    got = method.features(frames)
    assert got.shape == (2, dim, math.ceil(75 / stride), math.ceil(101 / stride))
    torch.testing.assert_close(got, F.normalize(ref, dim=1), atol=1e-5, rtol=1e-4)


def test_effnet_registered_shape_is_the_default_layer() -> None:
    entry = get_method(effnet_lite.NAME)
    method = entry.factory({})
    assert (entry.stride, entry.dim) == (method.stride, method.dim)
    assert method.describe()["level"] == effnet_lite.DEFAULT_LAYER
    info = method.describe()
    assert info["checkpoint"]["sha256"] == tf.sha256_file(effnet_lite.packaged_weights())


def test_effnet_position_loading_refuses_a_misshapen_file(tmp_path) -> None:
    state = torch.load(effnet_lite.packaged_weights(), map_location="cpu", weights_only=True)
    key = "_blocks.3._project_conv.weight"
    state[key] = torch.zeros(7, 7, 1, 1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=key):
        effnet_lite.load_effnet_lite0(str(tmp_path / "bad.pth"))
    del state[key]
    torch.save(state, tmp_path / "short.pth")
    with pytest.raises(CheckpointError, match="295 tensors"):
        effnet_lite.load_effnet_lite0(str(tmp_path / "short.pth"))


# -- timm:<model>[@crw] ------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "stride", "dim", "level"), [("timm:resnet18", 8, 128, "layer2"),
                                                               ("timm:resnet18@crw", 8, 256, "layer3"),
                                                               ("timm:vit_tiny_patch16_224", 16, 192, "blocks.11")])
def test_declared_stride_and_dim_match_a_forward_pass(name: str, stride: int, dim: int, level: str) -> None:
    entry = get_method(name)
    method = entry.factory({"pretrained": False})
    assert (entry.stride, entry.dim) == (method.stride, method.dim) == (stride, dim)
    assert method.describe()["level"] == level
    for height, width in SIZES:
        assert _raw(method, _frames(height, width, 1)).shape == (1, dim, math.ceil(height / stride),
                                                                math.ceil(width / stride))
    feats = method.features(_frames(*SIZES[0]))
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(2, *feats.shape[-2:]))


def test_crw_surgery_leaves_no_stride_or_dilation_in_layer3_and_layer4() -> None:
    import timm

    model = timm.create_model("resnet18", num_classes=0)
    tf.crw_surgery(model)
    convs = [m for stage in (model.layer3, model.layer4) for m in stage.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 10  # 2 blocks x 2 convs + 1 downsample, per stage
    assert all(c.stride == (1, 1) and c.dilation == (1, 1) for c in convs)
    dilated = timm.create_model("resnet18", num_classes=0, output_stride=8)
    with pytest.raises(MethodError, match="dilated"):
        tf.crw_surgery(dilated)


def test_crw_weights_file_gives_crw_encoder_features(tmp_path) -> None:
    """A torchvision state dict through ``--weights``: layer3 equals CRW's encoder built by hand,
    and differs from timm's dilated output_stride=8 network with the same weights."""
    import timm
    from torchvision.models import resnet18

    torch.manual_seed(0)
    state = resnet18(weights=None).state_dict()
    torch.save(state, tmp_path / "r18.pth")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "r18.safetensors"))
    frames = _frames(75, 101)
    x = (torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) \
        / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = F.normalize(_torchvision_crw_layer3(state)(x), dim=1)
    for path in (tmp_path / "r18.pth", tmp_path / "r18.safetensors"):
        method = _build("timm:resnet18@crw", weights=str(path))
        torch.testing.assert_close(method.features(frames), ref, atol=1e-5, rtol=1e-4)
        info = method.describe()
        assert info["checkpoint"] == {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        assert info["pretraining"] == f"weights file {path}"
    dilated = timm.create_model("resnet18", num_classes=0, output_stride=8)
    dilated.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")})
    with torch.no_grad():
        other = dilated.eval().forward_intermediates(x, indices=[3], intermediates_only=True)[0]
    assert other.shape == ref.shape
    assert not torch.allclose(F.normalize(other, dim=1), ref, atol=1e-2)


def test_wrong_weights_file_names_the_keys(tmp_path) -> None:
    import timm

    state = timm.create_model("resnet18").state_dict()
    del state["layer3.0.conv1.weight"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"missing keys: layer3\.0\.conv1\.weight") as err:
        _build("timm:resnet18", weights=str(tmp_path / "bad.pth"))
    assert "unexpected keys: extra.weight" in str(err.value)
    assert "fc." not in str(err.value).split("ignored")[1]  # the head is ignored, not reported
    torch.save(timm.create_model("resnet34").state_dict(), tmp_path / "r34.pth")
    with pytest.raises(CheckpointError, match=r"layer1\.2\.conv1\.weight"):
        _build("timm:resnet18", weights=str(tmp_path / "r34.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth"):
        _build("timm:resnet18", weights=str(tmp_path / "junk.pth"))


def test_vit_patch_tokens_match_forward_features_on_a_padded_frame() -> None:
    """Prefix token dropped, final norm applied, frame zero-padded on the right/bottom to the patch."""
    import timm

    method = _build("timm:vit_tiny_patch16_224", pretrained=False)  # random init from seed 0
    torch.manual_seed(0)
    full = timm.create_model("vit_tiny_patch16_224", num_classes=0, dynamic_img_size=True).eval()
    frames = _frames(75, 101)
    x = method.preprocess(torch.from_numpy(frames))
    padded = F.pad(x, (0, 112 - 101, 0, 80 - 75))
    with torch.no_grad():
        tokens = full.forward_features(padded)[:, full.num_prefix_tokens:]
    ref = tokens.reshape(2, 5, 7, 192).permute(0, 3, 1, 2)
    torch.testing.assert_close(method.features(frames), F.normalize(ref, dim=1), atol=1e-5, rtol=1e-4)


def test_layer_and_stride_overrides() -> None:
    method = _build("timm:resnet18", pretrained=False, layer="layer3", stride=8)
    assert (method.stride, method.dim) == (8, 256)
    assert _raw(method, _frames(75, 101, 1)).shape == (1, 256, 10, 13)
    assert "upsampled to stride 8" in method.describe()["backbone"]
    assert _build("timm:resnet18", pretrained=False, layer=-1).dim == 512
    with pytest.raises(HarnessError, match="layer2"):
        _build("timm:resnet18", pretrained=False, layer="layer9")
    with pytest.raises(HarnessError, match="must divide"):
        _build("timm:resnet18", pretrained=False, stride=3)


def test_random_init_is_seeded() -> None:
    frames = _frames(40, 56)
    first = _build("timm:resnet18", pretrained=False).features(frames)
    torch.manual_seed(123)  # the global generator must not matter
    assert torch.equal(_build("timm:resnet18", pretrained=False).features(frames), first)
    other = _build("timm:resnet18", pretrained=False, seed=1)
    assert other.describe()["pretraining"] == "random init (seed 1)"
    assert not torch.allclose(other.features(frames), first)


def test_bad_names() -> None:
    with pytest.raises(HarnessError, match="resnet18"):
        get_method("timm:resnet81")
    with pytest.raises(HarnessError, match="ResNets only"):
        _build("timm:vit_tiny_patch16_224@crw", pretrained=False)


def test_unreachable_hub_is_refused_not_replaced_by_random_weights(monkeypatch) -> None:
    monkeypatch.setattr(tf, "_cached_hub_file", lambda cfg: None)
    monkeypatch.setattr(tf, "_reachable", lambda host: False)
    with pytest.raises(HarnessError, match="method.pretrained=false"):
        _build("timm:resnet18@crw")


def test_failed_download_from_a_reachable_hub_is_an_error(monkeypatch) -> None:
    real_create = tf.timm.create_model

    def create(name, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("404 Client Error")
        return real_create(name, pretrained=False, **kwargs)

    monkeypatch.setattr(tf, "_cached_hub_file", lambda cfg: None)
    monkeypatch.setattr(tf, "_reachable", lambda host: True)
    monkeypatch.setattr(tf.timm, "create_model", create)
    with pytest.raises(HarnessError, match="--weights PATH"):
        _build("timm:resnet18")


def test_registration_imports_neither_torch_nor_timm() -> None:
    code = ("import sys, methods.timm_models, methods.effnet_lite; "
            "sys.exit(sorted({'torch', 'timm'} & set(sys.modules)) != [])")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
