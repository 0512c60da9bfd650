"""Calibration and QA over a whole dataset in parallel: per-image counts on workers, summed.

:func:`calibrate_files` gives the same :class:`~napari_segflow.core.quality.calibration.CalibrationReport`
as :func:`~napari_segflow.core.quality.calibration.calibrate` on the same files, but each worker reads
its image's label files itself (from shared storage) and sends back only small count arrays
(confusion matrices, boundary intersections/unions) and the image's disagreement map; the client
sums them. Nothing but file paths is shipped to the workers.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_segflow.core.dask_client import dask_client
from napari_segflow.core.io.labels import label_files, read_labels, read_labels_like
from napari_segflow.core.quality.calibration import (
    PRESENT_CLASSES_ABOVE,
    CalibrationReport,
    _nanmean,
    _report_from_counts,
    _scores,
    class_indices,
    disagreement_map,
    present_taxonomy,
)
from napari_segflow.core.quality.metrics import confusion_matrix, iou_from_confusion
from napari_segflow.core.taxonomy import Taxonomy, taxonomy_from_dict

__all__ = ["ImageCounts", "calibrate_files", "image_counts", "image_values", "map_images"]


@dataclass
class ImageCounts:
    """What one image contributes to a calibration (summable across images).

    Attributes
    ----------
    image : str
    present : list of int
        Indices of the annotators scored on this image.
    cms : dict
        ``{annotator index: (K+1, K+1) confusion matrix}``.
    inter, union : dict
        ``{annotator index: (K,) boundary counts}`` (absent without boundary IoU).
    per_image : dict
        ``{annotator index: mean IoU of this image}``.
    pair_cms : dict
        ``{(a, b): confusion matrix of annotator a vs b}`` for a < b.
    disagreement : ndarray or None
    problems : list of str
    """

    image: str
    present: list[int] = field(default_factory=list)
    cms: dict = field(default_factory=dict)
    inter: dict = field(default_factory=dict)
    union: dict = field(default_factory=dict)
    per_image: dict = field(default_factory=dict)
    pair_cms: dict = field(default_factory=dict)
    disagreement: np.ndarray | None = None
    problems: list[str] = field(default_factory=list)


def image_counts(
    image: str,
    gold_path: str,
    annotation_paths: Mapping[int, tuple[str, str]],
    *,
    taxonomy: Taxonomy | dict,
    dilation_ratio: float | None,
) -> ImageCounts:
    """Counts of one image: reads the gold file and each annotator's file.

    ``annotation_paths`` maps annotator index to ``(annotator name, path)``. Unreadable files
    and shape mismatches become ``problems`` (worded as by ``match_label_files``/``calibrate``).
    """
    tax = (
        taxonomy if isinstance(taxonomy, Taxonomy) else taxonomy_from_dict(taxonomy, source="job")
    )
    k = len(tax.classes)
    out = ImageCounts(image)
    try:
        gold = read_labels(gold_path)
    except ValueError as exc:
        out.problems.append(f"reference {Path(gold_path).name}: {exc}")
        return out
    g = class_indices(gold, tax, gold=True)
    usable: dict[int, np.ndarray] = {}
    for a, (name, path) in sorted(annotation_paths.items()):
        arr, problem = read_labels_like(path, gold.shape, name)
        if problem is not None:
            out.problems.append(problem)
            continue
        usable[a] = class_indices(arr, tax)
    out.present = sorted(usable)
    for a in out.present:
        cm, inter, union = _scores(g, usable[a], k, dilation_ratio)
        out.cms[a] = cm
        if inter is not None:
            out.inter[a], out.union[a] = inter, union
        out.per_image[a] = _nanmean(iou_from_confusion(cm)[:k])
    for i, a in enumerate(out.present):
        for b in out.present[i + 1 :]:
            left = usable[a].copy()
            left[g == k + 1] = k + 1
            out.pair_cms[(a, b)] = confusion_matrix(
                left, usable[b], n_classes=k + 1, ignore_index=k + 1
            )
    if out.present:
        out.disagreement = disagreement_map([usable[a] for a in out.present])
    return out


def image_values(gold_path: str, annotation_paths: Mapping[int, tuple[str, str]]) -> np.ndarray:
    """The label values of one image's gold file and the annotations scored against it.

    Annotations that cannot be read or whose shape differs from the gold are left out, as
    :func:`image_counts` leaves them out; an unreadable gold file gives no values.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> Image.fromarray(np.array([[0, 7]], np.uint8)).save(d / "g.png")
    >>> Image.fromarray(np.array([[3, 7]], np.uint8)).save(d / "a.png")
    >>> image_values(str(d / "g.png"), {0: ("x", str(d / "a.png"))}).tolist()
    [0, 3, 7]
    """
    try:
        gold = read_labels(gold_path)
    except ValueError:
        return np.zeros(0, dtype=np.int64)
    values = [np.unique(gold)]
    for name, path in annotation_paths.values():
        arr, problem = read_labels_like(path, gold.shape, name)
        if problem is None:
            values.append(np.unique(arr))
    return np.unique(np.concatenate([v.astype(np.int64) for v in values]))


def map_images(
    fn: Callable,
    items: list[tuple],
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    processes: bool = True,
    client=None,
    **kwargs,
) -> list:
    """``[fn(*item, **kwargs) for item in items]``, on a dask cluster when one is asked for.

    ``scheduler`` is an existing scheduler's address; else ``workers`` >= 1 starts a local
    cluster of single-threaded workers; else the loop runs here. Results keep the input order.
    """
    if client is None and scheduler is None and not workers:
        return [fn(*item, **kwargs) for item in items]
    with dask_client(client, scheduler=scheduler, workers=workers, processes=processes) as client:
        futures = [client.submit(fn, *item, pure=False, **kwargs) for item in items]
        return client.gather(futures)


def calibrate_files(
    gold_dir: str | os.PathLike[str],
    annotator_dirs: Mapping[str, str | os.PathLike[str]],
    *,
    taxonomy: Taxonomy,
    threshold: float = 0.75,
    dilation_ratio: float | None = 0.02,
    scheduler: str | None = None,
    workers: int | None = None,
    processes: bool = True,
    client=None,
) -> CalibrationReport:
    """:func:`~napari_segflow.core.quality.calibration.calibrate` over folders, one task per image.

    Files are paired by name without extension as in ``segflow calibrate``. Missing,
    unreadable, extra and shape-mismatched files are listed in ``report.problems``.
    """
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be in 0..1, got {threshold}")
    if not annotator_dirs:
        raise ValueError("no annotators to calibrate")
    gold_files = label_files(gold_dir)
    if not gold_files:
        raise ValueError(f"{gold_dir}: no label files (PNG, TIFF or NIfTI)")
    names = list(annotator_dirs)
    problems: list[str] = []
    folders = {name: label_files(d) for name, d in annotator_dirs.items()}
    items = []
    for img, gpath in gold_files.items():
        ann: dict[int, tuple[str, str]] = {}
        for a, name in enumerate(names):
            if img in folders[name]:
                ann[a] = (name, str(folders[name][img]))
            else:
                problems.append(f"{name}: {img}: missing (no file named {img}.*)")
        items.append((img, str(gpath), ann))
    for name in names:
        for stem in sorted(set(folders[name]) - set(gold_files)):
            problems.append(f"{name}: {folders[name][stem].name}: no reference file of that name")
    parallel = client is not None or scheduler is not None or bool(workers)
    opened = (
        dask_client(client, scheduler=scheduler, workers=workers or 1, processes=processes)
        if parallel
        else contextlib.nullcontext(None)
    )
    with opened as own:
        if len(taxonomy.classes) > PRESENT_CLASSES_ABOVE:
            # as calibrate() does: the (K+1)^2 matrices are built over the classes present only,
            # found by a first pass that sends back each image's few distinct values
            values = map_images(image_values, [(g, ann) for _, g, ann in items], client=own)
            taxonomy = present_taxonomy(taxonomy, values)
        results: list[ImageCounts] = map_images(
            image_counts,
            items,
            client=own,
            taxonomy=taxonomy.to_dict(),
            dilation_ratio=dilation_ratio,
        )
    return _assemble(results, names, taxonomy, threshold, dilation_ratio, problems)


def _assemble(results, names, taxonomy, threshold, dilation_ratio, problems) -> CalibrationReport:
    """Sum per-image counts into the report ``calibrate`` builds (same formulas)."""
    k = len(taxonomy.classes)
    n_a = len(names)
    cms = np.zeros((n_a, k + 1, k + 1), dtype=np.int64)
    b_inter = np.zeros((n_a, k), dtype=np.int64)
    b_union = np.zeros((n_a, k), dtype=np.int64)
    pair_cms = np.zeros((n_a, n_a, k + 1, k + 1), dtype=np.int64)
    per_image: dict[str, dict[str, float]] = {name: {} for name in names}
    images: dict[str, list[str]] = {name: [] for name in names}
    disagreement: dict[str, np.ndarray] = {}
    for r in results:
        problems.extend(r.problems)
        for a in r.present:
            cms[a] += r.cms[a]
            if a in r.inter:
                b_inter[a] += r.inter[a]
                b_union[a] += r.union[a]
            per_image[names[a]][r.image] = r.per_image[a]
            images[names[a]].append(r.image)
        for (a, b), cm in r.pair_cms.items():
            pair_cms[a, b] += cm
            pair_cms[b, a] += cm.T
        if r.disagreement is not None:
            disagreement[r.image] = r.disagreement
    return _report_from_counts(
        cms,
        b_inter,
        b_union,
        pair_cms,
        names=list(names),
        taxonomy=taxonomy,
        threshold=threshold,
        dilation_ratio=dilation_ratio,
        per_image=per_image,
        disagreement=disagreement,
        images={name: sorted(v) for name, v in images.items()},
        problems=problems,
    )
