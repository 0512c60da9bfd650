"""Stage 2 of the workflow at dataset scale: coarse labels and prompts become AI-pending pre-labels.

``prompts`` reads prompt sources (coarse label images, COCO files, prompt JSON), ``refine``
turns each coarse region into a pixel-accurate proposal with a promptable model, ``volume`` does
the same slice by slice through NIfTI/TIFF volumes, ``evaluate`` scores refinement against a
reference, and ``batch`` runs a folder of images (serial or on Dask), resumable.
"""

from napari_segflow.core.prelabel.refine import (
    ObjectPrompt,
    ObjectResult,
    PrelabelResult,
    RefineOptions,
    band_mask,
    coarse_mask_logits,
    mask_iou,
    objects_from_labels,
    prelabel_image,
)

__all__ = [
    "ObjectPrompt",
    "ObjectResult",
    "PrelabelResult",
    "RefineOptions",
    "band_mask",
    "coarse_mask_logits",
    "mask_iou",
    "objects_from_labels",
    "prelabel_image",
]
