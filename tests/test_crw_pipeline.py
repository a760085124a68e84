"""The fast CRW data pipeline against its simple references, on the real demo videos.

- decoding from the nearest key frame and stopping early returns the frames a full decode from
  the first frame gives, bit for bit, on every real video (the AVI with B-frames included);
- cutting all patches with one ``grid_sample`` uses exactly the boxes the per-patch reference
  draws from the same seed (read in bulk, the same numbers and generator state as one torch call
  per draw) and matches its pixels within 1e-4 (values in [0, 1]), whether the worker does it
  (``augment_on: cpu``) or ``finish`` does it for a whole batch (``augment_on: gpu``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from methods.crw import augment as augment_module
from methods.crw import reference as reference_module
from methods.crw.augment import ClipAugment, cut_patches, random_resized_box
from methods.crw.data import (
    ClipDataset,
    ClipIndex,
    ShardedClipSampler,
    build_loader,
    collate,
    decode_frames,
    index_videos,
)
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


def _in_draw_order(frame_boxes: torch.Tensor, patch_boxes: torch.Tensor) -> list[tuple[int, int, int, int]]:
    """A frame's box, then its patch boxes, frame after frame: the order the reference draws them."""
    order: list[tuple[int, int, int, int]] = []
    for frame_box, boxes in zip(frame_boxes.tolist(), patch_boxes.tolist(), strict=True):
        order += [tuple(frame_box), *(tuple(b) for b in boxes)]
    return order


@pytest.mark.parametrize("settings", [PAPER, DEMO], ids=["crw-paper", "crw-cpu-demo"])
@pytest.mark.parametrize(("name", "start"), [("kinetics400-demo.mp4", 17), ("mmaction2-test.avi", 5), ("bikes.mp4", 40)])
def test_batched_patches_match_the_per_patch_reference(
    index: ClipIndex, settings: dict, name: str, start: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = _clip(index, name, start)
    fast, reference = ClipAugment(settings), PerPatchAugment(settings)
    gen_fast = torch.Generator().manual_seed(1234)
    video, frame_boxes, patch_boxes = fast.prepare(frames, gen_fast)
    reference_boxes = _record_boxes(monkeypatch, reference_module)
    gen_reference = torch.Generator().manual_seed(1234)
    expected = reference.unnormalised(frames, gen_reference)

    # the worker part of augment_on: gpu hands on the decoded frames untouched
    assert video.dtype == torch.uint8 and np.array_equal(video.numpy(), frames)
    # the same boxes, drawn in the same order, leaving the generator in the same state
    assert _in_draw_order(frame_boxes, patch_boxes) == reference_boxes and len(reference_boxes) == 4 * (1 + fast.nodes)
    assert torch.equal(gen_fast.get_state(), gen_reference.get_state())
    assert frame_boxes.shape == (4, 4) and patch_boxes.shape == (4, fast.nodes, 4)
    # and the same pixels
    patches = cut_patches(fast.resize_frames(video, frame_boxes), patch_boxes, fast.patch_size, fast.patch_stride)
    assert patches.shape == expected.shape
    assert (patches - expected).abs().max().item() <= TOLERANCE
    normalised = fast(frames, torch.Generator().manual_seed(1234))
    assert (normalised - reference(frames, torch.Generator().manual_seed(1234))).abs().max().item() <= TOLERANCE / min(
        augment_module.CIFAR10_STD
    )


@pytest.mark.parametrize("settings", [PAPER, DEMO], ids=["crw-paper", "crw-cpu-demo"])
def test_bulk_box_draws_equal_one_torch_call_per_draw(settings: dict) -> None:
    """The boxes read in bulk are those of one torch call per draw, and the generator ends in the same state."""
    assert augment_module._bulk_draws_work()
    augment = ClipAugment(settings)
    for seed in [*range(40), 2**62 + 7]:
        bulk, per_call = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        for height, width in [(256, 340), (144, 176), (40, 30)]:  # several clips in a row off one generator
            got = _in_draw_order(*augment.draw_boxes(height, width, 4, bulk))
            expected = []
            for _ in range(4):
                expected.append(random_resized_box(height, width, augment.frame_scale, augment.frame_ratio, per_call))
                expected += [
                    random_resized_box(augment.patch_size, augment.patch_size, augment.patch_scale, augment.patch_ratio, per_call)
                    for _ in range(augment.nodes)
                ]
            assert got == expected, seed
            assert torch.equal(bulk.get_state(), per_call.get_state()), seed


def test_box_draws_without_the_bulk_reader_are_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the bulk reader is off (a torch whose generator disagrees), the per-call draws give the same boxes."""
    augment = ClipAugment(DEMO)
    bulk = augment.draw_boxes(144, 176, 4, torch.Generator().manual_seed(3))
    monkeypatch.setattr(augment_module, "_bulk_checked", False)
    per_call = augment.draw_boxes(144, 176, 4, torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip(bulk, per_call, strict=True))


def test_finish_on_a_batch_equals_each_clip_on_its_own(index: ClipIndex) -> None:
    """``data.augment_on: gpu`` runs ``finish`` once per batch of clips of different videos (and sizes):
    each clip must come out exactly as ``augment_on: cpu`` makes it in the worker."""
    augment = ClipAugment(DEMO)
    clips = [_clip(index, n, s) for n, s in [("kinetics400-demo.mp4", 3), ("carphone.mp4", 2), ("kinetics400-demo.mp4", 9)]]
    assert clips[0].shape != clips[1].shape
    prepared = [augment.prepare(c, torch.Generator().manual_seed(k)) for k, c in enumerate(clips)]
    (frames, frame_boxes, patch_boxes), failures = collate([(p, 0) for p in prepared])
    assert isinstance(frames, list) and frame_boxes.shape == (3, 4, 4) and patch_boxes.shape == (3, 4, 49, 4) and failures == 0
    batched = augment.finish(frames, frame_boxes, patch_boxes)
    assert batched.shape == (3, 4, 49, 3, 32, 32)
    on_workers = torch.stack([augment(c, torch.Generator().manual_seed(k)) for k, c in enumerate(clips)])
    assert torch.equal(batched, on_workers)
    same_size = augment.finish(torch.stack([frames[0], frames[2]]), frame_boxes[[0, 2]], patch_boxes[[0, 2]])
    assert torch.equal(same_size, on_workers[[0, 2]])


@pytest.mark.gpu
def test_finish_on_cuda_matches_cpu(index: ClipIndex) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    augment = ClipAugment(PAPER)
    clips = [_clip(index, n, s) for n, s in [("kinetics400-demo.mp4", 8), ("carphone.mp4", 2)]]
    prepared = [augment.prepare(c, torch.Generator().manual_seed(k)) for k, c in enumerate(clips)]
    (frames, frame_boxes, patch_boxes), _ = collate([(p, 0) for p in prepared])
    on_cpu = augment.finish(frames, frame_boxes, patch_boxes)
    on_gpu = augment.finish([f.cuda() for f in frames], frame_boxes, patch_boxes).cpu()
    assert (on_cpu - on_gpu).abs().max().item() <= TOLERANCE / min(augment_module.CIFAR10_STD)
    # and against the per-patch reference on the CPU
    reference = torch.stack([PerPatchAugment(PAPER)(c, torch.Generator().manual_seed(k)) for k, c in enumerate(clips)])
    assert (on_gpu - reference).abs().max().item() <= TOLERANCE / min(augment_module.CIFAR10_STD)


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


def test_augment_on_gpu_batches_equal_augment_on_cpu_batches(index: ClipIndex) -> None:
    """Through the DataLoader (one worker) and the training loop's ``batch_to_device``: the batches of
    ``augment_on: gpu`` (workers decode and draw boxes; here finished on the CPU) equal those of ``augment_on: cpu``."""
    from methods.crw.trainer import CRWTrainer

    augment = ClipAugment(DEMO)
    recipe = {"augment": DEMO}
    sampler = ShardedClipSampler(index, clips_per_video=5, batch_size=3, seed=0, total_steps=2)
    on_cpu = list(build_loader(ClipDataset(index, augment), sampler, workers=1))
    on_gpu = list(build_loader(ClipDataset(index, augment.prepare), sampler, workers=1))
    assert len(on_cpu) == len(on_gpu) == 2
    for (cut_in_worker, failures), (prepared, failures_gpu) in zip(on_cpu, on_gpu, strict=True):
        frames = prepared[0]
        assert isinstance(frames, list) and all(f.dtype == torch.uint8 for f in frames) and failures == failures_gpu
        assert torch.equal(CRWTrainer().batch_to_device(prepared, recipe, torch.device("cpu")), cut_in_worker)
        assert torch.equal(CRWTrainer().batch_to_device((cut_in_worker, failures)[0], recipe, torch.device("cpu")), cut_in_worker)
