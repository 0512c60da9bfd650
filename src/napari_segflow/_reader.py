"""npe2 reader callables: thin wrappers over :mod:`napari_segflow.core.io`."""

from __future__ import annotations

from pathlib import Path

from .core.io import read_png, read_png_taxonomy
from .layers import labels_layer_kwargs

_CITYSCAPES_SUFFIXES = ("_labelIds.png", "_labelTrainIds.png")


def get_png_labels_reader(path):
    """Reader for class-index PNGs written by segflow (or Cityscapes ``*_labelIds.png``).

    Returns ``None`` for other PNGs so napari's own image reader handles them.
    """
    if not isinstance(path, str) or not path.lower().endswith(".png"):
        return None
    taxonomy = read_png_taxonomy(path)
    if taxonomy is None and not path.endswith(_CITYSCAPES_SUFFIXES):
        return None

    def _read(p):
        data = read_png(p)
        kwargs = labels_layer_kwargs(taxonomy) if taxonomy is not None else {}
        kwargs["name"] = Path(p).stem
        return [(data, kwargs, "labels")]

    return _read
