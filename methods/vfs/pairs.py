"""VFS training samples: two views of one video, each ``frames_per_view`` frames far apart in time
(methods/vfs/README.md §Sampling), on the video index and decoder CRW training uses.

The frame rule is the original's segment sampling (``SampleFrames(clip_len=1, frame_interval=0,
num_clips=S)``): a video of ``n`` frames is cut into ``S`` equal segments of ``(n + 1) // S`` frames
and one frame is drawn uniformly inside each; the first ``S/2`` frames (in time order) form view 1,
the last ``S/2`` view 2. With ``S = 2`` the two frames come from the first and the second half of
the video, so their gap is anything from 1 frame to nearly the whole video; with ``S = 8`` each view
has 4 frames. A video with fewer than ``S − 1`` frames gets evenly spread frames instead (the
original's rule), and indices wrap modulo ``n`` as its ``out_of_bound_opt='loop'``.

Sample ``i`` is fully determined by ``(seed, i)``: epoch ``e = i // epoch_length`` shuffles the
video list (repeated ``repeat`` times, the original's ``RepeatDataset``) with a generator seeded
from ``(seed, e)``, and the frames and augmentation of position ``i`` use a generator seeded from
``(seed, e, position)``. A video that fails to decode is replaced by another drawn from that same
generator, as CRW training does.

For training, :class:`ShardedPairSampler` deals each rank its batches of those sample indices and
:func:`collate_pairs` stacks the views into ``[B, 2, T, 3, S, S]``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from harness.errors import DataError
from methods.crw.data import (
    MAX_FALLBACKS,
    VideoEntry,
    decode_frames,
    mix_seed,
    resampled_indices,
    seeded_generator,
)

log = logging.getLogger(__name__)


def segment_frames(num_frames: int, segments: int, generator: torch.Generator) -> list[int]:
    """One frame index per segment, in time order, by the rule in the module docstring."""
    if num_frames < 1 or segments < 1:
        raise ValueError(f"need at least one frame and one segment, got {num_frames} frames, {segments} segments")
    length = (num_frames + 1) // segments
    if length > 0:
        offsets = [s * length + int(torch.randint(length, (), generator=generator)) for s in range(segments)]
    else:  # fewer frames than segments: spread evenly (np.around, as the original)
        step = (num_frames + 1) / segments
        offsets = [int(np.around(s * step)) for s in range(segments)]
    return [o % num_frames for o in offsets]


@dataclass(frozen=True)
class PairDraw:
    """Where sample ``index`` comes from: video number and the source-frame indices of each view."""

    index: int
    video: int
    view1: tuple[int, ...]
    view2: tuple[int, ...]
    seed: int


class PairSampler:
    """Deterministic ``index → PairDraw`` over indexed videos (see the module docstring)."""

    def __init__(
        self, videos: Sequence[VideoEntry], segments: int, seed: int, repeat: int = 1, fps: float | None = None
    ) -> None:
        if segments < 2 or segments % 2:
            raise ValueError(f"segments must be an even number >= 2 (half per view), got {segments}")
        if repeat < 1:
            raise ValueError(f"repeat must be >= 1, got {repeat}")
        self.videos = list(videos)
        self.segments = segments
        self.seed = seed
        self.repeat = repeat
        self.frames = [resampled_indices(v.num_frames, v.fps, fps) for v in self.videos]
        self.usable = [i for i, f in enumerate(self.frames) if len(f) > 0]
        if not self.usable:
            raise DataError("no video has a frame to sample")

    @property
    def epoch_length(self) -> int:
        return len(self.usable) * self.repeat

    def video_at(self, index: int) -> tuple[int, int]:
        """``(video, position seed)`` of sample ``index``."""
        epoch, position = divmod(index, self.epoch_length)
        order = torch.randperm(self.epoch_length, generator=seeded_generator(self.seed, epoch)).tolist()
        return self.usable[order[position] % len(self.usable)], mix_seed(self.seed, epoch, position)

    def frames_of(self, video: int, generator: torch.Generator) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Source-frame indices of view 1 and view 2 drawn from ``video`` with ``generator``."""
        resampled = self.frames[video]
        picked = [int(resampled[i]) for i in segment_frames(len(resampled), self.segments, generator)]
        half = self.segments // 2
        return tuple(picked[:half]), tuple(picked[half:])

    def draw(self, index: int) -> PairDraw:
        """The video and frames of sample ``index`` (what :class:`PairDataset` decodes first)."""
        video, seed = self.video_at(index)
        view1, view2 = self.frames_of(video, torch.Generator().manual_seed(seed))
        return PairDraw(index, video, view1, view2, seed)


class PairDataset(torch.utils.data.Dataset):
    """Decoded, augmented views of sample ``index``: ``(view1 [T, 3, S, S], view2 [T, 3, S, S], failures)``."""

    def __init__(
        self,
        sampler: PairSampler,
        augment: Callable[[np.ndarray, torch.Generator], torch.Tensor],
        decode: Callable[[VideoEntry, Sequence[int]], np.ndarray] | None = None,
    ) -> None:
        self.sampler = sampler
        self.augment = augment
        self.decode = decode or decode_frames

    def __len__(self) -> int:
        return self.sampler.epoch_length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        video, seed = self.sampler.video_at(index)
        gen = torch.Generator().manual_seed(seed)
        for failures in range(MAX_FALLBACKS + 1):
            view1, view2 = self.sampler.frames_of(video, gen)
            try:
                frames = self.decode(self.sampler.videos[video], view1 + view2)
            except DataError as err:
                log.warning("skipping video: %s", err)
                video = self.sampler.usable[int(torch.randint(len(self.sampler.usable), (), generator=gen))]
                continue
            views = self.augment(frames, gen)
            return views[: len(view1)], views[len(view1) :], failures
        raise DataError(f"{MAX_FALLBACKS + 1} videos in a row failed to decode; last: {self.sampler.videos[video].path}")


class ShardedPairSampler(torch.utils.data.Sampler):
    """Batches of sample indices (keys of :class:`PairDataset`) for one rank, from a given step on.

    Epoch ``e``'s positions ``0 … epoch_length − 1`` are padded (by wrapping, like
    ``DistributedSampler``) to a multiple of the world size; rank ``r`` takes every ``world``-th
    position from ``r`` and cuts its share into batches of ``batch_size``, the remainder dropped so
    every step has the same shape. Keys are global indices ``e · epoch_length + position``, so a
    sample's video, frames and augmentation depend on (seed, epoch, position) only: the batch of a
    step is the same whatever step the sampler started from (exact ``--resume``).
    """

    def __init__(self, pairs: PairSampler, batch_size: int, rank: int = 0, world_size: int = 1, start_step: int = 0,
                 total_steps: int | None = None) -> None:
        self.pairs = pairs
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.start_step = start_step
        self.total_steps = total_steps
        self.steps_per_epoch = -(-pairs.epoch_length // world_size) // batch_size
        if self.steps_per_epoch == 0:
            raise DataError(
                f"only {pairs.epoch_length} samples per epoch ({len(pairs.usable)} videos x data.repeat "
                f"{pairs.repeat}) for {world_size} rank(s) of batch {batch_size}: add videos, raise data.repeat "
                "or lower the batch size"
            )

    def batch_at(self, step: int) -> list[int]:
        epoch, within = divmod(step, self.steps_per_epoch)
        length = self.pairs.epoch_length
        start = (within * self.batch_size) * self.world_size + self.rank
        positions = range(start, start + self.batch_size * self.world_size, self.world_size)
        return [epoch * length + p % length for p in positions]

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while self.total_steps is None or step < self.total_steps:
            yield self.batch_at(step)
            step += 1

    def __len__(self) -> int:
        if self.total_steps is None:
            raise TypeError("an endless sampler has no length")
        return max(self.total_steps - self.start_step, 0)


def collate_pairs(samples: list[tuple[torch.Tensor, torch.Tensor, int]]) -> tuple[torch.Tensor, int]:
    """:class:`PairDataset` samples → views ``[B, 2, T, 3, S, S]`` and the number of videos replaced."""
    views = torch.stack([torch.stack([view1, view2]) for view1, view2, _ in samples])
    return views, sum(failures for _, _, failures in samples)
