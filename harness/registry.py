"""Registries of methods, trainers and tasks, by name: the harness's one plug-in point.

Registration is a decorator on a *factory* (``@register_method("crw", facts=FACTS, ...)``) that
carries the facts ``harness list`` prints (summary, stride, dim), so listing never has to build a
model. Modules that define methods keep heavy imports (torch models, timm) inside their factories;
the registry imports them on first lookup only.

Where entries come from, built-in and third-party alike:
- every module or package directly under ``methods/`` (found with :mod:`pkgutil`: adding a method is
  adding a file there) and every task module under ``harness/tasks/``;
- installed packages exposing an entry point in the group ``harness.methods`` (the entry point
  may name a module, which registers methods and trainers on import, or a factory, registered
  under the entry point's name), or ``harness.tasks`` (a module that registers tasks on import, or a
  :class:`~harness.tasks.base.Task` subclass, registered under the entry point's name);
- prefix families such as ``timm:<model>`` registered with :func:`register_method_family`.

A trainable method registers its trainer beside itself with :func:`register_trainer`; nothing in
``harness/`` names a method module.
"""

from __future__ import annotations

import fnmatch
import importlib
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from natsort import natsorted

from harness.declared import did_you_mean
from harness.errors import HarnessError
from harness.facts import MethodFacts

METHOD_PACKAGE = "methods"
TASK_PACKAGE = "harness.tasks"
#: task modules that hold shared machinery, not tasks
_TASK_HELPERS = ("base", "frames")
ENTRY_POINT_GROUP = "harness.methods"
TASK_ENTRY_POINT_GROUP = "harness.tasks"


def _modules_in(package: str, skip: tuple[str, ...] = ()) -> list[str]:
    """Modules and packages directly under ``package``, private ones (``_x``) and ``skip`` left out."""
    root = importlib.import_module(package)
    return sorted(f"{package}.{info.name}" for info in pkgutil.iter_modules(root.__path__)
                  if not info.name.startswith("_") and info.name not in skip)


@dataclass(frozen=True)
class MethodEntry:
    """What the registry knows about a method without building it."""

    name: str
    factory: Callable[..., Any]
    summary: str
    facts: MethodFacts = field(default_factory=MethodFacts)
    aliases: tuple[str, ...] = ()

    @property
    def stride(self) -> int | None:
        return self.facts.stride

    @property
    def dim(self) -> int | None:
        return self.facts.dim

    @property
    def trainable(self) -> bool:
        return self.name in _TRAINERS.entries


@dataclass(frozen=True)
class TrainerEntry:
    """A method's trainer: a :class:`harness.training.contract.Trainer` subclass, or ``"module:Class"`` naming one
    (imported on first use, so registering costs nothing). :meth:`load` checks the contract and returns an instance."""

    name: str
    target: str | type
    summary: str
    aliases: tuple[str, ...] = ()
    #: a folder of sweep presets (``harness sweep NAME``) that train this method
    sweep_dir: Path | None = None

    def load(self) -> Any:
        from harness.training.contract import check_trainer_class

        cls = self.target
        if isinstance(cls, str):
            module, _, attr = cls.partition(":")
            try:
                cls = getattr(importlib.import_module(module), attr)
            except AttributeError:
                raise HarnessError(f"trainer {self.name!r}: module {module!r} has no {attr!r}") from None
        check_trainer_class(cls, self.name)
        return cls()


@dataclass(frozen=True)
class TaskEntry:
    """What the registry knows about a task without reading any data. ``factory`` is the task class
    (called as ``factory(data_root, config)``); its facts (metrics and their direction, leaderboard label
    and order, dataset cards) are the class's attributes, declared nowhere else."""

    name: str
    factory: Callable[..., Any]
    summary: str
    aliases: tuple[str, ...] = ()

    @property
    def metric(self) -> str:
        """The metric that ranks runs of this task."""
        return self.factory.primary_metric

    @property
    def metric_keys(self) -> tuple[str, ...]:
        """Every global metric the task reports, in its order."""
        return tuple(self.factory.metric_keys)

    @property
    def label(self) -> str:
        """The leaderboard's name for the task's benchmark (the task's name when it declares none)."""
        return self.factory.label or self.name

    def higher_is_better(self, metric: str) -> bool:
        """Whether a larger value of ``metric`` is better."""
        return bool(self.factory.higher_is_better(metric))


@dataclass
class _Registry:
    kind: str
    discover: Callable[[], None]
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
        if not self.loaded:
            self.loaded = True
            self.discover()

    def names(self) -> list[str]:
        self.load()
        return natsorted(self.entries)

    def get(self, name: str) -> Any:
        self.load()
        name = self.aliases.get(name, name)
        if name in self.entries:
            return self.entries[name]
        for prefix, family in self.families.items():
            if name.startswith(prefix) and len(name) > len(prefix):
                return family(name)
        known = list(self.entries) + list(self.aliases) + [p + "<name>" for p in self.families]
        hint = did_you_mean(name, known)
        raise HarnessError(
            f"unknown {self.kind} {name!r}.{hint} Run `harness list` to see the registered {self.kind}s."
        )


def _load_methods_and_trainers() -> None:
    """Method modules register their trainers too: whichever registry is asked first, both get filled."""
    _METHODS.loaded = _TRAINERS.loaded = True
    for module in _modules_in(METHOD_PACKAGE):
        importlib.import_module(module)
    _load_entry_points()


def _load_tasks() -> None:
    for module in _modules_in(TASK_PACKAGE, _TASK_HELPERS):
        importlib.import_module(module)
    _load_task_entry_points()


def _load_task_entry_points() -> None:
    """Tasks from installed packages: an entry point naming a module registers on import; one naming a
    task class is registered under the entry point's name (its summary: the docstring's first line)."""
    for entry_point in metadata.entry_points(group=TASK_ENTRY_POINT_GROUP):
        target = entry_point.load()
        if isinstance(target, type) and entry_point.name not in _TASKS.entries:
            summary = (target.__doc__ or "third-party task").strip().splitlines()[0]
            register_task(entry_point.name, summary=summary)(target)


_METHODS = _Registry("method", _load_methods_and_trainers)
_TRAINERS = _Registry("trainer", _load_methods_and_trainers)
_TASKS = _Registry("task", _load_tasks)


def register_method(
    name: str, *, summary: str, facts: MethodFacts | None = None, aliases: tuple[str, ...] = ()
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a method factory ``factory(config: dict) -> Method`` under ``name``, with its facts
    (the same object the method class declares as ``facts``)."""

    def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
        _METHODS.add(MethodEntry(name, factory, summary, facts or MethodFacts(), aliases))
        return factory

    return decorator


def register_trainer(name: str, target: str | type, *, summary: str, aliases: tuple[str, ...] = (),
                     sweep_dir: Path | None = None) -> None:
    """Register the trainer of method ``name``: a :class:`harness.training.contract.Trainer` subclass (checked now)
    or ``"module:Class"`` (imported and checked when ``harness train`` first loads it). ``sweep_dir``: a folder of
    sweep presets that train it (found by ``harness sweep NAME`` without importing the trainer)."""
    if isinstance(target, str):
        if not re.fullmatch(r"[\w.]+:\w+", target):
            raise HarnessError(f"trainer {name!r}: expected 'module:Class', got {target!r}")
    else:
        from harness.training.contract import check_trainer_class

        check_trainer_class(target, name)
    _TRAINERS.add(TrainerEntry(name, target, summary, aliases, sweep_dir))


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
    name: str, *, summary: str, aliases: tuple[str, ...] = ()
) -> Callable[[type], type]:
    """Register a :class:`~harness.tasks.base.Task` subclass (built as ``cls(data_root, config)``); a class
    that names itself differently is refused (records, cards and outputs use the registered name)."""

    def decorator(factory: type) -> type:
        declared = getattr(factory, "name", "")
        if declared and declared != name:
            raise ValueError(f"task class {factory.__name__} is named {declared!r}, registered as {name!r}")
        if not declared:
            factory.name = name
        _TASKS.add(TaskEntry(name, factory, summary, aliases))
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


def get_trainer(name: str) -> TrainerEntry:
    """The trainer registered beside method ``name``; unknown names suggest the closest ones."""
    return _TRAINERS.get(name)


def list_trainers() -> list[str]:
    """Names of the methods that have a trainer, naturally sorted."""
    return _TRAINERS.names()


def get_task(name: str) -> TaskEntry:
    """Look a task up by name or alias; unknown names suggest the closest ones."""
    return _TASKS.get(name)


def list_methods(pattern: str = "*", exclude: str | None = None, trainable: bool | None = None) -> list[str]:
    """Registered method names matching a wildcard ``pattern``, naturally sorted."""
    names = [n for n in _METHODS.names() if fnmatch.fnmatch(n, pattern)]
    if exclude:
        names = [n for n in names if not fnmatch.fnmatch(n, exclude)]
    if trainable is not None:
        names = [n for n in names if (n in list_trainers()) == trainable]
    return names


def list_tasks(pattern: str = "*") -> list[str]:
    """Registered task names matching a wildcard ``pattern``, naturally sorted."""
    return [n for n in _TASKS.names() if fnmatch.fnmatch(n, pattern)]


def ordered_tasks() -> list[TaskEntry]:
    """Every registered task in leaderboard order: by the class's ``order``, ties in registration order."""
    _TASKS.load()
    entries = list(_TASKS.entries.values())
    return sorted(entries, key=lambda e: (getattr(e.factory, "order", 1000), entries.index(e)))


def method_families() -> dict[str, str]:
    """Prefix families (``timm:``) with the example line ``harness list`` shows for each."""
    _METHODS.load()
    return dict(_FAMILY_EXAMPLES)
