"""``segflow export``: write label images in delivery formats (PNG, COCO RLE, GeoTIFF, NIfTI)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_segflow.core.io import png_paths, read_png, write_png
from napari_segflow.core.io.validate import ExportError
from napari_segflow.core.provenance import ProvenanceError, pending_count, read_provenance
from napari_segflow.core.taxonomy import Taxonomy, load_taxonomy

FORMATS = ("png", "coco", "geotiff", "nifti")
_SUFFIX = {"coco": ".json", "geotiff": ".tif", "nifti": ".nii.gz"}


@dataclass
class LabelInput:
    """One label image named on the command line, with what its file says about its geometry."""

    path: Path
    name: str
    labels: Any
    georef: dict | None = None  # geotiff_info of a georeferenced input
    affine: np.ndarray | None = None  # NIfTI input
    provenance: np.ndarray | None = None  # the input's provenance sidecar, when it has one


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".tiff", ".tif", ".png", ".npy", ".json"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def read_labels(path: Path) -> list[LabelInput]:
    """Read a label file by extension: PNG, TIFF/GeoTIFF, NPY, NIfTI, or COCO JSON (one per image).

    The content must match the extension, and a temporary of an interrupted write is refused.
    """
    from napari_segflow.core.io.guard import check_format, check_not_partial

    name = path.name.lower()
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    check_not_partial(path)
    check_format(path)
    if name.endswith(".png"):
        return [LabelInput(path, _stem(path), read_png(path))]
    if name.endswith((".tif", ".tiff")):
        from napari_segflow.core.io.geotiff import geotiff_info, is_georeferenced, open_band

        info = geotiff_info(path)
        if is_georeferenced(info):
            # read in windows while writing: memory stays bounded at any raster size
            return [LabelInput(path, _stem(path), open_band(path), georef=info)]
        import tifffile

        return [LabelInput(path, _stem(path), tifffile.imread(path))]
    if name.endswith(".npy"):
        from napari_segflow.core.io.labels import read_npy

        return [LabelInput(path, _stem(path), read_npy(path))]
    if name.endswith((".nii", ".nii.gz")):
        from napari_segflow.core.io.nifti import read_nifti

        vol = read_nifti(path)
        return [LabelInput(path, _stem(path), vol.data, affine=vol.affine)]
    if name.endswith(".json"):
        from napari_segflow.core.io.coco import read_coco

        return [LabelInput(path, _stem(Path(k)), v) for k, v in read_coco(path).items()]
    raise ValueError(f"{path}: unsupported label file type {path.suffix!r}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export label images as PNG, COCO RLE, GeoTIFF or NIfTI",
        description="Validate label images against a taxonomy and write them in a delivery format. "
        "Ids absent from the taxonomy are refused; AI pixels nobody confirmed (provenance sidecar "
        "<input>.provenance.npz) give a warning, or refuse the input with --require-confirmed.",
    )
    p.add_argument(
        "inputs", nargs="+", type=Path, help="label images (PNG, TIFF/GeoTIFF, NPY, NIfTI, COCO)"
    )
    p.add_argument("--format", default="png", choices=FORMATS, help="output format (png)")
    p.add_argument("--taxonomy", required=True, help="taxonomy file or preset name")
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        help="output folder; or the output file for coco (all inputs in one .json) and for one "
        "geotiff/nifti input",
    )
    p.add_argument(
        "--like",
        help="source image whose georeference (GeoTIFF) or affine (NIfTI) the output copies",
    )
    p.add_argument(
        "--require-confirmed",
        action="store_true",
        help="refuse inputs with unconfirmed AI pixels instead of warning",
    )
    p.add_argument("--instances", action="store_true", help="coco: one annotation per component")
    p.add_argument("--color", action="store_true", help="png: also write colour previews")
    p.add_argument(
        "--cityscapes", action="store_true", help="png: name files <stem>_gtFine_labelIds.png"
    )
    p.set_defaults(func=run)


def check_provenance(item: LabelInput, *, require_confirmed: bool) -> None:
    """Warn about (or refuse) AI-made pixels nobody confirmed, from the input's sidecar.

    The sidecar is kept on ``item`` so that the export carries it beside its output.
    """
    shape = None if item.path.suffix.lower() == ".json" else np.shape(item.labels)
    record = read_provenance(item.path, shape=shape)
    pending = pending_count(record)
    # one COCO file's sidecar does not describe each of its images: carried only when it fits
    fits = record is not None and record.shape == np.shape(item.labels)
    item.provenance = record if fits else None
    if not pending:
        return
    msg = f"{item.path}: {pending} AI-labelled pixels are not confirmed"
    if require_confirmed:
        raise ExportError(f"{msg}; confirm them or drop --require-confirmed")
    print(f"warning: {msg}", file=sys.stderr)


def _destination(args: argparse.Namespace, item: LabelInput, single: bool) -> Path:
    suffix = _SUFFIX[args.format]
    out: Path = args.out
    if single and out.name.lower().endswith((suffix, ".tiff", ".nii")):
        return out
    return out / f"{item.name}{suffix}"


def _write_one(args: argparse.Namespace, item: LabelInput, taxonomy: Taxonomy, single: bool):
    if args.format == "png":
        index_path, color_path = png_paths(args.out, item.name, cityscapes=args.cityscapes)
        return write_png(
            item.labels,
            index_path,
            taxonomy=taxonomy,
            color_path=color_path if args.color else None,
        )
    dest = _destination(args, item, single)
    if args.format == "geotiff":
        from napari_segflow.core.io.geotiff import write_geotiff

        like = args.like if args.like else item.georef
        if like is None:
            raise ExportError(
                f"{item.path} has no georeference: pass --like <georeferenced source image>"
            )
        return [write_geotiff(item.labels, dest, like=like, taxonomy=taxonomy)]
    from napari_segflow.core.io.nifti import read_nifti, write_nifti

    affine = read_nifti(args.like).affine if args.like else item.affine
    if affine is None:
        print(
            f"warning: {item.path}: no --like volume, writing an identity affine", file=sys.stderr
        )
    return [write_nifti(item.labels, dest, affine=affine, taxonomy=taxonomy)]


def _carry_provenance(item: LabelInput, output: Path) -> list[str]:
    """Write the input's provenance beside ``output`` (as the napari writers do); drop a stale one.

    Without this, AI-pending pixels would look human-made once the exported file is reopened.
    """
    from napari_segflow.core.provenance import sidecar_path, write_provenance

    if item.provenance is not None:
        return [str(write_provenance(output, item.provenance))]
    stale = sidecar_path(output)
    if stale.exists():
        stale.unlink()  # an earlier export's record would describe other labels
    return []


def _coco_out(args: argparse.Namespace) -> Path:
    return args.out if args.out.suffix.lower() == ".json" else args.out / "annotations.json"


def _planned(args: argparse.Namespace, items: list[LabelInput]) -> list[Path]:
    """Every file the export will write, known before anything is written."""
    if args.format == "coco":
        return [_coco_out(args)]
    single = len(items) == 1
    if args.format == "png":
        out = []
        for item in items:
            index_path, color_path = png_paths(args.out, item.name, cityscapes=args.cityscapes)
            out += [index_path, color_path] if args.color else [index_path]
        return out
    return [_destination(args, item, single) for item in items]


def check_destinations(args: argparse.Namespace, items: list[LabelInput]) -> None:
    """Refuse, before writing anything, an export that would replace an input or its neighbour.

    An output may not be an input or the ``--like`` source (same resolved path or same file),
    two inputs may not map to one output, and an existing file in an input's folder is never
    replaced (``--out .`` beside ``a.tif`` must not overwrite the photo ``a.png``).
    """
    from napari_segflow.cli._checks import check_writable_folder, refuse_overwrite

    sources = [Path(p) for p in args.inputs]
    if args.like:
        sources.append(Path(args.like))
    planned = _planned(args, items)
    refuse_overwrite(planned, sources)
    seen: dict[Path, Path] = {}
    for dest in planned:
        key = dest.resolve()
        if key in seen:
            raise ValueError(f"two inputs would both be written to {dest}; rename one")
        seen[key] = dest
    input_dirs = {p.resolve().parent for p in sources}
    for dest in planned:
        if dest.exists() and dest.resolve().parent in input_dirs:
            raise ValueError(
                f"--out: {dest} exists beside the inputs and would be replaced; "
                "choose an output folder of its own"
            )
    folder = planned[0].parent if planned else args.out
    check_writable_folder(folder)


def run(args: argparse.Namespace) -> int:
    from napari_segflow.cli._checks import prepare_output_folder

    taxonomy = load_taxonomy(args.taxonomy)
    if args.like and not Path(args.like).is_file():
        raise ValueError(f"--like {args.like}: no such file")
    out_is_file = args.out.name.lower().endswith((".json", ".tif", ".tiff", ".nii", ".nii.gz"))
    out_folder = args.out.parent if out_is_file else args.out
    prepare_output_folder(out_folder, inputs=[*args.inputs, *([args.like] if args.like else [])])
    items: list[LabelInput] = []
    failed = 0
    unreadable: list[str] = []
    for path in args.inputs:
        try:
            got = read_labels(path)
            for item in got:
                # a damaged sidecar is a damaged input (ProvenanceError), not a refused one
                check_provenance(item, require_confirmed=args.require_confirmed)
                items.append(item)
        except ProvenanceError as exc:
            unreadable.append(str(exc))
        except ExportError as exc:
            failed += 1
            print(f"{path}: {exc}")
        except (ValueError, OSError) as exc:
            unreadable.append(str(exc) if str(path) in str(exc) else f"{path}: {exc}")
    if unreadable:
        # a file that cannot be read is a mistake on the command line: nothing is written
        more = (
            f" (and {len(unreadable) - 1} more unreadable input(s))" if len(unreadable) > 1 else ""
        )
        raise ValueError(f"{unreadable[0]}{more}; nothing written")
    if items:
        check_destinations(args, items)

    if args.format == "coco":
        # one file for every image: any refused input means nothing is written
        if failed:
            print(f"{args.out}: not written ({failed} input(s) refused)")
            return 1
        from napari_segflow.core.io.coco import write_coco

        out = _coco_out(args)
        names = [i.path.name if i.path.suffix.lower() != ".json" else i.name for i in items]
        if len(set(names)) != len(names):
            raise ValueError("two inputs have the same file name; COCO image names must differ")
        write_coco(
            dict(zip(names, (i.labels for i in items), strict=True)),
            out,
            taxonomy=taxonomy,
            instances=args.instances,
        )
        carried = _carry_provenance(items[0], out) if len(items) == 1 else []
        print(f"{len(items)} image(s) -> {', '.join([str(out), *carried])}")
        return 0

    single = len(items) == 1
    for item in items:
        try:
            written = _write_one(args, item, taxonomy, single)
        except (ValueError, OSError) as exc:
            failed += 1
            print(f"{item.path}: {exc}")
            continue
        written = [*map(str, written), *_carry_provenance(item, Path(written[0]))]
        print(f"{item.path} -> {', '.join(written)}")
    return 1 if failed else 0
