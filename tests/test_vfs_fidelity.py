"""VFS against references written here from the original code's computations (xvjiarui/VFS):
the loss (SimSiamHead.loss + CosineSimLoss + the intra-video rolls of SimSiamBaseTracker), the
test-time backbone (their mmaction2 ResNet with strides (1, 2, 1, 1), ConvModule naming), the
segment frame sampling, and the method's registration and end-to-end run."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from harness.cli import main
from harness.runs import runner
from methods.vfs.augment import FrameAugment, crop_box
from methods.vfs.checkpoint import read_checkpoint, save_eval_checkpoint
from methods.vfs.loss import vfs_loss
from methods.vfs.model import EVAL_DIM, VFSNet
from methods.vfs.pairs import PairDataset, PairSampler, segment_frames

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "datasets" / "sample" / "davis"

pytestmark = pytest.mark.usefixtures("single_thread")


# -- (a) the loss ---------------------------------------------------------------------------------


def _reference_loss(p1, z1, p2, z2, clip_len: int, intra_video: bool) -> torch.Tensor:
    """The original's computation on ``[B*T, D]`` rows (video-major), step by step.

    CosineSimLoss(negative=False) gives a per-row ``2 - 2 * <a/|a|, b/|b|>``; SimSiamHead.loss
    weighs ``½·L(p1, z2.detach()) + ½·L(p2, z1.detach())``, times ``1/T`` with intra-video pairs,
    and adds one such term per roll ``i = 1 … T-1`` of view 2 along time; the runner averages each
    term over its rows and sums the terms.
    """
    def cos_loss(a, b):
        a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
        b = b / b.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return 2 - 2 * (a * b).sum(dim=1)

    def head(pa, za, pb, zb, weight):
        return (cos_loss(pa, zb.detach()) * 0.5 + cos_loss(pb, za.detach()) * 0.5) * weight

    weight = 1.0 / clip_len if intra_video else 1.0
    terms = [head(p1, z1, p2, z2, weight)]
    if intra_video:
        rows, dim = p2.shape
        for i in range(1, clip_len):
            def roll(x, i=i):
                return x.reshape(rows // clip_len, clip_len, dim).roll(i, dims=1).reshape(rows, dim)
            terms.append(head(p1, z1, roll(p2), roll(z2), weight))
    return sum(t.mean() for t in terms)


@pytest.mark.parametrize(("batch", "clip_len", "intra"), [(5, 1, False), (3, 4, True), (2, 3, True), (4, 2, False)])
def test_loss_equals_the_original_computation(batch: int, clip_len: int, intra: bool) -> None:
    gen = torch.Generator().manual_seed(batch * 10 + clip_len)
    dim = 7
    p1, z1, p2, z2 = (torch.randn(batch * clip_len, dim, generator=gen, dtype=torch.float64, requires_grad=True)
                      for _ in range(4))
    expected = _reference_loss(p1, z1, p2, z2, clip_len, intra)
    got, diag = vfs_loss(*(x.view(batch, clip_len, dim) for x in (p1, p2, z1, z2)), all_pairs=intra)
    assert got.dtype == torch.float64
    assert abs(got.item() - expected.item()) < 1e-9
    # same gradients wrt the predictions
    grad_got = torch.autograd.grad(got, (p1, p2))
    grad_expected = torch.autograd.grad(expected, (p1, p2))
    for a, b in zip(grad_got, grad_expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert 0 <= 1 - diag["cosine"] <= 2 and diag["z_std"] > 0


def test_stop_gradient_no_gradient_reaches_the_targets() -> None:
    gen = torch.Generator().manual_seed(0)
    p1, p2, z1, z2 = (torch.randn(4, 2, 6, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(4))
    loss, _ = vfs_loss(p1, p2, z1, z2)
    loss.backward()
    assert z1.grad is None and z2.grad is None
    assert p1.grad is not None and p1.grad.abs().sum() > 0 and p2.grad.abs().sum() > 0


def test_loss_hand_computed_and_scale_invariant() -> None:
    """Identical directions cost 0, opposite ones 4 (2 − 2·(−1)), orthogonal ones 2; lengths do not matter."""
    e1, e2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 3.0]])
    assert float(vfs_loss(e1, 5 * e1, 2 * e1, e1)[0]) == pytest.approx(0.0)
    assert float(vfs_loss(e1, e1, -e1, -e1)[0]) == pytest.approx(4.0)  # p1, p2, z1, z2
    assert float(vfs_loss(e1, e2, e1, e2)[0]) == pytest.approx(2.0)
    # one direction matches, the other is orthogonal: ½·0 + ½·2
    assert float(vfs_loss(e1, e2, e2, e1)[0]) == pytest.approx(0.0)
    assert float(vfs_loss(e1, e1, e2, e1)[0]) == pytest.approx(1.0)


def test_collapse_shows_in_z_std() -> None:
    same = torch.ones(8, 16)
    _, diag = vfs_loss(same, same, same, same)
    assert diag["z_std"] == pytest.approx(0.0, abs=1e-7) and diag["cosine"] == pytest.approx(1.0)


# -- (b) the evaluation encoder -------------------------------------------------------------------


class _ConvModule(nn.Module):
    """mmcv ConvModule as their ResNet uses it: conv (no bias) → BN → optional ReLU, named conv/bn."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, pad: int = 0, dil: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, pad, dil, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = act

    def forward(self, x):
        x = self.bn(self.conv(x))
        return F.relu(x) if self.act else x


class _Basic(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride, dil, downsample):
        super().__init__()
        self.conv1 = _ConvModule(cin, planes, 3, stride, dil, dil)
        self.conv2 = _ConvModule(planes, planes, 3, 1, 1, 1, act=False)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(self.conv2(self.conv1(x)) + identity)


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride, dil, downsample):  # style='pytorch': the 3x3 conv strides
        super().__init__()
        self.conv1 = _ConvModule(cin, planes, 1)
        self.conv2 = _ConvModule(planes, planes, 3, stride, dil, dil)
        self.conv3 = _ConvModule(planes, planes * 4, 1, act=False)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(self.conv3(self.conv2(self.conv1(x))) + identity)


class _TheirTestResNet(nn.Module):
    """mmaction2 ResNet as tools/test.py builds it for evaluation: strides (1, 2, 1, 1), dilations 1,
    out_indices (2,) — every stage is still built and run; layer3's output is returned."""

    def __init__(self, depth: int, strides=(1, 2, 1, 1), dilations=(1, 1, 1, 1)):
        super().__init__()
        block, counts = {18: (_Basic, (2, 2, 2, 2)), 50: (_Bottleneck, (3, 4, 6, 3))}[depth]
        self.conv1 = _ConvModule(3, 64, 7, 2, 3)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (n, stride, dil) in enumerate(zip(counts, strides, dilations, strict=True)):
            planes = 64 * 2**i
            down = None
            if stride != 1 or cin != planes * block.expansion:
                down = _ConvModule(cin, planes * block.expansion, 1, stride, act=False)
            blocks = [block(cin, planes, stride, dil if dil == 1 else dil // 2, down)]
            cin = planes * block.expansion
            blocks += [block(cin, planes, 1, dil, None) for _ in range(1, n)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        outs = []
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
            outs.append(x)
        return outs[2]


def _torchvision_to_mmcv(key: str) -> str:
    """torchvision key → their ConvModule key (the inverse of their convert_to_pretrained.py)."""
    parts = key.split(".")
    if parts[0] == "conv1":
        return "conv1.conv." + parts[-1]
    if parts[0] == "bn1":
        return "conv1.bn." + parts[-1]
    layer, block, module = parts[0], parts[1], parts[2]
    if module == "downsample":
        return f"{layer}.{block}.downsample.{'conv' if parts[3] == '0' else 'bn'}.{parts[-1]}"
    if module.startswith("bn"):
        return f"{layer}.{block}.conv{module[2:]}.bn.{parts[-1]}"
    return f"{layer}.{block}.{module}.conv.{parts[-1]}"


def _randomise_bn(model: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.weight.data = 0.5 + torch.rand(n, generator=gen)
            module.bias.data = 0.1 * torch.randn(n, generator=gen)
            module.running_mean.data = 0.1 * torch.randn(n, generator=gen)
            module.running_var.data = 0.5 + torch.rand(n, generator=gen)


def _trained_like(arch: str, seed: int) -> tuple[VFSNet, _TheirTestResNet]:
    torch.manual_seed(seed)
    net = VFSNet(arch)
    _randomise_bn(net, seed)  # zero-init residual BNs would hide half the network otherwise
    theirs = _TheirTestResNet(18 if arch == "resnet18" else 50)
    trunk = {k[len("encoder."):]: v for k, v in net.state_dict().items() if k.startswith("encoder.")}
    theirs.load_state_dict({_torchvision_to_mmcv(k): v for k, v in trunk.items()}, strict=True)
    return net, theirs.eval()


@pytest.mark.parametrize(("arch", "size"), [("resnet18", (45, 67)), ("resnet50", (40, 33))])
def test_eval_features_equal_their_test_backbone(arch: str, size: tuple[int, int]) -> None:
    net, theirs = _trained_like(arch, seed=3)
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = net.eval_encoder()(x)
        expected = theirs(x)
    assert got.shape == (2, EVAL_DIM[arch], math.ceil(size[0] / 8), math.ceil(size[1] / 8))
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_eval_surgery_leaves_the_training_trunk_alone() -> None:
    net = VFSNet("resnet18")
    assert net.encoder.layer3[0].conv1.stride == (2, 2)  # training runs at stride 32
    assert net.eval_encoder().layer3[0].conv1.stride == (1, 1)
    assert all(m.padding_mode == "zeros" for m in net.eval_encoder().modules() if isinstance(m, nn.Conv2d))


def test_heads_follow_the_config() -> None:
    net = VFSNet("resnet18")
    shapes = [tuple(m.weight.shape) for m in net.projector if isinstance(m, nn.Linear)]
    assert shapes == [(512, 512), (512, 512), (512, 512)]
    assert [type(m).__name__ for m in net.projector] == ["Linear", "BatchNorm1d", "ReLU"] * 2 + ["Linear", "BatchNorm1d"]
    assert [type(m).__name__ for m in net.predictor] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert [tuple(m.weight.shape) for m in net.predictor if isinstance(m, nn.Linear)] == [(128, 512), (512, 128)]
    big = VFSNet("resnet50", (3, 2048, 2048), (2, 512, 2048))
    assert big.projector[0].in_features == 2048 and big.predictor[0].out_features == 512
    z, p = net(torch.randn(3, 3, 64, 64))
    assert z.shape == p.shape == (3, 512)


@pytest.mark.parametrize("layout", ["harness", "converted", "mmaction"])
def test_checkpoint_layouts_give_their_features(layout: str, tmp_path: Path) -> None:
    from methods.vfs.method import VFSMethod

    net, theirs = _trained_like("resnet18", seed=5)
    path = tmp_path / "ckpt.pt"
    if layout == "harness":
        save_eval_checkpoint(path, net.state_dict(), {"name": "test"}, step=7)
    elif layout == "converted":
        trunk = {k[len("encoder."):]: v for k, v in net.state_dict().items() if k.startswith("encoder.")}
        torch.save({"state_dict": trunk, "meta": {}}, path)
    else:
        state = {f"backbone.{k}": v for k, v in theirs.state_dict().items()}
        state["img_head.projection_fcs.0.weight"] = torch.zeros(512, 512)
        torch.save({"state_dict": state, "meta": {"epoch": 100}}, path)
    method = VFSMethod({"checkpoint": str(path)})
    assert method.arch == "resnet18" and method.dim == 256
    x = torch.randn(1, 3, 32, 48, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(method.embed(x), theirs(x), rtol=1e-6, atol=1e-6)
    if layout == "harness":
        assert read_checkpoint(path).step == 7 and method.describe()["pretraining"]["source"] == "harness"


def test_checkpoint_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    from harness.errors import CheckpointError

    path = tmp_path / "bad.pt"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
    with pytest.raises(CheckpointError, match="missing keys"):
        read_checkpoint(path)


# -- (c) frame pairs ------------------------------------------------------------------------------


def _frame_folder(root: Path, video: int, frames: int) -> None:
    """A frame-folder video whose pixels say which video and frame they are (R = video, G = frame)."""
    folder = root / f"video{video}"
    folder.mkdir(parents=True)
    for i in range(frames):
        Image.fromarray(np.full((24, 32, 3), (video * 40, i, 0), np.uint8)).save(folder / f"{i:05d}.png")


@pytest.fixture
def videos(tmp_path: Path):
    from methods.crw.data import index_videos

    for video, frames in enumerate((30, 11, 7)):
        _frame_folder(tmp_path / "videos", video, frames)
    entries, _ = index_videos(tmp_path / "videos", cache_dir=tmp_path / "cache")
    return entries


@pytest.mark.parametrize("segments", [2, 8])
def test_pairs_are_deterministic_from_one_video_with_gaps_in_range(videos, segments: int) -> None:
    sampler = PairSampler(videos, segments=segments, seed=11, repeat=2)
    again = PairSampler(videos, segments=segments, seed=11, repeat=2)
    other = PairSampler(videos, segments=segments, seed=12, repeat=2)
    draws = [sampler.draw(i) for i in range(3 * sampler.epoch_length)]
    assert draws == [again.draw(i) for i in range(len(draws))]
    assert draws != [other.draw(i) for i in range(len(draws))]
    # each epoch visits every video `repeat` times
    for epoch in range(3):
        seen = sorted(d.video for d in draws[epoch * sampler.epoch_length : (epoch + 1) * sampler.epoch_length])
        assert seen == sorted(list(range(len(videos))) * 2)
    half = segments // 2
    for d in draws:
        n = videos[d.video].num_frames
        length = (n + 1) // segments
        frames = d.view1 + d.view2
        assert len(d.view1) == len(d.view2) == half
        assert all(0 <= f < n for f in frames)
        if length > 0:  # one frame per segment, wrapping modulo n as the original's 'loop'
            assert all(any(o % n == f for o in range(s * length, (s + 1) * length)) for s, f in enumerate(frames))
            unwrapped = [f if f >= s * length else f + n for s, f in enumerate(frames)]
            gaps = [b - a for a in unwrapped[:half] for b in unwrapped[half:]]
            assert min(gaps) >= 1 and max(gaps) <= segments * length - 1


def test_segment_rule_by_hand() -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        a, b = segment_frames(10, 2, gen)  # (10 + 1) // 2 = 5: one frame in 0-4, one in 5-9
        assert 0 <= a <= 4 and 5 <= b <= 9
        c, d = segment_frames(9, 2, gen)  # 5-frame segments: 0-4 and 5-9, frame 9 wraps to 0
        assert 0 <= c <= 4 and (5 <= d <= 8 or d == 0)
    # too short: 0, .5, 1, … 3.5 rounded half to even (np.around) = 0 0 1 2 2 2 3 4, wrapped mod 3
    assert segment_frames(3, 8, gen) == [0, 0, 1, 2, 2, 2, 0, 1]


def test_dataset_decodes_the_drawn_frames(videos) -> None:
    sampler = PairSampler(videos, segments=4, seed=3)
    seen: list[tuple[int, tuple[int, ...]]] = []

    def decode(video, frames):
        from methods.crw.data import decode_frames

        seen.append((videos.index(video), tuple(frames)))
        return decode_frames(video, frames)

    dataset = PairDataset(sampler, FrameAugment(size=16, flip=0.0, area=(1.0, 1.0), ratio=(32 / 24, 32 / 24),
                                                mean=(0, 0, 0), std=(1, 1, 1)), decode)
    for index in range(len(dataset)):
        view1, view2, failures = dataset[index]
        draw = sampler.draw(index)
        assert failures == 0 and seen[-1] == (draw.video, draw.view1 + draw.view2)
        assert view1.shape == view2.shape == (2, 3, 16, 16)
        # a full-frame crop keeps each frame's constant colour: red says the video, green the frame
        pixels = torch.cat([view1, view2])[:, :2, 0, 0] * 255
        torch.testing.assert_close(pixels[:, 0], torch.full((4,), 40.0 * draw.video), atol=1e-3, rtol=0)
        torch.testing.assert_close(pixels[:, 1], torch.tensor(draw.view1 + draw.view2, dtype=torch.float32),
                                   atol=1e-3, rtol=0)
    first = dataset[1]
    assert all(torch.equal(a, b) for a, b in zip(first[:2], dataset[1][:2], strict=True))


def test_real_video_pairs(shared_dir: Path, tmp_path: Path) -> None:
    from methods.crw.data import index_videos

    folder = tmp_path / "real"
    folder.mkdir()
    (folder / "bikes.mp4").symlink_to(shared_dir / "data" / "videos" / "bikes.mp4")
    entries, _ = index_videos(folder, cache_dir=tmp_path / "cache")
    dataset = PairDataset(PairSampler(entries, segments=2, seed=0), FrameAugment(size=64))
    view1, view2, failures = dataset[0]
    assert failures == 0 and view1.shape == view2.shape == (1, 3, 64, 64)
    assert torch.equal(view1, dataset[0][0]) and not torch.equal(view1, view2)


def test_crop_rule() -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(100):
        top, left, h, w = crop_box(48, 64, (0.2, 1.0), (3 / 4, 4 / 3), gen)
        assert 0 <= top and top + h <= 48 and 0 <= left and left + w <= 64
        assert 0.2 * 48 * 64 * 0.9 <= h * w <= 48 * 64
    # no candidate can fit (a 4:1 crop of the whole area): the centred square of the shorter side
    assert crop_box(48, 64, (1.0, 1.0), (4.0, 4.0), gen) == (0, 8, 48, 48)


# -- recipes --------------------------------------------------------------------------------------


def test_recipes_load_and_match_the_configs() -> None:
    from harness.errors import HarnessError
    from harness.training.recipes import load_recipe, recipe_names
    from methods.vfs.trainer import VFSTrainer

    trainer = VFSTrainer()
    assert {"vfs-paper", "vfs-paper-r50", "vfs-cpu-demo"} <= set(recipe_names(trainer))
    paper, r50, demo = (load_recipe(trainer, name) for name in ("vfs-paper", "vfs-paper-r50", "vfs-cpu-demo"))
    assert (paper["data"]["segments"], paper["loss"]["all_pairs"], paper["augment"]["jitter_p"], paper["optim"]["lr"],
            paper["optim"]["momentum"], paper["optim"]["weight_decay"]) == (8, True, 0.0, 0.05, 0.9, 1e-4)
    model = r50["model"]
    assert (model["arch"], model["projector_out"], model["predictor_hidden"], r50["data"]["segments"]) == \
        ("resnet50", 2048, 512, 2)
    assert demo["model"] == paper["model"] and demo["augment"]["size"] == 128
    with pytest.raises(HarnessError, match="optim.lr"):
        load_recipe(trainer, "vfs-paper", ["optim.lrr=0.1"])
    with pytest.raises(HarnessError, match="segments must be even"):
        load_recipe(trainer, "vfs-paper", ["data.segments=3"])
    with pytest.raises(HarnessError, match="predictor_out"):
        load_recipe(trainer, "vfs-paper", ["model.predictor_out=256"])


# -- (d, e) registration and an end-to-end run ----------------------------------------------------


def test_harness_list_shows_vfs(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "harness", "list", "methods"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, check=False, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.split()[:1] == ["vfs"])
    assert "stride 8, dim 256" in line


def test_harness_names_no_vfs() -> None:
    """The harness stays method-agnostic: nothing under harness/ names VFS."""
    hits = [p.relative_to(REPO).as_posix() for p in (REPO / "harness").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and b"vfs" in p.read_bytes().lower()]
    assert hits == []


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(["run", *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "RUNS_DIR", tmp_path / "results" / "runs")
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "results"))


def test_random_init_run_on_a_tiny_davis(tmp_path: Path, runs_dir, capsys) -> None:
    from tests.test_outdir import tiny_davis_root

    root = tiny_davis_root(tmp_path / "davis")
    code, out, err = _run(["--method", "vfs", "--task", "davis", "--data-root", str(root), "--limit", "1",
                           "--out-dir", str(tmp_path / "out")], capsys)
    assert code == 0, err
    assert "RANDOM-INIT resnet18" in err
    record = json.loads(Path(out.strip().splitlines()[-1]).read_text())
    assert record["method"] == "vfs" and record["method_info"]["pretraining"] == "none (random init, seed 0)"


@pytest.mark.slow
def test_eval_checkpoint_run_on_the_shipped_sample(tmp_path: Path, runs_dir, capsys) -> None:
    torch.manual_seed(0)
    ckpt = save_eval_checkpoint(tmp_path / "vfs.pt", VFSNet().state_dict(), {"name": "random"}, step=0)
    code, out, err = _run(["--method", "vfs", "--task", "davis", "--data-root", str(SAMPLE), "--limit", "1",
                           "--checkpoint", str(ckpt), "--out-dir", str(tmp_path / "out")], capsys)
    assert code == 0, err
    record = json.loads(Path(out.strip().splitlines()[-1]).read_text())
    assert 0 < record["metrics"]["J&F-Mean"] <= 1
