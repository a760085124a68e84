"""One way to declare configuration: pydantic models, read with errors that name the key.

Every file or flag a user writes (dataset cards, sweep specs, training recipes, ``reported.yaml``,
protocol settings, ``--set`` keys) is declared as a pydantic model and read through
:func:`read_model`, so a typo anywhere gets the same message: the source, the dotted key, what was
wrong, and the closest known keys. :func:`did_you_mean` is the one suggestion helper; nothing else
in the project calls :mod:`difflib`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, ValidationError

from harness.errors import HarnessError

M = TypeVar("M", bound=BaseModel)


class Declared(BaseModel):
    """Base of the declared configuration models: unknown keys are errors, values are not coerced silently
    beyond pydantic's lax mode (``"3e-4"`` still reads as a float)."""

    model_config = ConfigDict(extra="forbid", frozen=False)


def close_matches(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """The known names closest to ``name`` (at most ``n``), best first."""
    return difflib.get_close_matches(name, list(known), n=n, cutoff=0.5)


def did_you_mean(name: str, known: Iterable[str], prefix: str = "") -> str:
    """``" Did you mean: a, b?"`` (each with ``prefix``), or ``""`` when nothing is close."""
    close = close_matches(name, known)
    return f" Did you mean: {', '.join(prefix + c for c in close)}?" if close else ""


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The model an annotation holds: ``M``, or the one model inside ``M | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    models = [a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
    return models[0] if len(models) == 1 else None


def _fields_at(model: type[BaseModel], path: tuple[Any, ...]) -> list[str]:
    """Field names of the (sub)model that ``path`` leads into, for suggestions; [] if unknown."""
    current: type[BaseModel] | None = model
    for part in path:
        field = current.model_fields.get(str(part)) if current is not None else None
        if field is None:
            return []
        current = _submodel(field.annotation)
    return list(current.model_fields) if current is not None else []


def describe(err: ValidationError, model: type[BaseModel], source: str, prefix: str = "") -> str:
    """One line per problem: ``source: key a.b: what is wrong [Did you mean ...?]``."""
    lines = []
    for problem in err.errors():
        loc = tuple(problem["loc"])
        key = prefix + ".".join(str(p) for p in loc)
        if problem["type"] == "extra_forbidden":
            known = _fields_at(model, loc[:-1])
            hint = did_you_mean(str(loc[-1]), known, prefix + "".join(f"{p}." for p in loc[:-1]))
            listed = f" Known: {', '.join(known)}." if known and not hint else ""
            lines.append(f"{source}: unknown key {key!r}.{hint}{listed}")
        elif problem["type"] == "missing":
            lines.append(f"{source}: key {key!r} is missing")
        else:
            lines.append(f"{source}: key {key!r}: {problem['msg']} (got {problem.get('input')!r})")
    return "\n".join(lines)


def read_model(model: type[M], data: Any, source: str, error: type[HarnessError] = HarnessError, prefix: str = "") -> M:
    """Validate ``data`` (a parsed YAML mapping, flags) as ``model``; a problem raises ``error`` naming
    ``source`` and each bad key, with the closest known keys."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise error(f"{source}: expected a mapping of keys, got {type(data).__name__}")
    try:
        return model.model_validate(dict(data))
    except ValidationError as err:
        raise error(describe(err, model, source, prefix)) from None
