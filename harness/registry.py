"""Registries of methods and tasks, by name.

Registration is a decorator on a *factory* (``@register_method("crw", ...)``) that carries the
facts ``harness list`` prints (summary, stride, dim), so listing never has to build a model.
Modules that define methods keep heavy imports (torch models, timm) inside their factories;
the registry imports them on first lookup only.

Where entries come from:
- the built-in modules named in ``BUILTIN_METHOD_MODULES`` / ``BUILTIN_TASK_MODULES``;
- installed packages exposing an entry point in the group ``harness.methods`` (the entry point
  may name a module, which registers on import, or a factory, registered under the entry
  point's name);
- prefix families such as ``timm:<model>`` registered with :func:`register_method_family`.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from harness.errors import HarnessError

BUILTIN_METHOD_MODULES = (
    "methods.baselines",
    "methods.timm_models",
    "methods.effnet_lite",
    "methods.crw",
)
BUILTIN_TASK_MODULES = (
    "harness.tasks.davis",
    "harness.tasks.jhmdb",
    "harness.tasks.vip",
)
ENTRY_POINT_GROUP = "harness.methods"


@dataclass(frozen=True)
class MethodEntry:
    """What the registry knows about a method without building it."""

    name: str
    factory: Callable[..., Any]
    summary: str
    stride: int | None = None
    dim: int | None = None
    trainable: bool = False
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskEntry:
    """What the registry knows about a task without reading any data."""

    name: str
    factory: Callable[..., Any]
    summary: str
    metric: str
    aliases: tuple[str, ...] = ()


@dataclass
class _Registry:
    kind: str
    modules: tuple[str, ...]
    entries: dict[str, Any] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    families: dict[str, Any] = field(default_factory=dict)
    loaded: bool = False

    def add(self, entry: Any) -> None:
        for key in (entry.name, *entry.aliases):
            if key in self.entries or key in self.aliases:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
        self.entries[entry.name] = entry
        for alias in entry.aliases:
            self.aliases[alias] = entry.name

    def load(self) -> None:
        if self.loaded:
            return
        self.loaded = True
        for module in self.modules:
            importlib.import_module(module)
        if self.kind == "method":
            _load_entry_points()

    def names(self) -> list[str]:
        self.load()
        return sorted(self.entries, key=_natural_key)

    def get(self, name: str) -> Any:
        self.load()
        name = self.aliases.get(name, name)
        if name in self.entries:
            return self.entries[name]
        for prefix, family in self.families.items():
            if name.startswith(prefix) and len(name) > len(prefix):
                return family(name)
        known = list(self.entries) + list(self.aliases) + [p + "<name>" for p in self.families]
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise HarnessError(
            f"unknown {self.kind} {name!r}.{hint} Run `harness list` to see the registered {self.kind}s."
        )


_METHODS = _Registry("method", BUILTIN_METHOD_MODULES)
_TASKS = _Registry("task", BUILTIN_TASK_MODULES)


def _natural_key(text: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def register_method(
    name: str,
    *,
    summary: str,
    stride: int | None = None,
    dim: int | None = None,
    trainable: bool = False,
    aliases: tuple[str, ...] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a method factory ``factory(config: dict) -> Method`` under ``name``."""

    def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
        _METHODS.add(MethodEntry(name, factory, summary, stride, dim, trainable, aliases))
        return factory

    return decorator


def register_method_family(prefix: str, resolve: Callable[[str], MethodEntry], example: str) -> None:
    """Register names of the form ``<prefix><anything>`` resolved on demand (e.g. ``timm:resnet18``).

    ``example`` is the line ``harness list`` prints for the family.
    """
    if prefix in _METHODS.families:
        raise ValueError(f"method family {prefix!r} is registered twice")
    _METHODS.families[prefix] = resolve
    _FAMILY_EXAMPLES[prefix] = example


_FAMILY_EXAMPLES: dict[str, str] = {}


def register_task(
    name: str, *, summary: str, metric: str, aliases: tuple[str, ...] = ()
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a task factory ``factory(data_root: Path | None, config: dict) -> Task``."""

    def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
        _TASKS.add(TaskEntry(name, factory, summary, metric, aliases))
        return factory

    return decorator


def _load_entry_points() -> None:
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        target = entry_point.load()
        if callable(target) and entry_point.name not in _METHODS.entries:
            summary = (target.__doc__ or "third-party method").strip().splitlines()[0]
            _METHODS.add(MethodEntry(entry_point.name, target, summary))


def get_method(name: str) -> MethodEntry:
    """Look a method up by name, alias or family prefix; unknown names suggest the closest ones."""
    return _METHODS.get(name)


def get_task(name: str) -> TaskEntry:
    """Look a task up by name or alias; unknown names suggest the closest ones."""
    return _TASKS.get(name)


def list_methods(pattern: str = "*", exclude: str | None = None, trainable: bool | None = None) -> list[str]:
    """Registered method names matching a wildcard ``pattern``, naturally sorted."""
    names = [n for n in _METHODS.names() if fnmatch.fnmatch(n, pattern)]
    if exclude:
        names = [n for n in names if not fnmatch.fnmatch(n, exclude)]
    if trainable is not None:
        names = [n for n in names if _METHODS.entries[n].trainable == trainable]
    return names


def list_tasks(pattern: str = "*") -> list[str]:
    """Registered task names matching a wildcard ``pattern``, naturally sorted."""
    return [n for n in _TASKS.names() if fnmatch.fnmatch(n, pattern)]


def method_families() -> dict[str, str]:
    """Prefix families (``timm:``) with the example line ``harness list`` shows for each."""
    _METHODS.load()
    return dict(_FAMILY_EXAMPLES)
