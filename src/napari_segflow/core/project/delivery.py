"""Deliver a project's finished labels in one of the export formats.

An image is delivered when it is ``done``, ``in_review`` or ``accepted``: accepted images with
the reviewer's correction, the others with their annotator's labels. Rejected, skipped and
unfinished images are left out and listed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_segflow.core.io.labels import read_labels
from napari_segflow.core.io.validate import ExportError
from napari_segflow.core.prelabel.volume import volume_kind
from napari_segflow.core.project.project import Project
from napari_segflow.core.project.store import ACCEPTED, DONE, IN_REVIEW
from napari_segflow.core.provenance import pending_count, read_provenance

__all__ = ["EXPORT_FORMATS", "ExportSummary", "delivery_files", "export_project"]

EXPORT_FORMATS = ("png", "coco", "geotiff", "nifti")


@dataclass
class ExportSummary:
    """What :func:`export_project` wrote, left out and warned about."""

    written: list[Path] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "written": [str(p) for p in self.written],
            "left_out": self.left_out,
            "failed": self.failed,
            "warnings": self.warnings,
        }


def delivery_files(project: Project) -> tuple[dict[str, tuple[Path, Path]], dict[str, str]]:
    """``({stem: (image path, label file to deliver)}, {stem: why left out})``."""
    files: dict[str, tuple[Path, Path]] = {}
    left: dict[str, str] = {}
    reviewer = project.accepted_by()
    for e in project.images():
        if e.status not in (DONE, IN_REVIEW, ACCEPTED):
            left[e.stem] = e.status
            continue
        if e.status == ACCEPTED and e.stem in reviewer:
            src = project.labels_path(e.stem, annotator=reviewer[e.stem], mode="qa")
        else:
            src = project.labels_path(e.stem, annotator=e.annotator)
        if not src.is_file():
            left[e.stem] = f"label file {src.name} missing"
            continue
        files[e.stem] = (e.path, src)
    return files, left


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def export_project(
    project: Project,
    out_dir: str | os.PathLike[str],
    *,
    fmt: str = "png",
    require_confirmed: bool = False,
) -> ExportSummary:
    """Write the project's finished labels into ``out_dir`` in format ``fmt``.

    Parameters
    ----------
    project : Project
    out_dir : path-like
        Output folder; it may not lie inside the project's ``labels/`` folder (inputs are never
        overwritten). COCO writes one ``annotations.json`` there.
    fmt : {"png", "coco", "geotiff", "nifti"}
        GeoTIFF copies each source image's georeference; NIfTI a volume's affine.
    require_confirmed : bool
        Refuse the whole export, writing nothing, when a delivered file still has AI pixels
        nobody confirmed; otherwise they are listed in ``warnings``.

    Raises
    ------
    ExportError
        For an unknown format, an output inside the project's labels, or unconfirmed AI pixels
        under ``require_confirmed``.
    """
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}")
    out = Path(out_dir)
    if _inside(out, project.root / "labels") or _inside(out, project.root / "prelabels"):
        raise ExportError(f"{out}: inside the project's labels; choose another output folder")
    files, left = delivery_files(project)
    summary = ExportSummary(left_out=left)
    pending = {s: pending_count(read_provenance(src)) for s, (_, src) in files.items()}
    pending = {s: n for s, n in pending.items() if n}
    if pending:
        msg = (
            f"{len(pending)} image(s) have unconfirmed AI pixels ({', '.join(list(pending)[:5])})"
        )
        if require_confirmed:
            raise ExportError(f"{msg}; confirm them or drop --require-confirmed")
        summary.warnings.append(msg)
    if not files:
        return summary
    tax = project.taxonomy
    if fmt == "coco":
        from napari_segflow.core.io.coco import write_coco

        images = {}
        for stem, (img, src) in files.items():
            labels = read_labels(src)
            if labels.ndim != 2:
                summary.failed[stem] = "COCO holds 2D labels; export volumes as nifti"
                continue
            images[img.name] = labels
        if images:
            summary.written.append(write_coco(images, out / "annotations.json", taxonomy=tax))
        return summary
    for stem, (img, src) in files.items():
        try:
            summary.written.append(_write_one(fmt, stem, img, src, out, project))
        except (ValueError, OSError) as exc:
            summary.failed[stem] = str(exc)
    return summary


def _write_one(fmt: str, stem: str, img: Path, src: Path, out: Path, project: Project) -> Path:
    labels = read_labels(src)
    tax = project.taxonomy
    if fmt == "png":
        from napari_segflow.core.io.png import write_png

        if labels.ndim != 2:
            raise ExportError("PNG holds 2D labels; export volumes as nifti")
        return write_png(labels, out / f"{stem}.png", taxonomy=tax)[0]
    if fmt == "geotiff":
        from napari_segflow.core.io.geotiff import geotiff_info, is_georeferenced, write_geotiff

        if img.suffix.lower() not in (".tif", ".tiff") or not is_georeferenced(geotiff_info(img)):
            raise ExportError(f"{img.name} has no georeference to copy")
        return write_geotiff(labels, out / f"{stem}.tif", like=str(img), taxonomy=tax)
    from napari_segflow.core.io.nifti import read_nifti, write_nifti

    affine = read_nifti(img).affine if volume_kind(img) == "nifti" else None
    return write_nifti(np.asarray(labels), out / f"{stem}.nii.gz", affine=affine, taxonomy=tax)
