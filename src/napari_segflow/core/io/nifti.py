"""NIfTI volumes (nibabel): labels and images with their affine and voxel spacing."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_segflow.core.atomic import atomic_path
from napari_segflow.core.taxonomy import Taxonomy

from .guard import check_format, check_not_partial
from .validate import ExportError, validate_labels

#: Largest volume (voxels) read from the size a NIfTI header announces.
MAX_VOXELS = 1 << 31

__all__ = ["NiftiVolume", "read_nifti", "write_nifti"]


@dataclass(frozen=True)
class NiftiVolume:
    """A volume read from NIfTI, in the file's voxel order (i, j, k).

    Attributes
    ----------
    data : ndarray
        The voxels, dtype as stored (scaling applied only when the file asks for it).
    affine : (4, 4) ndarray
        Voxel index to world (RAS+, mm) transform.
    spacing : tuple of float
        Voxel size along each array axis (from the header zooms).
    """

    data: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, ...]


def read_nifti(path: str | os.PathLike[str]) -> NiftiVolume:
    """Read a ``.nii``/``.nii.gz`` file; a clear ``ValueError`` for missing, bad or truncated files."""
    import nibabel as nib

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no such file")
    check_not_partial(p)
    try:
        check_format(p, {"gzip", "nifti"})
    except ValueError as exc:
        detail = str(exc).removeprefix(f"{p}: ")
        raise ValueError(f"{p}: not a readable NIfTI file ({detail})") from None
    try:
        img = nib.load(str(p))
        hdr = img.header
        voxels = int(np.prod([int(d) for d in img.shape], dtype=np.float64))
        if voxels > MAX_VOXELS:
            raise ValueError(f"header announces {voxels} voxels, above the limit of {MAX_VOXELS}")
        slope, inter = hdr.get_slope_inter()
        scaled = slope not in (None, 1.0) or inter not in (None, 0.0)
        data = np.asarray(img.dataobj) if scaled else np.asanyarray(img.dataobj.get_unscaled())
        data = np.array(data)  # read now so truncation shows here, not later
    except Exception as exc:  # nibabel raises many kinds for damaged files
        raise ValueError(f"{p}: not a readable NIfTI file ({type(exc).__name__}: {exc})") from None
    zooms = tuple(float(z) for z in hdr.get_zooms()[: data.ndim])
    return NiftiVolume(data=data, affine=np.asarray(img.affine, dtype=float), spacing=zooms)


def write_nifti(
    labels: np.ndarray,
    path: str | os.PathLike[str],
    *,
    affine: np.ndarray | None,
    taxonomy: Taxonomy | None = None,
) -> Path:
    """Write a label volume to ``.nii``/``.nii.gz`` with ``affine`` kept exactly, atomically.

    Parameters
    ----------
    labels : integer array (2D or 3D)
    path : path-like ending in ``.nii`` or ``.nii.gz``
    affine : (4, 4) array or None
        The source image's affine. ``None`` writes an identity affine.
    taxonomy : Taxonomy, optional
        When given, ids absent from it are refused.
    """
    p = Path(path)
    if not (p.name.endswith(".nii") or p.name.endswith(".nii.gz")):
        raise ExportError(f"{p}: NIfTI files end in .nii or .nii.gz")
    arr = validate_labels(labels, taxonomy) if taxonomy is not None else np.asarray(labels)
    if arr.dtype.kind not in "iub":
        raise ExportError(f"labels must hold integers, got dtype {arr.dtype}")
    aff = np.eye(4) if affine is None else np.asarray(affine, dtype=float)
    if aff.shape != (4, 4):
        raise ExportError(f"affine must be 4x4, got shape {aff.shape}")
    import nibabel as nib

    top, bottom = int(arr.max(initial=0)), int(arr.min(initial=0))
    if bottom >= 0:
        dtype = np.uint8 if top <= 255 else np.uint16 if top <= 65535 else np.int32
    else:  # signed values keep their sign
        dtype = np.int16 if bottom >= -32768 and top <= 32767 else np.int32
    img = nib.Nifti1Image(np.asarray(arr, dtype=dtype), aff)
    img.set_qform(aff, code=1)
    img.set_sform(aff, code=1)
    img.header.set_slope_inter(1.0, 0.0)
    with atomic_path(p) as tmp:
        nib.save(img, str(tmp))
    return p
