"""Cheap, reliable reads of frames and label maps for ``harness data check``.

A check must be fast enough to run before every evaluation, so frames are opened for their header
only, plus a look at the file's last bytes: a JPEG or PNG cut short has lost its end marker, and only
then (or with ``decode=True``) is the image decoded to tell truncation from trailing padding.
Label maps are read the same way, except the first one of each sequence (its objects are what gets
propagated) and RGB ones (their colours must be mapped to ids); ``--full`` decodes everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from natsort import natsorted
from PIL import Image

from harness.data.rules import DamagedJpeg, check_jpeg

_TAIL = 1024
_END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}


def unpadded_names(stems: list[str]) -> str | None:
    """Why frame names sorted as text are not in frame order (``10`` before ``2``), or None when they are.

    Frame order decides which frame is first (the labels to propagate) and J-Decay's quarters, so
    names that sort differently as text and as numbers are refused rather than silently reordered.
    """
    text, natural = sorted(stems), natsorted(stems)
    if text == natural:
        return None
    at = next(i for i, (a, b) in enumerate(zip(text, natural, strict=True)) if a != b)
    return (f"frame names are not zero-padded: as text {text[at]!r} sorts before {natural[at]!r}; "
            "rename them with leading zeros (00000, 00001, …) so that their order is unambiguous")


def object_ids_problem(ids: list[int]) -> str | None:
    """Why first-frame object ids are not 1..N, or None. A gap (ids 1 and 3) makes the official DAVIS
    evaluator score a phantom object 2 — empty in truth and prediction — as a perfect 1.0."""
    if not ids or ids == list(range(1, max(ids) + 1)):
        return None
    missing = sorted(set(range(1, max(ids) + 1)) - set(ids))
    return (f"first-frame object ids {ids} are not 1..{max(ids)} (no object {', '.join(map(str, missing))}): "
            "the official evaluator would score each missing id as a perfect phantom object; renumber the "
            "objects 1..N")


def davis_palette() -> np.ndarray:
    """The DAVIS palette ([256, 3] uint8): PASCAL VOC's bit-interleaved colour map, id 1 = (128, 0, 0)."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        code, rgb = index, [0, 0, 0]
        for bit in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((code >> channel) & 1) << bit
            code >>= 3
        palette[index] = rgb
    return palette


_PALETTE_IDS = {tuple(int(v) for v in colour): i for i, colour in enumerate(davis_palette())}


@dataclass(frozen=True)
class ImageInfo:
    size: tuple[int, int]  # (width, height), as Pillow reports it
    mode: str


def probe_image(path: Path, decode: bool = False) -> ImageInfo:
    """Header facts of an image; decodes it when asked or when its end marker is missing.

    Raises ``OSError`` (or another Pillow read error) for an unreadable or truncated file, and
    :class:`DamagedJpeg` (a ``ValueError``) for a decoded JPEG whose compressed data is damaged (the
    rule a run's reader applies too).
    """
    with Image.open(path) as image:
        info = ImageInfo(image.size, image.mode)
        if decode or not _has_end_marker(path, image.format):
            image.load()
            if image.format == "JPEG":
                check_jpeg(path.read_bytes())
    return info


def _has_end_marker(path: Path, fmt: str | None) -> bool:
    marker = _END_MARKERS.get(fmt or "")
    if marker is None:
        return True
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        handle.seek(max(0, handle.tell() - _TAIL))
        return marker in handle.read()


def read_error(err: BaseException) -> str:
    if isinstance(err, DamagedJpeg):
        return str(err)
    return f"unreadable or truncated image ({type(err).__name__}: {err})"


@dataclass(frozen=True)
class Labels:
    """What a label map holds: its size, mode, the ids present (None when not decoded) and any problem."""

    size: tuple[int, int]
    mode: str
    ids: tuple[int, ...] | None
    problem: str | None = None


_MODES = {"davis-palette": ("P", "RGB"), "binary": ("L",), "class-ids": ("L", "P")}
_EXPECTED = {"davis-palette": "P (palette PNG with object ids)", "binary": "L (greyscale 0/255)",
             "class-ids": "L or P (class ids)"}


def read_labels(path: Path, fmt: str, num_classes: int | None = None, ignore_ids: tuple[int, ...] = (),
                decode: bool = True) -> Labels:
    """Read a label PNG and check its mode (and, when decoded, its ids) for ``fmt``, a card's ``labels``.

    ``davis-palette``: mode P with object ids (255 = void); RGB is accepted when every colour is a
    DAVIS palette colour (always decoded, to map the colours). ``binary``: mode L with values 0/255
    (DAVIS-2016). ``class-ids``: mode L or P with ids below ``num_classes`` or in ``ignore_ids`` (VIP).
    Without ``decode`` only the header and the end marker are read. Read errors propagate (``OSError``).
    """
    with Image.open(path) as image:
        size, mode = image.size, image.mode
        if mode not in _MODES[fmt]:
            hint = (" — greyscale masks are DAVIS-2016's format; use task davis2016 for them"
                    if fmt == "davis-palette" and mode == "L" else "")
            return Labels(size, mode, None, f"annotation has mode {mode}, expected {_EXPECTED[fmt]}{hint}")
        if not decode and mode != "RGB":
            if not _has_end_marker(path, image.format):
                image.load()
            return Labels(size, mode, None)
        image.load()
        if mode == "RGB":
            return _rgb_to_palette_ids(image, size)
        ids = tuple(sorted(value for _, value in image.getcolors(256)))
    if fmt == "binary":
        odd = [v for v in ids if v not in (0, 255)]
        if odd:
            return Labels(size, mode, ids, f"annotation values {_short(odd)} are not 0/255 (DAVIS-2016 binary mask)")
    if fmt == "class-ids" and num_classes is not None:
        odd = [v for v in ids if v >= num_classes and v not in ignore_ids]
        if odd:
            return Labels(size, mode, ids, f"class ids {_short(odd)} outside 0..{num_classes - 1}"
                          + (f" (ignored ids: {list(ignore_ids)})" if ignore_ids else ""))
    return Labels(size, mode, ids)


def _rgb_to_palette_ids(image: Image.Image, size: tuple[int, int]) -> Labels:
    colours = image.getcolors(256)
    if colours is None:
        return Labels(size, "RGB", None, "RGB annotation with more than 256 colours: not a DAVIS label map")
    unknown = [c for _, c in colours if tuple(c) not in _PALETTE_IDS]
    if unknown:
        return Labels(size, "RGB", None, f"RGB annotation with colours outside the DAVIS palette: {_short(unknown)}; "
                      "save masks as palette (mode P) PNGs with object ids")
    return Labels(size, "RGB", tuple(sorted({_PALETTE_IDS[tuple(c)] for _, c in colours})))


def _short(values: list) -> str:
    shown = ", ".join(str(v) for v in values[:8])
    return shown + (f", … ({len(values)} in all)" if len(values) > 8 else "")
