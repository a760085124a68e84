"""Write the ``toykp`` data set: tiny generated clips of coloured blobs, each blob's centre a keypoint.

Layout (what ``toykp.yaml`` declares)::

    frames/clipNN/00000.png ...   RGB frames, 64 x 64
    points/clipNN.json            [2, 3, T] nested list: x, y (0-based pixels) of each blob in each frame
    test.txt                      the clips, one name per line

Each clip has three blobs (red, green, blue) of radius 5 on a dark, noisy background; each moves on a
straight line at a constant speed of its own, drawn from a generator seeded by the clip's number, so the
data is the same on every machine. ``python -m crwbench_example.make_data DIR --clips 20`` writes it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 64
FRAMES = 8
RADIUS = 5
COLOURS = ((230, 40, 40), (40, 210, 60), (60, 90, 240))


def clip_name(index: int) -> str:
    return f"clip{index:02d}"


def make_clip(index: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``[T, H, W, 3]`` uint8 and points ``[2, J, T]`` of clip ``index``."""
    rng = np.random.default_rng(index)
    start = rng.uniform(RADIUS + 2, SIZE - RADIUS - 2, size=(len(COLOURS), 2))
    end = rng.uniform(RADIUS + 2, SIZE - RADIUS - 2, size=(len(COLOURS), 2))
    steps = np.linspace(0.0, 1.0, FRAMES)[:, None, None]
    centres = start[None] + steps * (end - start)[None]  # [T, J, 2]
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    frames = np.empty((FRAMES, SIZE, SIZE, 3), dtype=np.uint8)
    for t in range(FRAMES):
        image = rng.integers(10, 40, size=(SIZE, SIZE, 3)).astype(np.uint8)
        for (x, y), colour in zip(centres[t], COLOURS, strict=True):
            image[(xs - x) ** 2 + (ys - y) ** 2 <= RADIUS**2] = colour
        frames[t] = image
    return frames, centres.transpose(2, 1, 0)


def make_toykp(root: str | Path, clips: int = 20) -> Path:
    """Write clips ``clip00`` … under ``root`` in the layout above; returns ``root``."""
    root = Path(root)
    (root / "points").mkdir(parents=True, exist_ok=True)
    names = [clip_name(i) for i in range(clips)]
    for index, name in enumerate(names):
        frames, points = make_clip(index)
        folder = root / "frames" / name
        folder.mkdir(parents=True, exist_ok=True)
        for t, frame in enumerate(frames):
            Image.fromarray(frame).save(folder / f"{t:05d}.png")
        (root / "points" / f"{name}.json").write_text(json.dumps(np.round(points, 3).tolist()))
    (root / "test.txt").write_text("".join(f"{name}\n" for name in names))
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crwbench_example.make_data", description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder to write (created)")
    parser.add_argument("--clips", type=int, default=20, help="number of clips (default 20: the whole split)")
    args = parser.parse_args(argv)
    print(make_toykp(args.root, args.clips))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
