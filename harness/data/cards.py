"""Dataset cards: the YAML files that say where a benchmark comes from and what it holds.

A card is the single source of truth for a dataset's official URLs, checksums, layout, license and
citation, for what ``harness data check`` expects to find (``check:``: folder patterns, the label
format, the split lists) and for the official splits a run's data is identified against
(``official:``, :mod:`harness.data.identify`). The shipped cards live in ``datasets/``; a task may
bring its own card file (``Task.card_path``), found by the same lookups.

Cards are declared as pydantic models and read through :func:`harness.declared.read_model`, so a typo
fails at once with the card's file and the key's dotted path instead of deep inside a download or a
run. What the label format and list formats named in a card mean is registered in
:mod:`harness.labels.formats`; a card naming one that no task registers fails when loaded.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, StrictBool, StrictInt, StrictStr, ValidationInfo, field_validator

from harness.data.roots import DATASETS_DIR
from harness.declared import Declared, read_model
from harness.errors import DataError, HarnessError
from harness.io import read_yaml
from harness.labels.formats import label_format, list_format

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class CardError(HarnessError):
    """A dataset card is malformed; the message names the card file and the key."""


class RemoteFile(Declared):
    """One file of an HTTP dataset: fetched from ``base_url + name`` (or a mirror) and unpacked."""

    name: StrictStr
    part: StrictStr
    default: StrictBool = True
    size: StrictInt | None = None
    sha256: StrictStr | None = None
    verified: StrictBool
    extract: StrictBool = True
    unpacks_to: StrictStr | None = None

    @field_validator("name")
    @classmethod
    def _plain(cls, name: str) -> str:
        if "/" in name or "\\" in name or name in (".", ".."):
            raise ValueError("must be a plain file name")
        return name

    @field_validator("size")
    @classmethod
    def _positive(cls, size: int | None) -> int | None:
        if size is not None and size <= 0:
            raise ValueError("must be a positive number of bytes or null")
        return size

    @field_validator("sha256")
    @classmethod
    def _hex(cls, sha: str | None) -> str | None:
        if sha is not None and not _SHA256.match(sha):
            raise ValueError("must be 64 lowercase hex digits or null (never a guess)")
        return sha

    @field_validator("verified")
    @classmethod
    def _needs_sha(cls, verified: bool, info: ValidationInfo) -> bool:
        if verified and info.data.get("sha256") is None:
            raise ValueError("cannot be true without a sha256")
        return verified


class Download(Declared):
    """How the data is fetched: ``http`` (files under ``base_url``) or ``manual`` (instructions)."""

    method: Literal["http", "manual"]
    base_url: StrictStr | None = None
    files: list[RemoteFile] = Field(default_factory=list)
    instructions: StrictStr | None = None
    note: StrictStr | None = None

    @field_validator("base_url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return url


class SplitList(Declared):
    """Where a split's sequence list lives (a path or glob relative to the data root) and its format
    (a registered :class:`~harness.labels.formats.ListFormat`)."""

    path: StrictStr
    format: StrictStr


class Split(Declared):
    """A split: candidate lists (the first one present wins) and which frames carry annotations."""

    lists: list[SplitList] = Field(min_length=1)
    annotated: Literal["all", "first"]
    _name: str = PrivateAttr(default="")

    @property
    def name(self) -> str:
        return self._name


class CheckSpec(Declared):
    """What ``harness data check`` validates: folder patterns (with ``{sequence}``), the label format (a
    registered :class:`~harness.labels.formats.LabelFormat`, with the keys it requires) and the splits."""

    kind: Literal["masks", "keypoints"]
    frames: StrictStr
    frame_suffix: StrictStr
    annotations: StrictStr
    annotation_suffix: StrictStr = ""
    labels: StrictStr
    default_split: StrictStr
    splits: dict[str, Split]
    num_classes: StrictInt | None = None
    ignore_ids: tuple[StrictInt, ...] = ()
    mat_keys: tuple[StrictStr, ...] = ()
    joints: StrictInt | None = None
    points_key: StrictStr | None = None

    @field_validator("frames", "annotations")
    @classmethod
    def _per_sequence(cls, pattern: str) -> str:
        if "{sequence}" not in pattern:
            raise ValueError("must contain '{sequence}'")
        return pattern

    def model_post_init(self, context: Any) -> None:
        for name, split in self.splits.items():
            split._name = name


class OfficialSplitBody(Declared):
    """One official split: its sequences with first-frame object counts, its sequence names (counts not
    fixed), or only its size where the names are not known."""

    objects: dict[str, StrictInt] | None = None
    sequences: list[StrictStr] | None = None
    size: StrictInt | None = None


class Official(Declared):
    """The official split lists a run's data is identified against (:mod:`harness.data.identify`)."""

    dataset: StrictStr
    unit: StrictStr = "sequences"
    splits: dict[str, OfficialSplitBody] = Field(min_length=1)


class Card(Declared):
    """A validated dataset card."""

    name: StrictStr
    title: StrictStr
    tasks: tuple[StrictStr, ...] = ()
    homepage: StrictStr
    license: StrictStr
    citation: StrictStr
    note: StrictStr | None = None
    download: Download
    layout: dict[StrictStr, StrictStr]
    check: CheckSpec | None = None
    official: Official | None = None
    _source: str = PrivateAttr(default="<dict>")

    @field_validator("citation")
    @classmethod
    def _bibtex(cls, citation: str) -> str:
        if not citation.lstrip().startswith("@"):
            raise ValueError("must be a BibTeX entry (starting with '@')")
        return citation

    @property
    def source(self) -> str:
        """The card's file (or what it was read from)."""
        return self._source

    @property
    def method(self) -> str:
        return self.download.method

    @property
    def base_url(self) -> str | None:
        return self.download.base_url

    @property
    def files(self) -> tuple[RemoteFile, ...]:
        return tuple(self.download.files)

    @property
    def instructions(self) -> str | None:
        return self.download.instructions

    @property
    def default_task(self) -> str:
        """The name used for ``$HARNESS_DATA/<name>``: the first task served, else the card's name."""
        return self.tasks[0] if self.tasks else self.name


def parse_card(data: Any, source: str = "<dict>") -> Card:
    """Validate a card's parsed YAML and build a :class:`Card`; errors name ``source`` and the key."""
    card = read_model(Card, data, source, CardError)
    card._source = source
    _check_rules(card, source)
    return card


def _fail(source: str, key: str, problem: str) -> CardError:
    return CardError(f"{source}: key {key!r} {problem}")


def _check_rules(card: Card, source: str) -> None:
    """The rules that tie one key to another, or to a registered format."""
    download = card.download
    if download.method == "http":
        if download.base_url is None:
            raise _fail(source, "download.base_url", "is missing (an http download needs it)")
        if not download.files:
            raise _fail(source, "download.files", "must list at least one file for an http download")
    elif download.instructions is None:
        raise _fail(source, "download.instructions", "is missing (a manual download needs it)")
    for split_name, body in (card.official.splits.items() if card.official else ()):
        given = [key for key in ("objects", "sequences", "size") if getattr(body, key) is not None]
        if len(given) != 1:
            raise _fail(source, f"official.splits.{split_name}", "needs exactly one of 'objects' (name: object count), "
                        f"'sequences' (names) or 'size' (a count), got {', '.join(given) or 'none'}")
    spec = card.check
    if spec is None:
        return
    if spec.default_split not in spec.splits:
        raise _fail(source, "check.default_split", f"is {spec.default_split!r}, which names no split of "
                    f"'check.splits' ({', '.join(spec.splits)})")
    try:
        fmt = label_format(spec.labels)
    except HarnessError as err:
        raise _fail(source, "check.labels", f"names no label format: {err}") from None
    if fmt.kind != spec.kind:
        raise _fail(source, "check.kind", f"is {spec.kind!r} but label format {fmt.name!r} is {fmt.kind!r}")
    for key in fmt.requires:
        if getattr(spec, key) in (None, ()):
            raise _fail(source, f"check.{key}", f"is missing (label format {fmt.name!r} needs it)")
    for split_name, split in spec.splits.items():
        for i, entry in enumerate(split.lists):
            where = f"check.splits.{split_name}.lists.{i}"
            try:
                parser = list_format(entry.format)
            except HarnessError as err:
                raise _fail(source, f"{where}.format", f"names no split-list format: {err}") from None
            problem = parser.path_problem(entry.path) if parser.path_problem else None
            if problem:
                raise _fail(source, f"{where}.path", f"of a {entry.format} list {problem}")


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
        parser = list_format(candidate.format)
        try:
            names = [name for path in files for name in parser.parse(path, candidate.path)]
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(f"{files[0]}: unreadable split list ({err})") from err
        if not names:
            raise DataError(f"{files[0]}: split list {split.name!r} names no sequence")
        return list(dict.fromkeys(names)), files[0]
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


# -- finding cards ------------------------------------------------------------------------------------


def load_card(path: str | Path) -> Card:
    """Read and validate one card file; a YAML syntax error or a bad key names the file."""
    path = Path(path)
    data = read_yaml(path, "dataset card", CardError)
    card = parse_card(data, str(path))
    if card.name != path.stem:
        raise CardError(f"{path}: key 'name' is {card.name!r} but the file is named {path.name!r}")
    return card


def card_paths(cards_dir: Path = DATASETS_DIR) -> list[Path]:
    """The card files of a folder (the shipped ``datasets/`` by default)."""
    return sorted(cards_dir.glob("*.yaml"))


def card_files(cards_dir: Path = DATASETS_DIR) -> dict[str, Path]:
    """Every card file by card name: those in ``cards_dir`` and those registered tasks bring
    (``Task.card_path``); a shipped card wins over a task's file of the same name."""
    from harness.registry import get_task, list_tasks

    files = {path.stem: path for path in card_paths(cards_dir)}
    for task in list_tasks():
        own = get_task(task).factory.card_path
        if own is not None:
            files.setdefault(Path(own).stem, Path(own))
    return files


def task_cards(task: str, cards_dir: Path = DATASETS_DIR) -> tuple[str, ...]:
    """The dataset cards a task's data is checked and identified against, its own first.

    ``Task.cards`` when the task declares them; else the card of its ``card_path``; else a card named
    after the task, or one whose ``tasks`` lists it. ``()`` when there is none (also for a name no task
    is registered under that no card serves): such a task has no known official split, so its runs are
    never ranked (:func:`harness.data.identify.smoke_reasons`).
    """
    from harness.registry import get_task

    try:
        factory = get_task(task).factory
    except HarnessError:
        factory = None
    if factory is not None and factory.cards:
        return tuple(factory.cards)
    if factory is not None and factory.card_path is not None:
        return (Path(factory.card_path).stem,)
    files = card_files(cards_dir)
    if task in files:
        return (task,)
    serving = [name for name, path in files.items() if task in load_card(path).tasks]
    return tuple(serving[:1])


def card_named(name: str, cards_dir: Path = DATASETS_DIR) -> Card:
    """The card called ``name`` (a file ``<name>.yaml`` in ``cards_dir`` or a task's own card file)."""
    files = card_files(cards_dir)
    if name not in files:
        raise DataError(f"no dataset card named {name!r}; known: {', '.join(sorted(files)) or 'none'}")
    return load_card(files[name])


def find_card(name: str, cards_dir: Path = DATASETS_DIR) -> Card:
    """The card of task ``name`` (its own card, :func:`task_cards`), else the card named ``name``
    (``davis`` → ``davis2017``, ``davis2017`` → ``davis2017``)."""
    cards = task_cards(name, cards_dir)
    if cards:
        return card_named(cards[0], cards_dir)
    files = card_files(cards_dir)
    if name in files:
        return load_card(files[name])
    loaded = [load_card(p) for p in files.values()]
    known = sorted({c.name for c in loaded} | {t for c in loaded for t in c.tasks})
    raise DataError(f"no dataset card for {name!r} in {cards_dir} or the tasks' own cards; "
                    f"known: {', '.join(known) or 'none'}")
