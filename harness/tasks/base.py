"""The contract every task fulfils: read a benchmark, encode/decode labels, score, write predictions.

Tasks own their file formats and label encodings; they import metrics, never methods. A task class and
its dataset card are the only places a task's facts are stated: its metrics and their direction, its
leaderboard label and position, the cards its data is identified against, whether its shipped sample
is synthetic, and how its numbers are re-derived from a record. ``harness.data.identify``, the data
check, the leaderboard, sweep reports and record re-derivation ask the task registry for them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch  # annotations only: reading and scoring a benchmark need no torch


@dataclass
class Sequence:
    """One video as a task hands it to the runner.

    ``frames`` are what the method sees (``[T, H, W, 3]`` uint8, already resized by the task's
    resolution policy); ``gt`` is whatever the task needs to decode and score (masks, keypoints),
    at the original resolution; ``meta`` holds sizes, ids and file names.
    """

    name: str
    frames: np.ndarray
    gt: Any
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


class Task(ABC):
    """A benchmark reader, label codec and scorer registered by name."""

    name: str = ""
    metric_keys: tuple[str, ...] = ()
    primary_metric: str = ""
    #: the metrics tables show (the CSV keeps all of ``metric_keys``); empty: the primary one alone
    headline_metrics: tuple[str, ...] = ()
    #: metrics where lower is better (e.g. DAVIS's decays); every other metric is higher-is-better
    lower_is_better: tuple[str, ...] = ()
    #: the leaderboard's name for the task's benchmark (e.g. "DAVIS-2017 val"); empty: the task's name
    label: str = ""
    #: position on the leaderboard and in listings: lower first, ties in registration order
    order: int = 1000
    #: dataset cards (by name) a run's data is identified against, the task's own first (it wins a tie).
    #: Empty: the card of ``card_path``, else a card named after the task or serving it. A task with no
    #: card holding an ``official:`` split has no known split size, so its runs are never ranked.
    cards: tuple[str, ...] = ()
    #: the task's own dataset card file, when it does not live in the shipped ``datasets/`` folder
    card_path: Path | None = None
    #: the task's shipped sample is generated, not real data: its runs are labelled synthetic
    synthetic_sample: bool = False
    #: the data-root layout, printed when the root is missing or malformed
    layout_help: str = ""
    #: the ``--set task.<key>`` keys the task reads; anything else is refused before a run (None: unchecked)
    settings: tuple[str, ...] | None = None
    #: where :meth:`write` puts sequence ``{name}``'s files, as globs under the output folder: a run refuses to
    #: start where a file no run of it wrote lies there (the default, for tasks that do not say: anything
    #: named after the sequence)
    outputs: tuple[str, ...] = ("{name}/**/*", "{name}.*")
    #: the same for :meth:`visualize` (``--visualize``)
    visual_outputs: tuple[str, ...] = ("visualize/{name}.*",)

    #: whether the benchmark's own evaluator exists here (``harness score --scorer official``) and whether
    #: ``--official-frames`` (the frames that evaluator accepts: first/last may be absent) applies
    official_scorer: bool = False

    def __init__(self, data_root: Path, config: dict[str, Any] | None = None) -> None:
        self.data_root = Path(data_root)
        self.config: dict[str, Any] = dict(config or {})

    @abstractmethod
    def sequences(self) -> list[str]:
        """Names of the sequences of the configured split, in the split file's order."""

    @abstractmethod
    def load(self, name: str) -> Sequence:
        """Read one sequence; a missing or corrupt file raises ``DataError`` naming it."""

    @abstractmethod
    def encode(self, seq: Sequence, grid: tuple[int, int]) -> torch.Tensor:
        """First-frame labels as soft maps ``[K, h, w]`` at feature resolution."""

    @abstractmethod
    def decode(self, seq: Sequence, soft: torch.Tensor) -> Any:
        """Propagated soft labels ``[T, K, h, w]`` → predictions at the original resolution."""

    @abstractmethod
    def score_sequence(self, seq: Sequence, prediction: Any) -> dict[str, Any]:
        """Scores of one sequence, JSON-able, in the shape :meth:`aggregate` consumes."""

    @abstractmethod
    def aggregate(self, per_sequence: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """``{"metrics": ..., "per_sequence": ..., ["per_object": ...]}`` from per-sequence scores."""

    @abstractmethod
    def write(self, seq: Sequence, prediction: Any, out_dir: Path) -> None:
        """Write predictions in the benchmark's official format under ``out_dir`` (atomically)."""

    @abstractmethod
    def score_predictions(self, pred_dir: Path, sequences: list[str] | None = None) -> dict[str, Any]:
        """Score a folder of written predictions (``harness score``); same blocks as :meth:`aggregate`."""

    @classmethod
    def higher_is_better(cls, metric: str) -> bool:
        """Whether a larger value of ``metric`` is better (ranking and "best" in plots)."""
        return metric not in cls.lower_is_better

    @classmethod
    def rederive(cls, record: dict[str, Any]) -> Iterator[tuple[str, Any, Any, str]]:
        """Re-derive a run record's numbers from its own finer-grained blocks, as :meth:`aggregate`
        computes them: ``(key, stored, derived, source)`` for each number that can be checked (the
        generic comparison is :func:`harness.runs.rederive.derivation_problem`). A block the record does not
        store is skipped. Pure numpy: the leaderboard imports no torch. The default checks nothing."""
        return iter(())

    def score_official(self, pred_dir: Path, sequences: list[str], official_frames: bool = False) -> dict[str, Any]:
        """Score with the benchmark's own evaluator (tasks with :attr:`official_scorer` implement it)."""
        raise NotImplementedError(f"task {self.name!r} has no official evaluator")

    @classmethod
    def protocol_defaults(cls, family: str) -> dict[str, Any]:
        """Task options that belong in the protocol hash for ``family`` (e.g. JHMDB visibility); a class
        method, so that a sweep checks its ``protocol.*`` keys without reading any data."""
        return {}

    @classmethod
    def check_protocol_options(cls, options: dict[str, Any]) -> None:
        """Raise :class:`~harness.errors.HarnessError` for a value of one of this task's protocol options
        that it cannot use; a class method, so a run refuses it before reading data and a sweep's dry run
        before any cell. The tasks without options of their own accept what the protocol resolved."""
        return None

    def visualize(self, seq: Sequence, prediction: Any, out_dir: Path) -> Path | None:
        """Write an overlay strip for ``--visualize``; returns its path (None if not supported)."""
        return None
