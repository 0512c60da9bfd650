"""npe2 reader callables: thin wrappers over :mod:`napari_segflow.core.io`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .core.io import read_png, read_png_taxonomy
from .core.provenance import PROVENANCE_KEY, ProvenanceError, read_provenance
from .layers import labels_layer_kwargs

_CITYSCAPES_SUFFIXES = ("_labelIds.png", "_labelTrainIds.png")


_SINGLE_CHANNEL_PNG = ("L", "I;16", "I;16B", "I", "P", "1")


def _single_channel_png(path: str) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as img:  # reads the header only
            return img.format == "PNG" and img.mode in _SINGLE_CHANNEL_PNG
    except (OSError, SyntaxError):
        return False


def get_png_labels_reader(path):
    """Reader for class-index PNGs: written by segflow (with their taxonomy), Cityscapes
    ``*_labelIds.png``, or any single-channel integer PNG (a mask another tool wrote, a palette
    PNG), which opens as Labels instead of a black image.

    Returns ``None`` for colour PNGs so napari's own image reader handles them.
    """
    if not isinstance(path, str) or not path.lower().endswith(".png"):
        return None
    taxonomy = read_png_taxonomy(path)
    if (
        taxonomy is None
        and not path.endswith(_CITYSCAPES_SUFFIXES)
        and not _single_channel_png(path)
    ):
        return None

    def _read(p):
        data = read_png(p)
        kwargs = labels_layer_kwargs(taxonomy) if taxonomy is not None else {}
        kwargs["name"] = Path(p).stem
        # AI pre-labels (segflow prelabel) carry a provenance sidecar: their pixels open as
        # AI-pending, so the Click-to-segment dock lists them for explicit confirmation
        try:
            provenance = read_provenance(p, shape=data.shape)
        except ProvenanceError as exc:
            # the labels are still worth opening; a damaged sidecar is reported, not trusted
            import warnings

            warnings.warn(f"{exc}; opened without provenance", stacklevel=2)
            provenance = None
        if provenance is not None:
            kwargs.setdefault("metadata", {})[PROVENANCE_KEY] = provenance
        return [(data, kwargs, "labels")]

    return _read


def get_geotiff_reader(path):
    """Reader for georeferenced TIFFs: class rasters written by segflow open as Labels, other
    GeoTIFFs as images (RGB when the bands allow, 16-bit bands stretched, large ones lazily).

    Returns ``None`` for TIFFs without georeference so napari's own TIFF reader handles them.
    """
    from .core.io.geotiff import geotiff_info, is_georeferenced

    if not isinstance(path, str) or not path.lower().endswith((".tif", ".tiff")):
        return None
    try:
        info = geotiff_info(path)
    except ValueError:
        return None
    if not is_georeferenced(info):
        return None
    return _read_geotiff


def _read_geotiff(path):
    from .core.io.geotiff import (
        GEO_KEY,
        geotiff_info,
        read_geotiff,
        read_geotiff_labels,
        read_geotiff_taxonomy,
    )

    taxonomy = read_geotiff_taxonomy(path)
    name = Path(path).stem
    if taxonomy is not None:
        data = read_geotiff_labels(path)
        info = geotiff_info(path)
        meta = {GEO_KEY: info}
        provenance = read_provenance(path)
        if provenance is not None and provenance.shape == (info["height"], info["width"]):
            meta[PROVENANCE_KEY] = provenance
        kwargs = labels_layer_kwargs(taxonomy, metadata=meta)
        kwargs.update(name=name, multiscale=isinstance(data, list))
        return [(data, kwargs, "labels")]
    image = read_geotiff(path)
    kwargs = {
        "name": name,
        "metadata": {GEO_KEY: image.info},
        "rgb": image.rgb,
        "multiscale": image.multiscale,
    }
    if image.contrast_limits is not None:
        kwargs["contrast_limits"] = list(image.contrast_limits)
    if image.info["count"] > 1 and not image.rgb:
        kwargs["channel_axis"] = 0
        kwargs["metadata"] = [{GEO_KEY: image.info}] * image.info["count"]
        kwargs["name"] = [f"{name} band {i + 1}" for i in range(image.info["count"])]
    return [(image.data, kwargs, "image")]


def get_coco_reader(path):
    """Reader for COCO JSON files (RLE or polygons): one Labels layer per image."""
    if not isinstance(path, str) or not path.lower().endswith(".json"):
        return None
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or "images" not in doc or "annotations" not in doc:
        return None
    return _read_coco


def _read_coco(path):
    from .core.io.coco import read_coco, read_coco_taxonomy

    taxonomy = read_coco_taxonomy(path)
    images = read_coco(path)
    provenance = read_provenance(path) if len(images) == 1 else None
    layers = []
    for image_name, labels in images.items():
        kwargs = labels_layer_kwargs(taxonomy) if taxonomy is not None else {}
        kwargs["name"] = Path(image_name).stem
        if provenance is not None and provenance.shape == np.shape(labels):
            kwargs.setdefault("metadata", {})[PROVENANCE_KEY] = provenance
        layers.append((labels, kwargs, "labels"))
    return layers


def _nifti_stem(path: str) -> str:
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def get_nifti_reader(path):
    """Reader for ``.nii``/``.nii.gz`` volumes: image or labels, voxel spacing as layer scale.

    The layer holds the file's array with its axes reversed (slice axis first, see
    :mod:`napari_segflow.core.io.volume_layout`); the file's affine stays in the layer metadata so
    that saving a Labels layer as NIfTI writes it back exactly.
    """
    if not isinstance(path, str) or not path.lower().endswith((".nii", ".nii.gz")):
        return None
    return _read_nifti_layer


def _read_nifti_layer(path: str) -> list[tuple]:
    from .core.io.nifti import read_nifti
    from .core.io.volume_layout import (
        layer_spacing,
        looks_like_labels,
        nifti_layer_metadata,
        to_layer_order,
    )

    vol = read_nifti(path)  # ValueError with the file name for bad or truncated files
    data = np.ascontiguousarray(to_layer_order(vol.data))
    meta = nifti_layer_metadata(vol.affine, vol.data.shape, source=str(path))
    kwargs = {
        "name": _nifti_stem(path),
        "scale": layer_spacing(vol.spacing),
        "metadata": meta,
    }
    if looks_like_labels(vol.data, Path(path).name):
        return [(data, kwargs, "labels")]
    return [(data, kwargs, "image")]


def get_tiff_stack_reader(path):
    """Reader for multi-page TIFF z-stacks (microscopy); ``None`` for single images or GeoTIFFs."""
    if not isinstance(path, str) or not path.lower().endswith((".tif", ".tiff")):
        return None
    from .core.io.tiff_stack import is_tiff_stack

    if not is_tiff_stack(path):
        return None
    return _read_tiff_stack_layer


def get_labels_tiff_reader(path):
    """Reader for single-page, single-channel integer TIFFs (class masks from other tools):
    they open as Labels. ``None`` for other TIFFs (images, stacks, GeoTIFFs)."""
    if not isinstance(path, str) or not path.lower().endswith((".tif", ".tiff")):
        return None
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if len(tif.pages) != 1:
                return None
            page = tif.pages[0]
            shape, dtype = tuple(page.shape), np.dtype(page.dtype)
    except (OSError, ValueError, tifffile.TiffFileError):
        return None
    if len(shape) != 2 or dtype.kind not in "ui":
        return None
    return _read_labels_tiff


def _read_labels_tiff(path: str) -> list[tuple]:
    import tifffile

    data = tifffile.imread(path)
    kwargs = {"name": Path(path).stem}
    provenance = read_provenance(path)
    if provenance is not None and provenance.shape == data.shape:
        kwargs["metadata"] = {PROVENANCE_KEY: provenance}
    return [(data, kwargs, "labels")]


def _read_tiff_stack_layer(path: str) -> list[tuple]:
    from .core.io.tiff_stack import read_tiff_stack

    stack = read_tiff_stack(path)
    rgb = stack.data.ndim == 4 and stack.data.shape[-1] in (3, 4)
    kwargs = {
        "name": Path(path).stem,
        "scale": stack.spacing,
        "rgb": rgb,
        "metadata": {"segflow_spacing_unit": stack.unit},
    }
    return [(stack.data, kwargs, "image")]


#: File patterns only segflow reads fully (napari's own reader fails on them), so napari can use
#: segflow's reader without asking. PNG/TIFF/JSON stay unset: segflow reads only some of those.
SEGFLOW_READER_PATTERNS = ("*.nii", "*.nii.gz")


def prefer_segflow_readers(settings=None) -> list[str]:
    """Make segflow napari's preferred reader for :data:`SEGFLOW_READER_PATTERNS`.

    Writes ``settings.plugins.extension2reader`` (napari's "File extension readers" preference)
    for patterns the user has not assigned yet; a choice the user made is kept. Returns the
    patterns set now.
    """
    if settings is None:
        from napari.settings import get_settings

        settings = get_settings()
    current = dict(settings.plugins.extension2reader)
    added = [p for p in SEGFLOW_READER_PATTERNS if p not in current]
    if added:
        settings.plugins.extension2reader = {
            **current,
            **dict.fromkeys(added, "napari-segflow"),
        }
    return added
