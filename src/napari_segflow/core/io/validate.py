"""Checks shared by every writer, run before anything touches the disk."""

from __future__ import annotations

import numpy as np

from napari_segflow.core.taxonomy import Taxonomy

__all__ = [
    "ExportError",
    "check_ids",
    "invalid_ids",
    "present_ids",
    "unknown_ids",
    "validate_labels",
]

_BINCOUNT_STEP = 1 << 18  # bincount casts to intp: count in slices so memory stays small


class ExportError(ValueError):
    """Labels cannot be exported as asked; nothing was written."""


def unknown_ids(labels: np.ndarray, taxonomy: Taxonomy) -> list[int]:
    """Values present in ``labels`` that are neither a class id nor the unlabelled id.

    Examples
    --------
    >>> from napari_segflow.core.taxonomy import load_preset
    >>> unknown_ids(np.array([[0, 1], [7, 9]]), load_preset("land-use"))
    [7, 9]
    """
    valid = taxonomy.valid_ids
    return [int(v) for v in present_ids(labels) if int(v) not in valid]


def validate_labels(
    labels: np.ndarray, taxonomy: Taxonomy, *, max_ndim: int | None = None
) -> np.ndarray:
    """Return ``labels`` as an integer array, or raise :class:`ExportError` naming the problem.

    Parameters
    ----------
    labels : array
        Class-index label image.
    taxonomy : Taxonomy
        Ids absent from it are refused and listed.
    max_ndim : int, optional
        Refuse arrays with more dimensions (e.g. 2 for PNG).
    """
    arr = np.asarray(labels)
    if arr.size == 0:
        raise ExportError("labels are empty")
    if max_ndim is not None and arr.ndim > max_ndim:
        raise ExportError(
            f"labels have {arr.ndim} dimensions; this format takes at most {max_ndim}"
        )
    if arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ExportError(f"labels must hold integers, got dtype {arr.dtype}")
    check_ids(invalid_ids(arr, taxonomy), taxonomy)
    return arr


def present_ids(block: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an integer ``block`` (``bincount`` when that is cheaper).

    Writers that stream large rasters call this per window and :func:`check_ids` at the end.

    Examples
    --------
    >>> present_ids(np.array([[3, 0], [3, 7]], dtype=np.uint8))
    array([0, 3, 7])
    """
    arr = np.asarray(block)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind == "b":
        arr = arr.view(np.uint8)
    if arr.dtype.kind == "u" and arr.dtype.itemsize <= 2:
        flat = arr.ravel()
        counts = np.zeros(1 << (8 * arr.dtype.itemsize), dtype=np.int64)
        for i in range(0, flat.size, _BINCOUNT_STEP):
            counts += np.bincount(flat[i : i + _BINCOUNT_STEP], minlength=counts.size)
        return np.flatnonzero(counts)
    return np.unique(arr).astype(np.int64)


def invalid_ids(block: np.ndarray, taxonomy: Taxonomy) -> list[int]:
    """Ids in ``block`` that ``taxonomy`` does not allow; fast when the block's value range
    holds only valid ids (one min/max pass instead of a histogram).

    Examples
    --------
    >>> from napari_segflow.core.taxonomy import load_preset
    >>> invalid_ids(np.array([[0, 5], [2, 3]], dtype=np.uint8), load_preset("land-use"))
    []
    >>> invalid_ids(np.array([[0, 9], [2, 3]], dtype=np.uint8), load_preset("land-use"))
    [9]
    """
    arr = np.asarray(block)
    if arr.size == 0:
        return []
    lo, hi = int(arr.min()), int(arr.max())
    valid = taxonomy.valid_ids
    if hi - lo < 65536 and all(v in valid for v in range(lo, hi + 1)):
        return []
    return sorted({int(v) for v in present_ids(arr)} - valid)


def check_ids(ids, taxonomy: Taxonomy) -> None:
    """Raise :class:`ExportError` listing the ``ids`` that are not valid in ``taxonomy``.

    Examples
    --------
    >>> from napari_segflow.core.taxonomy import load_preset
    >>> check_ids([0, 1, 4], load_preset("land-use"))
    >>> check_ids([0, 9], load_preset("land-use"))
    Traceback (most recent call last):
    ...
    napari_segflow.core.io.validate.ExportError: labels hold ids absent from taxonomy 'land-use': 9; nothing was written
    """
    valid = taxonomy.valid_ids
    bad = sorted({int(v) for v in ids} - valid)
    if bad:
        shown = ", ".join(map(str, bad[:20])) + (" ..." if len(bad) > 20 else "")
        raise ExportError(
            f"labels hold ids absent from taxonomy {taxonomy.name!r}: {shown}; nothing was written"
        )
