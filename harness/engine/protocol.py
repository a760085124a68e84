"""Named, hashed label-propagation protocols.

Every knob that moves the numbers lives in one frozen :class:`Protocol`; its short hash is written
into every run record, and results are compared only when hashes match. ``crw`` and ``dino`` are
*families*: each task resolves them to its published settings (``crw`` on DAVIS keeps 20 previous
frames, on JHMDB 7, on VIP 4), and the resolved settings are what gets hashed.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from harness.errors import HarnessError

#: smallest normal float32: a temperature below it is 0 to the engine (features are float32 or bf16)
FLOAT32_TINY = 1.1754944e-38


@dataclass(frozen=True)
class Protocol:
    """All settings of label propagation.

    - ``context``: number of previous frames kept as context (besides the first frame).
    - ``keep_first``: the ground-truth first frame is always part of the context.
    - ``topk``: number of context nodes each target node takes its label from.
    - ``temperature``: softmax temperature over the top-k similarities.
    - ``radius``: half-size of the spatial window on context frames, in feature cells.
    - ``window``: ``disk`` (Euclidean distance < radius, CRW) or ``square`` (|dy|, |dx| <= radius, DINO).
    - ``restrict_first``: whether the window also restricts the first frame (DINO: yes, CRW: no).
    - ``pad_with_first``: early frames see copies of frame 0 in place of missing context (CRW), instead
      of a queue that grows from empty (DINO).
    - ``task_options``: task-specific knobs that change scores (e.g. JHMDB visibility source), as a
      sorted tuple of (key, value) pairs so the protocol stays hashable.
    """

    name: str
    context: int = 20
    keep_first: bool = True
    topk: int = 10
    temperature: float = 0.05
    radius: float = 12.0
    window: Literal["disk", "square"] = "disk"
    restrict_first: bool = False
    pad_with_first: bool = True
    task_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.topk < 1:
            raise HarnessError(f"protocol.topk must be >= 1, got {self.topk}")
        if self.context < 0:
            raise HarnessError(f"protocol.context must be >= 0, got {self.context}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise HarnessError(f"protocol.temperature must be a finite number > 0, got {self.temperature}")
        if self.temperature < FLOAT32_TINY:
            raise HarnessError(f"protocol.temperature={self.temperature} is below {FLOAT32_TINY:.3g}: it rounds to 0 "
                               "in float32 features and every propagated label would be NaN")
        if not (math.isfinite(self.radius) and self.radius > 0):
            raise HarnessError(f"protocol.radius must be > 0 (a node must at least see its own cell), got {self.radius}")
        if self.window not in ("disk", "square"):
            raise HarnessError(f"protocol.window must be 'disk' or 'square', got {self.window!r}")
        if not self.keep_first and self.context == 0:
            raise HarnessError("a protocol needs context > 0 or keep_first")

    def settings(self) -> dict[str, Any]:
        """Resolved settings as plain JSON-able values (what is hashed and recorded)."""
        out = asdict(self)
        out["task_options"] = {k: v for k, v in self.task_options}
        return out

    @property
    def hash(self) -> str:
        """Short stable hash of the resolved settings (name excluded: equal knobs compare equal)."""
        payload = {k: v for k, v in self.settings().items() if k != "name"}
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.task_options).get(key, default)

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "settings": self.settings(), "hash": self.hash}


_FAMILIES: dict[str, Protocol] = {
    "crw": Protocol(name="crw"),
    "dino": Protocol(
        name="dino",
        context=7,
        topk=5,
        temperature=0.1,
        radius=12,
        window="square",
        restrict_first=True,
        pad_with_first=False,
    ),
}

# Published per-task settings of each family (docs/protocol.md §4.6); tasks not listed use the base.
_TASK_SETTINGS: dict[tuple[str, str], dict[str, Any]] = {
    ("crw", "jhmdb"): {"context": 7},
    ("crw", "vip"): {"context": 4},
}


def require_fits(protocol: Protocol, frames: int, width: int, height: int) -> None:
    """Refuse, before anything is computed, a ``topk`` above the nodes any target of the data can see.

    ``frames`` and ``width`` x ``height`` are the longest sequence and the largest frame: a target sees
    at most ``min(context, frames - 1) + 1`` frames of at most ``max(width, height)²`` cells each (tasks
    may resize frames to a square of the longer side; a feature grid has no more cells than pixels).
    Taking the top-k of everything there is would be the same as this bound, but slower by orders of
    magnitude than any published protocol, so a value above it is taken for a mistake. ``context`` and
    ``radius`` need no refusal: :func:`fit_to_video` lowers them at no cost to the labels.
    """
    if frames < 1:
        return
    nodes = (min(protocol.context, frames - 1) + 1) * max(width, height) ** 2
    if protocol.topk > nodes:
        raise HarnessError(f"protocol.topk={protocol.topk} is more than the {nodes} nodes a target can see in this "
                           f"data ({min(protocol.context, frames - 1) + 1} context frames of at most "
                           f"{max(width, height)}x{max(width, height)} cells); the crw and dino families use 10 and 5")


def fit_to_video(protocol: Protocol, frames: int, height: int, width: int) -> Protocol:
    """The protocol as it acts on a video of ``frames`` frames and a ``height`` x ``width`` feature grid.

    A ``--set`` value past what any video allows (``context=10**11``, ``radius=1e300``) would otherwise
    hang, exhaust memory or overflow; it is lowered here, before anything is computed, to the bound of
    the video, which gives the same labels:

    - ``radius`` above ``height + width``: a disk or square that large already admits every offset; a
      radius below 1 admits only a node's own cell, as 0.5 does (a tiny one, 1e-300, would square to 0
      and admit not even that);
    - ``context`` above ``frames - 1``: the queue holds nothing more, except copies of frame 0 with
      ``pad_with_first``, and a node counts at most ``topk`` times among the candidates, so
      ``frames - 1 + topk`` slots are as many as any larger number;
    - ``topk`` above the most candidates any target has (its context slots, each counted at most
      ``topk`` times, times the grid's cells): every candidate is taken either way.

    Values within these bounds are returned unchanged (the same object), and the recorded protocol (its
    settings and hash) is always the one the user asked for.
    """
    from harness.engine.window import context_slots  # the engine's own slot rule, so the bound is exact

    radius = 0.5 if protocol.radius < 1 else min(protocol.radius, float(height + width))
    context = min(protocol.context, frames - 1 + (protocol.topk if protocol.pad_with_first else 0))
    fitted = replace(protocol, radius=radius, context=context)
    candidates = max((sum(min(count, protocol.topk) for _, _, count in context_slots(t, fitted))
                      for t in range(1, frames)), default=1) * height * width
    topk = min(protocol.topk, candidates)
    if (radius, topk, context) == (protocol.radius, protocol.topk, protocol.context):
        return protocol
    return replace(fitted, topk=topk)


def protocol_families() -> list[str]:
    return sorted(_FAMILIES)


def resolve_protocol(
    family: str | Protocol,
    task: str | None = None,
    overrides: dict[str, Any] | None = None,
    task_defaults: dict[str, Any] | None = None,
) -> Protocol:
    """The protocol a run uses: family preset, then the task's published settings, then overrides.

    ``task_defaults`` are task options (``task_options``) the task declares for this family;
    ``overrides`` come from ``--set protocol.<key>=value`` and may name a task option directly.
    """
    if isinstance(family, Protocol):
        base = family
    elif family in _FAMILIES:
        base = _FAMILIES[family]
    else:
        raise HarnessError(f"unknown protocol {family!r}; known: {', '.join(protocol_families())}")
    changes: dict[str, Any] = dict(_TASK_SETTINGS.get((base.name, task or ""), {}))
    options = dict(base.task_options)
    options.update(task_defaults or {})
    known = {f.name for f in fields(Protocol)} - {"name", "task_options"}
    for key, value in (overrides or {}).items():
        if key in known:
            changes[key] = value
        elif key in options:
            options[key] = value
        else:
            raise HarnessError(
                f"unknown protocol setting {key!r}; known: {', '.join(sorted(known | set(options)))}"
            )
    for key, value in list(changes.items()):
        changes[key] = _coerce(key, value)
    return replace(base, **changes, task_options=tuple(sorted(options.items())))


def _coerce(key: str, value: Any) -> Any:
    """``--set`` values to the field's type; a fractional count (``topk=2.5``), NaN/Inf or a non-boolean
    flag is refused rather than truncated or passed on."""
    kind = {f.name: f.type for f in fields(Protocol)}[key]
    try:
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if kind == "float":
            if isinstance(value, bool) or not math.isfinite(number := float(value)):
                raise ValueError(value)
            return number
        if kind == "bool" and not isinstance(value, bool):
            if str(value).lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return str(value).lower() in ("true", "1", "yes")
    except (TypeError, ValueError, OverflowError) as err:
        what = {"int": "a whole number", "float": "a finite number", "bool": "true or false"}.get(kind, kind)
        raise HarnessError(f"protocol.{key} must be {what}, got {value!r}") from err
    return value
