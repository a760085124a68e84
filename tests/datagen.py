"""Small datasets in the official layouts, for tests and the shipped samples.

- :func:`make_vip_dataset` draws a synthetic VIP: textured "body parts" moving rigidly over a
  textured, static background, with exact per-pixel class ids. No VIP data could be obtained for
  the project, so this is what the ``vip`` task is tested (and its sample shipped) with.
- :func:`make_jhmdb_clip` writes a JHMDB-layout clip from a real video file and given joints
  (e.g. the real JHMDB clip's ``.avi`` and its ``pos_img``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from harness.io import atomic_path

IGNORE = 255


@dataclass(frozen=True)
class _Part:
    """An ellipse with a striped texture, moving at constant velocity (pixels per frame)."""

    class_id: int
    centre: tuple[float, float]
    radii: tuple[float, float]
    velocity: tuple[float, float]
    colour: tuple[float, float, float]
    angle: float
    period: float


# (class id, enters after frame 0); ids follow VIP's class list (hair, upper-clothes, pants, ...)
_PRESENT = (4, 8, 13, 2, 14, 15)
_LATE = (18, 19, 11)


def _smooth_noise(rng: np.random.Generator, size: tuple[int, int], cells: tuple[int, int]) -> np.ndarray:
    """``[H, W, 3]`` in [0, 1]: a coarse random field upsampled bilinearly, plus fine grain."""
    coarse = Image.fromarray((rng.random((cells[0], cells[1], 3)) * 255).astype(np.uint8))
    smooth = np.asarray(coarse.resize((size[1], size[0]), Image.BILINEAR), dtype=np.float32) / 255
    return np.clip(0.8 * smooth + 0.2 * rng.random((*size, 3)), 0, 1)


def _parts(rng: np.random.Generator, size: tuple[int, int], frames: int, late: int) -> list[_Part]:
    height, width = size
    parts = []
    for class_id in _PRESENT:
        radii = (rng.uniform(0.08, 0.16) * height, rng.uniform(0.06, 0.14) * width)
        centre = (rng.uniform(0.25, 0.75) * height, rng.uniform(0.25, 0.75) * width)
        velocity = (rng.uniform(-0.02, 0.02) * height, rng.uniform(-0.03, 0.03) * width)
        parts.append(_Part(class_id, centre, radii, velocity, tuple(rng.uniform(0.1, 1.0, 3)),
                           rng.uniform(0, np.pi), rng.uniform(4, 9)))
    for k, class_id in enumerate(_LATE[:late]):
        radii = (0.12 * height, 0.10 * width)
        # starts just outside the left or right edge and is fully inside by the middle of the video
        side = 1 if k % 2 == 0 else -1
        start_x = -radii[1] - 1 if side == 1 else width + radii[1] + 1
        travel = (radii[1] * 2 + 0.15 * width) / max(1, (frames - 1) // 2)
        centre = (rng.uniform(0.3, 0.7) * height, start_x)
        parts.append(_Part(class_id, centre, radii, (0.0, side * travel), tuple(rng.uniform(0.1, 1.0, 3)),
                           rng.uniform(0, np.pi), rng.uniform(4, 9)))
    return parts


def _render(parts: list[_Part], background: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
    height, width = background.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    image = background.copy()
    labels = np.zeros((height, width), dtype=np.uint8)
    for part in parts:
        cy, cx = part.centre[0] + t * part.velocity[0], part.centre[1] + t * part.velocity[1]
        v, u = ys - cy, xs - cx
        inside = (v / part.radii[0]) ** 2 + (u / part.radii[1]) ** 2 <= 1
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (u * np.cos(part.angle) + v * np.sin(part.angle)) / part.period)
        texture = np.asarray(part.colour, dtype=np.float32) * (0.55 + 0.45 * stripes)[..., None]
        image[inside] = texture[inside]
        labels[inside] = part.class_id
    return image, labels


def make_vip_dataset(
    root: str | Path,
    videos: int = 2,
    frames: int = 6,
    size: tuple[int, int] = (96, 128),
    seed: int = 0,
    late_classes: int = 1,
    ignore_patch: bool = True,
) -> Path:
    """Write a VIP-layout dataset under ``root`` and return ``root``.

    Each video has six parts present in frame 0 and ``late_classes`` (at most 3) parts that enter
    from outside the frame later — classes the propagation can never predict, as in real VIP.
    ``ignore_patch`` marks a small corner patch 255 in every annotation (ignored by scoring).
    Frames are JPEG (quality 95), annotations greyscale PNGs; ``lists/val_videos.txt`` lists the videos.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    names = [f"synthetic_{v:02d}" for v in range(videos)]
    for name in names:
        background = _smooth_noise(rng, size, (6, 8))
        parts = _parts(rng, size, frames, late_classes)
        for t in range(frames):
            image, labels = _render(parts, background, t)
            if ignore_patch:
                labels[: max(2, size[0] // 16), : max(2, size[1] // 16)] = IGNORE
            frame = f"{25 * t:012d}"
            with atomic_path(root / "VIP_Fine" / "Images" / name / f"{frame}.jpg") as tmp:
                Image.fromarray((image * 255).round().astype(np.uint8)).save(tmp, format="JPEG", quality=95)
            with atomic_path(root / "VIP_Fine" / "Annotations" / "Category_ids" / name / f"{frame}.png") as tmp:
                Image.fromarray(labels, mode="L").save(tmp, format="PNG")
    lists = root / "lists"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "val_videos.txt").write_text("".join(f"{n}\n" for n in names))
    return root


def read_video(path: str | Path, max_frames: int | None = None) -> list[np.ndarray]:
    """RGB frames of a video file, decoded with PyAV."""
    import av

    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if max_frames is not None and len(frames) >= max_frames:
                break
    return frames


def make_jhmdb_clip(
    root: str | Path,
    video_path: str | Path,
    joints: np.ndarray,
    name: str = "catch/fixture_clip",
    max_frames: int | None = None,
) -> str:
    """Write one JHMDB-layout clip under ``root`` from a video file; returns its ``class/clip`` name.

    ``joints`` is ``pos_img`` (``[2, 15, T]``, 1-based pixels). The clip has ``min(video frames, T,
    max_frames)`` frames; the clip's name is appended to ``splits/test_split1_clips.txt``.
    """
    root = Path(root)
    frames = read_video(video_path, max_frames)
    count = min(len(frames), joints.shape[2], max_frames or len(frames))
    for t in range(count):
        with atomic_path(root / "Rename_Images" / name / f"{t + 1:05d}.png") as tmp:
            Image.fromarray(frames[t]).save(tmp, format="PNG")
    mat = root / "joint_positions" / name / "joint_positions.mat"
    with atomic_path(mat) as tmp, open(tmp, "wb") as handle:
        scipy.io.savemat(handle, {"pos_img": np.asarray(joints, dtype=np.float64)[:, :, :count]})
    split = root / "splits" / "test_split1_clips.txt"
    split.parent.mkdir(parents=True, exist_ok=True)
    with open(split, "a") as handle:
        handle.write(name + "\n")
    return name
