"""Stage 1 of the workflow: the project's classes and the written rules for their boundaries.

``classes`` holds the taxonomy model (classes, colours, conflict rules, YAML/JSON files and the
shipped presets); ``rules`` finds where classes touch in a label map and which touching pairs
still lack a written rule.
"""

from napari_segflow.core.taxonomy.classes import (
    MAX_CLASS_ID,
    ConflictRule,
    LabelClass,
    Taxonomy,
    TaxonomyError,
    class_pixel_counts,
    list_presets,
    load_preset,
    load_taxonomy,
    parse_color,
    save_taxonomy,
    taxonomy_from_dict,
)

__all__ = [
    "MAX_CLASS_ID",
    "ConflictRule",
    "LabelClass",
    "Taxonomy",
    "TaxonomyError",
    "class_pixel_counts",
    "list_presets",
    "load_preset",
    "load_taxonomy",
    "parse_color",
    "save_taxonomy",
    "taxonomy_from_dict",
]
