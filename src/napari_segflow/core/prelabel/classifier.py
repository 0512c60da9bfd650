"""Pre-labelling one image or volume with a trained :class:`~napari_segflow.core.learn.PixelClassifier`.

The batch runner (:mod:`napari_segflow.core.prelabel.batch`) reads the file and writes the
outputs; this module turns the classifier's prediction into pre-labels:

- only classes of the taxonomy with ``ai_assist`` true are pre-labelled (the AI gate's verdict);
- pixels whose confidence is below ``min_confidence`` stay unlabelled;
- every pre-labelled pixel is AI-pending in the provenance (an annotator must confirm it).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_segflow.core.provenance import AI_PENDING, new_provenance

__all__ = ["ClassifierPrelabel", "apply_prelabels", "load_classifier", "prelabel_with_classifier"]

_CACHE: dict[tuple, Any] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True, eq=False)
class ClassifierPrelabel:
    """Pre-labels of one image, in the shape the batch runner writes.

    Attributes
    ----------
    labels : ndarray
        Class ids; the taxonomy's unlabelled id where nothing was proposed.
    provenance : uint8 ndarray
        ``AI_PENDING`` on proposed pixels, ``HUMAN`` (0) elsewhere.
    pixels : dict
        ``{class name: proposed pixels}``.
    uncertain : int
        Pixels left unlabelled because their confidence was below the threshold.
    skipped_classes : list of str
        Classes the classifier knows whose ``ai_assist`` is false (never pre-labelled).
    min_confidence : float
    classifier : str
        The model file.
    class_ids : dict
        ``{class name: id}`` of the classes that were pre-labelled.
    flagged : list
        Always empty (the batch runner's report counts flagged objects).
    """

    labels: np.ndarray
    provenance: np.ndarray
    pixels: dict[str, int]
    uncertain: int
    skipped_classes: list[str]
    min_confidence: float
    classifier: str = ""
    class_ids: dict[str, int] = field(default_factory=dict)
    flagged: list = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """``{class name: connected regions proposed}`` (the batch summary's object counts)."""
        from scipy import ndimage as ndi

        return {
            name: int(ndi.label(self.labels == cid)[1]) for name, cid in self.class_ids.items()
        }

    def to_dict(self) -> dict:
        return {
            "method": "pixel-classifier",
            "classifier": self.classifier,
            "min_confidence": self.min_confidence,
            "pixels": dict(sorted(self.pixels.items())),
            "uncertain_pixels": self.uncertain,
            "skipped_classes": sorted(self.skipped_classes),
        }


def apply_prelabels(
    labels: np.ndarray,
    confidence: np.ndarray,
    *,
    taxonomy,
    min_confidence: float = 0.5,
    protected: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Which predicted pixels become pre-labels: ``(mask, proposed ids)``.

    A pixel is proposed when its class is in the taxonomy with ``ai_assist`` true, its
    confidence is at least ``min_confidence`` and it is not ``protected`` (human pixels).

    Examples
    --------
    >>> from napari_segflow.core.taxonomy import load_preset
    >>> tax = load_preset("nuclei").with_ai_assist({"debris": False})  # 1 nucleus, 2 debris
    >>> mask, _ = apply_prelabels(np.array([1, 1, 2, 0]), np.array([.9, .3, .9, .9]),
    ...                           taxonomy=tax, min_confidence=0.5)
    >>> mask.tolist()
    [True, False, False, False]
    """
    if not 0 <= min_confidence <= 1:
        raise ValueError(f"min_confidence must lie in [0, 1], got {min_confidence}")
    labels = np.asarray(labels)
    allowed = [c.id for c in taxonomy.classes if c.ai_assist]
    mask = np.isin(labels, allowed) & (np.asarray(confidence) >= min_confidence)
    if protected is not None:
        mask &= ~np.asarray(protected, dtype=bool)
    return mask, labels


def load_classifier(path: str | os.PathLike[str], *, taxonomy, model=None):
    """A classifier file loaded once per process (per file version and engine model)."""
    from napari_segflow.core.learn import PixelClassifier, taxonomy_fingerprint

    p = Path(path)
    try:
        stat = p.stat()
    except OSError as exc:
        raise ValueError(f"{p}: cannot read the classifier ({exc.strerror})") from None
    fp = taxonomy_fingerprint(taxonomy)
    key = (str(p.resolve()), stat.st_mtime_ns, stat.st_size, fp, id(model))
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = PixelClassifier.load(p, taxonomy=taxonomy, model=model)
        return _CACHE[key]


def prelabel_with_classifier(
    image: np.ndarray,
    model,
    *,
    classifier: str | os.PathLike[str],
    taxonomy,
    axis: int | None = None,
    min_confidence: float = 0.5,
) -> ClassifierPrelabel:
    """Pre-label one 2D image or volume with a classifier file.

    Parameters
    ----------
    image : ndarray
        A 2D image, or a volume when ``axis`` is given (the slice axis, file order).
    model : engine model
        Shared with the classifier for the encoder embeddings.
    classifier : path-like
        Model file from ``segflow learn train`` or :meth:`PixelClassifier.save`.
    taxonomy : Taxonomy
        Must be the classifier's; ``ai_assist`` false classes are not pre-labelled.
    axis : int, optional
        Slice axis of a volume (moved first for the classifier and back afterwards).
    min_confidence : float
        Pixels below this confidence stay unlabelled.
    """
    clf = load_classifier(classifier, taxonomy=taxonomy, model=model)
    arr = np.asarray(image)
    if axis is not None:
        if arr.ndim != 3:
            raise ValueError(f"expected a volume, got shape {arr.shape}")
        arr = np.moveaxis(arr, axis, 0)
    res = clf.predict(arr)
    mask, ids = apply_prelabels(
        res.labels, res.confidence, taxonomy=taxonomy, min_confidence=min_confidence
    )
    fill = taxonomy.unlabeled_id if taxonomy.unlabeled_id is not None else 0
    dtype = np.uint8 if taxonomy.max_id < 256 and fill < 256 else np.uint16
    labels = np.where(mask, ids, fill).astype(dtype)
    prov = new_provenance(labels.shape)
    prov[mask] = AI_PENDING
    known = {c.id: c for c in taxonomy.classes}
    classes = [known[int(c)] for c in clf.classes if int(c) in known]
    pixels = {c.name: int(np.count_nonzero(labels[mask] == c.id)) for c in classes if c.ai_assist}
    uncertain = int(np.count_nonzero(np.isin(res.labels, [c.id for c in classes]) & ~mask))
    if axis is not None:
        labels = np.moveaxis(labels, 0, axis)
        prov = np.moveaxis(prov, 0, axis)
    return ClassifierPrelabel(
        labels=np.ascontiguousarray(labels),
        provenance=np.ascontiguousarray(prov),
        pixels=pixels,
        uncertain=uncertain,
        skipped_classes=[c.name for c in classes if not c.ai_assist],
        min_confidence=float(min_confidence),
        classifier=str(classifier),
        class_ids={c.name: c.id for c in classes if c.ai_assist},
    )
