"""Multi-page TIFF stacks (microscopy z-stacks) with their voxel spacing."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["TiffStack", "is_tiff_stack", "read_tiff_stack"]

# GeoTIFF keys: a georeferenced raster is not a z-stack, leave it to the GeoTIFF reader
_GEO_TAGS = (33550, 33922, 34264, 34735)


@dataclass(frozen=True)
class TiffStack:
    """A z-stack read from a multi-page TIFF.

    Attributes
    ----------
    data : ndarray
        ``(Z, Y, X)`` or ``(Z, Y, X, C)`` for RGB pages.
    spacing : tuple of float
        ``(z, y, x)`` voxel size; 1.0 where the file does not say.
    unit : str
        The spacing's unit when the file names one (ImageJ ``unit``), else ``""``.
    """

    data: np.ndarray
    spacing: tuple[float, float, float]
    unit: str = ""


def _pages_and_geo(tif) -> tuple[int, bool]:
    first = tif.pages.first
    geo = any(t in first.tags for t in _GEO_TAGS)
    series = tif.series[0]
    shape = series.shape
    rgb = first.samplesperpixel in (3, 4) and shape[-1] in (3, 4)
    planes = int(np.prod(shape[: -3 if rgb else -2])) if len(shape) > (3 if rgb else 2) else 1
    return planes, geo


def is_tiff_stack(path: str | os.PathLike[str]) -> bool:
    """True for a readable TIFF holding more than one plane and no georeferencing."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            planes, geo = _pages_and_geo(tif)
    except Exception:  # not a TIFF, or damaged: other readers decide
        return False
    return planes > 1 and not geo


def _resolution(page, tag: str) -> float | None:
    t = page.tags.get(tag)
    if t is None:
        return None
    num, den = t.value
    if not num or not den:
        return None
    return den / num  # pixels per unit -> unit per pixel


def read_tiff_stack(path: str | os.PathLike[str]) -> TiffStack:
    """Read a multi-page TIFF as a ``(Z, Y, X)`` stack; a clear ``ValueError`` for bad files.

    The z spacing comes from ImageJ's ``spacing`` entry, the x/y spacing from the resolution
    tags (ImageJ files store pixels per unit there).
    """
    import tifffile

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no such file")
    try:
        with tifffile.TiffFile(p) as tif:
            planes, _ = _pages_and_geo(tif)
            data = tif.series[0].asarray()
            page = tif.pages.first
            ij = tif.imagej_metadata or {}
            dy = _resolution(page, "YResolution")
            dx = _resolution(page, "XResolution")
    except Exception as exc:  # tifffile raises many kinds for damaged files
        raise ValueError(f"{p}: not a readable TIFF stack ({type(exc).__name__}: {exc})") from None
    if planes < 2:
        raise ValueError(f"{p}: a single-plane TIFF, not a stack")
    rgb = data.shape[-1] in (3, 4) and data.ndim == 4
    spatial = data.shape[:-1] if rgb else data.shape
    if len(spatial) > 3:  # e.g. (T, Z, Y, X) or (Z, C, Y, X): fold leading axes into one
        data = data.reshape((-1, *(data.shape[-3:] if rgb else data.shape[-2:])))
    unit = str(ij.get("unit") or "")
    unit = "" if unit in ("pixel", "pixels") else unit
    if not unit:
        dx = dy = None  # resolution without a unit means DPI-ish values: ignore them
    dz = float(ij.get("spacing", 1.0) or 1.0)
    return TiffStack(data=data, spacing=(dz, dy or 1.0, dx or 1.0), unit=unit)
