"""Quality assurance during production: stratified QA samples and per-class batch reports.

Rare classes decide whether a model trained on the data is safe, yet uniform sampling barely
checks them. :func:`stratified_sample` samples each class at its own rate (rare classes more
often) and records why each image was chosen. :func:`qa_batch_report` scores a QA batch per class
and warns when the overall mean IoU looks healthy while a class is below the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from napari_segflow.core.quality.calibration import CalibrationReport, calibrate
from napari_segflow.core.quality.report_files import ReportFiles, csv_float
from napari_segflow.core.taxonomy import LabelClass, Taxonomy

__all__ = [
    "DEFAULT_RATES",
    "QABatchReport",
    "QASample",
    "SampledImage",
    "class_frequencies",
    "qa_batch_report",
    "stratified_sample",
]

#: Default sampling rates: ``"common"`` and ``"rare"`` apply by the frequency cut, class names
#: given explicitly override them.
DEFAULT_RATES: dict[str, float] = {"common": 0.15, "rare": 0.30}


def class_frequencies(
    labels: Mapping[str, np.ndarray], taxonomy: Taxonomy
) -> dict[str, dict[str, int]]:
    """``{image: {class name: pixel count}}`` for the classes present in each label image.

    Examples
    --------
    >>> from napari_segflow.core.taxonomy import load_preset
    >>> class_frequencies({"a": np.array([[0, 1], [1, 2]])}, load_preset("nuclei"))
    {'a': {'nucleus': 2, 'debris': 1}}
    """
    out: dict[str, dict[str, int]] = {}
    for name, arr in labels.items():
        arr = np.asarray(arr)
        ids, counts = np.unique(arr, return_counts=True)
        found = dict(zip(ids.tolist(), counts.tolist(), strict=True))
        out[name] = {c.name: int(found[c.id]) for c in taxonomy.classes if found.get(c.id)}
    return out


@dataclass(frozen=True)
class SampledImage:
    """An image chosen for QA and the reasons it was chosen (one per class that drew it)."""

    name: str
    reasons: tuple[str, ...]
    classes: tuple[str, ...]


@dataclass
class QASample(ReportFiles):
    """Result of :func:`stratified_sample`.

    Attributes
    ----------
    images : list of SampledImage
        The chosen images, sorted by name.
    rates : dict
        ``{class: sampling rate used}``.
    class_frequency : dict
        ``{class: dataset frequency}`` (pixel share or image share, see ``frequency``).
    rare_classes : list of str
    seed : int
    frequency : str
    n_images : int
        Size of the dataset the sample was drawn from.
    """

    images: list[SampledImage]
    rates: dict[str, float]
    class_frequency: dict[str, float]
    rare_classes: list[str]
    seed: int
    frequency: str
    n_images: int

    file_stem: ClassVar[str] = "qa_sample"
    file_kinds: ClassVar[tuple[str, ...]] = ("json", "csv")

    @property
    def names(self) -> list[str]:
        return [im.name for im in self.images]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "frequency": self.frequency,
            "n_images": self.n_images,
            "rare_classes": self.rare_classes,
            "rates": self.rates,
            "class_frequency": {c: round(v, 8) for c, v in self.class_frequency.items()},
            "images": [
                {"name": im.name, "reasons": list(im.reasons), "classes": list(im.classes)}
                for im in self.images
            ],
        }

    def csv_table(self) -> tuple[list[str], list[list[Any]]]:
        """One row per sampled image: its name, why it was drawn, the classes it holds."""
        rows = [[im.name, "; ".join(im.reasons), ";".join(im.classes)] for im in self.images]
        return ["image", "reasons", "classes"], rows


def stratified_sample(
    dataset_class_frequencies: Mapping[str, Mapping[str, float]],
    *,
    rates: Mapping[str, float] | None = None,
    rare_threshold: float = 0.05,
    seed: int = 0,
    frequency: str = "pixels",
) -> QASample:
    """Choose a reproducible QA sample in which each class is checked at its own rate.

    Parameters
    ----------
    dataset_class_frequencies : mapping
        ``{image: {class: amount}}``: pixel counts (or fractions) of each class in each image,
        as :func:`class_frequencies` returns. Classes with amount 0 are absent from that image.
    rates : mapping, optional
        Sampling rates in 0..1. Keys ``"rare"`` and ``"common"`` set the rate by the frequency
        cut; a class name sets that class's rate explicitly. Default ``{"common": 0.15,
        "rare": 0.30}``. Images that contain no class are sampled at the common rate.
    rare_threshold : float
        The frequency cut: a class whose dataset frequency is below this is rare.
    seed : int
        Same inputs and seed give the same sample.
    frequency : {"pixels", "images"}
        Dataset frequency of a class: its share of all class pixels, or the share of images
        that contain it.

    Returns
    -------
    QASample
        For every class ``c`` with rate ``r`` present in ``n`` images, ``ceil(r * n)`` of those
        images are drawn; an image drawn for several classes lists every reason.

    Examples
    --------
    >>> freqs = {f"im{i}": {"road": 100} for i in range(10)}
    >>> freqs["im3"]["pedestrian"] = 2
    >>> s = stratified_sample(freqs, rates={"common": 0.2, "rare": 1.0}, rare_threshold=0.05)
    >>> "im3" in s.names, len(s.images) <= 3
    (True, True)
    >>> [r for im in s.images if im.name == "im3" for r in im.reasons if "pedestrian" in r]
    ['pedestrian: rare (frequency 0.0020 < 0.05), rate 1.00, 1 of 1 images']
    """
    if frequency not in ("pixels", "images"):
        raise ValueError(f"frequency must be 'pixels' or 'images', got {frequency!r}")
    all_rates = dict(DEFAULT_RATES)
    all_rates.update(rates or {})
    for key, r in all_rates.items():
        if not 0 <= float(r) <= 1:
            raise ValueError(f"rate for {key!r} must be in 0..1, got {r}")
    images = sorted(dataset_class_frequencies)
    present: dict[str, list[str]] = {}
    pixels: dict[str, float] = {}
    for img in images:
        for cls, amount in dataset_class_frequencies[img].items():
            if amount < 0:
                raise ValueError(f"{img}: negative amount {amount} for class {cls!r}")
            if amount > 0:
                present.setdefault(cls, []).append(img)
                pixels[cls] = pixels.get(cls, 0.0) + float(amount)
    total_pixels = sum(pixels.values())
    freq: dict[str, float] = {}
    for cls in sorted(present):
        if frequency == "pixels":
            freq[cls] = pixels[cls] / total_pixels if total_pixels else 0.0
        else:
            freq[cls] = len(present[cls]) / len(images)
    rare = [c for c in freq if freq[c] < rare_threshold]

    rng = np.random.default_rng(seed)
    reasons: dict[str, list[str]] = {}
    used_rates: dict[str, float] = {}
    for cls in sorted(present):
        is_rare = cls in rare
        if cls in all_rates:
            r = float(all_rates[cls])
            why = "rate set for this class"
        elif is_rare:
            r = float(all_rates["rare"])
            why = f"rare (frequency {freq[cls]:.4f} < {rare_threshold:g})"
        else:
            r = float(all_rates["common"])
            why = f"common (frequency {freq[cls]:.4f} >= {rare_threshold:g})"
        used_rates[cls] = r
        pool = present[cls]
        k = math.ceil(r * len(pool))
        chosen = rng.choice(len(pool), size=k, replace=False) if k else []
        for i in sorted(int(j) for j in chosen):
            reasons.setdefault(pool[i], []).append(
                f"{cls}: {why}, rate {r:.2f}, {k} of {len(pool)} images"
            )
    empty = [
        img for img in images if not any(v > 0 for v in dataset_class_frequencies[img].values())
    ]
    if empty:
        r = float(all_rates["common"])
        k = math.ceil(r * len(empty))
        for i in sorted(int(j) for j in rng.choice(len(empty), size=k, replace=False)):
            reasons.setdefault(empty[i], []).append(
                f"no class present: common rate {r:.2f}, {k} of {len(empty)} images"
            )
    chosen_images = [
        SampledImage(
            name=img,
            reasons=tuple(reasons[img]),
            classes=tuple(
                c
                for c in sorted(dataset_class_frequencies[img])
                if dataset_class_frequencies[img][c] > 0
            ),
        )
        for img in sorted(reasons)
    ]
    return QASample(
        images=chosen_images,
        rates=used_rates,
        class_frequency=freq,
        rare_classes=rare,
        seed=int(seed),
        frequency=frequency,
        n_images=len(images),
    )


# ---------------------------------------------------------------------------- batch report
@dataclass
class QABatchReport(ReportFiles):
    """Result of :func:`qa_batch_report`.

    Attributes
    ----------
    classes : list of str
    per_class_iou : dict
        ``{class: dataset-level IoU over the batch}`` (NaN where absent).
    per_class_boundary_iou : dict
    mean_iou : float
        Dataset-level mean IoU over present classes.
    per_image_mean_iou : dict
        ``{image: mean IoU of that image alone}``.
    per_image_mean_iou_mean : float
        Average of ``per_image_mean_iou`` (a different number from ``mean_iou``).
    threshold : float
    below_threshold : list of str
        Classes whose IoU is below the threshold.
    warnings : list of str
    images : list of str
    problems : list of str
    """

    classes: list[str]
    per_class_iou: dict[str, float]
    per_class_boundary_iou: dict[str, float]
    mean_iou: float
    per_image_mean_iou: dict[str, float]
    per_image_mean_iou_mean: float
    threshold: float
    below_threshold: list[str]
    warnings: list[str]
    images: list[str]
    problems: list[str] = field(default_factory=list)

    file_stem: ClassVar[str] = "qa_report"

    def to_dict(self) -> dict[str, Any]:
        def num(v: float) -> float | None:
            return None if math.isnan(v) else round(float(v), 6)

        return {
            "threshold": self.threshold,
            "classes": self.classes,
            "per_class_iou": {c: num(v) for c, v in self.per_class_iou.items()},
            "per_class_boundary_iou": {c: num(v) for c, v in self.per_class_boundary_iou.items()},
            "mean_iou": num(self.mean_iou),
            "per_image_mean_iou": {k: num(v) for k, v in self.per_image_mean_iou.items()},
            "per_image_mean_iou_mean": num(self.per_image_mean_iou_mean),
            "below_threshold": self.below_threshold,
            "warnings": self.warnings,
            "images": self.images,
            "problems": self.problems,
        }

    def csv_table(self) -> tuple[list[str], list[list[Any]]]:
        """One row per class: IoU, boundary IoU, below-threshold flag."""
        header = ["class", "iou", "boundary_iou", "below_threshold"]
        rows = [
            [
                c,
                csv_float(self.per_class_iou[c]),
                csv_float(self.per_class_boundary_iou[c]),
                int(c in self.below_threshold),
            ]
            for c in self.classes
        ]
        return header, rows

    def html_page(self) -> str:
        """A self-contained HTML page with the per-class table and bar chart."""
        from napari_segflow.core.quality.report_html import qa_html

        return qa_html(self)


def _taxonomy_from_values(arrays: list[np.ndarray]) -> Taxonomy:
    ids = sorted(set().union(*(np.unique(a).tolist() for a in arrays)))
    if any(i < 0 for i in ids):
        raise ValueError("label values must be non-negative without a taxonomy")
    return Taxonomy("from-labels", tuple(LabelClass(int(i), str(i), (0, 0, 0)) for i in ids))


def qa_batch_report(
    gold: Mapping[str, np.ndarray],
    annotated: Mapping[str, np.ndarray],
    *,
    taxonomy: Taxonomy | None = None,
    threshold: float = 0.75,
    dilation_ratio: float | None = 0.02,
    report: CalibrationReport | None = None,
) -> QABatchReport:
    """Per-class IoU of a QA batch, with warnings a mean IoU alone would hide.

    Parameters
    ----------
    gold, annotated : mapping
        ``{image: label array}``; images are paired by name.
    taxonomy : Taxonomy, optional
        Classes and ignore id. Without one every value present is a class named by its id.
    threshold : float
        A class below this IoU is reported; if the mean IoU is at or above it at the same
        time, a warning says the aggregate hides a failing class.
    dilation_ratio : float or None
        Boundary IoU band (fraction of the diagonal); ``None`` skips boundary IoU.
    report : CalibrationReport, optional
        Scores already computed for the batch as annotator ``"batch"`` (e.g. in parallel by
        :func:`napari_segflow.core.quality.batch_metrics.calibrate_files`); ``gold``/``annotated``
        are then not read.
    """
    if report is not None:
        return _qa_from_calibration(report, threshold)
    if taxonomy is None:
        taxonomy = _taxonomy_from_values(
            [np.asarray(a) for a in [*gold.values(), *annotated.values()]]
        )
    rep = calibrate(
        gold,
        {"batch": annotated},
        taxonomy=taxonomy,
        threshold=threshold,
        dilation_ratio=dilation_ratio,
    )
    return _qa_from_calibration(rep, threshold)


def _qa_from_calibration(rep: CalibrationReport, threshold: float) -> QABatchReport:
    per_class = {c: float(rep.iou[0, k]) for k, c in enumerate(rep.classes)}
    boundary = {c: float(rep.boundary_iou[0, k]) for k, c in enumerate(rep.classes)}
    mean = float(rep.mean_iou[0])
    below = [c for c, v in per_class.items() if not math.isnan(v) and v < threshold]
    warnings: list[str] = []
    if not math.isnan(mean) and mean >= threshold and below:
        for c in below:
            warnings.append(
                f"mean IoU {mean:.3f} looks healthy, but class {c!r} is at IoU "
                f"{per_class[c]:.3f} < {threshold:.2f}"
            )
    elif not math.isnan(mean) and mean < threshold:
        warnings.append(
            f"mean IoU {mean:.3f} is below {threshold:.2f}; classes below: {', '.join(below)}"
        )
    per_image = rep.per_image_mean_iou["batch"]
    values = np.array(list(per_image.values()), dtype=float)
    values = values[~np.isnan(values)]
    return QABatchReport(
        classes=rep.classes,
        per_class_iou=per_class,
        per_class_boundary_iou=boundary,
        mean_iou=mean,
        per_image_mean_iou=dict(per_image),
        per_image_mean_iou_mean=float(values.mean()) if values.size else math.nan,
        threshold=float(threshold),
        below_threshold=below,
        warnings=warnings,
        images=rep.images["batch"],
        problems=rep.problems,
    )
