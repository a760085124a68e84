"""Fixtures shared by several test files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"


# Tests that cost minutes, spawn process groups or drive a browser: skipped by plain ``python -m pytest`` so that
# it answers "does my install / my change work" in minutes; ``--full`` (what .ci/run passes) runs them too.
OPT_IN = {
    "slow": "minutes of compute on 2 CPU cores",
    "multiprocess": "launches torchrun/DDP ranks or sweep workers",
    "browser": "lays pages out in headless Chromium",
}
# A hang fails after this long instead of eating CI's time; opt-in tests get their own, longer limit.
OPT_IN_TIMEOUT_S = 1800


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--full", action="store_true",
                     help=f"also run the tests marked {', '.join(OPT_IN)} (.ci/run does)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Opt-in tests skip by default naming ``--full``; ``gpu`` tests skip, saying why, where no CUDA device is."""
    full = config.getoption("--full")
    cuda = torch.cuda.is_available()
    for item in items:
        marks = [name for name in OPT_IN if name in item.keywords]
        if marks and not full:
            why = "; ".join(f"{name}: {OPT_IN[name]}" for name in marks)
            # first among the skip marks, so this reason (naming the flag) is the one reported
            item.add_marker(pytest.mark.skipif(True, reason=f"marked {why} — run with --full (as .ci/run does)"),
                            append=False)
        elif marks and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(OPT_IN_TIMEOUT_S))
        if "gpu" in item.keywords and not cuda:
            item.add_marker(pytest.mark.skip(reason="marked gpu: needs a CUDA device, none is available"))


@pytest.fixture(scope="session", autouse=True)
def private_hash_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Frame hashes are cached per user (``$HARNESS_CACHE``); the suite keeps its own, not the user's."""
    old = os.environ.get("HARNESS_CACHE")
    os.environ["HARNESS_CACHE"] = str(tmp_path_factory.mktemp("harness-cache"))
    yield
    if old is None:
        os.environ.pop("HARNESS_CACHE", None)
    else:
        os.environ["HARNESS_CACHE"] = old


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's ``../shared`` folder (real data and reference numbers); skips the test when absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"needs the shared data folder {SHARED_DIR} (../shared beside the repository)")
    return SHARED_DIR


@pytest.fixture(scope="module")
def single_thread() -> Iterator[None]:
    """Tiny convolutions run many times faster on one thread than with OpenMP spinning on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
