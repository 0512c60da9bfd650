"""Shared fixtures. The real data lives in ``shared/data`` beside the repository checkout."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
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


@pytest.fixture(scope="session")
def pet_photos(shared_data):
    """``pet_photos(n)``: the first ``n`` pets_oxford photographs in manifest order, as
    ``[(manifest row, RGB image, trimap), ...]``; each read once per test run."""
    from PIL import Image

    root = shared_data / "pets_oxford"
    with open(root / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    read: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def photos(n: int) -> list[tuple[dict, np.ndarray, np.ndarray]]:
        out = []
        for row in rows[:n]:
            stem = row["stem"]
            if stem not in read:
                img = np.asarray(Image.open(root / "images" / f"{stem}.jpg").convert("RGB"))
                tri = np.asarray(Image.open(root / "trimaps" / f"{stem}.png"))
                for a in (img, tri):  # shared by every test that asks: nobody may edit them
                    a.setflags(write=False)
                read[stem] = (img, tri)
            out.append((row, *read[stem]))
        return out

    return photos
