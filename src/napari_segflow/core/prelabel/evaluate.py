"""Measure what pre-labelling does to good coarse input: polygon vs refined IoU against truth.

Each true object is simplified to a polygon of about ``n_vertices`` vertices (the kind of
annotation old tools produce), the polygons are rasterised into a coarse label image,
:func:`~napari_segflow.core.prelabel.refine.prelabel_image` refines it, and both are scored per object
against the true mask. ``scikit-image`` (a napari dependency) is imported lazily.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from napari_segflow.core.prelabel.refine import (
    PrelabelResult,
    RefineOptions,
    mask_iou,
    prelabel_image,
)

__all__ = ["RefinementScore", "evaluate_refinement", "polygon_mask", "simplify_polygon"]


def simplify_polygon(mask: np.ndarray, n_vertices: int = 15) -> np.ndarray:
    """The outer boundary of ``mask`` simplified to at most ``n_vertices`` vertices.

    Douglas-Peucker (``skimage.measure.approximate_polygon``) with its tolerance found by
    bisection: the smallest tolerance that gives at most ``n_vertices`` vertices.

    Returns
    -------
    (N, 2) float array of (row, col) vertices, not repeating the first one.
    """
    from skimage.measure import approximate_polygon, find_contours

    m = np.pad(np.asarray(mask, dtype=bool), 1)
    contours = find_contours(m.astype(np.float32), 0.5)
    if not contours:
        raise ValueError("mask is empty")
    ring = max(contours, key=len) - 1.0  # back to unpadded coordinates
    lo, hi = 0.0, float(max(np.ptp(ring[:, 0]), np.ptp(ring[:, 1]), 1.0))
    best = approximate_polygon(ring, hi)
    for _ in range(40):
        mid = (lo + hi) / 2
        poly = approximate_polygon(ring, mid)
        if len(poly) - 1 <= n_vertices:
            best, hi = poly, mid
        else:
            lo = mid
    return best[:-1] if len(best) > 1 and np.allclose(best[0], best[-1]) else best


def polygon_mask(vertices: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise a (row, col) polygon: pixels whose centre lies inside."""
    from skimage.draw import polygon2mask

    return polygon2mask(shape, np.asarray(vertices, dtype=np.float64))


@dataclass(frozen=True)
class RefinementScore:
    """Per-object IoU against the truth, before and after refinement.

    Attributes
    ----------
    polygon_iou, refined_iou : (N,) float arrays
        IoU of the simplified polygon and of the refined output with each true object,
        measured in the object's box grown by ``margin`` pixels (class masks, so a
        neighbour's pixels count against it).
    result : PrelabelResult
    """

    polygon_iou: np.ndarray
    refined_iou: np.ndarray
    result: PrelabelResult = field(repr=False)

    @property
    def mean_polygon(self) -> float:
        return float(np.mean(self.polygon_iou)) if self.polygon_iou.size else math.nan

    @property
    def mean_refined(self) -> float:
        return float(np.mean(self.refined_iou)) if self.refined_iou.size else math.nan

    @property
    def improved(self) -> int:
        """Objects whose IoU went up by more than 0.005."""
        return int(np.count_nonzero(self.refined_iou > self.polygon_iou + 0.005))

    @property
    def worsened(self) -> int:
        """Objects whose IoU went down by more than 0.005."""
        return int(np.count_nonzero(self.refined_iou < self.polygon_iou - 0.005))


def evaluate_refinement(
    image: np.ndarray,
    instances: np.ndarray,
    model,
    *,
    class_id: int = 1,
    classes: np.ndarray | None = None,
    n_vertices: int = 15,
    min_area: int = 16,
    margin: int = 3,
    options: RefineOptions | None = None,
) -> RefinementScore:
    """Simplify every instance to a polygon, refine, and score both against the truth.

    Parameters
    ----------
    image : (H, W[, C]) array
    instances : (H, W) integer array
        True objects, one id per object, 0 = background.
    model : PromptableModel
    class_id : int
        Class written for every object when ``classes`` is not given.
    classes : (H, W) integer array, optional
        True class of every pixel (for multi-class data such as organs); objects are scored
        against their own class.
    n_vertices : int
        Vertex budget of the simplified polygons.
    min_area : int
        Smaller objects are left out (a 15-vertex polygon of a 5-pixel speck is meaningless).
    margin : int
        Pixels around each object's box in which it is scored.
    options : RefineOptions, optional
    """
    inst = np.asarray(instances)
    shape = inst.shape
    ids = [int(i) for i in np.unique(inst) if i != 0]
    cls = np.where(inst > 0, class_id, 0) if classes is None else np.asarray(classes)
    if cls.shape != shape:
        raise ValueError(f"classes {cls.shape} do not match instances {shape}")
    coarse = np.zeros(shape, cls.dtype if cls.dtype.kind in "iu" else np.int32)
    kept: list[int] = []
    for i in ids:
        m = inst == i
        if np.count_nonzero(m) < min_area:
            continue
        c = int(np.bincount(cls[m].ravel()).argmax())
        coarse[polygon_mask(simplify_polygon(m, n_vertices), shape)] = c
        kept.append((i, c))
    result = prelabel_image(image, model, coarse=coarse, options=options)
    poly_iou, ref_iou = [], []
    for i, c in kept:
        rows, cols = np.nonzero(inst == i)
        r0, r1 = max(rows.min() - margin, 0), min(rows.max() + margin + 1, shape[0])
        c0, c1 = max(cols.min() - margin, 0), min(cols.max() + margin + 1, shape[1])
        t = cls[r0:r1, c0:c1] == c
        poly_iou.append(mask_iou(coarse[r0:r1, c0:c1] == c, t))
        ref_iou.append(mask_iou(result.labels[r0:r1, c0:c1] == c, t))
    return RefinementScore(np.asarray(poly_iou), np.asarray(ref_iou), result)
