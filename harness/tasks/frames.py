"""Reading helpers shared by the task readers: images that name their file when they fail, and the
``--sequences`` / ``--limit`` selection every task applies the same way."""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from harness.errors import DataError


def read_image(path: Path, mode: str | None) -> np.ndarray:
    """Decode an image fully (truncated files fail here, not later) and convert it to ``mode``.

    ``mode=None`` keeps palette images as their indices and everything else as RGB.
    """
    try:
        with Image.open(path) as image:
            image.load()
            if mode is None:
                mode = image.mode if image.mode in ("P", "L") else "RGB"
            return np.asarray(image.convert(mode) if image.mode != mode else image)
    except FileNotFoundError as err:
        raise DataError(f"missing file {path}") from err
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"cannot read image {path}: {err} (truncated or corrupt file?)") from err


def select_sequences(names: list[str], wanted: list[str] | None, limit: int | None, source: str) -> list[str]:
    """Restrict the split to ``--sequences`` (in the given order) and/or the first ``--limit`` names."""
    if wanted:
        unknown = [w for w in wanted if w not in names]
        if unknown:
            hints = [f"{u!r} (did you mean {', '.join(difflib.get_close_matches(u, names, 2))}?)"
                     if difflib.get_close_matches(u, names, 2) else repr(u) for u in unknown]
            raise DataError(f"sequences not in {source}: {', '.join(hints)}")
        names = list(wanted)
    if limit is not None:
        print(f"warning: --limit {limit}: evaluating only the first {limit} of {len(names)} sequences; "
              "the scores are not comparable to a full run", file=sys.stderr)
        names = names[:limit]
    return names
