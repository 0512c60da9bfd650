"""Shared fixtures. The real data lives in ``shared/data`` beside the repository checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from napari_segflow.widgets._torch import prepare_torch

# One process runs GUI and model tests: hide triton before any viewer exists, as the widgets do
# before their first model (loading triton after a Mesa OpenGL context kills the process).
prepare_torch()

REPO = Path(__file__).resolve().parents[1]


def _find_shared_data() -> Path | None:
    env = os.environ.get("SEGFLOW_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates += [REPO.parent / "shared" / "data", REPO / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the real test images (``../shared/data``); set SEGFLOW_SHARED_DATA to override."""
    path = _find_shared_data()
    if path is None:
        pytest.fail("shared/data not found beside the checkout; set SEGFLOW_SHARED_DATA")
    return path


@pytest.fixture(scope="session")
def one_torch_thread():
    """One intra-op thread: on a small shared CPU, two threads contending is several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
