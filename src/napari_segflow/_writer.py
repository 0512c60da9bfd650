"""npe2 writer callables: thin wrappers over :mod:`napari_segflow.core.io`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .core.io import write_png
from .core.io.validate import ExportError
from .core.taxonomy import Taxonomy, TaxonomyError, taxonomy_from_dict
from .layers import TAXONOMY_KEY


def _layer_taxonomy(meta: dict) -> Taxonomy:
    data = (meta.get("metadata") or {}).get(TAXONOMY_KEY)
    if data is None:
        raise TaxonomyError(
            f"layer {meta.get('name', '')!r} has no taxonomy: apply one in the Taxonomy widget before exporting"
        )
    return data if isinstance(data, Taxonomy) else taxonomy_from_dict(data)


def write_labels_png(path: str, data, meta: dict) -> list[str]:
    """Write a Labels layer as a class-index PNG (validated against its taxonomy)."""
    written = write_png(data, path, taxonomy=_layer_taxonomy(meta))
    return [str(p) for p in written]


def write_labels_coco(path: str, data, meta: dict) -> list[str]:
    """Write a Labels layer as COCO JSON with one RLE annotation per class (per plane for 3D)."""
    from .core.io.coco import write_coco

    name = meta.get("name") or Path(path).stem
    arr = np.asarray(data)
    if arr.ndim == 3:
        images = {f"{name}_z{z:04d}": arr[z] for z in range(arr.shape[0])}
    else:
        images = {name: arr}
    return [str(write_coco(images, path, taxonomy=_layer_taxonomy(meta)))]


def _georeference(data, meta: dict) -> dict | None:
    """The layer's own georeference, else that of the one georeferenced image of the same size
    in the current viewer (a Labels layer made for a GeoTIFF image does not copy its metadata)."""
    from .core.io.geotiff import GEO_KEY

    own = (meta.get("metadata") or {}).get(GEO_KEY)
    if own:
        return own
    try:
        import napari

        viewer = napari.current_viewer()
    except ImportError:
        viewer = None
    if viewer is None:
        return None
    shape = tuple(np.shape(data) if not isinstance(data, list) else np.shape(data[0]))
    found = [
        layer.metadata[GEO_KEY]
        for layer in viewer.layers
        if GEO_KEY in getattr(layer, "metadata", {})
        and (layer.metadata[GEO_KEY]["height"], layer.metadata[GEO_KEY]["width"]) == shape
    ]
    unique = {(str(g["crs"]), tuple(g["transform"])): g for g in found}
    if len(unique) > 1:
        raise ExportError(
            "several georeferenced images match these labels; save from the command line with --like"
        )
    return next(iter(unique.values()), None)


def write_labels_geotiff(path: str, data, meta: dict) -> list[str]:
    """Write a Labels layer as a GeoTIFF class raster with its source image's georeference."""
    from .core.io.geotiff import write_geotiff

    data = data[0] if isinstance(data, list) else data  # multiscale: full resolution
    geo = _georeference(data, meta)
    written = write_geotiff(
        data,
        path,
        like=geo,
        taxonomy=_layer_taxonomy(meta),
    )
    return [str(written)]


def write_labels_nifti(path: str, data, meta: dict) -> list[str]:
    """Write a Labels layer as ``.nii.gz`` with the source volume's affine.

    The affine comes from the layer metadata (``nifti_affine`` or ``affine``) when a NIfTI reader
    stored it there, else from the layer's scale and translate.
    """
    from .core.io.nifti import write_nifti

    md = meta.get("metadata") or {}
    affine = md.get("nifti_affine", md.get("affine"))
    if affine is None:
        arr_ndim = np.ndim(data)
        scale = list(meta.get("scale") or [1.0] * arr_ndim)
        translate = list(meta.get("translate") or [0.0] * arr_ndim)
        affine = np.eye(4)
        for i in range(min(arr_ndim, 3)):
            affine[i, i] = float(scale[i])
            affine[i, 3] = float(translate[i])
    written = write_nifti(
        np.asarray(data), path, affine=np.asarray(affine), taxonomy=_layer_taxonomy(meta)
    )
    return [str(written)]
