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

from harness.data.roots import DATASETS_DIR
from harness.errors import HarnessError
from harness.io import read_yaml

#: cards to check a task's data against, the task's own dataset first (it wins a tie)
CANDIDATES: dict[str, tuple[str, ...]] = {
    "davis": ("davis2017", "davis2016"),
    "davis2016": ("davis2016", "davis2017"),
    "jhmdb": ("jhmdb",),
    "vip": ("vip",),
}
#: tasks whose shipped sample is generated, not real (datasets/sample/vip/README.md)
SYNTHETIC_SAMPLES = frozenset({"vip"})
#: below this share of its official split a run is a smoke run
SMOKE_FRACTION = 0.10
SAMPLE_DIR = DATASETS_DIR / "sample"


class IdentifyError(HarnessError):
    """A dataset card's ``official`` block is malformed; the message names the card."""


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


def _official(card: str) -> tuple[str, str, list[OfficialSplit]]:
    path = DATASETS_DIR / f"{card}.yaml"
    block = (read_yaml(path, "dataset card", IdentifyError) or {}).get("official")
    if not isinstance(block, dict) or not isinstance(block.get("dataset"), str) or not isinstance(block.get("splits"), dict):
        raise IdentifyError(f"{path}: 'official' needs 'dataset', 'unit' and 'splits' (split name -> objects/sequences/size)")
    dataset, unit = block["dataset"], str(block.get("unit", "sequences"))
    splits = []
    for split, body in block["splits"].items():
        if isinstance(body.get("objects"), dict):
            objects: dict[str, int | None] | None = {str(k): int(v) for k, v in body["objects"].items()}
        elif isinstance(body.get("sequences"), list):
            objects = {str(name): None for name in body["sequences"]}
        elif isinstance(body.get("size"), int):
            objects = None
        else:
            raise IdentifyError(f"{path}: official split {split!r} needs 'objects', 'sequences' or 'size'")
        size = len(objects) if objects is not None else int(body["size"])
        splits.append(OfficialSplit(dataset, str(split), unit, size, objects))
    return dataset, unit, splits


@cache
def official_splits(card: str) -> tuple[OfficialSplit, ...]:
    """The official splits of one dataset card (``davis2016``, ``davis2017``, ``jhmdb``, ``vip``)."""
    return tuple(_official(card)[2])


def _candidates(task: str) -> list[str]:
    return list(CANDIDATES.get(task, ()))


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
    cards = _candidates(task)
    if not cards:
        return {"name": task, "split": None, "sequences": count, "of_split": None,
                "label": f"{task}, {_counted(count, 'sequences')} (no official split list)"}
    splits = [split for card in cards for split in official_splits(card)]
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
    the size of the task's own split). A share at or above it is ranked, among runs on the same
    sequences only, and labelled "n of N".
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
    if size is None:
        splits = [s for card in CANDIDATES.get(task_of(dataset), ()) for s in official_splits(card)]
        size = splits[0].size if splits else None
    count = int(dataset.get("sequences") or 0)
    if size and count < math.ceil(SMOKE_FRACTION * size):
        reasons.append(f"{count} of {size} {_unit_of(dataset)} (under {SMOKE_FRACTION:.0%} of the split)")
    return reasons


def task_of(dataset: Mapping[str, Any]) -> str:
    """The task whose own dataset ``dataset`` names ("" if none): its split sizes and its published numbers."""
    name = str(dataset.get("name", ""))
    for task, cards in CANDIDATES.items():
        if any(split.dataset in name for split in official_splits(cards[0])):
            return task
    return ""


def home_split(task: str) -> OfficialSplit | None:
    """The official split a task's published numbers are for (its own card's first split)."""
    cards = CANDIDATES.get(task)
    return official_splits(cards[0])[0] if cards else None


def _unit_of(dataset: Mapping[str, Any]) -> str:
    task = task_of(dataset)
    return official_splits(CANDIDATES[task][0])[0].unit if task else "sequences"


def describe_run_data(task: str, data: Mapping[str, Any], per_sequence: Mapping[str, Any] | None,
                      per_object: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], bool]:
    """``(data.dataset, smoke)`` for a record: the identity from names and object counts, and
    whether the run is a smoke run. Used by the runner for new records and by the leaderboard for
    records written before ``data.dataset`` existed."""
    sample = bool(data.get("sample")) or is_shipped_sample(data.get("root"))
    objects = objects_from_scores(per_sequence, per_object, data.get("sequences"))
    dataset = identify(task, objects, synthetic=sample and task in SYNTHETIC_SAMPLES)
    return dataset, bool(smoke_reasons(dataset, data))
