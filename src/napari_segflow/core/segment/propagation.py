"""Types shared by the volume propagation backends.

:mod:`~napari_segflow.core.segment.volume` (the entry point and the slice chain) and
:mod:`~napari_segflow.core.segment.sam2_volume` (SAM 2's video predictor) both speak in these
types; keeping them here lets ``volume`` dispatch to ``sam2_volume`` without an import circle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Prompt", "PropagationCancelled"]


class PropagationCancelled(RuntimeError):
    """Raised when the ``cancel`` callback asked to stop; nothing is returned."""


@dataclass(frozen=True)
class Prompt:
    """What an annotator gave for one object on one slice.

    Attributes
    ----------
    box : (row_min, col_min, row_max, col_max), inclusive, optional
    points : (N, 2) of (row, col), optional
    point_labels : (N,) of 1/0, optional
    slice_index : int, optional
        The slice the prompt was drawn on; ``None`` means the call's ``slice_index``.
    mask : (H, W) bool array, optional
        An accepted mask on that slice: used as it is for that slice (no prediction there)
        and as the start of the propagation.
    """

    box: tuple[float, float, float, float] | None = None
    points: Sequence[Sequence[float]] | np.ndarray | None = None
    point_labels: Sequence[int] | np.ndarray | None = None
    slice_index: int | None = None
    mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.box is None and self.points is None and self.mask is None:
            raise ValueError("a Prompt needs a box, points or a mask")
