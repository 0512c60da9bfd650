"""Segmentation quality metrics: confusion matrix, per-class IoU and Dice, boundary IoU.

Conventions
-----------
* Label arrays hold class *indices* ``0 .. n_classes-1`` (2D or 3D, any integer dtype).
* Confusion matrices have ground truth on rows and prediction on columns (as scikit-learn's).
* A class that appears in neither the ground truth nor the prediction has no IoU: it is ``NaN``
  and left out of means, never counted as 0 or 1.
* Dataset-level scores sum intersections and unions over all images before dividing (as the
  Cityscapes evaluation does); the mean of per-image scores is a different number and is always
  named ``per_image_...``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = [
    "DatasetScores",
    "boundary_iou",
    "boundary_iou_counts",
    "confusion_matrix",
    "dataset_scores",
    "dice_from_confusion",
    "iou_from_confusion",
    "mean_iou",
    "per_class_dice",
    "per_class_iou",
]

# Elements per block when counting: bounds the temporary index array to ~32 MB however large
# the volume, while keeping numpy's per-call overhead negligible.
_CHUNK = 1 << 22


def _check_dtype(a: np.ndarray) -> None:
    if a.dtype.kind not in "iub":
        raise ValueError(f"label arrays must hold integers, got dtype {a.dtype}")


def _blocks(g: np.ndarray, p: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Matching 1D blocks of about ``_CHUNK`` elements of two same-shape arrays, without
    copying either array whole (NIfTI volumes, for instance, arrive in Fortran order)."""
    for order in ("C", "F"):
        contiguous = "C_CONTIGUOUS" if order == "C" else "F_CONTIGUOUS"
        if g.flags[contiguous] and p.flags[contiguous]:
            gf, pf = g.ravel(order=order), p.ravel(order=order)  # views
            for start in range(0, gf.size, _CHUNK):
                yield gf[start : start + _CHUNK], pf[start : start + _CHUNK]
            return
    # mixed or strided layouts: slabs along the first axis, each copied on its own
    if g.ndim == 0:
        yield g.reshape(1), p.reshape(1)
        return
    per_row = max(1, int(np.prod(g.shape[1:], dtype=np.int64)))
    rows = max(1, _CHUNK // per_row)
    for start in range(0, g.shape[0], rows):
        yield g[start : start + rows].reshape(-1), p[start : start + rows].reshape(-1)


def _check_range(block: np.ndarray, n: int, what: str, allowed: np.ndarray | None = None) -> None:
    """Raise if ``block`` holds values outside ``0..n-1`` (except where ``allowed`` is True)."""
    if block.size == 0:
        return
    lo, hi = block.min(), block.max()
    if lo >= 0 and hi < n:
        return
    bad = (block < 0) | (block >= n)
    if allowed is not None:
        bad &= ~allowed
    if bad.any():
        value = block[bad][0]
        raise ValueError(f"{what} holds value {value}, outside the class indices 0..{n - 1}")


def confusion_matrix(
    gt: np.ndarray, pred: np.ndarray, *, n_classes: int, ignore_index: int | None = None
) -> np.ndarray:
    """Count pixels (voxels) by ground-truth class (rows) and predicted class (columns).

    One vectorised ``bincount`` pass over blocks of the flattened arrays, so memory stays
    small for large volumes (a 512x512x300 pair needs a few tens of MB besides the inputs).

    Parameters
    ----------
    gt, pred : integer arrays of the same shape (2D or 3D)
        Class indices ``0 .. n_classes-1``.
    n_classes : int
        Number of classes; the matrix is ``(n_classes, n_classes)``.
    ignore_index : int, optional
        Pixels whose *ground truth* equals this value are left out (whatever ``pred`` holds
        there). To score unlabelled predictions as misses instead, map them to an extra class
        index and pass ``n_classes + 1``.

    Returns
    -------
    (n_classes, n_classes) int64 array

    Raises
    ------
    ValueError
        For mismatched shapes, non-integer arrays or values outside the class range.

    Examples
    --------
    >>> gt = np.array([[0, 0, 1], [1, 2, 2]])
    >>> pred = np.array([[0, 1, 1], [1, 2, 0]])
    >>> confusion_matrix(gt, pred, n_classes=3)
    array([[1, 1, 0],
           [0, 2, 0],
           [1, 0, 1]])
    """
    n = int(n_classes)
    if n < 1:
        raise ValueError(f"n_classes must be at least 1, got {n_classes}")
    g_all, p_all = np.asarray(gt), np.asarray(pred)
    if g_all.shape != p_all.shape:
        raise ValueError(f"shape mismatch: gt {g_all.shape} vs pred {p_all.shape}")
    _check_dtype(g_all)
    _check_dtype(p_all)
    counts = np.zeros(n * n, dtype=np.int64)
    idx_dtype = np.uint16 if n * n <= 1 << 16 else np.intp
    for g, p in _blocks(g_all, p_all):
        checked = False
        if ignore_index is not None:
            ignored = g == ignore_index
            if ignored.any():
                _check_range(g, n, "gt", allowed=ignored)
                _check_range(p, n, "pred", allowed=ignored)
                keep = ~ignored
                g, p = g[keep], p[keep]
                checked = True
        if not checked:
            _check_range(g, n, "gt")
            _check_range(p, n, "pred")
        # index = gt * n + pred; values are checked, so the smallest dtype that holds n*n
        # keeps this pass cheap (bincount widens it internally in C)
        idx = g.astype(idx_dtype)
        idx *= idx_dtype(n)
        idx += p.astype(idx_dtype, copy=False)
        counts += np.bincount(idx, minlength=n * n)
    return counts.reshape(n, n)


def iou_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Per-class IoU ``TP / (TP + FP + FN)`` from a confusion matrix; ``NaN`` where absent.

    Examples
    --------
    >>> iou_from_confusion(np.array([[2, 1, 0], [0, 1, 0], [0, 0, 0]]))
    array([0.66666667, 0.5       ,        nan])
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def dice_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Per-class Dice ``2 TP / (2 TP + FP + FN)`` from a confusion matrix; ``NaN`` where absent."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    denom = cm.sum(axis=0) + cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / denom, np.nan)


def per_class_iou(
    gt: np.ndarray, pred: np.ndarray, *, n_classes: int, ignore_index: int | None = None
) -> np.ndarray:
    """IoU of each class (``NaN`` for classes in neither array).

    Examples
    --------
    >>> per_class_iou(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), n_classes=3)
    array([0.5       , 0.66666667,        nan])
    """
    return iou_from_confusion(
        confusion_matrix(gt, pred, n_classes=n_classes, ignore_index=ignore_index)
    )


def per_class_dice(
    gt: np.ndarray, pred: np.ndarray, *, n_classes: int, ignore_index: int | None = None
) -> np.ndarray:
    """Dice coefficient of each class (``NaN`` for classes in neither array).

    Examples
    --------
    >>> per_class_dice(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), n_classes=2)
    array([0.66666667, 0.8       ])
    """
    return dice_from_confusion(
        confusion_matrix(gt, pred, n_classes=n_classes, ignore_index=ignore_index)
    )


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    present = values[~np.isnan(values)]
    return float(present.mean()) if present.size else math.nan


def mean_iou(
    gt: np.ndarray, pred: np.ndarray, *, n_classes: int, ignore_index: int | None = None
) -> float:
    """Mean IoU over the classes present in ``gt`` or ``pred`` (absent classes excluded).

    Examples
    --------
    >>> mean_iou(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), n_classes=5)
    0.5833333333333333
    """
    return _nanmean(per_class_iou(gt, pred, n_classes=n_classes, ignore_index=ignore_index))


# ------------------------------------------------------------------------------ boundary IoU
def _boundary_band(mask: np.ndarray, d: int) -> np.ndarray:
    """Pixels of ``mask`` within chessboard distance ``d`` of its contour (image edge counts).

    Equivalent to ``mask & ~erode(mask, 3x3 square, d times)`` on a zero-padded mask, which
    is how Cheng et al. define the inner boundary band.
    """
    padded = np.pad(mask, 1)
    dist = ndimage.distance_transform_cdt(padded, metric="chessboard")
    inner = tuple(slice(1, -1) for _ in range(mask.ndim))
    return mask & (dist[inner] <= d)


def _band_width(shape: tuple[int, ...], dilation_ratio: float) -> int:
    diagonal = math.sqrt(sum(s * s for s in shape))
    return max(1, int(round(dilation_ratio * diagonal)))


def boundary_iou_counts(
    gt: np.ndarray,
    pred: np.ndarray,
    *,
    n_classes: int | None = None,
    dilation_ratio: float = 0.02,
    ignore_index: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class boundary intersection and union pixel counts (summable over a dataset).

    See :func:`boundary_iou` for the parameters.

    Returns
    -------
    intersection, union : int64 arrays of length ``n_classes``
    """
    g, p = np.asarray(gt), np.asarray(pred)
    if g.shape != p.shape:
        raise ValueError(f"shape mismatch: gt {g.shape} vs pred {p.shape}")
    if g.dtype.kind not in "iub" or p.dtype.kind not in "iub":
        raise ValueError(f"label arrays must hold integers, got {g.dtype} and {p.dtype}")
    if dilation_ratio <= 0:
        raise ValueError(f"dilation_ratio must be positive, got {dilation_ratio}")
    valid = None
    if ignore_index is not None:
        valid = g != ignore_index
        if valid.all():
            valid = None
    if n_classes is None:
        gv = g if valid is None else g[valid]
        pv = p if valid is None else p[valid]
        n_classes = int(max(gv.max(initial=0), pv.max(initial=0))) + 1
    n = int(n_classes)
    d = _band_width(g.shape, dilation_ratio)
    inter = np.zeros(n, dtype=np.int64)
    union = np.zeros(n, dtype=np.int64)
    # only classes that occur anywhere need distance transforms
    present = np.union1d(np.unique(g), np.unique(p))
    for c in present:
        if not 0 <= c < n:
            continue
        gm, pm = g == c, p == c
        if valid is not None:
            gm &= valid
            pm &= valid
        either = gm | pm
        if not either.any():
            continue
        # crop to the class's bounding box (+1 so the crop edge is background): exact and fast
        box = ndimage.find_objects(either.astype(np.uint8))[0]
        box = tuple(
            slice(max(s.start - 1, 0), min(s.stop + 1, size))
            for s, size in zip(box, g.shape, strict=True)
        )
        gb = _boundary_band(gm[box], d)
        pb = _boundary_band(pm[box], d)
        if valid is not None:
            # the band stops where the ground truth is "don't care"
            gb &= valid[box]
            pb &= valid[box]
        inter[c] = np.count_nonzero(gb & pb)
        union[c] = np.count_nonzero(gb | pb)
    return inter, union


def boundary_iou(
    gt: np.ndarray,
    pred: np.ndarray,
    *,
    dilation_ratio: float = 0.02,
    n_classes: int | None = None,
    ignore_index: int | None = None,
) -> np.ndarray:
    """Per-class Boundary IoU (Cheng et al., CVPR 2021).

    For each class the inner boundary band of the ground-truth mask ``G_d`` and of the
    predicted mask ``P_d`` are the pixels of the mask within ``d`` pixels of its contour, with
    ``d = dilation_ratio x image diagonal`` (at least 1). Boundary IoU is
    ``|G_d & P_d| / |G_d | P_d|``. It is far more sensitive than mask IoU to boundary quality of
    large objects.

    Parameters
    ----------
    gt, pred : integer arrays of the same shape (2D or 3D)
    dilation_ratio : float
        Band width as a fraction of the image (volume) diagonal.
    n_classes : int, optional
        Length of the result; default: largest class index in either array + 1.
    ignore_index : int, optional
        Ground-truth value excluded from every class and band.

    Returns
    -------
    float array of length ``n_classes``; ``NaN`` for classes in neither array.

    Examples
    --------
    >>> gt = np.zeros((10, 10), dtype=np.uint8); gt[2:8, 2:8] = 1
    >>> pred = np.zeros_like(gt); pred[2:8, 3:9] = 1
    >>> np.round(boundary_iou(gt, pred, dilation_ratio=0.07), 3)  # d = 1 pixel
    array([0.714, 0.333])
    """
    inter, union = boundary_iou_counts(
        gt, pred, n_classes=n_classes, dilation_ratio=dilation_ratio, ignore_index=ignore_index
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.maximum(union, 1), np.nan)


# ------------------------------------------------------------------------------ datasets
@dataclass(frozen=True)
class DatasetScores:
    """Scores of a set of images.

    Attributes
    ----------
    confusion : (n_classes, n_classes) int64 array
        Summed over all images.
    dataset_per_class_iou : float array
        IoU from intersections and unions summed over all images (Cityscapes style).
    dataset_mean_iou : float
        Mean of ``dataset_per_class_iou`` over present classes.
    per_image_per_class_iou : (n_images, n_classes) float array
        Each image scored on its own (``NaN`` where a class is absent from that image).
    per_image_mean_iou : float array
        Mean IoU of each image.
    mean_of_per_image_mean_iou : float
        The average of ``per_image_mean_iou``: a different number from ``dataset_mean_iou``.
    dataset_per_class_dice : float array
        Dice from the summed confusion matrix.
    """

    confusion: np.ndarray
    dataset_per_class_iou: np.ndarray
    dataset_mean_iou: float
    per_image_per_class_iou: np.ndarray
    per_image_mean_iou: np.ndarray
    mean_of_per_image_mean_iou: float
    dataset_per_class_dice: np.ndarray


def dataset_scores(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    n_classes: int,
    ignore_index: int | None = None,
) -> DatasetScores:
    """Score ``(gt, pred)`` pairs at dataset level and per image.

    Examples
    --------
    >>> a = (np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0]))   # class 1 missed
    >>> b = (np.array([1, 1, 1, 1]), np.array([1, 1, 1, 1]))   # perfect
    >>> s = dataset_scores([a, b], n_classes=2)
    >>> s.dataset_per_class_iou
    array([0.75, 0.8 ])
    >>> s.per_image_mean_iou
    array([0.375, 1.   ])
    """
    total = np.zeros((n_classes, n_classes), dtype=np.int64)
    per_image = []
    for gt, pred in pairs:
        cm = confusion_matrix(gt, pred, n_classes=n_classes, ignore_index=ignore_index)
        total += cm
        per_image.append(iou_from_confusion(cm))
    per_image_arr = (
        np.vstack(per_image) if per_image else np.empty((0, n_classes), dtype=np.float64)
    )
    per_image_means = np.array([_nanmean(r) for r in per_image_arr], dtype=np.float64)
    dataset_iou = iou_from_confusion(total)
    return DatasetScores(
        confusion=total,
        dataset_per_class_iou=dataset_iou,
        dataset_mean_iou=_nanmean(dataset_iou),
        per_image_per_class_iou=per_image_arr,
        per_image_mean_iou=per_image_means,
        mean_of_per_image_mean_iou=_nanmean(per_image_means),
        dataset_per_class_dice=dice_from_confusion(total),
    )
