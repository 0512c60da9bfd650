"""Pre-labelling of volumes (NIfTI, multi-page TIFF), slice by slice with one intensity window.

A volume is cut into 2D slices along one axis; each slice with coarse labels goes through
:func:`napari_segflow.core.prelabel.refine.prelabel_image` with the same safety fences as a 2D image.
All slices share ONE intensity window, computed from the whole volume
(:func:`napari_segflow.core.segment.volume.volume_window`), so that a tissue maps to the same
grey in every slice. The slices are stacked back in the same order, so the output has the
input's shape; NIfTI outputs keep the source affine unchanged.

Default slice axis: for NIfTI the last file axis ``k`` (the project's convention, see
:mod:`napari_segflow.core.io.volume_layout`), for a TIFF stack ``(Z, Y, X)`` the first axis.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_segflow.core.atomic import atomic_path
from napari_segflow.core.prelabel.refine import PrelabelResult, RefineOptions, prelabel_image
from napari_segflow.core.provenance import AI_PENDING, new_provenance
from napari_segflow.core.taxonomy import Taxonomy

__all__ = [
    "VolumeResult",
    "default_axis",
    "prelabel_volume",
    "read_volume",
    "volume_kind",
    "volume_shape",
    "volume_suffix",
    "write_volume",
]


def volume_kind(path: str | os.PathLike[str]) -> str | None:
    """``"nifti"``, ``"tiff"`` (a multi-page stack) or ``None`` for a 2D image.

    Examples
    --------
    >>> volume_kind("ct/case_01.nii.gz"), volume_kind("photo.png")
    ('nifti', None)
    """
    lower = Path(path).name.lower()
    if lower.endswith((".nii", ".nii.gz")):
        return "nifti"
    if lower.endswith((".tif", ".tiff")):
        from napari_segflow.core.io.tiff_stack import is_tiff_stack

        return "tiff" if is_tiff_stack(path) else None
    return None


def volume_suffix(kind: str | None) -> str:
    """Ending of the label output for an input of ``kind``.

    Examples
    --------
    >>> volume_suffix("nifti"), volume_suffix("tiff"), volume_suffix(None)
    ('.nii.gz', '.tif', '.png')
    """
    return {"nifti": ".nii.gz", "tiff": ".tif"}.get(kind, ".png")


def default_axis(kind: str, ndim: int = 3) -> int:
    """The slice axis: the last file axis for NIfTI, the first (Z) for a TIFF stack.

    Examples
    --------
    >>> default_axis("nifti"), default_axis("tiff")
    (2, 0)
    """
    return ndim - 1 if kind == "nifti" else 0


def read_volume(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """``(data, affine)`` of a NIfTI file (file order i, j, k) or ``(data, None)`` of a TIFF stack."""
    if volume_kind(path) == "nifti":
        from napari_segflow.core.io.nifti import read_nifti

        vol = read_nifti(path)
        return vol.data, vol.affine
    from napari_segflow.core.io.tiff_stack import read_tiff_stack

    return read_tiff_stack(path).data, None


def volume_shape(path: str | os.PathLike[str]) -> tuple[int, ...] | None:
    """Shape of a volume from its header only; ``None`` when it cannot be read."""
    try:
        if volume_kind(path) == "nifti":
            import nibabel as nib

            return tuple(int(s) for s in nib.load(str(path)).shape)
        import tifffile

        with tifffile.TiffFile(path) as tf:
            return tuple(int(s) for s in tf.series[0].shape)
    except Exception:  # unreadable volumes are reported when processed
        return None


def write_volume(
    labels: np.ndarray,
    path: str | os.PathLike[str],
    *,
    affine: np.ndarray | None = None,
    taxonomy: Taxonomy | None = None,
) -> Path:
    """Write a label volume atomically: NIfTI with ``affine`` exactly, or a multi-page TIFF."""
    p = Path(path)
    if p.name.lower().endswith((".nii", ".nii.gz")):
        from napari_segflow.core.io.nifti import write_nifti

        return write_nifti(labels, p, affine=affine, taxonomy=taxonomy)
    from napari_segflow.core.io.validate import validate_labels

    arr = validate_labels(labels, taxonomy) if taxonomy is not None else np.asarray(labels)
    import tifffile

    with atomic_path(p) as tmp:
        tifffile.imwrite(tmp, np.ascontiguousarray(arr), compression="zlib")
    return p


@dataclass(frozen=True, eq=False)
class VolumeResult:
    """Output of :func:`prelabel_volume`.

    Attributes
    ----------
    labels : ndarray
        Class-index volume, the input's shape.
    provenance : uint8 ndarray
        ``AI_PENDING`` on every voxel the model changed, ``HUMAN`` elsewhere.
    axis : int
        The slice axis.
    window : object
        The one intensity window used for every slice.
    slices : dict
        ``{slice index: PrelabelResult}`` for the slices that held labels.
    """

    labels: np.ndarray = field(repr=False)
    provenance: np.ndarray = field(repr=False)
    axis: int = 0
    window: Any = None
    slices: dict[int, PrelabelResult] = field(default_factory=dict, repr=False)

    @property
    def flagged(self) -> list:
        return [o for r in self.slices.values() for o in r.flagged]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.slices.values():
            for k, v in r.counts().items():
                out[k] = out.get(k, 0) + v
        return out

    def to_dict(self) -> dict:
        """JSON-ready summary; objects listed per slice."""
        win = self.window
        return {
            "counts": self.counts(),
            "pending_pixels": int(np.count_nonzero(self.provenance == AI_PENDING)),
            "axis": self.axis,
            "window": [float(win.level), float(win.width)] if hasattr(win, "level") else win,
            "copied_classes": sorted({c for r in self.slices.values() for c in r.copied_classes}),
            "slices": {
                str(k): {"objects": r.to_dict()["objects"]} for k, r in sorted(self.slices.items())
            },
        }


def prelabel_volume(
    volume: np.ndarray,
    model,
    *,
    coarse: np.ndarray,
    axis: int = -1,
    taxonomy: Taxonomy | None = None,
    options: RefineOptions | None = None,
    window: Any = "auto",
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> VolumeResult:
    """Refine a coarse label volume slice by slice along ``axis``.

    Parameters
    ----------
    volume : 3D array
        Intensities (any dtype).
    model : PromptableModel
    coarse : integer array of ``volume``'s shape
    axis : int
        Slice axis (negative counts from the end).
    taxonomy, options
        As for :func:`~napari_segflow.core.prelabel.refine.prelabel_image`.
    window : optional
        Resolved ONCE for the whole volume with
        :func:`~napari_segflow.core.segment.volume.volume_window` (``"auto"``: CT soft tissue
        for Hounsfield data, else the volume's 0.5-99.5 percentiles).
    progress : callable, optional
        ``progress(done, total)`` after each slice.
    cancel : callable, optional
        Returning True raises ``InterruptedError``.

    Returns
    -------
    VolumeResult
        Slices without any labelled voxel are copied unchanged (nothing to refine).
    """
    from napari_segflow.core.segment.volume import volume_window

    vol = np.asarray(volume)
    lab = np.asarray(coarse)
    if vol.ndim != 3:
        raise ValueError(f"expected a 3D volume, got shape {vol.shape}")
    if lab.shape != vol.shape:
        raise ValueError(f"coarse labels {lab.shape} do not match the volume {vol.shape}")
    if lab.dtype.kind not in "iu":
        raise ValueError(f"coarse labels must be integers, got dtype {lab.dtype}")
    if not -3 <= axis < 3:
        raise ValueError(f"axis {axis} out of range for a 3D volume")
    axis = axis % 3
    win = volume_window(vol, window)
    unl = 0 if taxonomy is None or taxonomy.unlabeled_id is None else int(taxonomy.unlabeled_id)
    vs, cs = np.moveaxis(vol, axis, 0), np.moveaxis(lab, axis, 0)
    out = cs.copy()
    prov = new_provenance(cs.shape)
    results: dict[int, PrelabelResult] = {}
    for k in range(cs.shape[0]):
        if cancel is not None and cancel():
            raise InterruptedError("pre-labelling cancelled")
        if np.any(cs[k] != unl):
            r = prelabel_image(
                vs[k], model, coarse=cs[k], taxonomy=taxonomy, options=options, window=win
            )
            out[k] = r.labels
            prov[k] = r.provenance
            results[k] = r
        if progress is not None:
            progress(k + 1, cs.shape[0])
    return VolumeResult(np.moveaxis(out, 0, axis), np.moveaxis(prov, 0, axis), axis, win, results)
