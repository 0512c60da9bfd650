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
    """Write a Labels layer as ``.nii``/``.nii.gz``.

    A layer read from NIfTI is written back in the file's axis order with its source affine,
    unchanged; any other layer gets an affine built from its scale and translate. The taxonomy,
    when the layer has one, validates the ids first. A provenance record in the layer metadata
    is written beside the file.
    """
    import numpy as np

    from .core.io.nifti import write_nifti
    from .core.io.validate import ExportError
    from .core.io.volume_layout import NIFTI_META_KEY, affine_from_scale, from_layer_order
    from .core.provenance import PROVENANCE_KEY, write_provenance

    layer_meta = meta.get("metadata") or {}
    arr = np.asarray(data)
    file_arr = from_layer_order(arr)
    src = layer_meta.get(NIFTI_META_KEY)
    if src is not None:
        affine = np.asarray(src["affine"], dtype=float)
        if tuple(src.get("shape", file_arr.shape)) != file_arr.shape:
            raise ExportError(
                f"labels of shape {arr.shape} do not match the NIfTI volume they came from "
                f"(file shape {tuple(src['shape'])}): its affine would not apply"
            )
    else:
        affine = affine_from_scale(meta.get("scale", (1.0,) * arr.ndim), meta.get("translate"))
    taxonomy = _layer_taxonomy(meta) if TAXONOMY_KEY in layer_meta else None
    written = write_nifti(np.ascontiguousarray(file_arr), path, affine=affine, taxonomy=taxonomy)
    out = [str(written)]
    prov = layer_meta.get(PROVENANCE_KEY)
    if prov is not None and np.shape(prov) == arr.shape:
        out.append(str(write_provenance(written, from_layer_order(np.asarray(prov)))))
    return out
