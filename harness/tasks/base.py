"""The contract every task fulfils: read a benchmark, encode/decode labels, score, write predictions.

Tasks own their file formats and label encodings; they import metrics, never methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
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
