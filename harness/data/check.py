"""Validating a data root against its dataset card before anything is computed from it.

A corrupt frame or a mask in the wrong format otherwise surfaces hours into a run, or never (a
greyscale 0/255 mask read as "object 255" silently scores near zero). ``require_valid`` is called by
the runner before a run; ``harness data check`` prints the same report. Every problem is one line
that starts with the offending file. Which files a sequence has and whether a JPEG is intact are
decided by :mod:`harness.data.rules`, which the task readers apply too; how an annotation file is
read is decided by the label format the task's card names (:mod:`harness.labels.formats`), so a
task brings its own format without an edit here.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from harness.data.cards import Card, CheckSpec, Split, find_card, read_split
from harness.data.images import Labels, object_ids_problem, probe_image, read_error, unpadded_names
from harness.data.roots import resolve_data_root
from harness.data.rules import sequence_files
from harness.errors import DataError
from harness.labels.formats import LabelFormat, label_format

#: how many problem lines a ``DataError`` from :func:`require_valid` shows before summarising
REPORT_LINES = 20


@dataclass
class CheckReport:
    """The outcome of a check: problems (one line each, file first) and what was looked at."""

    card: Card
    root: Path
    split: str
    sequences: list[str] = field(default_factory=list)
    frames: int = 0
    annotations: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: frames of the longest sequence and the largest first frame (width, height): what a protocol can reach
    longest: int = 0
    largest: tuple[int, int] = (0, 0)


@dataclass
class _SequenceResult:
    frames: int = 0
    annotations: int = 0
    problems: list[str] = field(default_factory=list)
    size: tuple[int, int] = (0, 0)


def check_dataset(task: str, root: Path, sequences: list[str] | None = None, *, split: str | None = None,
                  full: bool = False) -> list[str]:
    """Problems of the data at ``root`` for ``task`` (a task or card name); an empty list means valid."""
    return run_check(task, root, sequences, split=split, full=full).problems


def require_valid(task: str, root: Path, sequences: list[str] | None = None, *,
                  split: str | None = None) -> CheckReport:
    """Raise :class:`DataError` with the report when the data at ``root`` is not usable for ``task``;
    return the report otherwise."""
    report = run_check(task, root, sequences, split=split)
    if report.problems:
        raise DataError(format_problems(report, limit=REPORT_LINES))
    return report


def format_problems(report: CheckReport, limit: int | None = None) -> str:
    lines = report.problems if limit is None else report.problems[:limit]
    text = f"{report.card.title} at {report.root} (split {report.split}): {len(report.problems)} problem(s):\n"
    text += "\n".join(f"  {line}" for line in lines)
    if limit is not None and len(report.problems) > limit:
        text += f"\n  … and {len(report.problems) - limit} more"
    name = report.card.tasks[0] if report.card.tasks else report.card.name
    return text + f"\nRun `harness data check {name} --data-root {report.root}` for the full report."


def run_check(task: str, root: Path, sequences: list[str] | None = None, *, split: str | None = None,
              full: bool = False, workers: int | None = None) -> CheckReport:
    """Check ``root`` against the card of ``task``; ``full`` decodes every frame, not only the first."""
    started = time.perf_counter()
    card = find_card(task)
    spec = card.check
    if spec is None:
        raise DataError(f"the {card.name} card defines no check (see {card.source})")
    split_name = split or spec.default_split
    if split_name not in spec.splits:
        raise DataError(f"{card.name} has no split {split_name!r}; splits: {', '.join(spec.splits)}")
    if not Path(root).is_dir():
        report = CheckReport(card, Path(root), split_name)
        report.problems.append(f"{root}: data root does not exist or is not a folder")
        return report
    root = resolve_data_root(card.default_task, root)[0]
    report = CheckReport(card, root, split_name)
    missing = [top for top in _top_folders(spec) if not (root / top).is_dir()]
    if missing:
        report.problems.append(f"{root}: not a {card.title} data root: no {', '.join(m + '/' for m in missing)} "
                               f"(expected layout: {', '.join(card.layout)})")
        return report
    if sequences:  # named explicitly: their data must be valid, whatever the split list says
        names: list[str] | None = list(sequences)
    else:
        names, list_problems = read_split(root, spec.splits[split_name])
        report.problems += list_problems
    if not names:
        return report
    report.sequences = names
    fmt = label_format(spec.labels)
    checker = _check_masks if fmt.kind == "masks" else _check_keypoints
    job = partial(checker, root, spec, fmt, spec.splits[split_name], full)
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        for result in pool.map(job, names):
            report.frames += result.frames
            report.annotations += result.annotations
            report.problems += result.problems
            report.longest = max(report.longest, result.frames)
            report.largest = max(report.largest, result.size, key=lambda size: size[0] * size[1])
    report.seconds = time.perf_counter() - started
    return report


def _top_folders(spec: CheckSpec) -> list[str]:
    tops = [pattern.split("/", 1)[0] for pattern in (spec.frames, spec.annotations)]
    return [t for i, t in enumerate(tops) if "{" not in t and t not in tops[:i]]


# ----------------------------------------------------------------------------------------- sequences


def _frames(root: Path, spec: CheckSpec, seq: str, result: _SequenceResult) -> list[Path]:
    folder = root / spec.frames.format(sequence=seq)
    if not folder.is_dir():
        result.problems.append(f"{folder}: frames folder of sequence {seq!r} is missing")
        return []
    frames, problems = sequence_files(folder, spec.frame_suffix)
    result.problems += problems
    if not frames:
        result.problems.append(f"{folder}: sequence {seq!r} has no {spec.frame_suffix} frames")
    problem = unpadded_names([p.stem for p in frames])
    if problem:
        result.problems.append(f"{folder}: {problem}")
    return frames


def _probe_frames(frames: list[Path], full: bool, result: _SequenceResult) -> dict[str, tuple[int, int]]:
    """Frame sizes by stem; the first frame is always decoded, the others only with ``full``."""
    sizes: dict[str, tuple[int, int]] = {}
    for index, frame in enumerate(frames):
        try:
            sizes[frame.stem] = probe_image(frame, decode=full or index == 0).size
        except (OSError, SyntaxError, ValueError) as err:
            result.problems.append(f"{frame}: {read_error(err)}")
    result.frames += len(frames)
    if sizes:
        first_stem = next(iter(sizes))
        first = result.size = sizes[first_stem]
        for frame in frames:
            size = sizes.get(frame.stem)
            if size is not None and size != first:
                result.problems.append(f"{frame}: frame is {_wh(size)} but the sequence's first frame "
                                       f"({first_stem}) is {_wh(first)}")
    return sizes


def _objects(labels: Labels, fmt: LabelFormat, spec: CheckSpec) -> list[int]:
    """The object (or foreground class) ids of a label map: not background 0, not void or ignored."""
    void = {0, *fmt.void_ids, *spec.ignore_ids}
    return [v for v in labels.ids or () if v not in void]


def _check_masks(root: Path, spec: CheckSpec, fmt: LabelFormat, split: Split, full: bool,
                 seq: str) -> _SequenceResult:
    result = _SequenceResult()
    frames = _frames(root, spec, seq, result)
    if not frames:
        return result
    sizes = _probe_frames(frames, full, result)
    folder = root / spec.annotations.format(sequence=seq)
    if not folder.is_dir():
        result.problems.append(f"{folder}: annotation folder of sequence {seq!r} is missing")
        return result
    suffix = spec.annotation_suffix
    annotations, problems = sequence_files(folder, suffix)
    result.problems += problems
    found = {p.stem: p for p in annotations}
    stems = [f.stem for f in frames]
    wanted = stems if split.annotated == "all" else stems[:1]
    missing = [s for s in wanted if s not in found]
    extra = sorted(set(found) - set(stems))
    if split.annotated == "all" and (missing or extra):
        result.problems.append(f"{folder}: {len(frames)} frames but {len(found)} annotations")
    result.problems += [f"{folder / (s + suffix)}: annotation of frame {s} is missing" for s in missing]
    result.problems += [f"{found[s]}: annotation has no frame ({s}{spec.frame_suffix} is not in "
                        f"{frames[0].parent})" for s in extra]
    for stem in (s for s in stems if s in found):
        path = found[stem]
        result.annotations += 1
        try:
            labels = fmt.read(path, spec, full or stem == stems[0])
        except (OSError, SyntaxError, ValueError) as err:
            result.problems.append(f"{path}: {read_error(err)}")
            continue
        if labels.problem:
            result.problems.append(f"{path}: {labels.problem}")
        if stem in sizes and labels.size != sizes[stem]:
            result.problems.append(f"{path}: annotation is {_wh(labels.size)} but its frame "
                                   f"{frames[stems.index(stem)].name} is {_wh(sizes[stem])}")
        if stem == stems[0] and not labels.problem and not _objects(labels, fmt, spec):
            result.problems.append(f"{path}: first-frame annotation has no object (ids present: "
                                   f"{list(labels.ids or ())}), so there is nothing to propagate")
        elif stem == stems[0] and not labels.problem and fmt.contiguous_ids:
            problem = object_ids_problem(_objects(labels, fmt, spec))
            if problem:
                result.problems.append(f"{path}: {problem}")
    return result


def _check_keypoints(root: Path, spec: CheckSpec, fmt: LabelFormat, split: Split, full: bool,
                     seq: str) -> _SequenceResult:
    """One keypoint file per sequence, read by the card's label format: ``[2, joints, frames]``."""
    result = _SequenceResult()
    frames = _frames(root, spec, seq, result)
    if not frames:
        return result  # a missing clip is one problem, not two
    _probe_frames(frames, full, result)
    path = root / spec.annotations.format(sequence=seq)
    if not path.is_file():
        result.problems.append(f"{path}: joint annotation of clip {seq!r} is missing")
        return result
    result.annotations += 1
    try:
        points, what = fmt.read(path, spec)
    except DataError as err:
        result.problems.append(str(err))
        return result
    shape = tuple(points.shape)
    if len(shape) != 3 or shape[:2] != (2, spec.joints):
        result.problems.append(f"{path}: {what} has shape {shape}, expected (2, {spec.joints}, frames)")
    elif shape[2] != len(frames):
        result.problems.append(f"{path}: {what} covers {shape[2]} frames but {frames[0].parent} holds "
                               f"{len(frames)}")
    return result


def _wh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"
