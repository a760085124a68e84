"""Fixtures shared by several test files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``@pytest.mark.gpu`` tests skip, saying why, where no CUDA device is (``-m "not gpu"`` deselects them)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="marked gpu: needs a CUDA device, none is available")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


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
