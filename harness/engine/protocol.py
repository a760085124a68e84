"""Named, hashed label-propagation protocols.

Every knob that moves the numbers lives in one frozen :class:`Protocol` (a declared pydantic model);
its short hash is written into every run record, and results are compared only when hashes match.
``crw`` and ``dino`` are *families*: each task resolves them to its published settings (``crw`` on
DAVIS keeps 20 previous frames, on JHMDB 7, on VIP 4), and the resolved settings are what gets hashed.
Method packages add the families their papers used with :func:`register_protocol`. ``--set protocol.<key>=value`` overrides are read through :func:`harness.declared.read_model` as
:data:`ProtocolSettings` (whole numbers, finite numbers, true/false), so a typo names the key and the
closest known ones.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model, model_validator

from harness.declared import Declared, read_model
from harness.errors import HarnessError

#: smallest normal float32: a temperature below it is 0 to the engine (features are float32 or bf16)
FLOAT32_TINY = 1.1754944e-38


class Protocol(BaseModel):
    """All settings of label propagation.

    - ``context``: number of previous frames kept as context (besides the first frame).
    - ``keep_first``: the ground-truth first frame is always part of the context.
    - ``topk``: number of context nodes each target node takes its label from.
    - ``temperature``: softmax temperature over the top-k similarities.
    - ``radius``: half-size of the spatial window on context frames, in feature cells. A whole number
      given in code stays one (the ``dino`` preset's 12 is hashed as ``12``, not ``12.0``); ``--set``
      values are read as floats.
    - ``window``: ``disk`` (Euclidean distance < radius, CRW) or ``square`` (|dy|, |dx| <= radius, DINO).
    - ``restrict_first``: whether the window also restricts the first frame (DINO: yes, CRW: no).
    - ``pad_with_first``: early frames see copies of frame 0 in place of missing context (CRW), instead
      of a queue that grows from empty (DINO).
    - ``task_options``: task-specific knobs that change scores (e.g. JHMDB visibility source), as a
      sorted tuple of (key, value) pairs so the protocol stays hashable.

    Values are kept exactly as given (strict types, no coercion): :meth:`settings` is what is hashed,
    so a value's JSON text is part of the hash.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    name: str
    context: int = 20
    keep_first: bool = True
    topk: int = 10
    temperature: float = 0.05
    radius: float | int = 12.0
    window: Literal["disk", "square"] = "disk"
    restrict_first: bool = False
    pad_with_first: bool = True
    task_options: tuple[tuple[str, Any], ...] = ()

    @model_validator(mode="after")
    def _in_range(self) -> Protocol:
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
        if not self.keep_first and self.context == 0:
            raise HarnessError("a protocol needs context > 0 or keep_first")
        return self

    def settings(self) -> dict[str, Any]:
        """Resolved settings as plain JSON-able values (what is hashed and recorded), in field order."""
        out = self.model_dump()
        out["task_options"] = dict(self.task_options)
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


#: the knobs a ``--set protocol.<key>`` may change (every field but the name and the task options)
KNOBS: tuple[str, ...] = tuple(k for k in Protocol.model_fields if k not in ("name", "task_options"))


def _not_a_flag(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a number is needed, not true/false")
    return value


#: a ``--set`` count: ``5`` and ``"5"`` read as 5, ``2.5`` and ``true`` are refused rather than truncated
WholeNumber = Annotated[int, BeforeValidator(_not_a_flag)]
#: a ``--set`` number: read as a float; NaN, Inf and ``true`` are refused
FiniteNumber = Annotated[float, BeforeValidator(_not_a_flag), Field(allow_inf_nan=False)]


def _read_as(annotation: Any) -> Any:
    """The type a ``--set`` value of a :class:`Protocol` field is read as (counts whole, numbers float)."""
    if annotation is int:
        return WholeNumber
    if annotation is float or annotation == (float | int):
        return FiniteNumber
    return annotation


#: the declared ``--set protocol.<key>`` settings: each knob of :class:`Protocol`, typed as ``--set`` reads it
ProtocolSettings: type[Declared] = create_model(  # type: ignore[call-overload]
    "ProtocolSettings",
    __base__=Declared,
    __doc__="The ``--set protocol.<key>=value`` knobs of :class:`Protocol`, typed as they are read.",
    **{k: (_read_as(Protocol.model_fields[k].annotation), Protocol.model_fields[k].default) for k in KNOBS},
)


@dataclass(frozen=True)
class ProtocolFamily:
    """A named preset: its base settings, and the published settings of particular tasks under it
    (facts of the family, e.g. CRW's context of 7 frames on JHMDB; a task not listed uses the base)."""

    base: Protocol
    per_task: Mapping[str, Mapping[str, Any]]
    summary: str


_FAMILIES: dict[str, ProtocolFamily] = {}


def register_protocol(base: Protocol, *, per_task: Mapping[str, Mapping[str, Any]] | None = None,
                      summary: str = "") -> Protocol:
    """Add a named protocol family (``--protocol NAME``). A method package may register the test settings
    its paper used, so that its numbers are reproduced under its own protocol and hash and compared with
    others under a shared one; the per-task settings are read like ``--set protocol.*`` values."""
    if base.name in _FAMILIES:
        raise ValueError(f"protocol {base.name!r} is registered twice")
    _FAMILIES[base.name] = ProtocolFamily(base, {k: dict(v) for k, v in (per_task or {}).items()}, summary)
    return base


register_protocol(Protocol(name="crw"), per_task={"jhmdb": {"context": 7}, "vip": {"context": 4}},
                  summary="CRW's published settings (docs/protocol.md §4.6)")
register_protocol(
    Protocol(name="dino", context=7, topk=5, temperature=0.1, radius=12, window="square", restrict_first=True,
             pad_with_first=False),
    summary="DINO's label propagation (docs/protocol.md §4.7)",
)


def _families() -> dict[str, ProtocolFamily]:
    """Every family: the built-in ones and those the method packages register when they are loaded."""
    from harness.registry import list_methods

    list_methods()  # importing the method packages runs their register_protocol calls
    return _FAMILIES


def require_fits(protocol: Protocol, frames: int, width: int, height: int) -> None:
    """Refuse, before anything is computed, a ``topk`` above the nodes any target of the data can see.

    ``frames`` and ``width`` x ``height`` are the longest sequence and the largest frame: a target sees
    at most ``min(context, frames - 1) + 1`` frames of at most ``max(width, height)²`` cells each (tasks
    may resize frames to a square of the longer side; a feature grid has no more cells than pixels).
    Taking the top-k of everything there is would be the same as this bound, but slower by orders of
    magnitude than any published protocol, so a value above it is taken for a mistake. ``context`` and
    ``radius`` need no refusal: :func:`harness.engine.window.fit_to_video` lowers them at no cost to the labels.
    """
    if frames < 1:
        return
    nodes = (min(protocol.context, frames - 1) + 1) * max(width, height) ** 2
    if protocol.topk > nodes:
        raise HarnessError(f"protocol.topk={protocol.topk} is more than the {nodes} nodes a target can see in this "
                           f"data ({min(protocol.context, frames - 1) + 1} context frames of at most "
                           f"{max(width, height)}x{max(width, height)} cells); the crw and dino families use 10 and 5")


def protocol_families() -> list[str]:
    return sorted(_families())


def protocol_summary(name: str) -> str:
    return _families()[name].summary


def resolve_protocol(
    family: str | Protocol,
    task: str | None = None,
    overrides: dict[str, Any] | None = None,
    task_defaults: dict[str, Any] | None = None,
) -> Protocol:
    """The protocol a run uses: family preset, then the task's published settings, then overrides.

    ``task_defaults`` are task options (``task_options``) the task declares for this family;
    ``overrides`` come from ``--set protocol.<key>=value`` and may name a task option directly. Both
    the task's settings and the overrides are read as :data:`ProtocolSettings` (plus the task options),
    so an unknown key or a value of the wrong kind is a :class:`HarnessError` naming it.
    """
    if isinstance(family, Protocol):
        base = family
    elif family in _families():
        base = _FAMILIES[family].base
    else:
        raise HarnessError(f"unknown protocol {family!r}; known: {', '.join(protocol_families())}")
    options = dict(base.task_options)
    options.update(task_defaults or {})
    declared = create_model(  # the knobs, and this task's options (any value) beside them
        "ProtocolSettings", __base__=ProtocolSettings, **{key: (Any, None) for key in options if key not in KNOBS})
    published = _FAMILIES[base.name].per_task.get(task or "", {}) if base.name in _FAMILIES else {}
    given = {**published, **(overrides or {})}
    values = read_model(declared, given, f"protocol {base.name!r} settings", prefix="protocol.")
    changes = values.model_dump(exclude_unset=True)
    options.update({k: changes.pop(k) for k in list(changes) if k not in KNOBS})
    return Protocol(**{**base.model_dump(), **changes, "task_options": tuple(sorted(options.items()))})
