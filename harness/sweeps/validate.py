"""Checking a sweep's settings before any cell runs: a misspelt axis must fail the spec, not every cell.

Each ``protocol.*``, ``method.*``, ``task.*`` and ``recipe.*`` key of the grid and of ``set`` is checked
against what the task, method, protocol family and recipe read, and every combination of protocol
values is resolved as ``harness run`` would resolve it, so ``--dry-run`` refuses a key no cell could
use (with the closest known keys) and a value no cell could run with. Nothing here reads data.
"""

from __future__ import annotations

import itertools
from typing import Any

from harness.declared import did_you_mean
from harness.errors import HarnessError
from harness.sweeps.spec import RECIPE_PREFIX, SweepSpec


def _where(spec: SweepSpec, key: str) -> str:
    return f"{spec.source}: {'grid axis' if key in spec.grid else 'set key'} {key!r}"


def _unknown(spec: SweepSpec, key: str, known: list[str], what: str) -> HarnessError:
    prefix = key.split(".", 1)[0] + "."
    name = key.split(".", 1)[1]
    hint = did_you_mean(name, known, prefix)
    return HarnessError(f"{_where(spec, key)}: {what} has no setting {name!r}.{hint} "
                        f"Its settings: {', '.join(sorted(known)) or 'none'}")


def _values(spec: SweepSpec, prefix: str) -> dict[str, list[Any]]:
    """Every value each ``prefix`` key takes in the sweep: its grid axis, else its fixed ``set`` value."""
    out = {k: [v] for k, v in spec.set.items() if k.startswith(prefix)}
    out.update({k: list(v) for k, v in spec.grid.items() if k.startswith(prefix)})
    return out


def check_settings(spec: SweepSpec) -> None:
    """Refuse settings of ``spec`` that ``harness run`` or ``harness train`` would refuse in every cell."""
    from harness.engine.protocol import KNOBS, resolve_protocol
    from harness.registry import get_method, get_task
    from harness.runs.inputs import check_method_settings, check_task_settings

    tasks = [get_task(str(t)) for t in spec.grid.get("task", [spec.task])]
    methods = [str(m) for m in spec.grid.get("method", [])] or ([str(spec.train["method"])] if spec.train else [])
    protocol, method, task = _values(spec, "protocol."), _values(spec, "method."), _values(spec, "task.")
    for name in methods:
        facts = get_method(name).facts
        for key in method:
            try:
                check_method_settings(name, facts, {key.split(".", 1)[1]: None}, {})
            except HarnessError:
                raise _unknown(spec, key, list(facts.settings or ()), f"method {name!r}") from None
    fields_known = set(KNOBS)
    for entry in tasks:
        for key in task:
            try:
                check_task_settings(entry.name, entry.factory.settings, {key.split(".", 1)[1]: None})
            except HarnessError:
                raise _unknown(spec, key, list(entry.factory.settings or ()), f"task {entry.name!r}") from None
        options = entry.factory.protocol_defaults(spec.protocol)
        known = sorted(fields_known | set(options))
        for key in protocol:
            if key.split(".", 1)[1] not in known:
                raise _unknown(spec, key, known, f"protocol {spec.protocol!r} on task {entry.name!r}")
        for combo in itertools.product(*protocol.values()):
            overrides = {k.split(".", 1)[1]: v for k, v in zip(protocol, combo, strict=True)}
            try:
                resolved = resolve_protocol(spec.protocol, entry.name, overrides, options)
                entry.factory.check_protocol_options(dict(resolved.task_options))
            except HarnessError as err:
                raise HarnessError(f"{spec.source}: no cell can run with {overrides} on task {entry.name!r}: {err}") from None
    if spec.train is not None:
        _check_recipe(spec)


def _check_recipe(spec: SweepSpec) -> None:
    """Every ``recipe.*`` key and value, as ``harness train --set`` would read them (train.set included)."""
    from harness.registry import get_trainer
    from harness.sweeps.grid import value_arg
    from harness.training.recipes import load_recipe

    assert spec.train is not None
    trainer = get_trainer(str(spec.train["method"])).load()
    fixed = {**(spec.train.get("set") or {}),
             **{k[len(RECIPE_PREFIX):]: v for k, v in spec.set.items() if k.startswith(RECIPE_PREFIX)}}
    axes = {k[len(RECIPE_PREFIX):]: v for k, v in spec.grid.items() if k.startswith(RECIPE_PREFIX)}
    for combo in itertools.product(*axes.values()):
        values = {**fixed, **dict(zip(axes, combo, strict=True))}
        items = [f"{k}={value_arg(v)}" for k, v in values.items()]
        try:
            load_recipe(trainer, str(spec.train["recipe"]), items)
        except HarnessError as err:
            raise HarnessError(f"{spec.source}: training recipe {spec.train['recipe']!r} with {values}: {err}") from None
