"""How a NIfTI volume maps onto a napari layer, and back, without touching its affine.

Convention (one place, used by the reader, the writer and the volume tools):

* NIfTI stores voxels in index order ``(i, j, k)`` with ``k`` usually the slice axis.
  napari scrolls the *first* axis with its slider, so a layer holds the file's array with its
  axes **reversed**: ``(k, j, i)`` for a 3D volume. A 2D slice on screen is then ``(j, i)``.
* The layer ``scale`` is the voxel spacing in that reversed order (mm per voxel).
* The file's 4x4 affine is kept unchanged in the layer metadata under :data:`NIFTI_META_KEY`,
  together with the file's shape; on saving, the array is reversed again and written with that
  very affine, so a round trip is exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "NIFTI_META_KEY",
    "affine_from_scale",
    "from_layer_order",
    "layer_spacing",
    "looks_like_labels",
    "nifti_layer_metadata",
    "to_layer_order",
]

#: Key of ``{"affine": (4, 4) array, "shape": file shape, "source": path}`` in layer metadata.
NIFTI_META_KEY = "segflow_nifti"


def to_layer_order(data: np.ndarray) -> np.ndarray:
    """File order ``(i, j, k)`` to napari order ``(k, j, i)`` (a view, no copy).

    Examples
    --------
    >>> to_layer_order(np.zeros((117, 91, 20))).shape
    (20, 91, 117)
    """
    return np.asarray(data).transpose(tuple(range(np.ndim(data) - 1, -1, -1)))


def from_layer_order(data: np.ndarray) -> np.ndarray:
    """napari order back to the file's ``(i, j, k)`` order; the inverse of :func:`to_layer_order`.

    Examples
    --------
    >>> a = np.arange(24).reshape(2, 3, 4)
    >>> bool(np.array_equal(from_layer_order(to_layer_order(a)), a))
    True
    """
    return to_layer_order(data)  # reversing the axes is its own inverse


def layer_spacing(spacing: tuple[float, ...]) -> tuple[float, ...]:
    """Voxel spacing in napari order (the layer ``scale``).

    Examples
    --------
    >>> layer_spacing((0.8, 0.8, 3.0))
    (3.0, 0.8, 0.8)
    """
    return tuple(float(s) for s in reversed(spacing))


def affine_from_scale(scale, translate=None) -> np.ndarray:
    """A file affine for a layer that never came from NIfTI: its scale/translate, axes reversed.

    Examples
    --------
    >>> affine_from_scale((3.0, 2.0, 1.0))[:3, :3].diagonal().tolist()
    [1.0, 2.0, 3.0]
    """
    scale = [float(s) for s in scale][-3:]
    translate = [0.0] * len(scale) if translate is None else [float(t) for t in translate][-3:]
    aff = np.eye(4)
    n = len(scale)
    for file_axis, layer_axis in enumerate(range(n - 1, -1, -1)):
        aff[file_axis, file_axis] = scale[layer_axis]
        aff[file_axis, 3] = translate[layer_axis]
    return aff


def nifti_layer_metadata(
    affine: np.ndarray, file_shape: tuple[int, ...], source: str | None = None
) -> dict[str, Any]:
    """The metadata entry that lets a layer be written back with its source affine."""
    return {
        NIFTI_META_KEY: {
            "affine": np.array(affine, dtype=float),
            "shape": tuple(int(s) for s in file_shape),
            "source": source,
        }
    }


_LABEL_HINTS = ("seg", "label", "mask", "annot")


def looks_like_labels(data: np.ndarray, name: str = "", *, max_classes: int = 256) -> bool:
    """Guess whether a volume holds class ids rather than intensities.

    Integer, non-negative data whose file name hints at labels (``seg``, ``label``, ``mask``...)
    or that holds at most ``max_classes`` distinct values besides 0 and no more than 1 % of its
    voxels as distinct values.

    Examples
    --------
    >>> looks_like_labels(np.array([[0, 1], [2, 2]], dtype=np.uint8), "organs_seg.nii.gz")
    True
    >>> looks_like_labels(np.linspace(-1000, 1000, 64).reshape(8, 8), "ct.nii.gz")
    False
    """
    arr = np.asarray(data)
    if arr.dtype.kind not in "iub" or arr.size == 0 or int(arr.min()) < 0:
        return False
    lower = name.lower()
    if any(h in lower for h in _LABEL_HINTS):
        return True
    n_values = np.unique(arr).size
    return n_values <= max_classes + 1 and n_values <= max(2, arr.size // 100)
