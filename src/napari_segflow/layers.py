"""napari model-side helpers (no Qt): taxonomy on Labels layers, kwargs for new layers.

Widgets, readers and sample data all go through these functions, so a Labels layer looks the same
(colours, class names in the status bar, taxonomy in metadata) whichever way it was made.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .core.taxonomy import Taxonomy, taxonomy_from_dict

__all__ = [
    "TAXONOMY_KEY",
    "apply_taxonomy",
    "get_taxonomy",
    "labels_dtype",
    "labels_layer_kwargs",
    "new_labels_data",
]

#: Key under which a Labels layer's ``metadata`` holds its taxonomy (as a plain dict).
TAXONOMY_KEY = "segflow_taxonomy"


def labels_dtype(taxonomy: Taxonomy) -> np.dtype:
    """The smallest unsigned dtype that holds every id of ``taxonomy``."""
    return np.dtype(np.uint8 if taxonomy.max_id <= 255 else np.uint16)


def new_labels_data(shape: tuple[int, ...], taxonomy: Taxonomy) -> np.ndarray:
    """An unlabelled label array of ``shape`` (filled with the taxonomy's unlabelled id)."""
    fill = taxonomy.unlabeled_id or 0
    return np.full(shape, fill, dtype=labels_dtype(taxonomy))


def _colormap_dict(taxonomy: Taxonomy) -> dict[Any, tuple[float, float, float, float]]:
    colors: dict[Any, tuple[float, float, float, float]] = {None: (0.0, 0.0, 0.0, 0.0)}
    colors.update(taxonomy.color_dict())
    if taxonomy.unlabeled_id is not None:
        colors[taxonomy.unlabeled_id] = (0.0, 0.0, 0.0, 0.0)
    return colors


def _features(taxonomy: Taxonomy) -> dict[str, list]:
    return {
        "index": [c.id for c in taxonomy.classes],
        "class": [c.name for c in taxonomy.classes],
    }


def labels_layer_kwargs(taxonomy: Taxonomy, *, metadata: dict | None = None) -> dict[str, Any]:
    """Keyword arguments for ``napari.layers.Labels`` that carry ``taxonomy``.

    Usable in ``LayerData`` tuples returned by readers and sample-data functions.
    """
    from napari.utils.colormaps import DirectLabelColormap

    meta = dict(metadata or {})
    meta[TAXONOMY_KEY] = taxonomy.to_dict()
    cmap = DirectLabelColormap(
        color_dict=_colormap_dict(taxonomy), background_value=taxonomy.unlabeled_id or 0
    )
    return {"colormap": cmap, "features": _features(taxonomy), "metadata": meta}


def apply_taxonomy(layer, taxonomy: Taxonomy) -> None:
    """Give an existing Labels layer the taxonomy's colours, class names and metadata."""
    kwargs = labels_layer_kwargs(taxonomy, metadata=layer.metadata)
    layer.colormap = kwargs["colormap"]
    layer.features = kwargs["features"]
    layer.metadata = kwargs["metadata"]
    if taxonomy.classes and not taxonomy.has_id(layer.selected_label):
        layer.selected_label = taxonomy.classes[0].id


def get_taxonomy(layer) -> Taxonomy | None:
    """The taxonomy stored on ``layer`` by :func:`apply_taxonomy`, or ``None``."""
    data = getattr(layer, "metadata", {}).get(TAXONOMY_KEY)
    if data is None:
        return None
    if isinstance(data, Taxonomy):
        return data
    return taxonomy_from_dict(data, source=f"layer {getattr(layer, 'name', '?')!r} metadata")
