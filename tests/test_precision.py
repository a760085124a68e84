"""``--precision`` of feature extraction: validated, applied only around features, recorded in the config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.cli import main
from harness.config import RunConfig
from harness.errors import HarnessError
from harness.method import Method
from harness.runs.precision import check_precision, feature_precision
from tests.test_runner import small_davis_root


def test_check_precision():
    assert check_precision("fp32", "cpu") == "fp32" and check_precision("tf32", "cuda") == "tf32"
    assert check_precision("bf16", "cuda") == "bf16"
    with pytest.raises(HarnessError, match="tf32 needs a CUDA device"):
        check_precision("tf32", "cpu")
    with pytest.raises(HarnessError, match="fp32, tf32, bf16"):
        check_precision("fp16")
    with pytest.raises(HarnessError, match="bf16 is for CUDA"):
        check_precision("bf16", torch.device("cpu"))
    with pytest.raises(HarnessError, match="--precision"):
        RunConfig(method="pixels", task="davis", precision="half")


@pytest.mark.parametrize("precision,tf32", [("fp32", False), ("tf32", True)])
def test_flags_hold_only_inside_feature_extraction(precision, tf32):
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = not tf32
    try:
        with feature_precision(precision, torch.device("cuda")):  # sets flags only; needs no GPU
            assert torch.backends.cuda.matmul.allow_tf32 is tf32 and torch.backends.cudnn.allow_tf32 is tf32
        assert torch.backends.cuda.matmul.allow_tf32 is (not tf32)  # propagation sees the flags as before
        assert torch.backends.cudnn.allow_tf32 is (not tf32)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


class ConvMethod(Method):
    name, stride, dim = "conv", 1, 4

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Conv2d(3, 4, 3, padding=1)

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        return self.net(frames)


def test_bf16_turns_modules_channels_last():
    method = ConvMethod()
    with pytest.raises(HarnessError, match="bf16"):
        method.set_precision("bf16")  # on CPU
    method.device = torch.device("cuda")  # layout only: the weights stay where they are
    method.set_precision("bf16")
    assert method.net.weight.is_contiguous(memory_format=torch.channels_last)
    assert not method.net.weight.is_contiguous()


def test_cpu_tf32_is_refused():
    with pytest.raises(HarnessError, match="tf32 needs a CUDA device"):
        ConvMethod().set_precision("tf32")


def _run(tmp_path: Path, capsys, *flags: str) -> tuple[int, str, str]:
    root = tmp_path / "davis"
    if not root.exists():
        small_davis_root(root, frames=3, sequences=("car-shadow",))
    code = main(["run", "--method", "pixels", "--task", "davis", "--data-root", str(root), "--device", "cpu",
                 "--out-dir", str(tmp_path / ("run" + "".join(flags))), *flags])
    out, err = capsys.readouterr()
    return code, out, err


def test_precision_is_recorded_and_bf16_on_cpu_refused(tmp_path, capsys):
    code, out, err = _run(tmp_path, capsys)
    assert code == 0, err
    default = json.loads(Path(out.strip().splitlines()[-1]).read_text())
    assert default["config"]["precision"] == "fp32"
    code, out, err = _run(tmp_path, capsys, "--precision", "tf32")
    assert code == 2 and "tf32 needs a CUDA device" in err and out == ""  # on CPU TF32 does not exist
    code, out, err = _run(tmp_path, capsys, "--precision", "bf16")
    assert code == 2 and "bf16 is for CUDA" in err and out == ""


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")
def test_bf16_features_on_cuda_stay_close_to_fp32():
    frames = np.random.default_rng(0).integers(0, 256, (4, 64, 96, 3), dtype=np.uint8)
    method = ConvMethod().to(torch.device("cuda"))
    method.net.cuda()
    fp32 = method.features(frames)
    bf16 = method.set_precision("bf16").features(frames)
    assert bf16.dtype == torch.float32 and bf16.device.type == "cuda"
    assert float((fp32 * bf16).sum(1).min()) > 0.99  # unit vectors: cosine similarity per node
