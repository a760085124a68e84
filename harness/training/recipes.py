"""Training recipes of any trainer: read by name or path, ``base:`` merged, ``--set`` applied, validated.

A recipe is a YAML mapping declared by the trainer's ``recipe_model`` (a
:class:`~harness.training.recipe_model.Recipe` subclass,
so every recipe has what the loop reads: ``name``, ``seed``, ``optim.*``, ``train.*``). A recipe may
name another as ``base:`` and override any of its keys; ``--set a.b=v`` overrides a key after that.
Unknown keys are errors with the closest known ones, values are validated by the model's field
constraints (``"3e-4"``, which YAML 1.1 reads as a string, reads as a number), and the loop gets
the validated recipe back as a plain dict (what checkpoints and ``recipe.yaml`` hold).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from harness.config import parse_assignment
from harness.declared import did_you_mean, read_model
from harness.errors import HarnessError
from harness.io import read_yaml

if TYPE_CHECKING:
    from harness.training.contract import Trainer

def recipe_names(trainer: Trainer) -> list[str]:
    return sorted(p.stem for p in Path(trainer.recipe_dir).glob("*.yaml"))


def load_recipe(trainer: Trainer, name: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """A recipe by name (``<recipe_dir>/NAME.yaml``) or YAML path, ``base:`` resolved, ``--set`` items applied,
    validated by the trainer's recipe model; returned as a plain dict."""
    raw = _load_file(trainer, name, seen=())
    for item in overrides or []:
        set_key(trainer.recipe_model, raw, *parse_assignment(item))
    return _ordered_like(read_model(trainer.recipe_model, raw, f"recipe {name}").model_dump(), raw)


def _ordered_like(recipe: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    """``recipe``'s keys in the order the YAML wrote them (keys it left to their defaults last): ``recipe.yaml``
    reads like its source."""
    keys = [k for k in raw if k in recipe] + [k for k in recipe if k not in raw]
    return {k: _ordered_like(recipe[k], raw[k]) if isinstance(recipe[k], dict) and isinstance(raw.get(k), dict)
            else recipe[k] for k in keys}


def set_key(model: type[BaseModel], recipe: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in a raw recipe; a key the model does not declare is an error naming the closest ones."""
    if dotted not in dict(field_paths(model)):
        sections = [path for path, leaf in field_paths(model, sections=True) if not leaf]
        if dotted in sections:
            raise HarnessError(f"--set {dotted}: is a section; set one of its keys")
        raise HarnessError(f"--set {dotted}: unknown recipe key.{did_you_mean(dotted, dict(field_paths(model)))}")
    node = recipe
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def field_paths(model: type[BaseModel], prefix: str = "", sections: bool = False) -> Iterator[tuple[str, bool]]:
    """``(dotted key, is a leaf)`` of every field the model declares (sections only with ``sections``)."""
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if sections:
                yield prefix + name, False
            yield from field_paths(annotation, f"{prefix}{name}.", sections)
        else:
            yield prefix + name, True


def defaults(model: type[BaseModel], prefix: str = "") -> dict[str, Any]:
    """``{dotted key: default}`` of the leaf fields that have one: what a recipe written before the key existed did."""
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out.update(defaults(annotation, f"{prefix}{name}."))
        elif not info.is_required():
            out[prefix + name] = info.get_default(call_default_factory=True)
    return out


def flatten(recipe: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in recipe.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _load_file(trainer: Trainer, name: str, seen: tuple[str, ...]) -> dict[str, Any]:
    path = Path(name)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = Path(trainer.recipe_dir) / f"{name}.yaml"
    if not path.is_file():
        known = recipe_names(trainer)
        raise HarnessError(f"unknown recipe {name!r}.{did_you_mean(name, known)} Known: {', '.join(known)}")
    if str(path) in seen:
        raise HarnessError(f"recipe {path} includes itself through `base:`")
    raw = read_yaml(path, "training recipe") or {}
    if not isinstance(raw, dict):
        raise HarnessError(f"recipe {path} must be a mapping of sections")
    base_name = raw.pop("base", None)
    if base_name is None:
        return raw
    recipe = _load_file(trainer, str(base_name), (*seen, str(path)))
    _merge(recipe, raw)
    return recipe


def _merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(into.get(key), dict) and isinstance(value, dict):
            _merge(into[key], value)
        else:
            into[key] = value
