"""Dataset-scale pre-labelling: one task per image, serial or on a dask.distributed cluster.

What travels to a worker is small: a :class:`PrelabelJob` (model name, options, taxonomy as a
dict) and an :class:`ImageTask` (file paths, plus prompt entries when they come from a COCO or
JSON file). Images, coarse labels and outputs are read and written by the worker on storage
that every worker sees. Each worker loads the model once, on its first task, and keeps it
for the rest of the run.

Outputs of an image ``<stem>`` in the output folder:

- ``<stem>.png``: class-index labels (written last: its presence means "finished"); for a
  volume ``<stem>.nii.gz`` (NIfTI input, source affine kept) or ``<stem>.tif`` (TIFF stack);
- ``<stem>.png.provenance.npz``: the provenance sidecar (AI-pending pixels, same shape);
- ``<stem>.prelabel.json``: what happened to every object (refined, kept and flagged, copied).

The three files of an image are written to temporaries first and renamed only when all three
are complete (the label file last), so an image that fails leaves none of them. The report
records what produced the outputs (:func:`task_fingerprint`: hashes of the image, coarse
labels and prompts, the taxonomy, model, checkpoint and options). A rerun skips an image only
when its three files exist, read back with the right shape and were produced from the same
inputs; a stale image (new coarse labels, another taxonomy or options) is done again. Killing
a worker or the whole job therefore loses no finished image and leaves no half-written file.

dask is imported only inside :func:`run_prelabel` when a cluster is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_segflow.core.atomic import atomic_path, atomic_write_bytes
from napari_segflow.core.dask_client import dask_client
from napari_segflow.core.io.labels import label_files, read_labels
from napari_segflow.core.io.png import read_png, write_png
from napari_segflow.core.prelabel.refine import RefineOptions, prelabel_image
from napari_segflow.core.prelabel.volume import (
    default_axis,
    prelabel_volume,
    read_volume,
    volume_kind,
    volume_shape,
    volume_suffix,
    write_volume,
)
from napari_segflow.core.provenance import AI_PENDING, read_provenance
from napari_segflow.core.taxonomy import Taxonomy, taxonomy_from_dict

__all__ = [
    "IMAGE_SUFFIXES",
    "BatchSummary",
    "ImageOutcome",
    "ImageTask",
    "PrelabelJob",
    "image_files",
    "make_tasks",
    "output_paths",
    "output_valid",
    "overlap_counts",
    "preload_model",
    "process_image",
    "read_image",
    "run_prelabel",
    "task_fingerprint",
]

log = logging.getLogger(__name__)

#: Image files a batch job reads (2D; multi-page TIFF and NIfTI are volumes).
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".nii", ".nii.gz")


@dataclass(frozen=True)
class PrelabelJob:
    """Everything about a run that is the same for every image (shipped to each worker).

    Attributes
    ----------
    out_dir : str
        Output folder (shared storage in a cluster).
    taxonomy : dict
        ``Taxonomy.to_dict()`` of the classes.
    model : str
        Model name for :func:`napari_segflow.core.segment.load_model`.
    checkpoint : str or None
    window : optional
        Intensity window passed to the model (preset name, ``(level, width)`` or None).
    options : dict
        :class:`RefineOptions` fields.
    torch_threads : int
        Threads torch uses per task; fixed so that results do not depend on the machine.
    axis : int or None
        Slice axis of volumes (file array order); None: NIfTI's last axis, a TIFF stack's first.
    classifier : str or None
        A pixel-classifier file: pre-label every image with it (no coarse labels or prompts;
        :mod:`napari_segflow.core.prelabel.classifier`). ``model`` then only embeds.
    min_confidence : float
        With ``classifier``: pixels below this confidence stay unlabelled.
    method : str
        How 2D images with coarse labels are refined: ``"model"`` (the promptable model,
        :func:`prelabel_image`, ``options`` are :class:`RefineOptions`) or ``"snap"`` (the
        band-limited colour cut, :func:`~napari_segflow.core.prelabel.snap.snap_labels`,
        ``options`` are :class:`~napari_segflow.core.prelabel.snap.SnapOptions`; no model).
        Volumes and prompt files always use the model.
    reference_dir : str or None
        A folder of reference label images paired by name: each report then holds the IoU of
        the coarse input and of the output with the reference (evaluation runs).
    """

    out_dir: str
    taxonomy: dict
    model: str = "medsam-lite"
    checkpoint: str | None = None
    window: Any = None
    options: dict = field(default_factory=dict)
    torch_threads: int = 1
    axis: int | None = None
    classifier: str | None = None
    min_confidence: float = 0.5
    method: str = "model"
    reference_dir: str | None = None

    @property
    def snaps(self) -> bool:
        """Whether 2D coarse-label images are snapped without the model."""
        return self.method == "snap" and self.classifier is None

    def model_key(self) -> tuple:
        window = tuple(self.window) if isinstance(self.window, list) else self.window
        return (self.model, self.checkpoint, window)

    def get_taxonomy(self) -> Taxonomy:
        return taxonomy_from_dict(self.taxonomy, source="job")


@dataclass(frozen=True)
class ImageTask:
    """One image to pre-label.

    Attributes
    ----------
    stem : str
        Image name without extension; names the outputs.
    image : str
        Path of the image.
    coarse : str or None
        Path of a coarse label image, or None.
    prompts : tuple of dict
        Prompt entries (see :mod:`napari_segflow.core.prelabel.prompts`).
    """

    stem: str
    image: str
    coarse: str | None = None
    prompts: tuple = ()


@dataclass(frozen=True)
class ImageOutcome:
    """Result of one image: ``status`` is ``"done"``, ``"skipped"`` or ``"failed"``."""

    stem: str
    status: str
    reason: str = ""
    seconds: float = 0.0
    counts: dict = field(default_factory=dict)
    flagged: int = 0
    worker: str = ""
    pixels_changed: int = 0
    #: with a reference: ``{"before": [intersection, union], "after": [...]}`` over classes
    reference: dict = field(default_factory=dict)


@dataclass
class BatchSummary:
    """What a run did; ``failed`` maps image stems to the reason."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    #: Images whose earlier outputs were stale (inputs, taxonomy or options changed): redone.
    stale: list[str] = field(default_factory=list)
    seconds: float = 0.0
    flagged_objects: int = 0
    object_counts: dict[str, int] = field(default_factory=dict)
    pixels_changed: int = 0
    #: pooled over the images with a reference: ``{"before": [inter, union], "after": [...]}``
    reference: dict = field(default_factory=dict)
    reference_images: int = 0

    def add(self, o: ImageOutcome) -> None:
        if o.status == "done":
            self.done.append(o.stem)
            self.flagged_objects += o.flagged
            self.pixels_changed += int(o.pixels_changed)
            if o.reference:
                self.reference_images += 1
                for k, (inter, union) in o.reference.items():
                    tot = self.reference.setdefault(k, [0, 0])
                    tot[0] += int(inter)
                    tot[1] += int(union)
            for k, v in o.counts.items():
                self.object_counts[k] = self.object_counts.get(k, 0) + int(v)
        elif o.status == "skipped":
            self.skipped.append(o.stem)
        else:
            self.failed[o.stem] = o.reason

    def reference_iou(self, which: str) -> float:
        """Pooled IoU of the coarse input (``"before"``) or the output (``"after"``) with the
        reference labels, over every image that had one; NaN without references."""
        inter, union = self.reference.get(which, (0, 0))
        return inter / union if union else math.nan

    @property
    def images_per_second(self) -> float:
        return len(self.done) / self.seconds if self.seconds > 0 else math.nan

    def to_dict(self) -> dict:
        return {
            "done": sorted(self.done),
            "skipped": sorted(self.skipped),
            "failed": dict(sorted(self.failed.items())),
            "stale": sorted(self.stale),
            "seconds": round(self.seconds, 3),
            "images_per_second": None
            if math.isnan(self.images_per_second)
            else round(self.images_per_second, 4),
            "flagged_objects": self.flagged_objects,
            "object_counts": dict(sorted(self.object_counts.items())),
            "pixels_changed": self.pixels_changed,
            "reference": None
            if not self.reference_images
            else {
                "images": self.reference_images,
                "iou_before": round(self.reference_iou("before"), 6),
                "iou_after": round(self.reference_iou("after"), 6),
            },
        }


# ------------------------------------------------------------------------------- files
def image_files(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """``{stem: path}`` of the images directly inside ``folder``, sorted by stem."""
    d = Path(folder)
    if not d.is_dir():
        raise ValueError(f"{d}: not a folder")
    out: dict[str, Path] = {}
    for p in sorted(d.iterdir()):
        suffix = ".nii.gz" if p.name.lower().endswith(".nii.gz") else p.suffix.lower()
        if p.is_file() and not p.name.startswith(".") and suffix in IMAGE_SUFFIXES:
            stem = p.name[: -len(suffix)]
            if stem in out:
                raise ValueError(f"{d}: two images named {stem!r}: {out[stem].name}, {p.name}")
            out[stem] = p
    return out


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a 2D image (TIFF via tifffile, others via Pillow) as (H, W) or (H, W, C)."""
    p = Path(path)
    try:
        if p.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(p)
        else:
            from PIL import Image

            with Image.open(p) as im:
                arr = np.array(im)
    except Exception as exc:  # image libraries raise many kinds for damaged files
        raise ValueError(f"{p.name}: cannot read image ({type(exc).__name__}: {exc})") from None
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[2] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # band-first rasters
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise ValueError(f"{p.name}: expected a 2D image, got shape {arr.shape}")
    return arr


def output_paths(
    out_dir: str | os.PathLike[str], stem: str, suffix: str = ".png"
) -> tuple[Path, Path, Path]:
    """``(labels file, provenance sidecar, object report)`` of image ``stem``.

    ``suffix`` is the label file's ending: ``.png`` for 2D images, ``.nii.gz`` or ``.tif``
    for volumes (:func:`~napari_segflow.core.prelabel.volume.volume_suffix`).

    Examples
    --------
    >>> [p.name for p in output_paths("out", "tile_7")]
    ['tile_7.png', 'tile_7.png.provenance.npz', 'tile_7.prelabel.json']
    >>> output_paths("out", "case_1", ".nii.gz")[1].name
    'case_1.nii.gz.provenance.npz'
    """
    d = Path(out_dir)
    labels = d / f"{stem}{suffix}"
    return labels, labels.with_name(labels.name + ".provenance.npz"), d / f"{stem}.prelabel.json"


def _file_digest(path: str | os.PathLike[str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _json_digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def task_fingerprint(job: PrelabelJob, task: ImageTask) -> dict[str, Any]:
    """What produces the outputs of ``task``: a rerun redoes the image when this differs.

    Content hashes of the image, the coarse labels and the prompt entries; a hash of the
    taxonomy; the model, checkpoint (size and modification time), window, axis and options.

    Raises
    ------
    OSError
        When an input cannot be read.
    """
    ckpt = None
    if job.checkpoint:
        st = os.stat(job.checkpoint)
        ckpt = [str(job.checkpoint), st.st_size, st.st_mtime_ns]
    return {
        "image": _file_digest(task.image),
        "coarse": None if task.coarse is None else _file_digest(task.coarse),
        "prompts": _json_digest(list(task.prompts)) if task.prompts else None,
        "taxonomy": _json_digest(job.taxonomy),
        "model": job.model,
        "checkpoint": ckpt,
        "window": job.window,
        "axis": job.axis,
        "options": _json_digest(job.options),
        # (only when set, so that outputs of earlier model runs stay valid)
        **({"method": job.method} if job.method != "model" else {}),
        **({"reference": str(job.reference_dir)} if job.reference_dir is not None else {}),
    }


def output_valid(
    out_dir: str | os.PathLike[str],
    stem: str,
    shape: tuple[int, ...] | None = None,
    suffix: str = ".png",
    *,
    fingerprint: Mapping[str, Any] | None = None,
) -> bool:
    """Whether image ``stem`` has complete, readable outputs (of ``shape`` when given).

    A 2D label image is compared with the image's first two dimensions, a volume with all
    three; ``suffix`` as for :func:`output_paths`. With ``fingerprint`` (see
    :func:`task_fingerprint`) the outputs must also have been produced from the same inputs.
    """
    labels_path, prov_path, report_path = output_paths(out_dir, stem, suffix)
    if not (labels_path.is_file() and prov_path.is_file() and report_path.is_file()):
        return False
    try:
        labels = read_png(labels_path) if suffix == ".png" else read_labels(labels_path)
        prov = read_provenance(labels_path)
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except Exception:  # any damage (truncated PNG or npz, bad JSON) means "do it again"
        return False
    if prov is None or prov.shape != labels.shape or report.get("stem") != stem:
        return False
    if fingerprint is not None and report.get("produced_by") != json.loads(
        json.dumps(fingerprint, default=str)
    ):
        return False
    return shape is None or tuple(labels.shape) == tuple(shape[: max(labels.ndim, 2)])


def make_tasks(
    images: Mapping[str, str | os.PathLike[str]],
    *,
    coarse_dir: str | os.PathLike[str] | None = None,
    prompts: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> tuple[list[ImageTask], dict[str, str]]:
    """Pair images with their prompt source; returns ``(tasks, {stem: problem})``.

    An image without a coarse label file or prompt entries is reported, not queued.
    """
    if (coarse_dir is None) == (prompts is None):
        raise ValueError("give exactly one prompt source: a coarse label folder or prompts")
    coarse = label_files(coarse_dir) if coarse_dir is not None else {}
    tasks, problems = [], {}
    for stem, path in images.items():
        if coarse_dir is not None:
            if stem not in coarse:
                problems[stem] = f"no coarse label file named {stem}.* in {coarse_dir}"
                continue
            tasks.append(ImageTask(stem, str(path), coarse=str(coarse[stem])))
        else:
            entries = prompts.get(stem)
            if not entries:
                problems[stem] = "no prompts for this image"
                continue
            tasks.append(ImageTask(stem, str(path), prompts=tuple(dict(e) for e in entries)))
    return tasks, problems


# ------------------------------------------------------------------------------- work
_LOCAL_MODELS: dict[tuple, Any] = {}
_LOCAL_LOCK = threading.Lock()


def _model_for(job: PrelabelJob, holder: Any = None):
    """The job's model, loaded once per worker (or once per process outside dask)."""
    if holder is None:
        try:
            from distributed import get_worker

            holder = get_worker()
        except (ImportError, ValueError):
            holder = None
    if holder is not None:
        cache = holder.__dict__.setdefault("_segflow_models", {})
        lock = holder.__dict__.setdefault("_segflow_lock", threading.Lock())
    else:
        cache, lock = _LOCAL_MODELS, _LOCAL_LOCK
    key = job.model_key()
    with lock:
        if key not in cache:
            from napari_segflow.core.segment import load_model

            # a small embedding cache: each window is embedded once per image anyway
            cache[key] = load_model(
                job.model, job.checkpoint, window=job.window, cache_bytes=64 << 20, device="cpu"
            )
        return cache[key], lock


def preload_model(job: PrelabelJob, dask_worker: Any = None) -> str:
    """Load the job's model on a worker ahead of its first image: ``client.run(preload_model, job)``.

    Returns the model's description. Optional: without it each worker loads the model with
    its first image.
    """
    model, _ = _model_for(job, dask_worker)
    return repr(model)


def process_image(job: PrelabelJob, task: ImageTask, model=None) -> ImageOutcome:
    """Pre-label one image and write its outputs atomically; never raises for a bad image.

    ``model`` defaults to the worker's (loaded on first use, then reused).
    """
    t0 = time.perf_counter()
    where = ""
    try:
        from distributed import get_worker

        where = get_worker().address
    except (ImportError, ValueError):
        where = "local"
    try:
        from napari_segflow.core.prelabel.prompts import entries_to_objects

        fingerprint = task_fingerprint(job, task)
        taxonomy = job.get_taxonomy()
        kind = volume_kind(task.image)
        affine = None
        if job.classifier is not None:
            from napari_segflow.core.prelabel.classifier import prelabel_with_classifier

            if kind is not None:
                image, affine = read_volume(task.image)
                axis = default_axis(kind, image.ndim) if job.axis is None else job.axis
            else:
                image, axis = read_image(task.image), None

            def run(m):
                return prelabel_with_classifier(
                    image,
                    m,
                    classifier=job.classifier,
                    taxonomy=taxonomy,
                    axis=axis,
                    min_confidence=job.min_confidence,
                )

        elif kind is not None:
            if task.coarse is None:
                raise ValueError("volumes are pre-labelled from coarse label volumes (--coarse)")
            image, affine = read_volume(task.image)
            coarse = read_labels(task.coarse)
            if coarse.shape != image.shape:
                raise ValueError(
                    f"coarse labels {coarse.shape} do not match the volume {image.shape}"
                )
            axis = default_axis(kind, image.ndim) if job.axis is None else job.axis
            # a snapping run carries SnapOptions; its volumes use the model's defaults
            options = RefineOptions() if job.snaps else RefineOptions(**job.options)

            def run(m):
                return prelabel_volume(
                    image,
                    m,
                    coarse=coarse,
                    axis=axis,
                    taxonomy=taxonomy,
                    options=options,
                    window="auto" if job.window is None else job.window,
                )

        else:
            image = read_image(task.image)
            coarse = read_labels(task.coarse) if task.coarse is not None else None
            if coarse is not None and coarse.shape != image.shape[:2]:
                raise ValueError(
                    f"coarse labels {coarse.shape} do not match the image {image.shape[:2]}"
                )
            objects = (
                entries_to_objects(task.prompts, shape=image.shape[:2]) if task.prompts else None
            )

            def run(m):
                if job.snaps and coarse is not None and objects is None:
                    from napari_segflow.core.prelabel.snap import SnapOptions, snap_labels

                    return snap_labels(
                        image, coarse, taxonomy=taxonomy, options=SnapOptions(**job.options)
                    )
                return prelabel_image(
                    image,
                    m,
                    coarse=coarse,
                    prompts=objects,
                    taxonomy=taxonomy,
                    options=RefineOptions(**job.options),
                )

        reference = None
        if job.reference_dir is not None:
            reference = _reference_for(job, task, kind)
        lock = None
        if model is None and not (job.snaps and kind is None and task.coarse is not None):
            model, lock = _model_for(job)
        from napari_segflow.core.segment.threads import using_threads

        if lock is not None:
            lock.acquire()
        try:
            with using_threads(job.torch_threads):  # torch and ONNX Runtime alike
                result = run(model)
        finally:
            if lock is not None:
                lock.release()
        paths = output_paths(job.out_dir, task.stem, volume_suffix(kind))
        changed = int(np.count_nonzero(result.provenance == AI_PENDING))
        ref_counts: dict = {}
        report = {
            "stem": task.stem,
            "image": task.image,
            "model": "snap" if job.snaps and kind is None and task.coarse else job.model,
            "produced_by": json.loads(json.dumps(fingerprint, default=str)),
            **result.to_dict(),
            "pixels_changed": changed,
        }
        if reference is not None:
            before = read_labels(task.coarse) if task.coarse is not None else None
            ref_counts = {"after": overlap_counts(result.labels, reference, taxonomy)}
            if before is not None:
                ref_counts["before"] = overlap_counts(before, reference, taxonomy)
            report["reference"] = {
                k: (round(i / u, 6) if u else None) for k, (i, u) in ref_counts.items()
            }

        def write_labels(tmp: Path) -> None:
            if kind is None:
                write_png(result.labels, tmp, taxonomy=taxonomy)
            else:
                write_volume(result.labels, tmp, affine=affine, taxonomy=taxonomy)

        _write_outputs(paths, write_labels, result.provenance, report)
        return ImageOutcome(
            task.stem,
            "done",
            seconds=time.perf_counter() - t0,
            counts=result.counts(),
            flagged=len(result.flagged),
            worker=where,
            pixels_changed=changed,
            reference=ref_counts,
        )
    except Exception as exc:  # one bad image must never stop the run
        log.debug("%s failed:\n%s", task.stem, traceback.format_exc())
        _remove_orphans(job.out_dir, task.stem, volume_suffix(volume_kind(task.image)))
        reason = str(exc) or type(exc).__name__
        return ImageOutcome(
            task.stem, "failed", reason=reason, seconds=time.perf_counter() - t0, worker=where
        )


def overlap_counts(labels: np.ndarray, reference: np.ndarray, taxonomy: Taxonomy) -> list[int]:
    """``[intersection, union]`` pixel counts of ``labels`` with ``reference``, summed over the
    classes (the unlabelled and ignore ids are not classes): their ratio is the pooled IoU.

    Examples
    --------
    >>> from napari_segflow.core.taxonomy import load_preset
    >>> a = np.array([[1, 1, 0], [0, 0, 0]]); b = np.array([[1, 0, 0], [0, 0, 1]])
    >>> overlap_counts(a, b, load_preset("nuclei"))
    [1, 3]
    """
    a, b = np.asarray(labels), np.asarray(reference)
    if a.shape != b.shape:
        raise ValueError(f"reference labels {b.shape} do not match the output {a.shape}")
    inter = union = 0
    for c in taxonomy.ids:
        if c == taxonomy.ignore_id:
            continue
        x, y = a == c, b == c
        inter += int(np.count_nonzero(x & y))
        union += int(np.count_nonzero(x | y))
    return [inter, union]


def _reference_for(job: PrelabelJob, task: ImageTask, kind) -> np.ndarray:
    """The reference label image of ``task`` (an evaluation run), read before any work."""
    files = label_files(job.reference_dir)
    if task.stem not in files:
        raise ValueError(f"no reference label file named {task.stem}.* in {job.reference_dir}")
    return read_labels(files[task.stem])


def _write_outputs(
    paths: tuple[Path, Path, Path],
    write_labels: Callable[[Path], None],
    provenance: np.ndarray,
    report: Mapping[str, Any],
) -> None:
    """Write the three outputs of an image together: all three, or none of them.

    Each goes to a temporary first; only when all are complete are they renamed, the label
    file last (its presence means "finished").
    """
    labels_path, prov_path, report_path = paths
    buf = io.BytesIO()
    np.savez_compressed(buf, provenance=np.asarray(provenance, dtype=np.uint8))
    with (
        atomic_path(labels_path) as labels_tmp,
        atomic_path(prov_path) as prov_tmp,
        atomic_path(report_path) as report_tmp,
    ):
        write_labels(labels_tmp)
        prov_tmp.write_bytes(buf.getvalue())
        report_tmp.write_bytes(json.dumps(report, indent=1).encode())


def _remove_orphans(out_dir: str, stem: str, suffix: str) -> None:
    """After a failure: sidecars without their label file are not a result; remove them."""
    labels_path, prov_path, report_path = output_paths(out_dir, stem, suffix)
    if labels_path.is_file():
        return  # an earlier complete result stays (a rerun finds it stale or valid)
    for p in (prov_path, report_path):
        with contextlib.suppress(OSError):
            p.unlink()


def _image_shape(path: str) -> tuple[int, ...] | None:
    p = Path(path)
    if volume_kind(p) is not None:
        return volume_shape(p)
    try:
        if p.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(p) as tf:
                shape = tuple(tf.series[0].shape)
            if len(shape) == 3 and shape[0] in (1, 3, 4) and shape[2] not in (1, 3, 4):
                shape = shape[1:]  # band-first, as read_image turns it
            return shape
        from PIL import Image

        with Image.open(p) as im:
            return (im.height, im.width)
    except Exception:  # unreadable images are reported when processed
        return None


def run_prelabel(
    job: PrelabelJob,
    tasks: Sequence[ImageTask],
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    processes: bool = True,
    client=None,
    progress: Callable[[ImageOutcome, int, int], None] | None = None,
) -> BatchSummary:
    """Pre-label ``tasks``, skipping those whose outputs are already valid.

    Parameters
    ----------
    job : PrelabelJob
    tasks : sequence of ImageTask
    scheduler : str, optional
        Address of an existing dask.distributed scheduler (``tcp://host:8786``).
    workers : int, optional
        Without ``scheduler``: 0 or None runs serially in this process; N >= 1 starts a local
        cluster of N single-threaded workers.
    processes : bool
        Local cluster of processes (True) or threads (False).
    client : distributed.Client, optional
        Use this client instead (tests, notebooks); overrides ``scheduler``/``workers``.
    progress : callable, optional
        ``progress(outcome, finished, total)`` after each image, skipped ones included.

    Returns
    -------
    BatchSummary
        Also written to ``<out_dir>/prelabel_summary.json``.
    """
    t0 = time.perf_counter()
    summary = BatchSummary()
    total = len(tasks)
    finished = 0

    def report(o: ImageOutcome) -> None:
        nonlocal finished
        finished += 1
        summary.add(o)
        if progress is not None:
            progress(o, finished, total)

    todo = []
    for t in tasks:
        suffix = volume_suffix(volume_kind(t.image))
        shape = _image_shape(t.image)
        try:
            fingerprint = task_fingerprint(job, t)
        except OSError:
            fingerprint = None  # unreadable input: processing reports it
        if fingerprint is not None and output_valid(
            job.out_dir, t.stem, shape, suffix, fingerprint=fingerprint
        ):
            report(ImageOutcome(t.stem, "skipped", reason="valid output exists"))
            continue
        if output_valid(job.out_dir, t.stem, shape, suffix):
            summary.stale.append(t.stem)  # complete, but made from other inputs or options
        todo.append(t)
    work_start = time.perf_counter()
    if todo:
        if client is None and scheduler is None and not workers:
            # the model loads once, before the first image: a bad checkpoint is one error
            try:
                if not job.snaps:
                    _model_for(job)
            except Exception as exc:
                raise ValueError(f"cannot load model {job.model!r}: {exc}") from None
            for t in todo:
                report(process_image(job, t))
        else:
            _run_distributed(job, todo, report, client, scheduler, workers, processes)
    summary.seconds = time.perf_counter() - work_start
    Path(job.out_dir).mkdir(parents=True, exist_ok=True)
    doc = {"total_seconds": round(time.perf_counter() - t0, 3), **summary.to_dict()}
    atomic_write_bytes(
        Path(job.out_dir) / "prelabel_summary.json", json.dumps(doc, indent=1).encode()
    )
    return summary


def _run_distributed(job, todo, report, client, scheduler, workers, processes) -> None:
    from distributed import as_completed

    with dask_client(client, scheduler=scheduler, workers=workers, processes=processes) as client:
        # every worker loads the model now (a bad checkpoint fails here, once, clearly)
        try:
            if not job.snaps:
                client.run(preload_model, job)
        except Exception as exc:
            raise ValueError(f"cannot load model {job.model!r}: {exc}") from None
        run_id = uuid.uuid4().hex[:8]
        futures = {
            client.submit(process_image, job, t, key=f"prelabel-{t.stem}-{run_id}"): t
            for t in todo
        }
        for fut in as_completed(futures):
            t = futures[fut]
            try:
                report(fut.result())
            except Exception as exc:  # e.g. KilledWorker: the image crashed workers repeatedly
                report(ImageOutcome(t.stem, "failed", reason=f"{type(exc).__name__}: {exc}"))
