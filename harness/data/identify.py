"""Which dataset and split a run measured, identified from the data itself, and whether it is a smoke run.

A folder's layout and a task's name say how the data is *read*, not what it *is*: the DAVIS-2016
sequences converted to the 2017 layout are read by ``--task davis`` yet are still DAVIS-2016 (one
object each), and a 3-sequence ``--limit`` run is not "DAVIS val". So the identity comes from the
sequence names and their first-frame object counts, checked against the official split lists in
the dataset cards (``official:`` in ``datasets/*.yaml``). A run whose data is only a sliver of its
split (or the shipped sample, or synthetic, or cut by ``--limit``) is a *smoke* run: it shows the
code works, and the leaderboard never ranks it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from harness.data.cards import card_named, task_cards
from harness.data.roots import DATASETS_DIR
from harness.errors import HarnessError

#: below this share of its official split a run is a smoke run
SMOKE_FRACTION = 0.10
SAMPLE_DIR = DATASETS_DIR / "sample"


@dataclass(frozen=True)
class OfficialSplit:
    """One official split: its sequence names with object counts (None where the count is not
    fixed, e.g. JHMDB clips), or only its size where the names are not known here (VIP)."""

    dataset: str
    split: str
    unit: str
    size: int
    objects: Mapping[str, int | None] | None

    def matches(self, objects: Mapping[str, int | None]) -> bool:
        """Every sequence is in the split and, where both are known, has the official object count."""
        if self.objects is None:
            return True
        for name, count in objects.items():
            if name not in self.objects:
                return False
            official = self.objects[name]
            if official is not None and count is not None and official != count:
                return False
        return True


@cache
def official_splits(card: str) -> tuple[OfficialSplit, ...]:
    """The official splits of one dataset card (``davis2016``, ``davis2017``, ``jhmdb``, ``vip``, or a task's
    own card); ``()`` for a card without an ``official:`` block."""
    official = card_named(card).official
    if official is None:
        return ()
    splits = []
    for split, body in official.splits.items():
        if body.objects is not None:
            objects: dict[str, int | None] | None = dict(body.objects)
        elif body.sequences is not None:
            objects = dict.fromkeys(body.sequences)
        else:
            objects = None
        size = len(objects) if objects is not None else int(body.size or 0)
        splits.append(OfficialSplit(official.dataset, split, official.unit, size, objects))
    return tuple(splits)


def _candidates(task: str) -> list[OfficialSplit]:
    """The official splits a task's data is identified against: those of its cards, its own card first."""
    return [split for card in task_cards(task) for split in official_splits(card)]


def _task_class(task: str) -> Any:
    from harness.registry import get_task

    try:
        return get_task(task).factory
    except HarnessError:
        return None


def _counted(count: int, unit: str) -> str:
    """``1 clip``, ``3 clips``."""
    return f"{count} {unit[:-1] if count == 1 and unit.endswith('s') else unit}"


def identify(task: str, objects: Mapping[str, int | None], synthetic: bool = False) -> dict[str, Any]:
    """The ``data.dataset`` block for a run of ``task`` on sequences ``objects`` (name -> object count).

    The first candidate split (the task's own dataset first) that holds every sequence with its
    official object count wins. Data that matches none is named after the task's dataset with no
    split ("not in DAVIS-2017 val or DAVIS-2016 val"); synthetic data is never an official split.
    """
    count = len(objects)
    splits = _candidates(task)
    if not splits:
        return {"name": task, "split": None, "sequences": count, "of_split": None,
                "label": f"{task}, {_counted(count, 'sequences')} (no official split list)"}
    unit = splits[0].unit
    if synthetic:
        return {"name": f"synthetic {splits[0].dataset}-layout sample", "split": None, "sequences": count,
                "of_split": None, "label": f"synthetic {splits[0].dataset}-layout data, {_counted(count, unit)} (not {splits[0].dataset})"}
    for split in splits:
        if count and split.matches(objects):
            share = "all" if count == split.size and split.objects is not None else f"{count} of"
            label = f"{split.dataset} {split.split}, {share} {split.size} {split.unit}"
            if split.objects is None:
                label += " (names not checked: no official list here)"
            return {"name": split.dataset, "split": split.split, "sequences": count, "of_split": split.size,
                    "label": label}
    tried = " or ".join(f"{s.dataset} {s.split}" for s in splits)
    return {"name": splits[0].dataset, "split": None, "sequences": count, "of_split": None,
            "label": f"{splits[0].dataset}, {_counted(count, unit)} not in {tried}"}


def objects_from_scores(per_sequence: Mapping[str, Any] | None, per_object: Mapping[str, Any] | None,
                        sequences: Sequence[str] | None = None) -> dict[str, int | None]:
    """Sequence name -> object count, from a record's score blocks.

    DAVIS tasks write ``n_objects`` per sequence (the largest id in the first-frame annotation); older
    records are read from the ``<seq>_<id>`` keys of ``per_object``. Tasks without objects give None.
    """
    names = list(sequences) if sequences else list(per_sequence or {})
    counts: dict[str, int | None] = {name: None for name in names}
    for name in names:
        value = (per_sequence or {}).get(name, {})
        if isinstance(value, Mapping) and isinstance(value.get("n_objects"), int):
            counts[name] = value["n_objects"]
    if per_object and any(v is None for v in counts.values()):
        for key in per_object:
            name, _, ident = str(key).rpartition("_")
            if name in counts and ident.isdigit() and (counts[name] or 0) < int(ident):
                counts[name] = int(ident)
    return counts


def is_shipped_sample(root: str | Path | None) -> bool:
    """Whether ``root`` lies inside the repository's ``datasets/sample`` (also for relative paths)."""
    if not root:
        return False
    path = Path(str(root))
    if path.is_absolute() or path.exists():
        try:
            path.resolve().relative_to(SAMPLE_DIR.resolve())
            return True
        except ValueError:
            return False
    return "datasets/sample/" in path.as_posix() + "/"


def smoke_reasons(dataset: Mapping[str, Any], data: Mapping[str, Any] | None) -> list[str]:
    """Why a run is a smoke run (empty: it may be ranked).

    Smoke: any ``--limit``; the shipped sample; synthetic data; fewer sequences than
    :data:`SMOKE_FRACTION` of the official split (data outside any official split is compared with
    the size of the task's own split); and data whose official split size is unknown — a task with no
    dataset card holding an ``official:`` split (:func:`harness.data.cards.task_cards`) is never ranked.
    A share at or above the fraction is ranked, among runs on the same sequences only, and labelled
    "n of N".
    """
    data = data or {}
    reasons = []
    if data.get("limit") is not None:
        reasons.append(f"--limit {data['limit']}")
    if data.get("sample") or is_shipped_sample(data.get("root")):
        reasons.append("the shipped sample")
    if str(dataset.get("name", "")).startswith("synthetic"):
        reasons.append("synthetic data")
    size = dataset.get("of_split")
    home = home_split(task_of(dataset))
    if size is None and home is not None:
        size = home.size
    count = int(dataset.get("sequences") or 0)
    if not size:
        reasons.append(f"no official split size is known for {dataset.get('name')!r} (its task names no dataset "
                       "card with an 'official:' split), so the share of the benchmark it covers is unknown")
    elif count < math.ceil(SMOKE_FRACTION * size):
        unit = home.unit if home is not None else "sequences"
        reasons.append(f"{count} of {size} {unit} (under {SMOKE_FRACTION:.0%} of the split)")
    return reasons


def task_of(dataset: Mapping[str, Any]) -> str:
    """The task whose own dataset ``dataset`` names ("" if none): its split sizes and its published numbers.
    Tasks are asked in leaderboard order; a task's own dataset is its own card's (``Task.cards[0]``)."""
    from harness.registry import ordered_tasks

    name = str(dataset.get("name", ""))
    for entry in ordered_tasks():
        cards = task_cards(entry.name)
        if cards and any(split.dataset in name for split in official_splits(cards[0])):
            return entry.name
    return ""


def home_split(task: str) -> OfficialSplit | None:
    """The official split a task's published numbers are for (its own card's first split); None for a task
    with no card holding one (or ``""``, no task)."""
    cards = task_cards(task) if task else ()
    splits = official_splits(cards[0]) if cards else ()
    return splits[0] if splits else None


def describe_run_data(task: str, data: Mapping[str, Any], per_sequence: Mapping[str, Any] | None,
                      per_object: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], bool]:
    """``(data.dataset, smoke)`` for a record: the identity from names and object counts, and
    whether the run is a smoke run. Used by the runner for new records and by the leaderboard for
    records written before ``data.dataset`` existed."""
    sample = bool(data.get("sample")) or is_shipped_sample(data.get("root"))
    objects = objects_from_scores(per_sequence, per_object, data.get("sequences"))
    factory = _task_class(task)
    dataset = identify(task, objects, synthetic=sample and bool(factory is not None and factory.synthetic_sample))
    return dataset, bool(smoke_reasons(dataset, data))
