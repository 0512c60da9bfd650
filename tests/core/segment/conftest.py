"""Models shared by the segmentation tests: each is built once per session (CPU time is scarce)."""

from __future__ import annotations

import pytest

from napari_segflow.core.segment import load_model


@pytest.fixture(scope="session")
def sam2_random():
    """SAM 2.1 tiny built from the package's config with random weights (no checkpoint offline)."""
    import torch

    torch.manual_seed(0)
    return load_model("sam2.1-tiny", pretrained=False, device="cpu")
