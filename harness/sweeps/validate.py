"""Checking a sweep's settings before any cell runs: a misspelt axis must fail the spec, not every cell.

Each ``protocol.*``, ``method.*``, ``task.*`` and ``recipe.*`` key of the grid and of ``set`` is checked
against what the task, method, protocol family and recipe read, and every combination of protocol
values is resolved as ``harness run`` would resolve it, so ``--dry-run`` refuses a key no cell could
use (with the closest known keys) and a value no cell could run with. A training sweep's every trainer
(``train.method``, or each value of the grid axis ``trainer``) must be registered and its recipe must
load with every ``recipe.*`` combination. Nothing here reads data.
"""

from __future__ import annotations

import itertools
from typing import Any

from harness.declared import did_you_mean
from harness.errors import HarnessError
from harness.sweeps.spec import RECIPE_PREFIX, TRAINER_AXIS, SweepSpec, trained_methods, trainer_label


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

    if spec.train is not None:  # first: a trained method without a trainer is named by its key, not as a method
        for index, value in enumerate(spec.grid.get(TRAINER_AXIS, [None])):
            _check_recipe(spec, index, value)
    tasks = [get_task(str(t)) for t in spec.grid.get("task", [spec.task])]
    methods = [str(m) for m in spec.grid.get("method", [])] or trained_methods(spec)
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


def _check_recipe(spec: SweepSpec, index: int, value: dict[str, Any] | None) -> None:
    """One trainer (``trainer`` axis value ``index``, else ``train.method``): its method has a registered trainer,
    and its recipe loads with every combination of ``recipe.*`` overrides, as ``harness train --set`` would read them
    (``train.set`` and the value's own ``set`` included)."""
    from harness.registry import get_trainer
    from harness.sweeps.grid import recipe_overrides, value_arg
    from harness.training.recipes import load_recipe

    assert spec.train is not None
    chosen = value or spec.train
    method, recipe = str(chosen["method"]), str(chosen["recipe"])
    where = f"{spec.source}: grid axis 'trainer' value {index} ({trainer_label(chosen)})" if value else spec.source
    try:
        trainer = get_trainer(method).load()
    except HarnessError as err:
        key = f"grid.trainer.{index}.method" if value else "train.method"
        raise HarnessError(f"{where}: key {key!r}: {err}") from None
    axes = {k: v for k, v in spec.grid.items() if k.startswith(RECIPE_PREFIX)}
    for combo in itertools.product(*axes.values()):
        values = recipe_overrides(spec, {**spec.set, **dict(zip(axes, combo, strict=True))}, value)
        items = [f"{k}={value_arg(v)}" for k, v in values.items()]
        try:
            load_recipe(trainer, recipe, items)
        except HarnessError as err:
            raise HarnessError(f"{where}: training recipe {recipe!r} with {values}: {err}") from None
