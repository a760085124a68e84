"""CRW checkpoints: harness round trip, eval-only saver, importer of the original release, loud failures."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.errors import CheckpointError, HarnessError
from methods.crw import method as crw_method
from methods.crw.checkpoint import load_eval_state, read_checkpoint, save_eval_checkpoint
from methods.crw.method import CRWMethod
from methods.crw.model import CRWNet

FRAMES = np.random.default_rng(0).integers(0, 256, size=(2, 40, 56, 3), dtype=np.uint8)


pytestmark = pytest.mark.usefixtures("single_thread")


def _trained_like_net(seed: int = 0) -> CRWNet:
    """A CRWNet whose every tensor (BN statistics included) is distinct from a fresh one's."""
    torch.manual_seed(seed)
    net = CRWNet()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name.endswith("num_batches_tracked"):
                tensor.fill_(7)
            elif name.endswith("running_var") or (name.endswith(".weight") and tensor.dim() == 1):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=gen))
            else:
                tensor.add_(0.05 * torch.randn(tensor.shape, generator=gen))
    return net.eval()


def _reference_features(net: CRWNet, frames: np.ndarray) -> torch.Tensor:
    """ImageNet-normalise by hand, run layer3, L2-normalise: what the crw method must return."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        return torch.nn.functional.normalize(net.eval().eval_features((x - mean) / std), dim=1)


def _original_name(key: str, legacy: bool) -> str:
    """CRWNet key → the videowalk release's key (From3D ``encoder.model.``, ``selfsim_fc.0.``).

    With ``legacy`` every conv that pads (the stem conv1 and both convs of each basic block) sits
    at index 1 of a Sequential(ReflectionPad2d, Conv2d); 1x1 downsample convs were not wrapped.
    """
    if key.startswith("head."):
        return "selfsim_fc.0." + key[len("head.") :]
    inner = key[len("encoder.") :]
    if legacy and (inner.endswith("conv1.weight") or inner.endswith("conv2.weight")):
        inner = inner[: -len(".weight")] + ".1.weight"
    return "encoder.model." + inner


def _write_original(path: Path, net: CRWNet, legacy: bool = True, data_parallel: bool = False) -> None:
    state = {_original_name(k, legacy): v.clone() for k, v in net.state_dict().items()}
    if data_parallel:  # a bare DataParallel state dict, without the args wrapper
        torch.save({"module." + k: v for k, v in state.items()}, path)
        return
    args = argparse.Namespace(model_type="scratch", temp=0.05, dropout=0.1, clip_len=4, remove_layers=[], lr=1e-4)
    torch.save({"model": state, "args": args, "optimizer": {"state": {}, "param_groups": []}, "epoch": 24}, path)


def test_harness_checkpoint_round_trip(tmp_path: Path) -> None:
    net = _trained_like_net()
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": net.state_dict(), "recipe": {"name": "toy", "model": {"padding": "reflect"}}, "step": 3}, path)
    method = CRWMethod({"checkpoint": str(path)})
    for key, value in net.state_dict().items():
        assert torch.equal(method.net.state_dict()[key], value), key
    torch.testing.assert_close(method.features(FRAMES), _reference_features(net, FRAMES))
    info = method.describe()
    assert info["checkpoint"]["path"] == str(path) and len(info["checkpoint"]["sha256"]) == 64
    assert info["pretraining"]["recipe"]["name"] == "toy" and info["pretraining"]["step"] == 3
    expected_params = sum(
        p.numel() for n, p in net.encoder.named_parameters() if not n.startswith("layer4.")
    )
    assert info["parameters"] == expected_params


def test_eval_checkpoint_keeps_layer3_only(tmp_path: Path) -> None:
    net = _trained_like_net(1)
    path = save_eval_checkpoint(tmp_path / "eval.pt", net.state_dict(), {"name": "toy"}, step=5)
    raw = torch.load(path, weights_only=True)
    assert not any(k.startswith(("encoder.layer4.", "head.")) for k in raw["model"])
    assert raw["step"] == 5 and raw["recipe"] == {"name": "toy"}
    state = load_eval_state(path)
    assert set(state) == {k for k in net.encoder.state_dict() if not k.startswith("layer4.")}
    method = CRWMethod({"checkpoint": str(path)})
    torch.testing.assert_close(method.features(FRAMES), _reference_features(net, FRAMES))
    assert not method.checkpoint.has_training_layers
    with pytest.raises(CheckpointError, match="evaluation-only"):
        method.adapted(FRAMES, {"steps": 1}, seed=0)


@pytest.mark.parametrize(("legacy", "data_parallel"), [(True, False), (False, False), (True, True)])
def test_original_release_importer(tmp_path: Path, legacy: bool, data_parallel: bool) -> None:
    net = _trained_like_net(2)
    path = tmp_path / "pretrained.pth"
    _write_original(path, net, legacy, data_parallel)
    ckpt = read_checkpoint(path)
    assert ckpt.source == "original" and ckpt.padding == "reflect"
    if not data_parallel:
        assert ckpt.step == 24 and ckpt.recipe["temp"] == 0.05
    assert set(ckpt.model_state) == set(net.state_dict())
    for key, value in net.state_dict().items():
        assert torch.equal(ckpt.model_state[key], value), key
    method = CRWMethod({"checkpoint": str(path)})
    torch.testing.assert_close(method.features(FRAMES), _reference_features(net, FRAMES))


@pytest.mark.parametrize("source", ["original", "harness"])
def test_zero_padding_follows_the_checkpoint(tmp_path: Path, source: str) -> None:
    net = _trained_like_net(3)
    path = tmp_path / "zeropad.pth"
    if source == "original":
        state = {_original_name(k, legacy=False): v for k, v in net.state_dict().items()}
        torch.save({"model": state, "args": argparse.Namespace(model_type="scratch_zeropad")}, path)
    else:
        torch.save({"model": net.state_dict(), "recipe": {"model": {"padding": "zeros"}}, "step": 1}, path)
    method = CRWMethod({"checkpoint": str(path)})
    assert all(m.padding_mode == "zeros" for m in method.net.modules() if isinstance(m, torch.nn.Conv2d))


def test_wrong_architecture_names_the_keys(tmp_path: Path) -> None:
    from torchvision.models import resnet50

    path = tmp_path / "r50.pt"
    state = {"encoder." + k: v for k, v in resnet50(weights=None).state_dict().items() if not k.startswith("fc.")}
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError, match=r"r50\.pt.*layer1\.0\.conv3\.weight"):
        load_eval_state(path)


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        ("drop", r"missing keys: encoder\.layer3\.1\.bn2\.running_var"),
        ("extra", r"unexpected keys: encoder\.fc\.weight"),
        ("shape", r"shape mismatch.*encoder\.layer2\.0\.conv1\.weight \(64, 64, 3, 3\) vs \(128, 64, 3, 3\)"),
    ],
)
def test_bad_keys_fail_loudly(tmp_path: Path, edit: str, pattern: str) -> None:
    state = CRWNet().state_dict()
    if edit == "drop":
        del state["encoder.layer3.1.bn2.running_var"]
    elif edit == "extra":
        state["encoder.fc.weight"] = torch.zeros(10, 512)
    else:
        state["encoder.layer2.0.conv1.weight"] = torch.zeros(64, 64, 3, 3)
    path = tmp_path / "bad.pt"
    torch.save({"model": state, "recipe": {}, "step": 0}, path)
    with pytest.raises(CheckpointError, match=pattern):
        CRWMethod({"checkpoint": str(path)})


def test_training_only_keys_are_optional_for_evaluation(tmp_path: Path) -> None:
    net = _trained_like_net(4)
    state = {k: v for k, v in net.state_dict().items() if not k.startswith(("encoder.layer4.", "head."))}
    path = tmp_path / "nolayer4.pt"
    torch.save({"model": state}, path)
    torch.testing.assert_close(CRWMethod({"checkpoint": str(path)}).features(FRAMES), _reference_features(net, FRAMES))


class _Exploit:
    ran = False

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (setattr, (_Exploit, "ran", True))


def test_arbitrary_objects_are_not_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"model": CRWNet().state_dict(), "args": _Exploit()}, path)
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        read_checkpoint(path)
    assert not _Exploit.ran


def test_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match="junk.pt"):
        read_checkpoint(path)
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="junk.pt"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        CRWMethod({"checkpoint": str(tmp_path / "absent.pt")})


def test_missing_default_checkpoint_says_how_to_train(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(crw_method, "DEFAULT_CHECKPOINT", tmp_path / "weights" / "crw-cpu-demo.pt")
    with pytest.raises(HarnessError, match=r"harness train --method crw --recipe crw-cpu-demo"):
        CRWMethod({})


def test_registration_is_lazy() -> None:
    code = (
        "import sys, methods.crw\n"
        "assert 'torch' not in sys.modules, 'importing methods.crw pulled in torch'\n"
        "from harness.registry import _METHODS\n"
        "e = _METHODS.entries['crw']\n"
        "assert (e.stride, e.dim, e.trainable) == (8, 256, True)\n"
        "assert callable(methods.crw.walk_loss)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
