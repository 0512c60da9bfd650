"""GeoTIFF images and class rasters (rasterio) with their georeference kept exactly.

Reading keeps CRS, transform, nodata and band information as a plain dictionary (napari layer
metadata); large rasters open as lazy, windowed dask pyramids. Writing streams the labels in
row strips, so a 40,000 x 40,000 raster backed by dask or a memmap exports in bounded memory.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_segflow.core.atomic import atomic_path
from napari_segflow.core.taxonomy import Taxonomy, TaxonomyError, taxonomy_from_dict

from .validate import ExportError, check_ids, invalid_ids, validate_labels

__all__ = [
    "GEO_KEY",
    "TAXONOMY_TAG",
    "GeoImage",
    "geotiff_info",
    "is_georeferenced",
    "open_band",
    "open_pyramid",
    "pixel_to_map",
    "read_geotiff",
    "read_geotiff_labels",
    "read_geotiff_taxonomy",
    "stretch_to_uint8",
    "write_geotiff",
]

#: Key of the georeference dictionary in a napari layer's ``metadata``.
GEO_KEY = "geotiff"
#: Dataset tag holding the taxonomy (JSON) of a class raster written by :func:`write_geotiff`.
TAXONOMY_TAG = "SEGFLOW_TAXONOMY"

#: Rasters with more pixels than this open lazily (dask pyramid) unless asked otherwise.
LAZY_PIXELS = 4096 * 4096
#: Bytes of labels held in memory at once while writing.
STRIP_BYTES = 16 * 2**20
#: GDAL block cache while writing (MB): dirty tiles are flushed, not hoarded.
WRITE_CACHE_MB = 128

_RGB = ("red", "green", "blue")


# ------------------------------------------------------------------------------- reading
def geotiff_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Georeference and band information of a raster, as plain JSON-ready values.

    Keys: ``path``, ``crs`` (WKT or ``None``), ``epsg``, ``transform`` (the six affine
    coefficients a, b, c, d, e, f), ``nodata``, ``width``, ``height``, ``count``, ``dtypes``,
    ``colorinterp``, ``descriptions``, ``overviews`` and ``tags``.
    """
    import rasterio

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no such file")
    from .guard import check_not_partial

    check_not_partial(p)  # GDAL opens a killed writer's temporary as a zero-filled raster
    try:
        with warnings.catch_warnings():
            # plain TIFFs are legal input here; is_georeferenced() tells the caller
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            src = rasterio.open(p)
        with src:
            crs = src.crs
            return {
                "path": str(p),
                "crs": crs.to_wkt() if crs else None,
                "epsg": crs.to_epsg() if crs else None,
                "transform": [float(v) for v in tuple(src.transform)[:6]],
                "nodata": src.nodata,
                "width": src.width,
                "height": src.height,
                "count": src.count,
                "dtypes": list(src.dtypes),
                "colorinterp": [ci.name for ci in src.colorinterp],
                "descriptions": list(src.descriptions),
                "overviews": src.overviews(1) if src.count else [],
                "tags": dict(src.tags()),
            }
    except rasterio.errors.RasterioIOError as exc:
        raise ValueError(f"{p}: not a readable raster ({exc})") from None


def is_georeferenced(info: Mapping[str, Any]) -> bool:
    """Whether ``info`` (from :func:`geotiff_info`) has a CRS and a non-identity transform."""
    return bool(info.get("crs")) and list(info.get("transform", [])) != [1, 0, 0, 0, 1, 0]


def pixel_to_map(transform, row: float, col: float) -> tuple[float, float]:
    """Map coordinates ``(x, y)`` of the pixel position ``(row, col)``.

    Examples
    --------
    >>> pixel_to_map([0.5, 0, 733601.0, 0, -0.5, 3725139.0], 10, 4)
    (733603.0, 3725134.0)
    """
    a, b, c, d, e, f = (float(v) for v in list(transform)[:6])
    return (a * col + b * row + c, d * col + e * row + f)


def _display_bands(info: Mapping[str, Any]) -> tuple[list[int], bool]:
    """1-based band indexes to show and whether they form an RGB image."""
    interp = [str(c).lower() for c in info["colorinterp"]]
    if all(name in interp for name in _RGB):
        return [interp.index(name) + 1 for name in _RGB], True
    if info["count"] in (3, 4):
        return [1, 2, 3], True
    return list(range(1, info["count"] + 1)), False


class _WindowedBands:
    """An array-like over a raster file, decimated by ``factor``; each slice is one windowed read.

    Shape is (rows, cols) for one band, (rows, cols, bands) for RGB, else (bands, rows, cols).
    """

    def __init__(self, path: str, bands: list[int], factor: int, rgb: bool, info: dict) -> None:
        self.path, self.bands, self.factor, self.rgb = path, bands, factor, rgb
        self.full = (info["height"], info["width"])
        rows, cols = (math.ceil(n / factor) for n in self.full)
        self.dtype = np.dtype(info["dtypes"][bands[0] - 1])
        if len(bands) == 1:
            self.shape: tuple[int, ...] = (rows, cols)
        elif rgb:
            self.shape = (rows, cols, len(bands))
        else:
            self.shape = (len(bands), rows, cols)
        self.ndim = len(self.shape)

    def __array__(self, dtype=None, copy=None):
        # the whole raster in one read, for writers that need it all (PNG, COCO, NIfTI)
        data = self[(slice(None),) * self.ndim]
        return data if dtype is None else data.astype(dtype, copy=False)

    def __getitem__(self, key):
        import rasterio
        from rasterio.enums import Resampling
        from rasterio.windows import Window

        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        if len(self.bands) > 1 and not self.rgb:
            bsl, rsl, csl = key
        elif len(self.bands) > 1:
            rsl, csl, bsl = key
        else:
            (rsl, csl), bsl = key, slice(None)
        r0, r1, _ = rsl.indices(self.shape[-3 if self.rgb else -2])
        c0, c1, _ = csl.indices(self.shape[-2 if self.rgb else -1])
        f = self.factor
        window = Window(
            c0 * f, r0 * f, min(c1 * f, self.full[1]) - c0 * f, min(r1 * f, self.full[0]) - r0 * f
        )
        with rasterio.open(self.path) as src:
            data = src.read(
                self.bands,
                window=window,
                out_shape=(len(self.bands), r1 - r0, c1 - c0),
                resampling=Resampling.nearest,
            )
        data = data[bsl]
        if len(self.bands) == 1:
            return data[0]
        return np.moveaxis(data, 0, -1) if self.rgb else data


def open_band(path: str | os.PathLike[str], *, band: int = 1):
    """One band of a raster as a lazy ``(rows, cols)`` array-like: each slice is one windowed read.

    Nothing is read until it is sliced, so :func:`write_geotiff` streams it strip by strip and a
    GeoTIFF source of any size exports in bounded memory. ``np.asarray`` reads it whole.

    Parameters
    ----------
    path : path-like
        Any raster rasterio opens.
    band : int
        1-based band index.
    """
    info = geotiff_info(path)
    if not 1 <= int(band) <= info["count"]:
        raise ValueError(f"{path}: band {band} out of range 1..{info['count']}")
    return _WindowedBands(str(path), [int(band)], 1, False, info)


def open_pyramid(
    path: str | os.PathLike[str], *, chunk: int = 1024, bands: list[int] | None = None
) -> list:
    """Lazy multiscale view of a raster: dask arrays at factors 1, 2, 4, ... down to one chunk.

    Each chunk is a windowed (and, below full resolution, decimated) rasterio read, which uses
    the file's internal overviews when it has them; nothing is read until napari asks for a tile.
    """
    import dask.array as da

    info = geotiff_info(path)
    shown, rgb = _display_bands(info)
    bands = bands or shown
    levels = []
    factor = 1
    stamp = os.stat(path).st_mtime_ns
    while True:
        arr = _WindowedBands(str(path), bands, factor, rgb and len(bands) == 3, info)
        row_axis = 1 if (arr.ndim == 3 and not arr.rgb) else 0
        chunks = tuple(
            chunk if ax in (row_axis, row_axis + 1) else n for ax, n in enumerate(arr.shape)
        )
        levels.append(
            da.from_array(
                arr,
                chunks=chunks,
                lock=False,
                fancy=False,
                name=f"geotiff-{path}-{stamp}-{factor}",
            )
        )
        if max(arr.shape[row_axis : row_axis + 2]) <= chunk:
            return levels
        factor *= 2


@dataclass(frozen=True)
class GeoImage:
    """A raster read for display.

    Attributes
    ----------
    data : ndarray or list of dask arrays
        (H, W) for one band, (H, W, 3) for RGB, (bands, H, W) otherwise; a multiscale list when
        the raster was opened lazily.
    info : dict
        :func:`geotiff_info` of the file (goes into the napari layer's metadata).
    rgb : bool
        Whether ``data`` is an RGB image.
    contrast_limits : (float, float) or None
        A 2-98 percentile stretch for single-band rasters deeper than 8 bits, else ``None``.
    """

    data: Any
    info: dict[str, Any]
    rgb: bool
    contrast_limits: tuple[float, float] | None

    @property
    def multiscale(self) -> bool:
        """Whether ``data`` is a list of pyramid levels."""
        return isinstance(self.data, list)


def _percentiles(sample: np.ndarray, nodata, low: float, high: float) -> tuple[float, float]:
    values = sample[sample != nodata] if nodata is not None else sample.ravel()
    if values.size == 0:
        return (0.0, 1.0)
    lo, hi = np.percentile(values, [low, high])
    return (float(lo), float(max(hi, lo + 1)))


def stretch_to_uint8(
    image: np.ndarray, *, limits: tuple[float, float] | None = None, nodata=None
) -> np.ndarray:
    """Linear stretch of a (16-bit) image to uint8, by default between its 2nd and 98th percentiles.

    The result is what a model that expects 8-bit RGB should see (repeat it to 3 channels).

    Examples
    --------
    >>> stretch_to_uint8(np.array([[100, 200], [300, 400]], dtype=np.uint16), limits=(100, 300))
    array([[  0, 128],
           [255, 255]], dtype=uint8)
    """
    arr = np.asarray(image)
    lo, hi = limits if limits is not None else _percentiles(arr, nodata, 2, 98)
    scaled = (arr.astype(np.float32) - lo) * (255.0 / max(hi - lo, 1e-12))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def read_geotiff(path: str | os.PathLike[str], *, lazy: bool | None = None) -> GeoImage:
    """Read a GeoTIFF for display, keeping its georeference.

    Parameters
    ----------
    path : path-like
    lazy : bool, optional
        Open as a dask pyramid (:func:`open_pyramid`). Default: when the raster has more than
        :data:`LAZY_PIXELS` pixels.
    """
    import rasterio
    from rasterio.enums import Resampling

    info = geotiff_info(path)
    if info["count"] == 0:
        raise ValueError(f"{path}: raster has no bands")
    bands, rgb = _display_bands(info)
    big = info["width"] * info["height"] > LAZY_PIXELS
    if lazy if lazy is not None else big:
        data: Any = open_pyramid(path, bands=bands)
    else:
        with rasterio.open(path) as src:
            data = src.read(bands)
        data = data[0] if len(bands) == 1 else (np.moveaxis(data, 0, -1) if rgb else data)
    limits = None
    dtype = np.dtype(info["dtypes"][bands[0] - 1])
    if len(bands) == 1 and dtype.itemsize > 1:
        # percentiles on a decimated read: cheap for any size, close enough for display
        step = max(1, math.ceil(max(info["width"], info["height"]) / 1024))
        with rasterio.open(path) as src:
            sample = src.read(
                bands[0],
                out_shape=(math.ceil(info["height"] / step), math.ceil(info["width"] / step)),
                resampling=Resampling.nearest,
            )
        limits = _percentiles(sample, info["nodata"], 2, 98)
    return GeoImage(data=data, info=info, rgb=rgb, contrast_limits=limits)


def read_geotiff_taxonomy(path: str | os.PathLike[str]) -> Taxonomy | None:
    """The taxonomy stored by :func:`write_geotiff`, or ``None`` for other rasters."""
    try:
        text = geotiff_info(path)["tags"].get(TAXONOMY_TAG)
        if text is None:
            return None
        return taxonomy_from_dict(json.loads(text), source=f"{path} (embedded taxonomy)")
    except (ValueError, TaxonomyError):
        return None


def read_geotiff_labels(path: str | os.PathLike[str], *, lazy: bool | None = None):
    """Band 1 of a class raster: a numpy array, or a dask pyramid for large rasters."""
    import rasterio

    info = geotiff_info(path)
    if lazy if lazy is not None else info["width"] * info["height"] > LAZY_PIXELS:
        return open_pyramid(path, bands=[1])
    with rasterio.open(path) as src:
        return src.read(1)


# ------------------------------------------------------------------------------- writing
def _reference(like) -> dict[str, Any]:
    """crs, transform, height and width of a source path, rasterio profile or info dictionary."""
    if like is None:
        return {}
    if isinstance(like, str | os.PathLike):
        info = geotiff_info(like)
        return {
            "crs": info["crs"],
            "transform": info["transform"],
            "height": info["height"],
            "width": info["width"],
            "source": str(like),
        }
    if isinstance(like, Mapping):
        return {k: like.get(k) for k in ("crs", "transform", "height", "width")} | {
            "source": "the reference profile"
        }
    raise ExportError(
        f"like= must be a raster path or a profile mapping, got {type(like).__name__}"
    )


def _affine(transform):
    from rasterio.transform import Affine

    if isinstance(transform, Affine):
        return transform
    vals = [float(v) for v in list(transform)[:6]]
    if len(vals) != 6:
        raise ExportError(f"transform needs six coefficients, got {transform!r}")
    return Affine(*vals)


def _drop_mapped_pages(view) -> None:
    """Let the kernel unmap the pages of a memmap slice that has been written out.

    Pages of a file mapping count in the process's resident size until unmapped; without this a
    40k x 40k memmap source would end the export with the whole file resident.
    """
    mm = getattr(view, "_mmap", None)
    # MADV_DONTNEED is only harmless for shared mappings (data stays in the page cache)
    if mm is None or getattr(view, "mode", "c") not in ("r", "r+") or not view.flags.c_contiguous:
        return
    if not hasattr(mm, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
        return
    base = np.frombuffer(mm, dtype=np.uint8)
    start = view.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    size = base.size
    del base
    page = mmap.PAGESIZE
    first = start // page * page
    end = min(start + view.nbytes, size) // page * page
    if end > first:
        mm.madvise(mmap.MADV_DONTNEED, first, end - first)


def _strip_rows(width: int, itemsize: int, block: int) -> int:
    per_block = max(1, block * width * itemsize)
    return block * max(1, STRIP_BYTES // per_block)


def write_geotiff(
    labels,
    path: str | os.PathLike[str],
    *,
    like=None,
    taxonomy: Taxonomy,
    crs=None,
    transform=None,
    block_size: int = 512,
    overviews: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a class raster with the georeference of its source image, atomically.

    Parameters
    ----------
    labels : (H, W) integer array-like
        numpy, memmap, dask or any sliceable array: read in row strips of at most
        :data:`STRIP_BYTES`, so memory stays bounded whatever the raster size.
    path : path-like
        Destination ``.tif``.
    like : path-like or mapping, optional
        The source raster (or its rasterio profile): CRS and transform are copied, and its size
        must match ``labels``.
    taxonomy : Taxonomy
        Ids absent from it are refused; its colours become the colour map, its class names band
        tags, its ``ignore_id`` the nodata value.
    crs, transform : optional
        Explicit georeference (anything rasterio's ``CRS.from_user_input`` reads; an Affine or the
        six coefficients a, b, c, d, e, f); override ``like``.
    block_size : int
        Tile size (multiple of 16).
    overviews : bool
        Also build internal overviews (mode resampling) for fast display of large rasters.
    progress : callable(done_rows, total_rows), optional
        Called after each strip; raising from it cancels the export (nothing is left behind).

    Raises
    ------
    ExportError
        Labels without georeference (no ``like`` with a CRS, nor ``crs`` and ``transform``), a
        size mismatch, non-integer data or ids absent from the taxonomy; no file is written.
    """
    import rasterio
    from rasterio.crs import CRS
    from rasterio.enums import ColorInterp, Resampling
    from rasterio.windows import Window

    if not hasattr(labels, "shape") or not hasattr(labels, "dtype"):
        labels = np.asarray(labels)  # lists and the like; array-likes are never loaded whole
    shape = tuple(labels.shape)
    if len(shape) != 2:
        raise ExportError(f"a GeoTIFF class raster must be 2D, got shape {shape}")
    height, width = (int(n) for n in shape)
    if height == 0 or width == 0:
        raise ExportError("labels are empty")
    dtype = np.dtype(labels.dtype)
    if dtype.kind not in "iub":
        if not isinstance(labels, np.ndarray):
            raise ExportError(f"labels must hold integers, got dtype {dtype}")
        labels = validate_labels(labels, taxonomy, max_ndim=2)

    ref = _reference(like)
    crs = crs if crs is not None else ref.get("crs")
    transform = transform if transform is not None else ref.get("transform")
    if not crs or transform is None or list(_affine(transform))[:6] == [1, 0, 0, 0, 1, 0]:
        where = f" ({ref['source']} has none)" if ref else ""
        raise ExportError(
            f"labels have no georeference{where}: pass like=<georeferenced source image>, "
            "or crs= and transform= explicitly"
        )
    if ref.get("height") is not None and (ref["height"], ref["width"]) != (height, width):
        raise ExportError(
            f"labels are {height}x{width} but {ref['source']} is {ref['height']}x{ref['width']}"
        )
    if block_size % 16:
        raise ExportError("block_size must be a multiple of 16")
    try:
        crs = CRS.from_user_input(crs)
    except rasterio.errors.CRSError as exc:
        raise ExportError(f"invalid crs: {exc}") from None

    out_dtype = np.uint8 if taxonomy.max_id <= 255 else np.uint16
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": np.dtype(out_dtype).name,
        "crs": crs,
        "transform": _affine(transform),
        "nodata": taxonomy.ignore_id,
        "tiled": True,
        "blockxsize": block_size,
        "blockysize": block_size,
        "compress": "deflate",
        "interleave": "band",
        "bigtiff": "IF_SAFER",
    }
    colormap = {c.id: (*c.color, 255) for c in taxonomy.classes}
    if taxonomy.unlabeled_id is not None:
        colormap[taxonomy.unlabeled_id] = (0, 0, 0, 0)
    rows = _strip_rows(width, max(dtype.itemsize, 1), block_size)
    bad: set[int] = set()
    p = Path(path)
    with rasterio.Env(GDAL_CACHEMAX=WRITE_CACHE_MB), atomic_path(p) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            for r0 in range(0, height, rows):
                r1 = min(r0 + rows, height)
                raw = labels[r0:r1]
                strip = np.asarray(raw.compute() if hasattr(raw, "compute") else raw)
                bad.update(invalid_ids(strip, taxonomy))
                if not bad:  # after the first bad strip only scan, to list every bad id
                    dst.write(
                        strip.astype(out_dtype, copy=False),
                        1,
                        window=Window(0, r0, width, r1 - r0),
                    )
                _drop_mapped_pages(raw)
                del raw, strip
                if progress is not None:
                    progress(r1, height)
            check_ids(bad, taxonomy)  # raising here discards the temporary file
            dst.write_colormap(1, colormap)
            dst.colorinterp = [ColorInterp.palette]
            dst.update_tags(
                **{TAXONOMY_TAG: json.dumps(taxonomy.to_dict())}, TAXONOMY_NAME=taxonomy.name
            )
            dst.update_tags(1, **{f"CLASS_{c.id}": c.name for c in taxonomy.classes})
            dst.set_band_description(1, f"class id ({taxonomy.name})")
            if overviews:
                factors = [
                    2**k for k in range(1, 16) if max(height, width) / 2**k >= block_size / 2
                ]
                if factors:
                    dst.build_overviews(factors, Resampling.mode)
                    dst.update_tags(ns="rio_overview", resampling="mode")
    return p
