"""Sequences read on a background thread, one ahead of the sequence being computed.

Decoding a DAVIS video's JPEGs takes about as long as a GPU needs for its features and propagation,
so reading in line with the compute would nearly double a GPU run. Pillow releases the GIL while it
decodes, so a reading thread overlaps with the compute on the main thread (whose heavy work runs in
torch kernels, also outside the GIL). The reader keeps at most the next sequence in memory besides
the current one.

Two times are kept per sequence: ``read_s``, what reading cost on the reading thread (the ``read``
stage of the record), and ``wait_s``, how long the compute actually waited for it (what overlap did
not hide).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

Loaded = tuple[Any, float]


class SequenceReader:
    """``take(name)`` returns a sequence, loading the one after it in ``order`` in the background."""

    def __init__(self, load: Callable[[str], Any], order: list[str]) -> None:
        self.load = load
        self.order = list(order)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="harness-read")
        self.pending: dict[str, Future[Loaded]] = {}

    def _timed_load(self, name: str) -> Loaded:
        start = time.perf_counter()
        return self.load(name), time.perf_counter() - start

    def _submit(self, name: str) -> Future[Loaded]:
        if name not in self.pending:
            self.pending[name] = self.pool.submit(self._timed_load, name)
        return self.pending[name]

    def take(self, name: str) -> tuple[Any, float, float]:
        """``(sequence, read_s, wait_s)`` of ``name``; a reading error is raised here, naming the file."""
        future = self._submit(name)
        if name in self.order:
            following = self.order.index(name) + 1
            if following < len(self.order):
                self._submit(self.order[following])  # queued behind ``name``: read while ``name`` computes
        start = time.perf_counter()
        try:
            sequence, read_s = future.result()
        finally:
            del self.pending[name]
        return sequence, read_s, time.perf_counter() - start

    def close(self) -> None:
        """Drop reads not started yet and wait for the one under way."""
        for future in self.pending.values():
            future.cancel()
        self.pending.clear()
        self.pool.shutdown(wait=True)

    def __enter__(self) -> SequenceReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
