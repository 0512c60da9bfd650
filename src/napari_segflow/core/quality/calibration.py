"""Annotator calibration against a gold set, and the AI pre-label gate.

Before production every annotator labels the same reference images. :func:`calibrate` scores each
annotator per class against the gold masks (dataset-level IoU and boundary IoU), flags the
(annotator, class) pairs below the threshold, compares annotators with each other and builds a
per-image disagreement map. :func:`ai_prelabel_gate` does the same for a model's pre-labels and
turns AI assistance off for classes the model does badly.

Label values follow the taxonomy: class ids are classes, the taxonomy's ``ignore_id`` in the gold
mask is "don't care", any other value (e.g. an unlabelled background 0) is "no class". An
annotator's pixel with no class where the gold has one counts as a miss.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from napari_segflow.core.quality.metrics import (
    boundary_iou_counts,
    confusion_matrix,
    iou_from_confusion,
)
from napari_segflow.core.quality.report_files import ReportFiles, csv_float
from napari_segflow.core.taxonomy import Taxonomy

__all__ = [
    "AI_GATE_THRESHOLD",
    "PRESENT_CLASSES_ABOVE",
    "AIGateResult",
    "CalibrationReport",
    "ai_prelabel_gate",
    "calibrate",
    "class_indices",
    "disagreement_map",
    "prelabels_from_gold_boxes",
    "present_taxonomy",
]

#: Classes whose pre-label IoU against gold is below this get ``ai_assist: false``.
AI_GATE_THRESHOLD = 0.70


def class_indices(labels: np.ndarray, taxonomy: Taxonomy, *, gold: bool = False) -> np.ndarray:
    """Map class ids to indices ``0..K-1`` in taxonomy order; other values to ``K``.

    With ``gold=True`` the taxonomy's ``ignore_id`` maps to ``K + 1`` ("don't care").

    Examples
    --------
    >>> from napari_segflow.core.taxonomy import load_preset
    >>> tax = load_preset("nuclei")     # classes 1 nucleus, 2 debris; 0 unlabelled
    >>> class_indices(np.array([0, 1, 2, 7]), tax)
    array([2, 0, 1, 2], dtype=uint8)
    """
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iub":
        raise ValueError(f"labels must hold integers, got dtype {labels.dtype}")
    k = len(taxonomy.classes)
    # indices go up to k + 1 (the ignore entry): 65,535 classes plus ignore need 32 bits
    dtype = np.uint8 if k + 1 <= 255 else np.uint16 if k + 1 <= 65535 else np.uint32
    top = taxonomy.max_id + 1
    lut = np.full(top + 1, k, dtype=dtype)  # the last entry stands for every larger value
    for i, cid in enumerate(taxonomy.ids):
        lut[cid] = i
    if gold and taxonomy.ignore_id is not None:
        lut[taxonomy.ignore_id] = k + 1
    if labels.size == 0:
        return np.zeros(labels.shape, dtype=dtype)
    lo, hi = labels.min(), labels.max()
    # values outside the taxonomy (e.g. instance ids) fold into the "no class" entry
    if hi > top:
        labels = np.minimum(labels, top)
    if lo < 0:
        labels = np.where(labels < 0, top, labels)
    return lut[labels]


def _scores(
    gold_idx: np.ndarray, ann_idx: np.ndarray, k: int, dilation_ratio: float | None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Confusion matrix over K classes + "none", and boundary counts of the K classes."""
    cm = confusion_matrix(gold_idx, ann_idx, n_classes=k + 1, ignore_index=k + 1)
    if dilation_ratio is None:
        return cm, None, None
    # n_classes=k: the "no class" index k needs no band of its own
    inter, union = boundary_iou_counts(
        gold_idx, ann_idx, n_classes=k, dilation_ratio=dilation_ratio, ignore_index=k + 1
    )
    return cm, inter, union


def _ratio(inter: np.ndarray, union: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.maximum(union, 1), np.nan)


def _nanmean(values: np.ndarray) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else math.nan


def _num(x: float) -> float | None:
    """JSON number or ``null`` for NaN."""
    return None if x is None or math.isnan(x) else round(float(x), 6)


def disagreement_map(annotations: list[np.ndarray]) -> np.ndarray:
    """Per pixel, how many annotators differ from the most common label there (0 = all agree).

    Examples
    --------
    >>> a = np.array([1, 1, 2]); b = np.array([1, 2, 2]); c = np.array([1, 3, 0])
    >>> disagreement_map([a, b, c])
    array([0, 2, 1], dtype=uint8)
    """
    if not annotations:
        raise ValueError("disagreement_map needs at least one annotation")
    stack = np.stack([np.asarray(a) for a in annotations])
    n = stack.shape[0]
    best = np.zeros(stack.shape[1:], dtype=np.uint8)
    for i in range(n):
        same = np.zeros(stack.shape[1:], dtype=np.uint8)
        for j in range(n):
            same += stack[j] == stack[i]
        np.maximum(best, same, out=best)
    return (n - best).astype(np.uint8)


@dataclass
class CalibrationReport(ReportFiles):
    """Result of :func:`calibrate`.

    Attributes
    ----------
    threshold : float
    classes : list of str
        Class names in taxonomy order (the columns of the arrays below).
    class_ids : list of int
    annotators : list of str
        Annotator names (the rows).
    iou : (n_annotators, n_classes) float array
        Dataset-level IoU (intersections and unions summed over images); NaN where the class is
        in neither gold nor annotation.
    boundary_iou : (n_annotators, n_classes) float array
        Dataset-level boundary IoU.
    mean_iou : (n_annotators,) float array
        Mean of each row of ``iou`` over present classes.
    per_image_mean_iou : dict
        ``{annotator: {image: mean IoU of that image}}``, reported separately from the
        dataset-level numbers.
    flagged : list of (annotator, class) tuples
        Pairs with IoU below ``threshold``: retrain that annotator on that class.
    pairwise_mean_iou : (n_annotators, n_annotators) float array
        Mean IoU between each two annotators over the images both labelled (diagonal 1).
    disagreement : dict
        ``{image: uint8 array}`` from :func:`disagreement_map` over the annotators of that image.
    images : dict
        ``{annotator: [image names scored]}``.
    problems : list of str
        Images left out, and why (missing, shape mismatch).
    """

    threshold: float
    classes: list[str]
    class_ids: list[int]
    annotators: list[str]
    iou: np.ndarray
    boundary_iou: np.ndarray
    mean_iou: np.ndarray
    per_image_mean_iou: dict[str, dict[str, float]]
    flagged: list[tuple[str, str]]
    pairwise_mean_iou: np.ndarray
    disagreement: dict[str, np.ndarray] = field(default_factory=dict)
    images: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    file_stem: ClassVar[str] = "report"

    # ------------------------------------------------------------------ outputs
    def to_dict(self) -> dict[str, Any]:
        """The ``report.json`` document (the schema other tooling reads)."""
        annotators: dict[str, Any] = {}
        for a, name in enumerate(self.annotators):
            annotators[name] = {
                "per_class_iou": {c: _num(self.iou[a, k]) for k, c in enumerate(self.classes)},
                "per_class_boundary_iou": {
                    c: _num(self.boundary_iou[a, k]) for k, c in enumerate(self.classes)
                },
                "mean_iou": _num(self.mean_iou[a]),
                "flagged": [c for who, c in self.flagged if who == name],
            }
        pairwise = {
            a: {
                b: _num(self.pairwise_mean_iou[i, j])
                for j, b in enumerate(self.annotators)
                if j != i
            }
            for i, a in enumerate(self.annotators)
        }
        return {
            "threshold": self.threshold,
            "classes": list(self.classes),
            "annotators": annotators,
            "pairwise_mean_iou": pairwise,
        }

    def csv_table(self) -> tuple[list[str], list[list[Any]]]:
        """One row per annotator x class: IoU, boundary IoU, flag."""
        header = ["annotator", "class_id", "class", "iou", "boundary_iou", "flagged"]
        flagged = set(self.flagged)
        rows = [
            [
                name,
                self.class_ids[k],
                cname,
                csv_float(self.iou[a, k]),
                csv_float(self.boundary_iou[a, k]),
                int((name, cname) in flagged),
            ]
            for a, name in enumerate(self.annotators)
            for k, cname in enumerate(self.classes)
        ]
        return header, rows

    def html_page(self) -> str:
        """A self-contained HTML page (figures embedded as PNG) with the tables and plots."""
        from napari_segflow.core.quality.report_html import calibration_html

        return calibration_html(self)


#: Above this many classes calibration runs over (and reports) only the classes present in
#: the gold set or any annotation: its confusion matrices grow with the square of the class
#: count (20,000 classes would take gigabytes), and an absent class has no IoU anyway.
PRESENT_CLASSES_ABOVE = 256


def present_taxonomy(taxonomy: Taxonomy, arrays: Iterable[np.ndarray]) -> Taxonomy:
    """``taxonomy`` restricted to the class ids that occur in ``arrays`` (rules dropped).

    Examples
    --------
    >>> from napari_segflow.core.taxonomy import load_preset
    >>> present_taxonomy(load_preset("land-use"), [np.array([0, 4, 4])]).ids
    (4,)
    """
    present: set[int] = set()
    for a in arrays:
        present.update(int(v) for v in np.unique(np.asarray(a)))
    classes = tuple(c for c in taxonomy.classes if c.id in present) or taxonomy.classes[:1]
    return dataclasses.replace(taxonomy, classes=classes, rules=())


def calibrate(
    gold: Mapping[str, np.ndarray],
    annotations: Mapping[str, Mapping[str, np.ndarray]],
    *,
    taxonomy: Taxonomy,
    threshold: float = 0.75,
    dilation_ratio: float | None = 0.02,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> CalibrationReport:
    """Score every annotator against the gold set, class by class.

    Parameters
    ----------
    gold : mapping
        ``{image name: label array}``, the reference masks.
    annotations : mapping
        ``{annotator: {image name: label array}}``. Images missing from the gold set, or whose
        shape differs from it, are left out and listed in ``report.problems``.
    taxonomy : Taxonomy
        Gives the classes (order of the report) and the gold ``ignore_id``.
    threshold : float
        Flag (annotator, class) pairs whose dataset-level IoU is below this.
    dilation_ratio : float or None
        Boundary band width for boundary IoU, as a fraction of the image diagonal; ``None``
        skips boundary IoU (reported as NaN), which is much faster on volumes.
    progress : callable, optional
        ``progress(done, total)`` after each image.
    cancel : callable, optional
        Returning True stops the run with ``InterruptedError``.

    Returns
    -------
    CalibrationReport
    """
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be in 0..1, got {threshold}")
    if not gold:
        raise ValueError("the gold set is empty")
    if not annotations:
        raise ValueError("no annotators to calibrate")
    if len(taxonomy.classes) > PRESENT_CLASSES_ABOVE:
        arrays = [*gold.values()]
        for ann in annotations.values():
            if isinstance(ann, Mapping):
                arrays += list(ann.values())
        taxonomy = present_taxonomy(taxonomy, arrays)
    k = len(taxonomy.classes)
    names = list(annotations)
    problems: list[str] = []
    gold_idx = {img: class_indices(arr, taxonomy, gold=True) for img, arr in gold.items()}

    # which images each annotator can be scored on
    usable: dict[str, dict[str, np.ndarray]] = {}
    for name in names:
        if not isinstance(annotations[name], Mapping):
            raise ValueError(f"annotations[{name!r}] must map image names to label arrays")
        usable[name] = {}
        for img, arr in annotations[name].items():
            if img not in gold_idx:
                problems.append(f"{name}: {img}: no gold image of that name")
                continue
            arr = np.asarray(arr)
            if arr.shape != gold_idx[img].shape:
                problems.append(
                    f"{name}: {img}: shape {arr.shape} differs from gold {gold_idx[img].shape}"
                )
                continue
            usable[name][img] = class_indices(arr, taxonomy)
        for img in gold_idx:
            if img not in annotations[name]:
                problems.append(f"{name}: {img}: missing")

    n_a = len(names)
    cms = np.zeros((n_a, k + 1, k + 1), dtype=np.int64)
    b_inter = np.zeros((n_a, k), dtype=np.int64)
    b_union = np.zeros((n_a, k), dtype=np.int64)
    per_image: dict[str, dict[str, float]] = {name: {} for name in names}
    pair_cms = np.zeros((n_a, n_a, k + 1, k + 1), dtype=np.int64)
    disagreement: dict[str, np.ndarray] = {}

    images = list(gold_idx)
    for done, img in enumerate(images):
        if cancel is not None and cancel():
            raise InterruptedError("calibration cancelled")
        g = gold_idx[img]
        have = [a for a, name in enumerate(names) if img in usable[name]]
        for a in have:
            ann = usable[names[a]][img]
            cm, inter, union = _scores(g, ann, k, dilation_ratio)
            cms[a] += cm
            if inter is not None:
                b_inter[a] += inter
                b_union[a] += union
            per_image[names[a]][img] = _nanmean(iou_from_confusion(cm)[:k])
        # annotator vs annotator, on pixels the gold does not mark "don't care"
        for i, a in enumerate(have):
            for b in have[i + 1 :]:
                left = usable[names[a]][img].copy()
                left[g == k + 1] = k + 1
                cm = confusion_matrix(
                    left, usable[names[b]][img], n_classes=k + 1, ignore_index=k + 1
                )
                pair_cms[a, b] += cm
                pair_cms[b, a] += cm.T
        if have:
            disagreement[img] = disagreement_map([usable[names[a]][img] for a in have])
        if progress is not None:
            progress(done + 1, len(images))

    return _report_from_counts(
        cms,
        b_inter,
        b_union,
        pair_cms,
        names=names,
        taxonomy=taxonomy,
        threshold=threshold,
        dilation_ratio=dilation_ratio,
        per_image=per_image,
        disagreement=disagreement,
        images={name: sorted(usable[name]) for name in names},
        problems=problems,
    )


def _report_from_counts(
    cms,
    b_inter,
    b_union,
    pair_cms,
    *,
    names,
    taxonomy: Taxonomy,
    threshold: float,
    dilation_ratio: float | None,
    per_image,
    disagreement,
    images,
    problems,
) -> CalibrationReport:
    """Finish a report from counts summed over the images (serial or on a cluster).

    ``cms[a]`` is annotator ``a``'s confusion matrix against gold, ``b_inter``/``b_union`` its
    boundary intersections and unions per class, ``pair_cms[a, b]`` the matrix between two
    annotators.
    """
    n_a, k = len(names), len(taxonomy.classes)
    iou = np.vstack([iou_from_confusion(cms[a])[:k] for a in range(n_a)])
    biou = _ratio(b_inter, b_union) if dilation_ratio is not None else np.full((n_a, k), np.nan)
    mean = np.array([_nanmean(iou[a]) for a in range(n_a)])
    pairwise = np.full((n_a, n_a), np.nan)
    for a in range(n_a):
        pairwise[a, a] = 1.0
        for b in range(n_a):
            if a != b and pair_cms[a, b].sum():
                pairwise[a, b] = _nanmean(iou_from_confusion(pair_cms[a, b])[:k])
    flagged = [
        (names[a], taxonomy.classes[c].name)
        for a in range(n_a)
        for c in range(k)
        if not math.isnan(iou[a, c]) and iou[a, c] < threshold
    ]
    return CalibrationReport(
        threshold=float(threshold),
        classes=list(taxonomy.names),
        class_ids=list(taxonomy.ids),
        annotators=list(names),
        iou=iou,
        boundary_iou=biou,
        mean_iou=mean,
        per_image_mean_iou=per_image,
        flagged=flagged,
        pairwise_mean_iou=pairwise,
        disagreement=disagreement,
        images=images,
        problems=problems,
    )


# ---------------------------------------------------------------------------- AI gate
@dataclass(frozen=True)
class AIGateResult:
    """Result of :func:`ai_prelabel_gate`.

    Attributes
    ----------
    per_class_iou : dict
        ``{class name: dataset-level IoU of the pre-labels, or NaN}``.
    disabled : list of str
        Classes whose IoU is below the threshold: AI assistance is turned off for them.
    taxonomy : Taxonomy
        A copy of the input taxonomy with ``ai_assist`` false for ``disabled`` classes.
    threshold : float
    """

    per_class_iou: dict[str, float]
    disabled: list[str]
    taxonomy: Taxonomy
    threshold: float


def ai_prelabel_gate(
    gold: Mapping[str, np.ndarray],
    prelabels: Mapping[str, np.ndarray],
    *,
    taxonomy: Taxonomy,
    threshold: float = AI_GATE_THRESHOLD,
    report: CalibrationReport | None = None,
) -> AIGateResult:
    """Decide per class whether model pre-labels are good enough to offer to annotators.

    Classes with dataset-level IoU of the pre-labels against gold below ``threshold`` get
    ``ai_assist: false`` in the returned taxonomy copy. A class absent from both keeps its
    current setting (there is no evidence either way). The input taxonomy is not changed.
    ``report``: the pre-labels' scores already computed (first annotator row is used).
    """
    if report is None:
        report = calibrate(
            gold, {"model": prelabels}, taxonomy=taxonomy, threshold=threshold, dilation_ratio=None
        )
    ious = {c: float(report.iou[0, k]) for k, c in enumerate(report.classes)}
    disabled = [c for c, v in ious.items() if not math.isnan(v) and v < threshold]
    new_tax = taxonomy.with_ai_assist({c: False for c in disabled})
    return AIGateResult(ious, disabled, new_tax, float(threshold))


def prelabels_from_gold_boxes(
    images: Mapping[str, np.ndarray],
    gold: Mapping[str, np.ndarray],
    model: Any,
    *,
    taxonomy: Taxonomy,
    min_pixels: int = 1,
) -> dict[str, np.ndarray]:
    """Pre-label each gold image with a promptable model, one box prompt per gold region.

    Each connected region of each class in the gold mask gives a box (its bounding box, in
    napari (row, col) coordinates, inclusive); the model's mask for that box is painted with
    the class. Later regions paint over earlier ones where masks overlap.

    Parameters
    ----------
    images : mapping
        ``{name: (H, W) or (H, W, C) image}`` matching the 2D gold masks.
    gold : mapping
        ``{name: (H, W) label array}``.
    model : object
        Anything with ``embed(image)`` and ``predict(embedding, box=(r0, c0, r1, c1))``
        returning a result with a boolean ``mask`` (the engine's model API).
    taxonomy : Taxonomy
    min_pixels : int
        Regions smaller than this are skipped.

    Returns
    -------
    dict
        ``{name: label array}`` with the taxonomy's unlabelled id where the model drew nothing.
    """
    from scipy import ndimage

    fill = taxonomy.unlabeled_id if taxonomy.unlabeled_id is not None else 0
    out: dict[str, np.ndarray] = {}
    for name, g in gold.items():
        g = np.asarray(g)
        if g.ndim != 2:
            raise ValueError(f"{name}: box pre-labels need 2D masks, got shape {g.shape}")
        if name not in images:
            raise ValueError(f"{name}: no image for this gold mask")
        image = np.asarray(images[name])
        if image.shape[:2] != g.shape:
            raise ValueError(f"{name}: image {image.shape} does not match mask {g.shape}")
        emb = model.embed(image)
        pred = np.full(g.shape, fill, dtype=g.dtype)
        for cid in taxonomy.ids:
            regions, count = ndimage.label(g == cid)
            if not count:
                continue
            for region, box in enumerate(ndimage.find_objects(regions), start=1):
                if box is None or np.count_nonzero(regions[box] == region) < min_pixels:
                    continue
                r0, c0 = box[0].start, box[1].start
                r1, c1 = box[0].stop - 1, box[1].stop - 1
                res = model.predict(emb, box=(r0, c0, r1, c1))
                pred[np.asarray(res.mask, dtype=bool)] = cid
        out[name] = pred
    return out
