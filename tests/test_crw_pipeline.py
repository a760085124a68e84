"""The fast CRW data pipeline against its simple references, on the real demo videos.

- decoding from the nearest key frame and stopping early returns the frames a full decode from
  the first frame gives, bit for bit, on every real video (the AVI with B-frames included);
- cutting all patches with one ``grid_sample`` uses exactly the boxes the per-patch reference
  draws from the same seed and matches its pixels within 1e-4 (values in [0, 1]).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from methods.crw import augment as augment_module
from methods.crw import reference as reference_module
from methods.crw.augment import ClipAugment, cut_patches
from methods.crw.data import ClipDataset, ClipIndex, ShardedClipSampler, collate, decode_frames, index_videos
from methods.crw.reference import PerPatchAugment, decode_file_reference

av = pytest.importorskip("av")
pytestmark = pytest.mark.usefixtures("single_thread")

PAPER = {}  # crw-paper: 256-px frames, 49 patches of 64 px at stride 32
DEMO = {"frame_size": 128, "patch_size": 32, "patch_stride": 16}  # crw-cpu-demo
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def index(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> ClipIndex:
    root = shared_dir / "data" / "videos"
    if not root.is_dir():
        pytest.skip(f"needs the real demo videos in {root}")
    videos, _ = index_videos(root, tmp_path_factory.mktemp("cache"))
    assert len(videos) == 5
    return ClipIndex(videos, clip_len=4, target_fps=8)


def _full_decode(path: Path) -> dict[int, np.ndarray]:
    """Reference: every frame of the file decoded in order from the first, by timestamp."""
    with av.open(str(path)) as container:
        return {f.pts: f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0]) if f.pts is not None}


def _at(frames: dict[int, np.ndarray], wanted: int) -> np.ndarray:
    """The frame on screen at ``wanted``: its own, else the latest one before it."""
    return frames[max(p for p in frames if p <= wanted)]


def test_decoding_matches_a_full_decode_on_every_real_video(index: ClipIndex) -> None:
    for number, video in enumerate(index.videos):
        full = _full_decode(video.path)
        count = int(index.counts[number])
        # every 5th clip and the last one: the seek target (the key frame before the clip) varies
        starts = sorted({*range(0, count, 5), count - 1})
        for start in starts:
            clip = index.clip(number, start)
            fast = decode_frames(video, clip.frames)
            expected = np.stack([_at(full, video.pts[i]) for i in clip.frames])
            assert fast.dtype == np.uint8 and np.array_equal(fast, expected), (video.path.name, start)
        clip = index.clip(number, count // 2)
        assert np.array_equal(decode_frames(video, clip.frames), decode_file_reference(video, clip.frames))


def _clip(index: ClipIndex, name: str, start: int) -> np.ndarray:
    number = next(i for i, v in enumerate(index.videos) if v.path.name == name)
    clip = index.clip(number, start)
    return decode_frames(index.videos[number], clip.frames)


def _record_boxes(monkeypatch: pytest.MonkeyPatch, module: object) -> list[tuple[int, int, int, int]]:
    drawn: list[tuple[int, int, int, int]] = []
    original = module.random_resized_box  # type: ignore[attr-defined]

    def recording(*args, **kwargs):  # type: ignore[no-untyped-def]
        box = original(*args, **kwargs)
        drawn.append(box)
        return box

    monkeypatch.setattr(module, "random_resized_box", recording)
    return drawn


@pytest.mark.parametrize("settings", [PAPER, DEMO], ids=["crw-paper", "crw-cpu-demo"])
@pytest.mark.parametrize(("name", "start"), [("kinetics400-demo.mp4", 17), ("mmaction2-test.avi", 5), ("bikes.mp4", 40)])
def test_batched_patches_match_the_per_patch_reference(
    index: ClipIndex, settings: dict, name: str, start: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = _clip(index, name, start)
    fast, reference = ClipAugment(settings), PerPatchAugment(settings)
    fast_boxes = _record_boxes(monkeypatch, augment_module)
    gen_fast = torch.Generator().manual_seed(1234)
    resized, patch_boxes = fast.prepare(frames, gen_fast)
    monkeypatch.undo()
    reference_boxes = _record_boxes(monkeypatch, reference_module)
    gen_reference = torch.Generator().manual_seed(1234)
    expected = reference.unnormalised(frames, gen_reference)

    # the same boxes, drawn in the same order, leaving the generator in the same state
    assert fast_boxes == reference_boxes and len(fast_boxes) == 4 * (1 + fast.nodes)
    assert torch.equal(gen_fast.get_state(), gen_reference.get_state())
    assert patch_boxes.shape == (4, fast.nodes, 4)
    # and the same pixels
    patches = cut_patches(resized, patch_boxes, fast.patch_size, fast.patch_stride)
    assert patches.shape == expected.shape
    assert (patches - expected).abs().max().item() <= TOLERANCE
    normalised = fast(frames, torch.Generator().manual_seed(1234))
    assert (normalised - reference(frames, torch.Generator().manual_seed(1234))).abs().max().item() <= TOLERANCE / min(
        augment_module.CIFAR10_STD
    )


def test_finish_on_a_batch_equals_finish_per_clip(index: ClipIndex) -> None:
    """``data.augment_on: gpu`` runs ``finish`` once on the stacked batch: it must equal per-clip ``finish``."""
    augment = ClipAugment(DEMO)
    videos = [("kinetics400-demo.mp4", 3), ("carphone.mp4", 2)]
    prepared = [augment.prepare(_clip(index, n, s), torch.Generator().manual_seed(k)) for k, (n, s) in enumerate(videos)]
    (frames, boxes), failures = collate([(p, 0) for p in prepared])
    assert frames.shape == (2, 4, 3, 128, 128) and boxes.shape == (2, 4, 49, 4) and failures == 0
    batched = augment.finish(frames, boxes)
    assert torch.equal(batched, torch.stack([augment.finish(*p) for p in prepared]))


@pytest.mark.gpu
def test_finish_on_cuda_matches_cpu(index: ClipIndex) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    augment = ClipAugment(PAPER)
    frames, boxes = augment.prepare(_clip(index, "kinetics400-demo.mp4", 8), torch.Generator().manual_seed(0))
    on_cpu = augment.finish(frames, boxes)
    on_gpu = augment.finish(frames.cuda(), boxes).cpu()
    assert (on_cpu - on_gpu).abs().max().item() <= TOLERANCE / min(augment_module.CIFAR10_STD)


def test_dataset_with_reference_parts_gives_the_same_samples(index: ClipIndex) -> None:
    """The loader benchmark's two datasets (reference decode + per-patch crops vs the fast path) agree."""
    sampler = ShardedClipSampler(index, clips_per_video=5, batch_size=2, seed=0)
    keys = sampler.batch_at(0)
    fast = ClipDataset(index, ClipAugment(DEMO))
    slow = ClipDataset(index, PerPatchAugment(DEMO), decode=decode_file_reference)
    for key in keys:
        (a, fa), (b, fb) = fast[key], slow[key]
        assert fa == fb == 0
        assert (a - b).abs().max().item() <= TOLERANCE / min(augment_module.CIFAR10_STD)
