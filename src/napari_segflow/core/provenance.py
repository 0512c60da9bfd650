"""Which pixels a model made and whether a person confirmed them.

A provenance array has the shape of its label image, dtype uint8:
``HUMAN`` (0), ``AI_CONFIRMED`` (1) or ``AI_PENDING`` (2). In napari it lives in the Labels
layer's ``metadata[PROVENANCE_KEY]``; beside exported files it is a sidecar
``<label file>.provenance.npz`` (key ``provenance``).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from .io._atomic import atomic_write_bytes

__all__ = [
    "AI_CONFIRMED",
    "AI_PENDING",
    "HUMAN",
    "PROVENANCE_KEY",
    "new_provenance",
    "pending_count",
    "read_provenance",
    "sidecar_path",
    "write_provenance",
]

HUMAN = 0
AI_CONFIRMED = 1
AI_PENDING = 2

#: Key of the provenance array in a napari Labels layer's metadata.
PROVENANCE_KEY = "segflow_provenance"


def new_provenance(shape: tuple[int, ...]) -> np.ndarray:
    """An all-human provenance array."""
    return np.zeros(shape, dtype=np.uint8)


def pending_count(provenance: np.ndarray | None) -> int:
    """Number of AI-made pixels nobody has confirmed yet (0 when there is no record)."""
    if provenance is None:
        return 0
    return int(np.count_nonzero(np.asarray(provenance) == AI_PENDING))


def sidecar_path(label_path: str | os.PathLike[str]) -> Path:
    """``mask.png`` -> ``mask.png.provenance.npz``."""
    p = Path(label_path)
    return p.with_name(p.name + ".provenance.npz")


def write_provenance(label_path: str | os.PathLike[str], provenance: np.ndarray) -> Path:
    """Write the provenance sidecar of ``label_path`` atomically."""
    buf = io.BytesIO()
    np.savez_compressed(buf, provenance=np.asarray(provenance, dtype=np.uint8))
    return atomic_write_bytes(sidecar_path(label_path), buf.getvalue())


def read_provenance(label_path: str | os.PathLike[str]) -> np.ndarray | None:
    """The provenance sidecar of ``label_path``, or ``None`` when there is none."""
    side = sidecar_path(label_path)
    if not side.is_file():
        return None
    with np.load(side) as npz:
        return np.array(npz["provenance"])
