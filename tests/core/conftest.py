"""Fixtures shared by the core tests: the real model, built once per session (CPU time is scarce)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every core test runs with one torch thread (the root conftest's ``one_torch_thread``)."""


@pytest.fixture(scope="session")
def medsam():
    """LiteMedSAM with its real bundled weights."""
    from napari_segflow.core.segment import load_model

    return load_model("medsam-lite", device="cpu")
