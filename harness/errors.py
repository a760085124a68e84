"""User-facing errors.

Anything a researcher can fix (a missing folder, a typo in a method name, a corrupt frame) raises
:class:`HarnessError`; the CLI prints its message without a traceback and exits with status 2.
Bugs stay ordinary exceptions so that their traceback is kept.
"""

from __future__ import annotations


class HarnessError(Exception):
    """An error caused by the user's input, printed as a plain message by the CLI."""


class DataError(HarnessError):
    """A dataset root, frame or annotation is missing or malformed; the message names the file."""


class PredictionError(HarnessError):
    """Predictions handed to a scorer do not match the ground truth (ids, frames, sizes)."""


class CheckpointError(HarnessError):
    """A checkpoint does not fit the model it is loaded into; the message lists the keys."""


class MethodError(HarnessError):
    """A method produced unusable output (e.g. NaN features); the message names method and frame."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's stop, ``kill``): unwinds like Ctrl-C, so saved work stays and the run says so."""
