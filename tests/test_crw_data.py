"""CRW training data: clip sampling at a target fps on real video, the index cache, decode failures, augmentation."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.errors import DataError
from methods.crw.augment import CIFAR10_MEAN, CIFAR10_STD, ClipAugment, patch_grid, random_resized_box
from methods.crw.data import (
    ClipDataset,
    ClipIndex,
    SampleKey,
    ShardedClipSampler,
    collate,
    decode_frames,
    index_videos,
    resampled_indices,
)

av = pytest.importorskip("av")


@pytest.fixture()
def videos_dir(shared_dir: Path) -> Path:
    path = shared_dir / "data" / "videos"
    if not path.is_dir():
        pytest.skip(f"needs the real demo videos in {path}")
    return path


def _all_frames(path: Path) -> list[np.ndarray]:
    """Reference: every frame of a file, decoded in order from the start (no seeking)."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]


def test_resampled_indices_by_hand() -> None:
    # 30 fps -> 8 fps: a step of 3.75 source frames, floor(k * 3.75)
    assert resampled_indices(16, 30.0, 8.0).tolist() == [0, 3, 7, 11]
    # 4 fps -> 8 fps: every source frame twice
    assert resampled_indices(3, 4.0, 8.0).tolist() == [0, 0, 1, 1, 2, 2]
    assert resampled_indices(5, 8.0, 8.0).tolist() == [0, 1, 2, 3, 4]
    assert resampled_indices(5, 0.0, 8.0).tolist() == [0, 1, 2, 3, 4]  # unknown rate: keep every frame


def test_clips_at_8_fps_on_real_video(videos_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "videos"
    root.mkdir()
    shutil.copy(videos_dir / "kinetics400-demo.mp4", root)  # 28 fps, 280 frames
    videos, stats = index_videos(root, tmp_path / "cache")
    assert (stats.indexed, stats.failed, len(videos)) == (1, 0, 1)
    video = videos[0]
    assert video.fps == pytest.approx(28.0) and video.num_frames == 280
    index = ClipIndex(videos, clip_len=4, target_fps=8)
    assert index.counts.tolist() == [280 // 3.5 - 3]  # 80 frames at 8 fps -> 77 windows of 4

    reference = _all_frames(video.path)
    for start in (0, 41, 76):
        clip = index.clip(0, start)
        seconds = np.array(clip.frames) / 28.0
        assert np.allclose(np.diff(seconds), 1 / 8, atol=1 / 28)  # frames 1/8 s apart (to a source frame)
        frames = decode_frames(video, clip.frames)
        assert frames.shape == (4, 256, 340, 3) and frames.dtype == np.uint8
        for got, i in zip(frames, clip.frames, strict=True):
            assert np.array_equal(got, reference[i])


def test_epoch_draws_up_to_k_distinct_clips_per_video(videos_dir: Path, tmp_path: Path) -> None:
    videos, _ = index_videos(videos_dir, tmp_path / "cache")
    index = ClipIndex(videos, clip_len=4, target_fps=8)
    clips = index.epoch_clips(5, seed=3, epoch=0)
    assert len(clips) == 5 * len(videos)
    for video in range(len(videos)):
        starts = [s for v, s in clips if v == video]
        assert len(set(starts)) == 5 and all(0 <= s < index.counts[video] for s in starts)
    assert [v for v, _ in clips] != sorted(v for v, _ in clips)  # shuffled across videos
    assert index.epoch_clips(5, seed=3, epoch=0) == clips
    assert index.epoch_clips(5, seed=3, epoch=1) != clips


def test_sampler_shards_and_resumes() -> None:
    from methods.crw.data import VideoEntry

    videos = [VideoEntry(Path(f"/v{i}"), "frames", 0.0, tuple(range(n))) for i, n in enumerate((10, 7, 4, 12))]
    index = ClipIndex(videos, clip_len=3, target_fps=None)
    one = ShardedClipSampler(index, 5, batch_size=2, seed=1)
    shards = [ShardedClipSampler(index, 5, batch_size=1, seed=1, rank=r, world_size=2) for r in range(2)]
    # 5 + 5 + 2 + 5 = 17 clips; two ranks of batch 1 get 9 steps each (17 padded to 18)
    assert one.clips_per_epoch == 17 and shards[0].steps_per_epoch == 9
    epoch = index.epoch_clips(5, seed=1, epoch=0)
    merged = [key for step in range(9) for r in range(2) for key in shards[r].batch_at(step)]
    assert [(k.video, k.start) for k in merged] == epoch + epoch[:1]
    # the same global position gets the same seed whatever the rank count
    assert [k.seed for k in merged[:16]] == [k.seed for b in one.epoch_batches(0) for k in b]
    # resuming at step 5 yields exactly the batches an uninterrupted sampler yields from step 5 on
    full = list(ShardedClipSampler(index, 5, 2, seed=1, total_steps=20))
    resumed = list(ShardedClipSampler(index, 5, 2, seed=1, start_step=5, total_steps=20))
    assert resumed == full[5:] and len(full) == 20


def test_index_cache_follows_the_folder(videos_dir: Path, tmp_path: Path) -> None:
    root, cache = tmp_path / "videos", tmp_path / "cache"
    root.mkdir()
    shutil.copy(videos_dir / "carphone.mp4", root / "a.mp4")
    shutil.copy(videos_dir / "mmaction2-test.avi", root / "b.avi")
    _, first = index_videos(root, cache)
    assert (first.indexed, first.reused) == (2, 0)
    _, again = index_videos(root, cache)
    assert (again.indexed, again.reused) == (0, 2)

    shutil.copy(videos_dir / "bikes.mp4", root / "c.mp4")  # a new video
    videos, added = index_videos(root, cache)
    assert (added.indexed, added.reused, len(videos)) == (1, 2, 3)

    shutil.copy(videos_dir / "kinetics400-demo.mp4", root / "a.mp4")  # a.mp4 replaced by another video
    videos, changed = index_videos(root, cache)
    assert (changed.indexed, changed.reused) == (1, 2)
    assert {v.path.name: v.num_frames for v in videos}["a.mp4"] == 280

    (root / "b.avi").unlink()
    videos, removed = index_videos(root, cache)
    assert sorted(v.path.name for v in videos) == ["a.mp4", "c.mp4"] and removed.indexed == 0


def test_frame_folders_are_videos(tmp_path: Path) -> None:
    from PIL import Image

    clip = tmp_path / "root" / "class" / "clip"
    clip.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (20, 30, 3), dtype=np.uint8) for _ in range(11)]
    for i, image in enumerate(images):
        Image.fromarray(image).save(clip / f"{i + 1}.png")  # natural order: 2.png before 10.png
    videos, _ = index_videos(tmp_path / "root", tmp_path / "cache")
    assert len(videos) == 1 and videos[0].kind == "frames" and videos[0].num_frames == 11
    frames = decode_frames(videos[0], (9, 10, 1))
    assert all(np.array_equal(f, images[i]) for f, i in zip(frames, (9, 10, 1), strict=True))


def test_corrupt_video_is_skipped_not_fatal(videos_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root, cache = tmp_path / "videos", tmp_path / "cache"
    root.mkdir()
    shutil.copy(videos_dir / "carphone.mp4", root / "good.mp4")
    shutil.copy(videos_dir / "bikes.mp4", root / "goes-bad.mp4")
    (root / "garbage.mp4").write_bytes(b"\x00not a video" * 100)
    with caplog.at_level(logging.WARNING):
        videos, stats = index_videos(root, cache)
    assert stats.failed == 1 and sorted(v.path.name for v in videos) == ["goes-bad.mp4", "good.mp4"]
    assert "garbage.mp4" in caplog.text

    # a file that indexed fine but no longer decodes (same size and mtime, so the cache trusts it)
    bad = root / "goes-bad.mp4"
    st = bad.stat()
    bad.write_bytes(b"\x00" * st.st_size)
    os.utime(bad, ns=(st.st_atime_ns, st.st_mtime_ns))
    videos, stats = index_videos(root, cache)
    assert stats.reused == 3
    index = ClipIndex(videos, clip_len=3, target_fps=8)
    bad_video = [v.path.name for v in videos].index("goes-bad.mp4")
    with pytest.raises(DataError, match="goes-bad.mp4"):
        decode_frames(videos[bad_video], index.clip(bad_video, 0).frames)
    dataset = ClipDataset(index, lambda frames, gen: torch.from_numpy(frames))
    clip, failures = dataset[SampleKey(bad_video, 0, seed=7)]
    assert failures >= 1 and clip.shape[0] == 3  # replaced by a clip of the good video


def test_augment_shapes_and_determinism() -> None:
    frames = np.random.default_rng(0).integers(0, 255, (4, 120, 160, 3), dtype=np.uint8)
    paper = ClipAugment({})
    out = paper(frames, torch.Generator().manual_seed(0))
    assert out.shape == (4, 49, 3, 64, 64) and out.dtype == torch.float32
    assert torch.equal(out, paper(frames, torch.Generator().manual_seed(0)))
    assert not torch.equal(out, paper(frames, torch.Generator().manual_seed(1)))
    # frames of one clip are cropped independently: identical frames give different patches
    same = paper(np.repeat(frames[:1], 2, axis=0), torch.Generator().manual_seed(0))
    assert not torch.equal(same[0], same[1])
    small = ClipAugment({"frame_size": 128, "patch_size": 32, "patch_stride": 16})
    assert small(frames, torch.Generator().manual_seed(0)).shape == (4, 49, 3, 32, 32)


def test_augment_normalises_with_cifar_statistics() -> None:
    # a flat grey frame stays flat through every crop and resize: each value is (v - mean) / std
    frames = np.full((3, 50, 70, 3), 128, dtype=np.uint8)
    out = ClipAugment({"frame_size": 64, "patch_size": 16, "patch_stride": 8})(frames, torch.Generator())
    expected = (128 / 255 - torch.tensor(CIFAR10_MEAN)) / torch.tensor(CIFAR10_STD)
    assert torch.allclose(out, expected.view(1, 1, 3, 1, 1).expand_as(out), atol=1e-5)


def test_patch_grid_matches_slicing() -> None:
    image = torch.arange(3 * 8 * 8, dtype=torch.float32).view(3, 8, 8)
    patches = patch_grid(image, size=4, stride=2)
    assert patches.shape == (9, 3, 4, 4)
    for n in range(9):
        y, x = divmod(n, 3)
        assert torch.equal(patches[n], image[:, 2 * y : 2 * y + 4, 2 * x : 2 * x + 4])


def test_random_resized_box_stays_in_range() -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        top, left, h, w = random_resized_box(240, 320, (0.8, 0.95), (0.7, 1.3), gen)
        assert 0 <= top <= 240 - h and 0 <= left <= 320 - w
        assert 0.8 * 0.95 <= h * w / (240 * 320) <= 0.95 * 1.05  # rounding of w and h
        assert 0.7 * 0.95 <= w / h <= 1.3 * 1.05


class _Clips(torch.utils.data.Dataset):
    """Four tiny transposed "clips" (what ``cut_patches`` hands ``collate``: a permuted view)."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.arange(30, dtype=torch.float32).add(100 * i).view(2, 3, 5).transpose(1, 2), 0


def _collate_noting_shared(samples: list[tuple[torch.Tensor, int]]) -> tuple[bool, torch.Tensor, torch.Tensor]:
    batch, _ = collate(samples)
    return batch.is_shared(), batch, torch.stack([s[0] for s in samples])


def test_collate_in_a_worker_stacks_into_shared_memory() -> None:
    """A worker's batch is built in shared memory (no second copy when it is sent), same values as ``torch.stack``."""
    assert not collate([_Clips()[0]])[0].is_shared()  # in the main process: plain memory
    loader = torch.utils.data.DataLoader(_Clips(), batch_size=2, num_workers=1, collate_fn=_collate_noting_shared)
    for shared_in_worker, batch, stacked in loader:
        assert shared_in_worker and torch.equal(batch, stacked) and batch.shape == (2, 2, 5, 3)
