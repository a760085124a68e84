"""Dataset cards: the YAML files in ``datasets/`` that say where a benchmark comes from and what it holds.

A card is the single source of truth for a dataset's official URLs, checksums, layout, license and
citation, and for what ``harness data check`` expects to find. Cards are validated when loaded, so a
typo in a card fails at once with the card's file and the field's path instead of deep inside a
download or a run.
"""

from __future__ import annotations

import codecs
import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.data.roots import DATASETS_DIR
from harness.errors import DataError, HarnessError
from harness.io import read_yaml

DOWNLOAD_METHODS = ("http", "manual")
CHECK_KINDS = ("masks", "keypoints")
LABEL_FORMATS = ("davis-palette", "binary", "class-ids", "jhmdb-mat")
LIST_FORMATS = ("names", "davis-frame-pairs", "jhmdb-official")
ANNOTATED = ("all", "first")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
BOM = "\ufeff"


class CardError(HarnessError):
    """A dataset card is malformed; the message names the card file and the field."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of an HTTP dataset: fetched from ``base_url + name`` (or a mirror) and unpacked."""

    name: str
    part: str
    default: bool
    size: int | None
    sha256: str | None
    verified: bool
    extract: bool
    unpacks_to: str | None


@dataclass(frozen=True)
class SplitList:
    """Where a split's sequence list lives (a path or glob relative to the data root) and its format."""

    path: str
    format: str


@dataclass(frozen=True)
class Split:
    """A split: candidate lists (the first one present wins) and which frames carry annotations."""

    name: str
    lists: tuple[SplitList, ...]
    annotated: str


@dataclass(frozen=True)
class CheckSpec:
    """What ``harness data check`` validates: folder patterns (with ``{sequence}``) and label format."""

    kind: str
    frames: str
    frame_suffix: str
    annotations: str
    annotation_suffix: str
    labels: str
    default_split: str
    splits: dict[str, Split]
    num_classes: int | None = None
    ignore_ids: tuple[int, ...] = ()
    mat_keys: tuple[str, ...] = ()
    joints: int | None = None


@dataclass(frozen=True)
class Card:
    """A validated dataset card."""

    name: str
    title: str
    tasks: tuple[str, ...]
    homepage: str
    license: str
    citation: str
    method: str
    base_url: str | None
    files: tuple[RemoteFile, ...]
    instructions: str | None
    layout: dict[str, str]
    check: CheckSpec | None
    note: str | None = None
    source: str = "<dict>"

    @property
    def default_task(self) -> str:
        """The name used for ``$HARNESS_DATA/<name>``: the first task served, else the card's name."""
        return self.tasks[0] if self.tasks else self.name


class _Fields:
    """Typed access to one mapping of a card, raising :class:`CardError` with the field's full path."""

    def __init__(self, data: Any, source: str, where: str) -> None:
        self.source = source
        self.where = where
        if not isinstance(data, dict):
            raise CardError(f"{source}: field '{where or '<top>'}' must be a mapping, got {type(data).__name__}")
        self.data = data

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, problem: str) -> CardError:
        return CardError(f"{self.source}: field '{self.path(key)}' {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], *, required: bool = True, default: Any = None) -> Any:
        if key not in self.data or self.data[key] is None:
            if required:
                raise self.fail(key, "is required")
            return default
        value = self.data[key]
        if isinstance(value, bool) and kind in (int, (int,)):
            raise self.fail(key, f"must be {_kind_name(kind)}, got a boolean")
        if not isinstance(value, kind):
            raise self.fail(key, f"must be {_kind_name(kind)}, got {type(value).__name__} {value!r}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], *, required: bool = True, default: str | None = None) -> Any:
        value = self.get(key, str, required=required, default=default)
        if value is not None and value not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def sub(self, key: str, *, required: bool = True) -> _Fields | None:
        if self.data.get(key) is None:
            if required:
                raise self.fail(key, "is required")
            return None
        return _Fields(self.data[key], self.source, self.path(key))

    def strings(self, key: str, *, required: bool = True) -> tuple[str, ...]:
        value = self.get(key, list, required=required, default=[])
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.fail(f"{key}[{i}]", f"must be a string, got {item!r}")
        return tuple(value)

    def unknown(self, allowed: set[str]) -> None:
        extra = sorted(set(self.data) - allowed)
        if extra:
            raise CardError(
                f"{self.source}: unknown field(s) {', '.join(self.path(k) for k in extra)} "
                f"(allowed: {', '.join(sorted(allowed))})"
            )


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", bool: "true/false", list: "a list", dict: "a mapping"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def parse_card(data: Any, source: str = "<dict>") -> Card:
    """Validate a card's parsed YAML and build a :class:`Card`; errors name ``source`` and the field."""
    top = _Fields(data, source, "")
    top.unknown({"name", "title", "tasks", "homepage", "license", "citation", "note", "download", "layout", "check",
                 "official"})  # official: split lists read by harness/data/identify.py
    name = top.get("name", str)
    citation = top.get("citation", str)
    if not citation.lstrip().startswith("@"):
        raise top.fail("citation", "must be a BibTeX entry (starting with '@')")
    download = top.sub("download")
    assert download is not None
    download.unknown({"method", "base_url", "files", "instructions", "note"})
    method = download.choice("method", DOWNLOAD_METHODS)
    base_url = download.get("base_url", str, required=method == "http")
    if base_url is not None and not base_url.startswith(("http://", "https://")):
        raise download.fail("base_url", f"must be an http(s) URL, got {base_url!r}")
    files = tuple(_parse_file(item, source, f"download.files[{i}]") for i, item in
                  enumerate(download.get("files", list, required=method == "http", default=[])))
    if method == "http" and not files:
        raise download.fail("files", "must list at least one file for an http download")
    instructions = download.get("instructions", str, required=method == "manual")
    layout = top.get("layout", dict)
    for key, value in layout.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise top.fail("layout", f"must map paths to descriptions (strings), got {key!r}: {value!r}")
    check = top.sub("check", required=False)
    return Card(
        name=name,
        title=top.get("title", str),
        tasks=top.strings("tasks", required=False),
        homepage=top.get("homepage", str),
        license=top.get("license", str),
        citation=citation,
        method=method,
        base_url=base_url,
        files=files,
        instructions=instructions,
        layout=dict(layout),
        check=_parse_check(check) if check is not None else None,
        note="\n".join(n for n in (top.get("note", str, required=False), download.get("note", str, required=False)) if n)
        or None,
        source=source,
    )


def _parse_file(item: Any, source: str, where: str) -> RemoteFile:
    f = _Fields(item, source, where)
    f.unknown({"name", "part", "default", "size", "sha256", "verified", "extract", "unpacks_to"})
    name = f.get("name", str)
    if "/" in name or "\\" in name or name in (".", ".."):
        raise f.fail("name", f"must be a plain file name, got {name!r}")
    sha = f.get("sha256", str, required=False)
    if sha is not None and not _SHA256.match(sha):
        raise f.fail("sha256", "must be 64 lowercase hex digits or null (never a guess)")
    verified = f.get("verified", bool)
    if verified and sha is None:
        raise f.fail("verified", "cannot be true without a sha256")
    size = f.get("size", int, required=False)
    if size is not None and size <= 0:
        raise f.fail("size", f"must be a positive number of bytes or null, got {size}")
    return RemoteFile(
        name=name,
        part=f.get("part", str),
        default=f.get("default", bool, required=False, default=True),
        size=size,
        sha256=sha,
        verified=verified,
        extract=f.get("extract", bool, required=False, default=True),
        unpacks_to=f.get("unpacks_to", str, required=False),
    )


def _parse_check(f: _Fields) -> CheckSpec:
    f.unknown({"kind", "frames", "frame_suffix", "annotations", "annotation_suffix", "labels", "default_split",
               "splits", "num_classes", "ignore_ids", "mat_keys", "joints"})
    kind = f.choice("kind", CHECK_KINDS)
    for key in ("frames", "annotations"):
        if "{sequence}" not in f.get(key, str):
            raise f.fail(key, "must contain '{sequence}'")
    splits_field = f.sub("splits")
    assert splits_field is not None
    splits = {}
    for split_name in splits_field.data:
        s = splits_field.sub(str(split_name))
        assert s is not None
        s.unknown({"lists", "annotated"})
        lists = []
        for i, entry in enumerate(s.get("lists", list)):
            item = _Fields(entry, f.source, s.path(f"lists[{i}]"))
            item.unknown({"path", "format"})
            split_list = SplitList(item.get("path", str), item.choice("format", LIST_FORMATS))
            if split_list.format == "jhmdb-official" and Path(split_list.path).name.count("*") != 1:
                raise item.fail("path", "of a jhmdb-official list must be a glob with one '*' (the class name)")
            lists.append(split_list)
        if not lists:
            raise s.fail("lists", "must name at least one list file")
        splits[str(split_name)] = Split(str(split_name), tuple(lists), s.choice("annotated", ANNOTATED))
    default_split = f.get("default_split", str)
    if default_split not in splits:
        raise f.fail("default_split", f"names no split of 'splits' ({', '.join(splits)})")
    ignore = f.get("ignore_ids", list, required=False, default=[])
    if not all(isinstance(i, int) for i in ignore):
        raise f.fail("ignore_ids", f"must be a list of integers, got {ignore!r}")
    labels = f.choice("labels", LABEL_FORMATS)
    num_classes = f.get("num_classes", int, required=labels == "class-ids")
    joints = f.get("joints", int, required=labels == "jhmdb-mat")
    return CheckSpec(
        kind=kind,
        frames=f.get("frames", str),
        frame_suffix=f.get("frame_suffix", str),
        annotations=f.get("annotations", str),
        annotation_suffix=f.get("annotation_suffix", str, required=False, default=""),
        labels=labels,
        default_split=default_split,
        splits=splits,
        num_classes=num_classes,
        ignore_ids=tuple(ignore),
        mat_keys=f.strings("mat_keys", required=labels == "jhmdb-mat"),
        joints=joints,
    )


# -- split lists: the card says where they are and in which format; this is their one reader ----------


def split_names(root: Path, split: Split) -> tuple[list[str], Path]:
    """The sequence names of ``split`` from the first of its list files present under ``root``, and that
    file (a glob's first match). Blank lines and ``#`` comment lines are skipped (no benchmark names a
    sequence with a leading ``#``); repeated names count once, in first-seen order.

    Raises :class:`DataError` naming every place looked at when no list is present, a list that
    names nothing, or a line that cannot be read.
    """
    for candidate in split.lists:
        if any(ch in candidate.path for ch in "*?["):
            files = sorted(root.glob(candidate.path))
        else:
            files = [root / candidate.path] if (root / candidate.path).is_file() else []
        if not files:
            continue
        try:
            names = _parse_lists(files, candidate)
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(f"{files[0]}: unreadable split list ({err})") from err
        if not names:
            raise DataError(f"{files[0]}: split list {split.name!r} names no sequence")
        return names, files[0]
    looked = ", ".join(str(root / c.path) for c in split.lists)
    raise DataError(f"{root}: no list of split {split.name!r} (looked for {looked})")


def task_split(task: str, root: Path, split: str | None = None) -> tuple[list[str], Path]:
    """The names of ``split`` (default: the card's) of the card serving ``task``, and the list file read."""
    card = find_card(task)
    if card.check is None:
        raise DataError(f"the {card.name} card defines no splits (see {card.source})")
    name = split or card.check.default_split
    if name not in card.check.splits:
        raise DataError(f"{card.name} has no split {name!r}; splits: {', '.join(card.check.splits)}")
    return split_names(root, card.check.splits[name])


def read_split(root: Path, split: Split) -> tuple[list[str] | None, list[str]]:
    """:func:`split_names` for ``harness data check``: the names, or None and the problem as a sentence."""
    try:
        return split_names(root, split)[0], []
    except DataError as err:
        return None, [str(err)]


def _lines(path: Path) -> list[str]:
    """The names of a list file, read as UTF-8.

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


def _parse_lists(files: list[Path], candidate: SplitList) -> list[str]:
    names: list[str] = []
    for path in files:
        if candidate.format == "names":
            names += [ln.strip("/") for ln in _lines(path)]
        elif candidate.format == "davis-frame-pairs":
            # "/JPEGImages/480p/<seq>/00000.jpg /Annotations/480p/<seq>/00000.png"
            for line in _lines(path):
                parts = line.split()[0].strip("/").split("/")
                if len(parts) < 4:
                    raise DataError(f"{path}: cannot read a sequence name from line {line!r}")
                names.append(parts[2])
        else:  # jhmdb-official: "<class>_test_split1.txt" lines "<clip>.avi <1 train | 2 test>"
            if not fnmatch.fnmatch(path.name, Path(candidate.path).name):
                continue
            before, after = Path(candidate.path).name.split("*", 1)
            cls = path.name[len(before): len(path.name) - len(after)]
            for line in _lines(path):
                if len(line.split()) != 2:
                    raise DataError(f"{path}: cannot read line {line!r} (expected '<clip>.avi 1|2')")
                if line.split()[1] == "2":
                    names.append(f"{cls}/{Path(line.split()[0]).stem}")
    return list(dict.fromkeys(names))


def load_card(path: str | Path) -> Card:
    """Read and validate one card file; a YAML syntax error or a bad field names the file."""
    path = Path(path)
    data = read_yaml(path, "dataset card", CardError)
    card = parse_card(data, str(path))
    if card.name != path.stem:
        raise CardError(f"{path}: field 'name' is {card.name!r} but the file is named {path.name!r}")
    return card


def card_paths(cards_dir: Path = DATASETS_DIR) -> list[Path]:
    return sorted(cards_dir.glob("*.yaml"))


def find_card(name: str, cards_dir: Path = DATASETS_DIR) -> Card:
    """The card named ``name``, or the card serving task ``name`` (``davis`` → ``davis2017``)."""
    direct = cards_dir / f"{name}.yaml"
    if direct.is_file():
        return load_card(direct)
    cards = [load_card(p) for p in card_paths(cards_dir)]
    for card in cards:
        if name in card.tasks:
            return card
    known = sorted({c.name for c in cards} | {t for c in cards for t in c.tasks})
    raise DataError(f"no dataset card for {name!r} in {cards_dir}; known: {', '.join(known) or 'none'}")
