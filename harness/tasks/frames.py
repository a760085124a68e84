"""Reading helpers shared by the task readers: images that name their file when they fail, and the
``--sequences`` / ``--limit`` selection every task applies the same way."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from harness.data.rules import DamagedJpeg, check_jpeg, decode_colour_jpeg
from harness.declared import did_you_mean
from harness.errors import DataError

#: the first bytes of every JPEG file (SOI marker and the first marker's 0xFF)
JPEG_START = b"\xff\xd8\xff"


def read_image(path: Path, mode: str | None) -> np.ndarray:
    """Decode an image fully (truncated files fail here, not later) and convert it to ``mode``.

    ``mode=None`` keeps palette images as their indices and everything else as RGB. A JPEG whose
    compressed data is damaged is refused although it decodes (:func:`harness.data.rules.check_jpeg`,
    the rule ``harness data check --full`` applies too).
    """
    try:
        data = path.read_bytes()
        if mode == "RGB" and data.startswith(JPEG_START):
            pixels = decode_colour_jpeg(data)  # checked and read in one decode
            if pixels is not None:
                return pixels
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.format == "JPEG":
                check_jpeg(data)
            if mode is None:
                mode = image.mode if image.mode in ("P", "L") else "RGB"
            array = np.asarray(image.convert(mode) if image.mode != mode else image)
    except FileNotFoundError as err:
        raise DataError(f"missing file {path}") from err
    except DamagedJpeg as err:
        raise DataError(f"cannot read image {path}: {err}") from err
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"cannot read image {path}: {err} (truncated or corrupt file?)") from err
    return array


def select_sequences(names: list[str], wanted: list[str] | None, limit: int | None, source: str) -> list[str]:
    """Restrict the split to ``--sequences`` (in the given order) and/or the first ``--limit`` names.

    A repeated name in ``--sequences`` and a ``--limit`` below 1 are refused: they used to run a
    sequence twice, or (``-1``) silently drop the last sequence. (An empty ``--sequences`` is refused
    where the flag is read, :func:`harness.cli.common.parse_sequences`.)
    """
    if wanted and len(set(wanted)) != len(wanted):
        raise DataError(f"--sequences must name each sequence once, got {list(wanted)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DataError(f"--limit must be a whole number >= 1, got {limit!r}")
    if wanted:
        unknown = [w for w in wanted if w not in names]
        if unknown:
            hints = [f"{u!r}{did_you_mean(u, names)}" for u in unknown]
            raise DataError(f"sequences not in {source}: {'; '.join(hints)}")
        names = list(wanted)
    if limit is not None:
        print(f"warning: --limit {limit}: evaluating only the first {limit} of {len(names)} sequences; "
              "the scores are not comparable to a full run", file=sys.stderr)
        names = names[:limit]
    return names


def resize_frames(frames: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of uint8 RGB frames to ``(height, width)``, without antialiasing (OpenCV's
    ``INTER_LINEAR``, which CRW's loaders use)."""
    import torch
    import torch.nn.functional as F

    out = np.empty((len(frames), size[0], size[1], 3), dtype=np.uint8)
    for t, frame in enumerate(frames):
        x = torch.from_numpy(np.array(frame, dtype=np.uint8)).permute(2, 0, 1)[None].float()
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        out[t] = x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
    return out
