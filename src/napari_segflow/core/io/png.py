"""Class-index PNG masks (Cityscapes style) and their colour previews."""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from napari_segflow.core.atomic import atomic_path
from napari_segflow.core.taxonomy import Taxonomy, TaxonomyError, taxonomy_from_dict

from .guard import check_format, check_not_partial
from .validate import ExportError, validate_labels

__all__ = [
    "TAXONOMY_CHUNK",
    "TAXONOMY_HASH_CHUNK",
    "colorize",
    "png_paths",
    "read_png",
    "read_png_taxonomy",
    "taxonomy_digest",
    "write_png",
]

#: PNG text chunk that carries the taxonomy (compact JSON, zlib-compressed), so a mask re-opens
#: with its classes.
TAXONOMY_CHUNK = "segflow:taxonomy"
#: PNG text chunk with the SHA-256 of the taxonomy's compact JSON (always written).
TAXONOMY_HASH_CHUNK = "segflow:taxonomy-sha256"
#: A taxonomy whose compressed copy is larger than this is recorded by its hash only, so a
#: huge taxonomy does not make every mask huge.
MAX_EMBEDDED_TAXONOMY = 256 * 1024


def _compact_taxonomy(taxonomy: Taxonomy) -> str:
    return json.dumps(taxonomy.to_dict(), separators=(",", ":"), sort_keys=True)


def taxonomy_digest(taxonomy: Taxonomy) -> str:
    """SHA-256 (hex) of the taxonomy's compact JSON, as written into each PNG."""
    return hashlib.sha256(_compact_taxonomy(taxonomy).encode("utf-8")).hexdigest()


def png_paths(
    out_dir: str | os.PathLike[str], stem: str, *, cityscapes: bool = False
) -> tuple[Path, Path]:
    """File names for a class-index PNG and its colour preview.

    Examples
    --------
    >>> [p.name for p in png_paths("out", "aachen_000000_000019", cityscapes=True)]
    ['aachen_000000_000019_gtFine_labelIds.png', 'aachen_000000_000019_gtFine_color.png']
    >>> [p.name for p in png_paths("out", "tile")]
    ['tile.png', 'tile_color.png']
    """
    d = Path(out_dir)
    if cityscapes:
        return d / f"{stem}_gtFine_labelIds.png", d / f"{stem}_gtFine_color.png"
    return d / f"{stem}.png", d / f"{stem}_color.png"


def colorize(labels: np.ndarray, taxonomy: Taxonomy) -> np.ndarray:
    """An RGB image (uint8) painting each class in its taxonomy colour; other values black."""
    lut_size = max(int(labels.max(initial=0)), taxonomy.max_id) + 1
    lut = np.zeros((lut_size, 3), dtype=np.uint8)
    for cid, rgb in taxonomy.palette().items():
        lut[cid] = rgb
    return lut[labels]


def write_png(
    labels: np.ndarray,
    path: str | os.PathLike[str],
    *,
    taxonomy: Taxonomy,
    color_path: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Write a 2D label image as a class-index PNG, uint8 or uint16 when ids exceed 255.

    Parameters
    ----------
    labels : (H, W) integer array
        Class ids; every value must be a class of ``taxonomy`` or its unlabelled id.
    path : path-like
        Destination of the class-index PNG.
    taxonomy : Taxonomy
        Gives the valid ids and the palette.
    color_path : path-like, optional
        Also write an RGB preview in the taxonomy's colours here.

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    ExportError
        For ids absent from the taxonomy, a non-2D array or non-integer data; nothing is written.
    """
    arr = validate_labels(labels, taxonomy, max_ndim=2)
    if arr.ndim != 2:
        raise ExportError(f"a PNG mask must be 2D, got shape {arr.shape}")
    if int(arr.min()) < 0 or int(arr.max()) > 65535:
        raise ExportError("PNG masks hold ids 0..65535")
    dtype = np.uint8 if int(arr.max()) <= 255 else np.uint16
    info = PngInfo()
    text = _compact_taxonomy(taxonomy)
    info.add_text(TAXONOMY_HASH_CHUNK, hashlib.sha256(text.encode("utf-8")).hexdigest())
    if len(zlib.compress(text.encode("utf-8"))) <= MAX_EMBEDDED_TAXONOMY:
        info.add_text(TAXONOMY_CHUNK, text, zip=True)
    written = []
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(arr.astype(dtype))).save(
            tmp, format="PNG", pnginfo=info
        )
        if color_path is not None:
            with atomic_path(color_path) as ctmp:
                Image.fromarray(colorize(arr, taxonomy)).save(ctmp, format="PNG")
            written.append(Path(color_path))
    written.insert(0, Path(path))
    return written


def read_png(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a class-index PNG exactly as written (uint8 or uint16).

    Raises
    ------
    ValueError
        When the file is not a PNG by its content (a JPEG renamed ``.png``), is larger than
        Pillow's decompression-bomb limit, is damaged, or is not single-channel (a colour
        preview, for instance).
    """
    check_not_partial(path)
    check_format(path, {"png"})
    try:
        with Image.open(path, formats=["PNG"]) as img:
            img.load()
            if img.mode not in ("L", "I;16", "I;16B", "I", "P", "1"):
                raise ValueError(
                    f"{path}: not a class-index PNG (mode {img.mode}); colour previews cannot be read as labels"
                )
            arr = np.array(img)
    except Image.DecompressionBombError as exc:
        raise ValueError(f"{path}: refused, too many pixels ({exc})") from None
    except (OSError, SyntaxError, EOFError, MemoryError) as exc:
        raise ValueError(f"{path}: cannot read PNG ({type(exc).__name__}: {exc})") from None
    if arr.dtype == np.int32:
        arr = arr.astype(np.uint16)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    return arr


def read_png_taxonomy(path: str | os.PathLike[str]) -> Taxonomy | None:
    """The taxonomy embedded by :func:`write_png`, or ``None`` for PNGs written elsewhere."""
    try:
        with Image.open(path, formats=["PNG"]) as img:
            text = getattr(img, "text", {}).get(TAXONOMY_CHUNK)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    if text is None:
        return None
    try:
        return taxonomy_from_dict(json.loads(text), source=f"{path} (embedded taxonomy)")
    except (json.JSONDecodeError, RecursionError, TaxonomyError):
        return None
