"""Refusing run inputs that would otherwise be ignored or misread — before anything is computed.

A ``--set method.<key>`` the method never reads, or a ``--checkpoint`` given to a method that takes
none, used to be dropped without a word, and the record then claimed a configuration that was never
run. A checkpoint that is empty or a text file used to surface as a traceback from deep inside
``torch.load``. Each is now one sentence naming the problem.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.declared import did_you_mean
from harness.errors import CheckpointError, HarnessError
from harness.facts import MethodFacts
from harness.safe_load import file_kind, refusal

#: flags that fill method-config keys (RunConfig.method_config)
WEIGHT_FLAGS = {"checkpoint": "--checkpoint", "weights": "--weights"}
_SNIFF = 64


def check_method_settings(method: str, facts: MethodFacts, overrides: dict[str, Any],
                          flags: dict[str, str | None]) -> None:
    """Refuse ``--set method.<key>`` keys and weight flags the method does not declare in ``facts.settings``.

    ``overrides`` are the ``--set method.*`` values; ``flags`` maps ``checkpoint``/``weights`` to the
    paths given (None when not given). Methods that declare no settings (``None``) are not checked.
    """
    known = facts.settings
    if known is None:
        return
    for key, path in flags.items():
        if path is not None and key not in known:
            other = [WEIGHT_FLAGS[k] for k in WEIGHT_FLAGS if k in known]
            hint = f"; it takes {' or '.join(other)}" if other else ""
            raise HarnessError(f"{WEIGHT_FLAGS[key]} {path}: method {method!r} takes no {key} file{hint}")
    _refuse_unknown("method", method, known, overrides)


def check_task_settings(task: str, known: tuple[str, ...] | None, overrides: dict[str, Any]) -> None:
    """Refuse ``--set task.<key>`` keys the task does not read (``Task.settings``)."""
    if known is None:
        return
    _refuse_unknown("task", task, known, overrides)


def _refuse_unknown(kind: str, name: str, known: Iterable[str], overrides: dict[str, Any]) -> None:
    """The first ``--set <kind>.<key>`` that ``name`` does not read, as an error naming the flag, the key
    and the closest known keys (:func:`harness.declared.did_you_mean`)."""
    names = tuple(known)
    for key in overrides:
        if key not in names:
            raise HarnessError(f"--set {kind}.{key}: {kind} {name!r} has no setting {key!r}."
                               f"{did_you_mean(key, names, kind + '.')} Its settings: {', '.join(names) or 'none'}")


def check_weights_file(path: str | Path, flag: str) -> None:
    """Refuse an empty file or one that is not a torch/safetensors file, naming what it looks like."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(_SNIFF)
    except OSError as err:
        raise CheckpointError(f"{flag} {path}: cannot read it ({err.strerror or err})") from err
    if not head:
        raise CheckpointError(f"{flag} {path} is empty (0 bytes): not a checkpoint; was it written completely?")
    kind = file_kind(path)
    if kind == "torch" or _is_safetensors(head):
        return
    if kind == "pickle":
        raise CheckpointError(refusal(path, flag, kind))
    text = head.decode("utf-8", "ignore")  # a multi-byte character cut at the end is dropped
    if len(text.encode()) >= len(head) - 3 and all(c.isprintable() or c in "\n\r\t" for c in text):
        first = (text.splitlines() or [""])[0][:40]
        raise CheckpointError(f"{flag} {path} is a text file (starting {first!r}), not a PyTorch checkpoint")
    raise CheckpointError(f"{flag} {path} is not a PyTorch (torch.save) or safetensors file "
                          f"(it starts with bytes {head[:8].hex(' ')})")


def _is_safetensors(head: bytes) -> bool:
    """safetensors: an 8-byte little-endian header length, then the JSON header."""
    return len(head) > 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100 * 2**20


def check_method_inputs(method: str, facts: MethodFacts, overrides: dict[str, Any],
                        checkpoint: str | None, weights: str | None) -> None:
    """All checks of this module for one run."""
    check_method_settings(method, facts, overrides, {"checkpoint": checkpoint, "weights": weights})
    for key, path in (("checkpoint", checkpoint), ("weights", weights)):
        if path is not None:
            check_weights_file(path, WEIGHT_FLAGS[key])
        elif overrides.get(key):
            check_weights_file(overrides[key], f"--set method.{key}")
