"""Training clips from a folder of raw videos, as the original CRW pipeline drew them (docs/protocol.md §3.1).

A *video* is a file any PyAV-readable container holds (``.mp4``, ``.avi``, ``.mkv``, ``.webm``, …;
Kinetics' ``<root>/<class>/<video>.mp4`` layout works as is) or a folder of JPEG/PNG frames.
Each video is resampled to a target frame rate; every window of ``clip_len`` consecutive
resampled frames is a candidate clip, and each epoch draws up to ``clips_per_video`` random
candidates per video and shuffles them (torchvision's ``RandomClipSampler``, which the original
used).

Indexing a video (its frame timestamps) costs a demux pass; Kinetics took the original ~10 h, so
the index is cached on disk per root and entry-wise validated by size and mtime: a changed or new
file is re-indexed, a removed one dropped, the rest reused.

All randomness (which clips, augmentation, fallback clips after a decode failure) derives from
``(seed, epoch, position)`` through :func:`mix_seed`, never from global RNG state, so any step of
any rank can be reproduced from its position alone — that is what makes ``--resume`` exact and
lets tests replay each rank's batch in one process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from natsort import natsorted
from torch.utils.data import default_collate

from harness.data.hashcache import HashCache
from harness.data.hashcache import cache_dir as harness_cache_dir
from harness.errors import DataError
from harness.io import atomic_write_json
from harness.training.data import make_loader
from harness.training.rng import mix_seed

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
INDEX_VERSION = 1
#: how many other clips a failed decode may try before the epoch gives up on this sample
MAX_FALLBACKS = 20
#: frames decoded past the last wanted timestamp before giving up on out-of-order ones
REORDER_SLACK = 8


def seeded_generator(*parts: int) -> torch.Generator:
    return torch.Generator().manual_seed(mix_seed(*parts))


# -- discovery and indexing -------------------------------------------------------------------


@dataclass(frozen=True)
class VideoEntry:
    """One indexed video: where it is and the timestamps of its frames.

    ``pts`` holds presentation timestamps in stream time-base units for files and ``0..n-1`` for
    frame folders; ``fps`` is the stream's average rate (frame folders: the recipe's
    ``frame_folder_fps``).
    """

    path: Path
    kind: str  # "file" or "frames"
    fps: float
    pts: tuple[int, ...]
    #: bytes of the file (frame folders: of all their images) and their sha256 (:func:`_content`)
    size: int = 0
    sha256: str = ""

    @property
    def num_frames(self) -> int:
        return len(self.pts)


def _stat_key(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def discover(root: Path) -> dict[str, tuple[str, dict[str, int]]]:
    """Videos below ``root``: relative path → (kind, size/mtime signature).

    A folder whose files include images is a frame-folder video; its signature sums the sizes
    and takes the newest mtime of its images and counts them, so adding a frame invalidates it.
    """
    found: dict[str, tuple[str, dict[str, int]]] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        images = [f for f in filenames if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")]
        if images:
            stats = [(here / f).stat() for f in images]
            signature = {
                "size": sum(s.st_size for s in stats),
                "mtime_ns": max(s.st_mtime_ns for s in stats),
                "count": len(images),
            }
            found[here.relative_to(root).as_posix() or "."] = ("frames", signature)
        for name in sorted(filenames):
            if name.lower().endswith(VIDEO_EXTENSIONS) and not name.startswith("."):
                path = here / name
                found[path.relative_to(root).as_posix()] = ("file", _stat_key(path))
    return found


def _content(hashes: HashCache, root: Path, rel: str, kind: str) -> dict[str, Any]:
    """Bytes and sha256 of a video file; of a frame folder, the images' total bytes and a sha256 over each
    image's name, size and sha256 in frame order. File hashes come from the harness's per-file cache, so
    an unchanged video is not read again."""
    path = root / rel
    if kind != "frames":
        return {"size": path.stat().st_size, "sha256": hashes.sha256(path, rel)}
    digest, size = hashlib.sha256(), 0
    for frame in frame_files(path):
        bytes_ = frame.stat().st_size
        digest.update(f"{frame.name}\0{bytes_}\0{hashes.sha256(frame, (Path(rel) / frame.name).as_posix())}\n".encode())
        size += bytes_
    return {"size": size, "sha256": digest.hexdigest()}


def frame_files(folder: Path) -> list[Path]:
    """The images of a frame-folder video in natural order (``2.jpg`` before ``10.jpg``)."""
    names = [f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")]
    return [folder / f for f in natsorted(names)]


def probe_video(path: Path) -> dict[str, Any]:
    """Frame rate and sorted presentation timestamps of a video file, by demuxing (no decoding)."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path}: no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None and p.size > 0)
    except DataError:
        raise
    except Exception as err:  # PyAV raises many error types for broken files
        raise DataError(f"{path}: cannot read video ({type(err).__name__}: {err})") from err
    if not pts or not rate:
        raise DataError(f"{path}: no decodable frames or unknown frame rate")
    return {"fps": float(rate), "pts": _pack_pts(pts)}


def _pack_pts(pts: list[int]) -> dict[str, Any]:
    """Store an evenly spaced timestamp list as (start, step, count); irregular ones in full."""
    if len(pts) > 1:
        step = pts[1] - pts[0]
        if step > 0 and all(b - a == step for a, b in zip(pts, pts[1:], strict=False)):
            return {"start": pts[0], "step": step, "count": len(pts)}
    return {"list": pts}


def _unpack_pts(packed: dict[str, Any]) -> tuple[int, ...]:
    if "list" in packed:
        return tuple(packed["list"])
    return tuple(range(packed["start"], packed["start"] + packed["step"] * packed["count"], packed["step"]))


@dataclass
class IndexStats:
    reused: int = 0
    indexed: int = 0
    failed: int = 0


def index_videos(
    root: Path, cache_dir: Path | None = None, frame_folder_fps: float | None = None
) -> tuple[list[VideoEntry], IndexStats]:
    """Index every video below ``root``, reusing the on-disk cache for unchanged files.

    Unreadable videos are left out with a warning (their count is in the returned stats); a root
    without any readable video is a :class:`DataError`.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"training data folder {root} does not exist or is not a folder")
    cache_file = (cache_dir or harness_cache_dir()) / "video-index" / (
        hashlib.sha1(str(root).encode()).hexdigest()[:16] + ".json"
    )
    cached = _read_cache(cache_file, root)
    found = discover(root)
    stats = IndexStats()
    fresh: dict[str, Any] = {}
    for rel, (kind, signature) in found.items():
        old = cached.get(rel)
        if old is not None and old.get("kind") == kind and old.get("signature") == signature:
            fresh[rel] = old
            stats.reused += 1
            continue
        path = root / rel
        if kind == "frames":
            entry = {"kind": kind, "signature": signature, "fps": None, "pts": _pack_pts(list(range(signature["count"])))}
        else:
            try:
                entry = {"kind": kind, "signature": signature, **probe_video(path)}
            except DataError as err:
                log.warning("skipping unreadable video: %s", err)
                entry = {"kind": kind, "signature": signature, "error": str(err)}
                stats.failed += 1
        fresh[rel] = entry
        stats.indexed += 1
    if fresh != cached:
        atomic_write_json(cache_file, {"version": INDEX_VERSION, "root": str(root), "videos": fresh})
    stats.failed = sum(1 for e in fresh.values() if "error" in e)
    hashes = HashCache(root, cache_dir)  # training provenance (harness.training.provenance) compares these
    videos = [
        VideoEntry(
            path=root / rel,
            kind=e["kind"],
            fps=float(e["fps"]) if e["fps"] is not None else float(frame_folder_fps or 0.0),
            pts=_unpack_pts(e["pts"]),
            **_content(hashes, root, rel, e["kind"]),
        )
        for rel, e in natsorted(fresh.items(), key=lambda kv: kv[0])
        if "error" not in e
    ]
    hashes.save()
    if not videos:
        raise DataError(f"no readable video files ({', '.join(VIDEO_EXTENSIONS)}) or frame folders under {root}")
    return videos, stats



def index_roots(roots: list[Path], data: dict[str, Any]) -> list[VideoEntry]:
    """The videos of every training root pooled, each root indexed through its cache (a recipe's ``data``
    section gives ``cache_dir`` and ``frame_folder_fps``); what was re-indexed or skipped is logged."""
    cache_dir = Path(data["cache_dir"]).expanduser() if data["cache_dir"] else None
    videos: list[VideoEntry] = []
    for root in roots:
        found, stats = index_videos(root, cache_dir, data["frame_folder_fps"])
        log.info("%s: %d videos (%d re-indexed, %d unreadable skipped)", root, len(found), stats.indexed, stats.failed)
        videos.extend(found)
    return videos

def _read_cache(cache_file: Path, root: Path) -> dict[str, Any]:
    if not cache_file.is_file():
        return {}
    try:
        payload = json.loads(cache_file.read_text())
    except (OSError, json.JSONDecodeError):
        log.warning("ignoring unreadable video index cache %s", cache_file)
        return {}
    if payload.get("version") != INDEX_VERSION or payload.get("root") != str(root):
        return {}
    return dict(payload.get("videos", {}))


# -- clips ------------------------------------------------------------------------------------


def resampled_indices(num_frames: int, fps: float, target_fps: float | None) -> np.ndarray:
    """Indices of the source frames that make up the video at ``target_fps``.

    Same rule as torchvision's ``VideoClips``: ``floor(k · fps / target_fps)`` for every k whose
    time lies inside the video; frames repeat when the source is slower than the target. Without
    a target (or an unknown source rate) every frame is kept.
    """
    if not target_fps or not fps or abs(fps - target_fps) < 1e-6:
        return np.arange(num_frames)
    step = fps / target_fps
    count = int(np.floor(num_frames / step))
    return np.floor(np.arange(count) * step).astype(np.int64)


@dataclass(frozen=True)
class Clip:
    """A clip: video number and the source-frame indices of its ``clip_len`` frames."""

    video: int
    frames: tuple[int, ...]


class ClipIndex:
    """Every candidate clip of every video, by video, at the target frame rate."""

    def __init__(self, videos: Sequence[VideoEntry], clip_len: int, target_fps: float | None) -> None:
        self.videos = list(videos)
        self.clip_len = clip_len
        self.resampled = [resampled_indices(v.num_frames, v.fps, target_fps) for v in self.videos]
        self.counts = np.array([max(len(r) - clip_len + 1, 0) for r in self.resampled], dtype=np.int64)
        if int(self.counts.sum()) == 0:
            raise DataError(
                f"no video is long enough for a clip of {clip_len} frames at {target_fps} fps "
                f"({len(self.videos)} videos under {self.videos[0].path.parent if self.videos else '?'})"
            )

    def clip(self, video: int, start: int) -> Clip:
        frames = self.resampled[video][start : start + self.clip_len]
        return Clip(video, tuple(int(f) for f in frames))

    def epoch_clips(self, clips_per_video: int, seed: int, epoch: int) -> list[tuple[int, int]]:
        """This epoch's ``(video, start)`` list: up to ``clips_per_video`` random windows per video, shuffled."""
        gen = seeded_generator(seed, epoch, 0)
        chosen: list[tuple[int, int]] = []
        for video, count in enumerate(self.counts.tolist()):
            if count == 0:
                continue
            starts = torch.randperm(count, generator=gen)[:clips_per_video].tolist()
            chosen.extend((video, s) for s in starts)
        order = torch.randperm(len(chosen), generator=gen).tolist()
        return [chosen[i] for i in order]

    def random_clip(self, generator: torch.Generator) -> tuple[int, int]:
        """A uniformly drawn candidate clip (used to replace one that failed to decode)."""
        flat = int(torch.randint(int(self.counts.sum()), (1,), generator=generator))
        video = int(np.searchsorted(np.cumsum(self.counts), flat, side="right"))
        return video, flat - int(self.counts[:video].sum())


# -- decoding ---------------------------------------------------------------------------------


def decode_frames(video: VideoEntry, frames: Sequence[int]) -> np.ndarray:
    """Frames ``[T, H, W, 3]`` uint8 RGB at the given source-frame indices (repeats allowed).

    Files are decoded from the key frame before the first wanted timestamp to the last one.
    Raises :class:`DataError` naming the file on any failure.
    """
    if video.kind == "frames":
        from PIL import Image

        files = frame_files(video.path)
        try:
            images = {i: np.asarray(Image.open(files[i]).convert("RGB")) for i in sorted(set(frames))}
        except (OSError, IndexError) as err:
            raise DataError(f"{video.path}: cannot read frame ({err})") from err
        return _stack(video, [images[i] for i in frames])
    return _decode_file(video, frames)


def _decode_file(video: VideoEntry, frames: Sequence[int]) -> np.ndarray:
    """Decode from the key frame before the first wanted timestamp until every wanted one is seen.

    Decoded frames stay PyAV frames until decoding stops; only those a wanted timestamp takes are
    converted to RGB arrays (the conversion used to cost more than the decoding itself).

    Some containers (AVI with packed B-frames) hand out frames slightly out of timestamp order,
    and their packet list may hold a timestamp no decoded frame carries; so decoding goes a few
    frames past the last wanted timestamp, and a wanted timestamp without its exact frame takes
    the latest decoded frame before it (the frame on screen at that time).
    """
    import av

    wanted = sorted({video.pts[i] for i in frames})
    # frames that nothing references and that lie well before the clip need not be decoded at all
    skip_below = video.pts[max(min(frames) - REORDER_SLACK, 0)]
    best: dict[int, tuple[int, Any]] = {}
    past_last = 0
    try:
        with av.open(str(video.path)) as container:
            stream = container.streams.video[0]
            container.seek(wanted[0], stream=stream, backward=True, any_frame=False)
            for frame in _decode_skipping(container, stream, skip_below):
                pts = frame.pts
                if pts is None:
                    continue
                if pts > wanted[-1]:
                    past_last += 1
                    if past_last >= REORDER_SLACK:
                        break
                    continue
                for w in wanted:  # a decoded frame is a candidate for every wanted time at or after it
                    if w >= pts and (w not in best or best[w][0] < pts):
                        best[w] = (pts, frame)
                if all(w in best and best[w][0] == w for w in wanted):
                    break
            # convert only the frames kept (at most clip_len of them), not every one decoded
            images = {pts: frame.to_ndarray(format="rgb24") for pts, frame in best.values()}
    except Exception as err:  # PyAV raises many error types for broken files
        raise DataError(f"{video.path}: cannot decode frames ({type(err).__name__}: {err})") from err
    missing = [w for w in wanted if w not in best]
    if missing:
        raise DataError(f"{video.path}: {len(missing)} frame(s) could not be decoded (pts {missing[:3]})")
    return _stack(video, [images[best[video.pts[i]][0]] for i in frames])


def _decode_skipping(container: Any, stream: Any, skip_below: int) -> Iterator[Any]:
    """Decoded frames of ``stream``; packets before ``skip_below`` skip non-reference frames.

    Non-reference frames (most B-frames) are never used to decode another frame, so skipping
    them changes no other frame (``tests/test_crw_pipeline.py`` checks this bit for bit against a
    full decode on every real video) and saves about a third of the decoding before a clip.
    """
    codec = stream.codec_context
    for packet in container.demux(stream):
        codec.skip_frame = "NONREF" if packet.pts is not None and packet.pts < skip_below else "DEFAULT"
        yield from codec.decode(packet)


def _stack(video: VideoEntry, images: list[np.ndarray]) -> np.ndarray:
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise DataError(f"{video.path}: frames of different sizes {sorted(shapes)}")
    return np.stack(images)


# -- dataset and sampler ----------------------------------------------------------------------


@dataclass(frozen=True)
class SampleKey:
    """What a worker needs to build one training sample: the clip and the seed for its randomness."""

    video: int
    start: int
    seed: int


class ClipDataset(torch.utils.data.Dataset):
    """Decodes and augments clips; indexed by :class:`SampleKey`, not by integers.

    A clip that fails to decode is replaced by another random clip drawn from the key's seed, and
    the number of failures travels with the sample so the training loop can report it.
    """

    def __init__(
        self,
        index: ClipIndex,
        transform: Callable[[np.ndarray, torch.Generator], Any],
        decode: Callable[[VideoEntry, Sequence[int]], np.ndarray] | None = None,
    ) -> None:
        self.index = index
        self.transform = transform
        self.decode = decode or decode_frames  # the benchmark swaps in the reference decoder

    def __len__(self) -> int:
        return int(self.index.counts.sum())

    def __getitem__(self, key: SampleKey) -> tuple[Any, int]:  # type: ignore[override]
        gen = torch.Generator().manual_seed(key.seed)
        video, start = key.video, key.start
        for failures in range(MAX_FALLBACKS + 1):
            clip = self.index.clip(video, start)
            try:
                frames = self.decode(self.index.videos[clip.video], clip.frames)
            except DataError as err:
                log.warning("skipping clip: %s", err)
                video, start = self.index.random_clip(gen)
                continue
            return self.transform(frames, gen), failures
        raise DataError(f"{MAX_FALLBACKS + 1} clips in a row failed to decode; last: {self.index.videos[video].path}")


def collate(samples: list[tuple[Any, int]]) -> tuple[Any, int]:
    """Stack clips into ``[B, T, N, 3, P, P]`` and add up their decode failures.

    With ``data.augment_on: gpu`` a sample is :meth:`~methods.crw.augment.ClipAugment.prepare`'s
    ``(frames [T, H, W, 3] uint8, frame boxes [T, 4], patch boxes [T, N, 4])``: the boxes are
    stacked and the frames kept as a list (clips of different videos differ in size), for
    :meth:`~methods.crw.augment.ClipAugment.finish` on the device.
    """
    failures = sum(s[1] for s in samples)
    first = samples[0][0]
    if isinstance(first, tuple):
        frames = [s[0][0] for s in samples]
        return (frames, *(default_collate([s[0][i] for s in samples]) for i in range(1, len(first)))), failures
    # default_collate stacks a worker's batch straight into shared memory: sent to the main process
    # without another copy (about 10 MB per crw-paper clip)
    return default_collate([s[0] for s in samples]), failures


class ShardedClipSampler(torch.utils.data.Sampler):
    """Batches of :class:`SampleKey` for one rank, from a given step on (for ``--resume``).

    Each epoch's clip list is padded (by wrapping, like ``DistributedSampler``) to a multiple of
    the world size and rank ``r`` takes every ``world``-th clip from ``r``; each rank's shard is
    cut into batches of ``batch_size`` with the remainder dropped so every step has the same shape.
    Sample seeds depend on (seed, epoch, position in the global list), not on the rank count.
    """

    def __init__(
        self,
        index: ClipIndex,
        clips_per_video: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_step: int = 0,
        total_steps: int | None = None,
    ) -> None:
        self.index = index
        self.clips_per_video = clips_per_video
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start_step = start_step
        self.total_steps = total_steps
        clips = int(np.minimum(index.counts, clips_per_video).sum())
        self.clips_per_epoch = clips
        self.steps_per_epoch = -(-clips // world_size) // batch_size
        if self.steps_per_epoch == 0:
            raise DataError(
                f"only {clips} clips per epoch for {world_size} rank(s) of batch {batch_size}: "
                "add videos or lower the batch size"
            )

    def epoch_batches(self, epoch: int) -> list[list[SampleKey]]:
        clips = self.index.epoch_clips(self.clips_per_video, self.seed, epoch)
        padded = -(-len(clips) // self.world_size) * self.world_size
        positions = [i % len(clips) for i in range(padded)][self.rank :: self.world_size]
        keys = [SampleKey(*clips[p], seed=mix_seed(self.seed, epoch, 1, p)) for p in positions]
        return [keys[b * self.batch_size : (b + 1) * self.batch_size] for b in range(self.steps_per_epoch)]

    def batch_at(self, step: int) -> list[SampleKey]:
        epoch, within = divmod(step, self.steps_per_epoch)
        return self.epoch_batches(epoch)[within]

    def __iter__(self) -> Iterator[list[SampleKey]]:
        step = self.start_step
        while self.total_steps is None or step < self.total_steps:
            epoch, within = divmod(step, self.steps_per_epoch)
            for batch in self.epoch_batches(epoch)[within:]:
                if self.total_steps is not None and step >= self.total_steps:
                    return
                yield batch
                step += 1

    def __len__(self) -> int:
        if self.total_steps is None:
            raise TypeError("an endless sampler has no length")
        return max(self.total_steps - self.start_step, 0)


def build_loader(
    dataset: ClipDataset,
    sampler: ShardedClipSampler,
    workers: int,
    pin_memory: bool = False,
    generator: torch.Generator | None = None,
) -> torch.utils.data.DataLoader:
    """A DataLoader over the sampler's batches, as the training loop builds it; workers decode and augment in parallel."""
    return make_loader(dataset, sampler, workers, collate, pin_memory, generator)
