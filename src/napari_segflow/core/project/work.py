"""What one piece of project work is: the errors, an image row, an opened image, AI counts."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_segflow.core.prelabel.batch import (
    read_image,
)
from napari_segflow.core.prelabel.volume import (
    read_volume,
    volume_kind,
)
from napari_segflow.core.provenance import (
    AI_CONFIRMED,
    AI_PENDING,
    HUMAN,
)

__all__ = [
    "MODES",
    "ImageEntry",
    "PrelabelSource",
    "ProjectError",
    "ProjectExistsError",
    "WorkItem",
    "ai_stats",
    "check_name",
    "read_image_file",
]

PROJECT_FILE = "project.json"
DB_FILE = "project.db"
TAXONOMY_FILE = "taxonomy.json"
PRELABEL_DIR = "prelabels"
#: ``project.json``'s "state": every person keeps their own state file (``state/<name>.sqlite``)
STATE_LAYOUT = "per-annotator"
MODES = ("production", "calibration", "qa")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

#: A source of AI pre-labels besides the ``prelabels/`` folder (the pixel classifier, for
#: instance): ``source(stem, image) -> (labels, provenance)`` or ``None`` when it has none.
PrelabelSource = Callable[[str, np.ndarray], "tuple[np.ndarray, np.ndarray] | None"]


class ProjectError(ValueError):
    """A request the project refuses (bad name, image taken by someone else, ...)."""


class ProjectExistsError(ProjectError):
    """``create_project`` found a project in the folder and changed nothing."""


@dataclass(frozen=True)
class ImageEntry:
    """One row of a mode's image list: the image and its status in that mode."""

    stem: str
    path: Path
    gold: bool
    status: str
    annotator: str | None


@dataclass(eq=False)
class WorkItem:
    """An image opened for work: pixels, the labels to edit and what they started from.

    Attributes
    ----------
    stem, mode, annotator : str
        ``annotator`` is the reviewer in QA mode.
    image : ndarray
        The pixels: (H, W[, C]) for 2D images, the file's array order for volumes.
    labels, provenance : ndarray
        The starting labels and their per-pixel provenance.
    labels_path : Path
        Where this annotator's labels of the image are saved.
    source : str
        ``"saved"`` (the annotator's own file), ``"prelabel"`` (AI-pending pre-labels),
        ``"annotator"`` (QA: the annotator's labels to review) or ``"new"``.
    ai_labels, ai_provenance : ndarray or None
        The AI pre-labels as delivered, to count what was accepted and what corrected.
    affine : ndarray or None
        The NIfTI affine of a volume.
    """

    stem: str
    mode: str
    annotator: str
    image_path: Path
    image: np.ndarray
    labels: np.ndarray
    provenance: np.ndarray
    labels_path: Path
    source: str
    ai_labels: np.ndarray | None = None
    ai_provenance: np.ndarray | None = None
    affine: np.ndarray | None = None
    opened: float = field(default_factory=time.time)

    @property
    def is_volume(self) -> bool:
        return self.labels.ndim == 3


def ai_stats(
    labels: np.ndarray,
    provenance: np.ndarray,
    ai_labels: np.ndarray | None,
    ai_provenance: np.ndarray | None,
) -> tuple[int, int, int]:
    """``(AI pixels, accepted unchanged, corrected)`` of labels that started from pre-labels.

    An AI pixel is one the pre-labels marked AI-pending. It is accepted unchanged when it
    still holds the AI's class and a person confirmed it, corrected when its class changed or
    a person painted it; pixels still pending are neither.

    Examples
    --------
    >>> ai = np.array([[1, 1, 0]]); prov0 = np.array([[2, 2, 0]], dtype=np.uint8)
    >>> ai_stats(np.array([[1, 2, 0]]), np.array([[1, 0, 0]], dtype=np.uint8), ai, prov0)
    (2, 1, 1)
    """
    if ai_labels is None or ai_provenance is None:
        return 0, 0, 0
    ai = np.asarray(ai_provenance) == AI_PENDING
    same = np.asarray(labels) == np.asarray(ai_labels)
    prov = np.asarray(provenance)
    accepted = ai & same & (prov == AI_CONFIRMED)
    corrected = ai & (~same | (prov == HUMAN))
    return int(ai.sum()), int(accepted.sum()), int(corrected.sum())


def read_image_file(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """``(pixels, affine)`` of a project image: a volume (NIfTI affine or None) or a 2D image.

    It reads the file only (no database), so it may run in a worker thread, e.g. to embed the
    next image in the background.
    """
    if volume_kind(path) is not None:
        return read_volume(path)
    return read_image(path), None


def check_name(name: str) -> str:
    """An annotator name is used as a folder name: letters, digits, ``_ . -``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ProjectError(
            f"annotator name {name!r}: use letters, digits, '_', '.', '-' (at most 64)"
        )
    return name


def json_counts(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in json.loads(text or "{}").items()}


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ProjectError(f"mode {mode!r}: use one of {', '.join(MODES)}")
