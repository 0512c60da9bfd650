"""The one place where napari coordinates become model prompt coordinates.

napari data coordinates are ``(row, col)`` and label boxes are inclusive
``(row_min, col_min, row_max, col_max)``. SAM-style models want points as ``(x, y)`` and boxes as
``(x_min, y_min, x_max, y_max)``, both in pixels of the original image with the same inclusive
corner convention SAM was trained with (box corners are the extreme pixel indices of the object).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ModelPrompts", "to_model_prompts"]


@dataclass(frozen=True, eq=False)
class ModelPrompts:
    """Prompts in model convention, checked against the image size.

    Attributes
    ----------
    points : (N, 2) float32 ndarray or None
        ``(x, y)`` pixel coordinates.
    labels : (N,) int32 ndarray or None
        1 = positive (inside), 0 = negative (outside).
    box : (4,) float32 ndarray or None
        ``(x_min, y_min, x_max, y_max)``, clipped to the image.
    """

    points: np.ndarray | None
    labels: np.ndarray | None
    box: np.ndarray | None


def to_model_prompts(
    points: Sequence[Sequence[float]] | np.ndarray | None = None,
    point_labels: Sequence[int] | np.ndarray | None = None,
    box: Sequence[float] | np.ndarray | None = None,
    *,
    image_shape: tuple[int, int],
) -> ModelPrompts:
    """Convert napari ``(row, col)`` points and an inclusive box to model ``(x, y)`` / XYXY.

    Parameters
    ----------
    points : (N, 2) array-like of ``(row, col)``, optional
        Clicks in data coordinates of the image. Every point must lie inside the image. An
        empty list means no clicks.
    point_labels : (N,) array-like of 0/1, optional
        1 for a positive click, 0 for a negative one. Defaults to all positive.
    box : ``(row_min, col_min, row_max, col_max)``, optional
        Inclusive corners. Corners given in the other order are sorted; a box partly outside
        the image is clipped, one wholly outside is refused.
    image_shape : (rows, cols)
        Size of the image the prompts refer to.

    Returns
    -------
    ModelPrompts

    Raises
    ------
    ValueError
        Wrong shapes, non-finite values, labels other than 0/1, a point outside the image or a
        box that does not overlap it.

    Examples
    --------
    >>> p = to_model_prompts([[10, 3]], [1], box=(2, 1, 20, 30), image_shape=(64, 48))
    >>> p.points.tolist(), p.labels.tolist(), p.box.tolist()
    ([[3.0, 10.0]], [1], [1.0, 2.0, 30.0, 20.0])
    """
    rows, cols = (int(s) for s in image_shape)
    pts = lab = xyxy = None
    if points is not None:
        arr = np.asarray(points, dtype=np.float64)
        if arr.size == 0:  # an empty click list, e.g. from an empty Points layer
            arr = np.zeros((0, 2))
        if arr.ndim == 1 and arr.size == 2:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ValueError(
                f"points must have shape (N, 2) as (row, col) pairs, got shape {arr.shape}"
            )
        if arr.shape[0] == 0:
            arr = None
        elif not np.isfinite(arr).all():
            raise ValueError("points contain NaN or infinite coordinates")
        if arr is not None:
            outside = (
                (arr[:, 0] < 0) | (arr[:, 0] > rows - 1) | (arr[:, 1] < 0) | (arr[:, 1] > cols - 1)
            )
            if outside.any():
                bad = arr[np.argmax(outside)].tolist()
                raise ValueError(f"point (row, col)={bad} lies outside the {rows}x{cols} image")
            if point_labels is None:
                labels = np.ones(arr.shape[0], dtype=np.int32)
            else:
                labels = np.asarray(point_labels)
                if labels.ndim != 1 or labels.shape[0] != arr.shape[0]:
                    raise ValueError(
                        f"point_labels must have shape ({arr.shape[0]},) to match the points, "
                        f"got shape {labels.shape}"
                    )
                if not np.isin(labels, (0, 1)).all():
                    raise ValueError(
                        f"point_labels must be 1 (positive) or 0 (negative), got {np.unique(labels).tolist()}"
                    )
                labels = labels.astype(np.int32)
            pts = np.ascontiguousarray(arr[:, ::-1], dtype=np.float32)
            lab = labels
    elif point_labels is not None and len(np.atleast_1d(point_labels)) > 0:
        raise ValueError("point_labels given without points")
    if box is not None:
        b = np.asarray(box, dtype=np.float64)
        if b.shape != (4,):
            raise ValueError(
                f"box must be (row_min, col_min, row_max, col_max), got shape {b.shape}"
            )
        if not np.isfinite(b).all():
            raise ValueError("box contains NaN or infinite coordinates")
        r0, r1 = sorted((b[0], b[2]))
        c0, c1 = sorted((b[1], b[3]))
        if r1 < 0 or c1 < 0 or r0 > rows - 1 or c0 > cols - 1:
            raise ValueError(
                f"box (row_min, col_min, row_max, col_max)={b.tolist()} lies outside the "
                f"{rows}x{cols} image"
            )
        r0, r1 = max(r0, 0.0), min(r1, rows - 1.0)
        c0, c1 = max(c0, 0.0), min(c1, cols - 1.0)
        xyxy = np.array([c0, r0, c1, r1], dtype=np.float32)
    return ModelPrompts(points=pts, labels=lab, box=xyxy)
