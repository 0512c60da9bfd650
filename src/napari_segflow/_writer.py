"""npe2 writer callables: thin wrappers over :mod:`napari_segflow.core.io`."""

from __future__ import annotations

from .core.io import write_png
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
