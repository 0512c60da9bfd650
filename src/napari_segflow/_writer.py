"""npe2 writer callables: thin wrappers over :mod:`napari_segflow.core.io`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .core.io import write_png
from .core.io.validate import ExportError
from .core.provenance import (
    PROVENANCE_KEY,
    new_provenance,
    pending_count,
    sidecar_path,
    write_provenance,
)
from .core.taxonomy import Taxonomy, TaxonomyError, taxonomy_from_dict
from .layers import TAXONOMY_KEY


def _layer_taxonomy(meta: dict) -> Taxonomy:
    data = (meta.get("metadata") or {}).get(TAXONOMY_KEY)
    if data is None:
        raise TaxonomyError(
            f"layer {meta.get('name', '')!r} has no taxonomy: apply one in the Taxonomy widget before exporting"
        )
    return data if isinstance(data, Taxonomy) else taxonomy_from_dict(data)


#: Layer metadata key: when true, saving refuses a layer with unconfirmed AI pixels (the GUI's
#: ``segflow export --require-confirmed``); set from the Taxonomy dock.
REQUIRE_CONFIRMED_KEY = "segflow_require_confirmed"


def _layer_provenance(meta: dict, shape: tuple[int, ...]) -> np.ndarray | None:
    """The layer's provenance record when it fits the data, else ``None``."""
    prov = (meta.get("metadata") or {}).get(PROVENANCE_KEY)
    if prov is None or tuple(np.shape(prov)) != tuple(shape):
        return None
    return np.asarray(prov, dtype=np.uint8)


def _check_confirmed(meta: dict, prov: np.ndarray | None, path: str) -> None:
    """Warn about AI pixels nobody confirmed, or refuse them, as ``segflow export`` does."""
    pending = pending_count(prov)
    if not pending:
        return
    msg = f"{Path(path).name}: {pending} AI-labelled pixels are not confirmed"
    if (meta.get("metadata") or {}).get(REQUIRE_CONFIRMED_KEY):
        raise ExportError(
            f"{msg}; confirm them (Click to segment: Pending AI regions) or untick "
            "'require confirmed AI pixels' in the Taxonomy dock"
        )
    try:
        from napari.utils.notifications import show_warning
    except ImportError:  # writers also run without napari's GUI (npe2 CLI)
        return
    show_warning(f"{msg}; they are saved as AI-pending in {sidecar_path(path).name}")


def _with_provenance(
    written: list[str], prov: np.ndarray | None, shape: tuple[int, ...]
) -> list[str]:
    """Write the provenance sidecar beside the label file just written.

    A layer without a record gets none, unless a sidecar from an earlier save sits beside the
    destination: that one is replaced by an all-human record of ``shape``, so that it cannot
    mark pixels of the new file as AI-made.
    """
    target = written[0]
    if prov is None:
        if not sidecar_path(target).exists():
            return written
        prov = new_provenance(tuple(shape))
    return [*written, str(write_provenance(target, prov))]


def write_labels_png(path: str, data, meta: dict) -> list[str]:
    """Write a Labels layer as a class-index PNG (validated against its taxonomy).

    AI provenance goes beside it (``<file>.png.provenance.npz``), so that pre-labels nobody
    confirmed re-open as AI-pending.
    """
    arr = np.asarray(data)
    prov = _layer_provenance(meta, arr.shape)
    _check_confirmed(meta, prov, path)
    written = [str(p) for p in write_png(arr, path, taxonomy=_layer_taxonomy(meta))]
    return _with_provenance(written, prov, arr.shape)


def write_labels_coco(path: str, data, meta: dict) -> list[str]:
    """Write a Labels layer as COCO JSON with one RLE annotation per class (per plane for 3D)."""
    from .core.io.coco import write_coco

    name = meta.get("name") or Path(path).stem
    arr = np.asarray(data)
    prov = _layer_provenance(meta, arr.shape)
    _check_confirmed(meta, prov, path)
    if arr.ndim == 3:
        images = {f"{name}_z{z:04d}": arr[z] for z in range(arr.shape[0])}
    else:
        images = {name: arr}
    written = [str(write_coco(images, path, taxonomy=_layer_taxonomy(meta)))]
    return _with_provenance(written, prov, arr.shape)


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
    if geo is None:
        raise ExportError(
            "these labels have no georeference, so a GeoTIFF would have no place on the map: "
            "open the source image as a GeoTIFF (File > Open, or the Landsat sample), make the "
            "Labels layer for it in the Taxonomy dock (New Labels layer for image), then save "
            "again; or save as .png and run `segflow export --format geotiff --like <source.tif>`"
        )
    prov = _layer_provenance(meta, tuple(np.shape(data)))
    _check_confirmed(meta, prov, path)
    written = write_geotiff(
        data,
        path,
        like=geo,
        taxonomy=_layer_taxonomy(meta),
    )
    return _with_provenance([str(written)], prov, tuple(np.shape(data)))


def write_labels_nifti(path: str, data, meta: dict) -> list[str]:
    """Write a Labels layer as ``.nii``/``.nii.gz``.

    A layer read from NIfTI is written back in the file's axis order with its source affine,
    unchanged; any other layer gets an affine built from its scale and translate. The taxonomy,
    when the layer has one, validates the ids first. A provenance record in the layer metadata
    is written beside the file.
    """
    from .core.io.nifti import write_nifti
    from .core.io.volume_layout import NIFTI_META_KEY, affine_from_scale, from_layer_order

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
    prov = _layer_provenance(meta, arr.shape)
    _check_confirmed(meta, prov, path)
    written = write_nifti(np.ascontiguousarray(file_arr), path, affine=affine, taxonomy=taxonomy)
    file_prov = None if prov is None else np.ascontiguousarray(from_layer_order(prov))
    return _with_provenance([str(written)], file_prov, file_arr.shape)


_WRITERS = {
    ".png": write_labels_png,
    ".json": write_labels_coco,
    ".tif": write_labels_geotiff,
    ".tiff": write_labels_geotiff,
    ".nii": write_labels_nifti,
    ".nii.gz": write_labels_nifti,
}


def save_labels(layer, path: str) -> list[str]:
    """Save a Labels layer with segflow's writer for ``path``'s extension.

    napari's Save dialog preselects its own writer, which writes a PNG or TIFF without
    taxonomy, provenance or georeference; this is the same save with segflow's writer.

    Raises
    ------
    ExportError
        For an extension segflow does not write, and whatever the writer refuses.
    """
    name = str(path).lower()
    ext = next((e for e in sorted(_WRITERS, key=len, reverse=True) if name.endswith(e)), None)
    if ext is None:
        raise ExportError(
            f"{Path(path).name}: segflow saves labels as .png, .json (COCO), .tif/.tiff "
            "(GeoTIFF) or .nii/.nii.gz"
        )
    data, meta, _ = layer.as_layer_data_tuple()
    return _WRITERS[ext](str(path), data, meta)
