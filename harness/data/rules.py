"""The rules a sequence's files must meet, in one place: ``harness data check`` and the task readers a
run uses both apply them, so the check cannot call valid what a run refuses or reads differently.

Three rules: which entries of a sequence's folder are its frames (or label maps), whether a JPEG's
compressed data is intact, and how a MATLAB annotation file is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.errors import DataError, HarnessError


def sequence_files(folder: Path, suffix: str) -> tuple[list[Path], list[str]]:
    """The files of ``folder`` whose names end in ``suffix`` (e.g. ``.jpg``), sorted by name, and the
    problems of entries that look like such files but are not read as them, one line each, file first.

    A name whose suffix differs only in case (``00003.JPG``) is a problem, not a frame: the benchmark's
    layout and its official tools name frames ``*.jpg``, and on a case-sensitive file system a reader
    listing ``*.jpg`` would skip it and misnumber the sequence. An entry with the suffix that is not a
    regular file (a folder named ``00006.jpg``, a link to nothing) is a problem too. A missing folder
    gives no files and no problem: the caller says what that folder is.
    """
    files: list[Path] = []
    problems: list[str] = []
    if not folder.is_dir():
        return files, problems
    for entry in sorted(folder.iterdir()):
        if entry.suffix.lower() != suffix.lower():
            continue
        if entry.suffix != suffix:
            problems.append(f"{entry}: named {entry.suffix!r}, but the benchmark's files end in {suffix!r}: "
                            f"rename it to {entry.stem}{suffix}")
        elif not entry.is_file():
            what = "a folder" if entry.is_dir() else "not a readable file (a broken link?)"
            problems.append(f"{entry}: is {what}, where a {suffix} file is expected")
        else:
            files.append(entry)
    return files, problems


def require_sequence_files(folder: Path, suffix: str, what: str) -> list[Path]:
    """:func:`sequence_files` for a reader: the files, or a :class:`DataError` listing every problem under
    ``what`` (e.g. ``sequence 'car-shadow'``)."""
    files, problems = sequence_files(folder, suffix)
    if problems:
        raise DataError(f"{what}:\n" + "\n".join(f"  {line}" for line in problems))
    return files


class DamagedJpeg(ValueError):
    """A JPEG that decodes although its compressed data is damaged; the message says what to do."""

    def __init__(self, damage: str) -> None:
        super().__init__(f"damaged JPEG data ({damage}): it decodes, but into another picture than the one "
                         "recorded; replace it with an intact copy")


def check_jpeg(data: bytes) -> None:
    """Raise :class:`DamagedJpeg` when :func:`jpeg_damage` finds damage."""
    damage = jpeg_damage(data)
    if damage:
        raise DamagedJpeg(damage)


def jpeg_damage(data: bytes) -> str | None:
    """libjpeg's complaint about a JPEG's compressed data, or None when it decodes without one.

    libjpeg recovers from damaged entropy-coded data (a zeroed block, stray bytes): it warns "Corrupt
    JPEG data: …" and fills the rest with smeared or grey blocks, so the file decodes into a picture that
    is not the recorded frame. Pillow, which decodes the frames, discards libjpeg's warnings; simplejpeg
    (libjpeg-turbo's TurboJPEG interface) raises on them with ``strict=True``, so the file is decoded
    once more, at 1/8 scale in grey (the entropy-coded data is read in full either way), to hear them.
    """
    try:
        _simplejpeg().decode_jpeg(data, colorspace="GRAY", min_factor=8, fastdct=True, strict=True)
    except ValueError as err:
        return str(err).strip()
    return None


def decode_colour_jpeg(data: bytes) -> Any:
    """The RGB pixels of an intact colour (YCbCr) JPEG from one strict libjpeg-turbo decode, or None.

    A run reads every frame; decoding it with Pillow and then again to hear libjpeg's complaints would
    cost two decodes. This one decode both checks and reads, and gives Pillow's pixels exactly (the same
    libjpeg-turbo defaults: accurate integer DCT, fancy upsampling). None for anything it does not take —
    another colour space, or any complaint — which then goes the long way (Pillow, then
    :func:`check_jpeg`), so damaged and unreadable files get their usual messages.
    """
    simplejpeg = _simplejpeg()
    try:
        if simplejpeg.decode_jpeg_header(data)[2] != "YCbCr":
            return None
        return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
    except ValueError:
        return None


def _simplejpeg() -> Any:
    try:
        import simplejpeg  # only for JPEG data
    except ImportError:
        raise HarnessError("checking JPEG frames for damaged data needs simplejpeg, a dependency of crwbench that "
                           "is not installed here: pip install 'simplejpeg>=1.6'") from None
    return simplejpeg


def read_mat(path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """The arrays ``keys`` of the MATLAB file ``path`` (``scipy.io.loadmat``'s dict).

    Raises :class:`DataError` naming the file when it is not a readable .mat file or lacks a key:
    scipy fails on a file that is not one with assorted exception types (``MatReadError``,
    ``ValueError``, an ``IndexError`` for a short text file), none of which says so.
    """
    import scipy.io  # only for keypoint data: importing it costs seconds that mask datasets need not pay

    try:
        present = {name for name, _, _ in scipy.io.whosmat(path)}
        absent = [key for key in keys if key not in present]
        if not absent:
            return scipy.io.loadmat(path, variable_names=list(keys))
    except Exception as err:  # see above: any failure of the parser means the file is not a usable .mat
        raise DataError(f"{path}: unreadable .mat file, not a MATLAB file scipy can read ({type(err).__name__}: "
                        f"{err}); replace it with the benchmark's original file") from err
    raise DataError(f"{path} has no {', '.join(repr(k) for k in absent)} array (keys present: "
                    f"{', '.join(sorted(present)) or 'none'})")
