"""Build hook (the rest of the configuration is in pyproject.toml): copy the top-level ``datasets/``
folder and ``results/reported.yaml`` into the wheel as ``harness/_shipped/``, where
:mod:`harness.resources` finds them. They never become a top-level ``datasets`` package, so
``import datasets`` in an environment with crwbench installed still finds the library of that name."""

from __future__ import annotations

import runpy
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
RESOURCES = runpy.run_path(str(HERE / "harness" / "resources.py"))  # stdlib only: no package import


class BuildPyWithShipped(build_py):
    """``build_py`` plus the shipped files; editable installs read them in place instead."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "harness" / RESOURCES["SHIPPED_DIR"]
        ignore = shutil.ignore_patterns("__pycache__", ".*")
        for name, source in RESOURCES["SHIPPED_SOURCES"].items():
            src, dst = HERE / source, target / name
            if src.is_dir():
                shutil.copytree(src, dst, ignore=ignore, dirs_exist_ok=True)
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)


setup(cmdclass={"build_py": BuildPyWithShipped})
