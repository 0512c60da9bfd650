"""Fixtures shared by the core tests: the real model, built once per session (CPU time is scarce)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """One intra-op thread: on a small shared CPU, two threads contending is several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def medsam():
    """LiteMedSAM with its real bundled weights."""
    from napari_segflow.core.segment import load_model

    return load_model("medsam-lite", device="cpu")
