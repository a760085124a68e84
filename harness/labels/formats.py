"""What a dataset card's ``check.labels`` and split-list ``format`` mean: registries tasks extend.

``harness data check`` validates a task's annotations through the :class:`LabelFormat` its card names,
and every reader of a split goes through the :class:`ListFormat` its card names; the formats shared
by every task are registered here, a task registers its own beside itself (``register_list_format`` in
its module, as ``harness/tasks/jhmdb.py`` does for JHMDB's per-class split files). So a new task whose
keypoints are ``.json`` or ``.npy`` files, or whose masks are PNGs, needs no edit under ``harness/data``.

A name not registered yet makes the lookup import the registered tasks (and entry points) first, so a
card can name a format that the task serving it registers.
"""

from __future__ import annotations

import codecs
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from harness.declared import did_you_mean
from harness.errors import DataError, HarnessError

if TYPE_CHECKING:
    from harness.data.images import Labels


class CheckSpec(Protocol):
    """What a label reader needs from a dataset card's ``check:`` block (:class:`harness.data.cards.CheckSpec`
    has these and more); declared here so that formats do not import the cards that name them."""

    num_classes: int | None
    ignore_ids: tuple[int, ...]
    mat_keys: tuple[str, ...]
    points_key: str | None

BOM = "\ufeff"


@dataclass(frozen=True)
class LabelFormat:
    """How one kind of annotation file is read and checked.

    - ``kind="masks"``: one label map per annotated frame under the card's ``annotations`` folder;
      ``read(path, spec, decode) -> Labels`` (size, mode, ids present, problem). Besides 0, ``void_ids``
      and the card's ``ignore_ids`` are never objects; ``contiguous_ids`` refuses first-frame object ids
      that are not 1..N (the DAVIS evaluator would score a gap as a perfect phantom object).
    - ``kind="keypoints"``: one file per sequence at the card's ``annotations`` path;
      ``read(path, spec) -> (array, what)`` gives the ``[2, joints, frames]`` points and how to name the
      array in a problem line; an unreadable file raises :class:`DataError` naming it.

    ``requires`` names the keys of the card's ``check`` block the format needs (e.g. ``num_classes``),
    so a card that omits one fails when loaded, naming the key.
    """

    name: str
    kind: Literal["masks", "keypoints"]
    summary: str
    read: Callable[..., Any]
    requires: tuple[str, ...] = ()
    void_ids: tuple[int, ...] = ()
    contiguous_ids: bool = False


@dataclass(frozen=True)
class ListFormat:
    """How one kind of split-list file gives sequence names: ``parse(path, pattern)`` reads one file matched
    by the card's ``path`` (``pattern``); ``path_problem(pattern)`` says why a card's path cannot serve this
    format (None when it can)."""

    name: str
    summary: str
    parse: Callable[[Path, str], list[str]]
    path_problem: Callable[[str], str | None] | None = None


_LABELS: dict[str, LabelFormat] = {}
_LISTS: dict[str, ListFormat] = {}


def register_label_format(fmt: LabelFormat) -> LabelFormat:
    """Make ``fmt`` nameable in a card's ``check.labels``; a name registered twice is an error."""
    if fmt.name in _LABELS:
        raise ValueError(f"label format {fmt.name!r} is registered twice")
    _LABELS[fmt.name] = fmt
    return fmt


def register_list_format(fmt: ListFormat) -> ListFormat:
    """Make ``fmt`` nameable as a split list's ``format``; a name registered twice is an error."""
    if fmt.name in _LISTS:
        raise ValueError(f"list format {fmt.name!r} is registered twice")
    _LISTS[fmt.name] = fmt
    return fmt


def _lookup(table: dict[str, Any], name: str, what: str) -> Any:
    if name not in table:
        from harness.registry import list_tasks

        list_tasks()  # task modules register their own formats on import
    if name not in table:
        raise HarnessError(f"unknown {what} {name!r}.{did_you_mean(name, table)} Registered: {', '.join(sorted(table))}")
    return table[name]


def label_format(name: str) -> LabelFormat:
    """The registered label format ``name``; an unknown one lists the registered ones."""
    return _lookup(_LABELS, name, "label format")


def list_format(name: str) -> ListFormat:
    """The registered split-list format ``name``; an unknown one lists the registered ones."""
    return _lookup(_LISTS, name, "split-list format")


# -- split lists ------------------------------------------------------------------------------------


def list_lines(path: Path) -> list[str]:
    """The entries of a list file read as UTF-8: stripped, blank lines and ``#`` comments dropped.

    A UTF-8 byte-order mark at the start (Windows Notepad writes one) is not part of the first name
    and is dropped; one anywhere else (files joined together) or a UTF-16 file is refused, saying so,
    since either would otherwise become an invisible character of a sequence name.
    """
    raw = path.read_bytes()
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DataError(f"{path}: split list is UTF-16 text (it starts with a UTF-16 byte-order mark); "
                        "save it as UTF-8")
    lines = [ln.strip() for ln in raw.decode("utf-8-sig").splitlines()]
    for number, line in enumerate(lines, 1):
        if BOM in line:
            raise DataError(f"{path}: line {number} holds a byte-order mark (U+FEFF) inside the list, as when "
                            "files are joined together; remove it")
    return [ln for ln in lines if ln and not ln.startswith("#")]


def _names(path: Path, pattern: str) -> list[str]:
    return [ln.strip("/") for ln in list_lines(path)]


register_list_format(ListFormat("names", "one sequence name per line", _names))


def class_glob_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a file-name glob with exactly one ``*`` (the class name), or None."""
    return None if Path(pattern).name.count("*") == 1 else "must be a glob with one '*' (the class name)"


def class_from_file(path: Path, pattern: str) -> str | None:
    """The part of ``path``'s name that the one ``*`` of ``pattern``'s file name matched, None if it does not match."""
    glob = Path(pattern).name
    if not fnmatch.fnmatch(path.name, glob):
        return None
    before, after = glob.split("*", 1)
    return path.name[len(before): len(path.name) - len(after)]


# -- label maps -------------------------------------------------------------------------------------


def _png_labels(name: str) -> Callable[..., Labels]:
    def read(path: Path, spec: CheckSpec, decode: bool) -> Labels:
        from harness.data.images import read_labels

        return read_labels(path, name, spec.num_classes, spec.ignore_ids, decode=decode)

    return read


register_label_format(LabelFormat(
    "davis-palette", "masks", "palette (mode P) PNGs of object ids 1..N, 255 void (RGB on the DAVIS palette accepted)",
    _png_labels("davis-palette"), void_ids=(255,), contiguous_ids=True))
register_label_format(LabelFormat("binary", "masks", "greyscale (mode L) PNGs, 0 background and 255 the one object",
                                  _png_labels("binary")))
register_label_format(LabelFormat("class-ids", "masks", "greyscale or palette PNGs of class ids below num_classes",
                                  _png_labels("class-ids"), requires=("num_classes",)))


# -- keypoint files ---------------------------------------------------------------------------------


def _mat_points(path: Path, spec: CheckSpec) -> tuple[np.ndarray, str]:
    from harness.data.rules import read_mat

    key = spec.mat_keys[0]
    return np.asarray(read_mat(path, spec.mat_keys)[key]), repr(key)


def _npy_points(path: Path, spec: CheckSpec) -> tuple[np.ndarray, str]:
    from harness.labels.keypoints import read_npy_points

    return read_npy_points(path), "the keypoint array"


def _json_points(path: Path, spec: CheckSpec) -> tuple[np.ndarray, str]:
    from harness.labels.keypoints import read_json_points

    key = spec.points_key
    return read_json_points(path, key), repr(key) if key else "the keypoint list"


register_label_format(LabelFormat("keypoints-mat", "keypoints", "a MATLAB file per sequence; its first mat_keys "
                                  "array is 2 x joints x frames", _mat_points, requires=("joints", "mat_keys")))
register_label_format(LabelFormat("keypoints-npy", "keypoints", "a .npy array per sequence, 2 x joints x frames",
                                  _npy_points, requires=("joints",)))
register_label_format(LabelFormat("keypoints-json", "keypoints", "a JSON file per sequence: a 2 x joints x frames "
                                  "nested list (null = absent), or that list under points_key", _json_points,
                                  requires=("joints",)))
