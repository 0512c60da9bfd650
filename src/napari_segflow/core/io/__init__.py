"""Readers and writers for label images. Every writer validates first and writes atomically."""

from napari_segflow.core.atomic import atomic_path, atomic_write_bytes

from .png import TAXONOMY_CHUNK, colorize, png_paths, read_png, read_png_taxonomy, write_png
from .validate import ExportError, unknown_ids, validate_labels

__all__ = [
    "TAXONOMY_CHUNK",
    "ExportError",
    "atomic_path",
    "atomic_write_bytes",
    "colorize",
    "png_paths",
    "read_png",
    "read_png_taxonomy",
    "unknown_ids",
    "validate_labels",
    "write_png",
]
