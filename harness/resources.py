"""Files the harness ships, and where its results go: the same answers in a source checkout and in
an installed copy.

Shipped files (dataset cards and the real sample under the top-level ``datasets/``, the published
numbers in ``results/reported.yaml``) live outside the ``harness`` package in the checkout: the design
keeps ``datasets/`` at the top, but a wheel must never carry a top-level ``datasets`` package (it
would shadow the popular library of that name). So ``setup.py`` copies them into the wheel under
``harness/_shipped/`` and this module looks there first, through :mod:`importlib.resources`, then in
the checkout in place (editable installs, ``python -m harness`` from the repository).

This module imports nothing but the standard library: ``setup.py`` reads :data:`SHIPPED_SOURCES`
from it without importing the package.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

#: the folder inside the installed ``harness`` package that holds the shipped files
SHIPPED_DIR = "_shipped"
#: shipped name -> where it lives in the source checkout (relative to the repository root)
SHIPPED_SOURCES = {"datasets": "datasets", "reported.yaml": "results/reported.yaml"}
#: where results go when neither ``--results-dir`` nor ``$HARNESS_RESULTS`` says
RESULTS_ENV = "HARNESS_RESULTS"


def _package_dir() -> Path:
    return Path(str(resources.files("harness")))


def source_root() -> Path:
    """The folder above the imported ``harness`` package: the repository in a checkout."""
    return _package_dir().parent


def source_checkout() -> Path | None:
    """The repository root when ``harness`` is imported from a git checkout of this project, else None
    (an installed copy has no commit to record, even inside someone else's repository)."""
    root = source_root()
    is_ours = (root / "pyproject.toml").is_file() and (root / "methods").is_dir()
    return root if is_ours and (root / ".git").exists() else None


def shipped(name: str) -> Path:
    """A shipped file or folder (a key of :data:`SHIPPED_SOURCES`): the installed copy's, else the checkout's."""
    if name not in SHIPPED_SOURCES:
        raise KeyError(f"{name!r} is not shipped; shipped: {', '.join(SHIPPED_SOURCES)}")
    installed = resources.files("harness").joinpath(SHIPPED_DIR, name)
    if installed.is_file() or installed.is_dir():
        return Path(str(installed))
    return source_root() / SHIPPED_SOURCES[name]


def results_dir(override: str | Path | None = None) -> Path:
    """Where results go: ``override`` (``--results-dir``), else ``$HARNESS_RESULTS``, else ``./results``
    under the current folder — never inside the installed package."""
    chosen = override or os.environ.get(RESULTS_ENV) or Path.cwd() / "results"
    return Path(chosen).expanduser().absolute()


def results_flag(override: str | Path | None = None) -> str:
    """How the results root was chosen, for messages about it: ``--results-dir``, ``$HARNESS_RESULTS`` or
    the default (so a problem is blamed on what the user actually set)."""
    if override:
        return "--results-dir"
    return f"${RESULTS_ENV}" if os.environ.get(RESULTS_ENV) else "the default results folder"


def shared_dir() -> Path:
    """The folder ``shared`` beside the source checkout, where the project's developers keep the real data
    and reference scores the benchmarks default to; anyone else passes their own with each benchmark's flags."""
    return source_root().parent / "shared"
