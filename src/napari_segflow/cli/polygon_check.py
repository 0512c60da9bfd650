"""``segflow polygon-check``: would k-vertex polygons reproduce these masks, class by class?"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from napari_segflow.cli._checks import prepare_report_folder
from napari_segflow.core.atomic import atomic_write_bytes
from napari_segflow.core.quality.polygon_html import report_html
from napari_segflow.core.quality.polygons import DEFAULT_BUDGETS, polygon_sufficiency
from napari_segflow.core.taxonomy import load_taxonomy

log = logging.getLogger(__name__)


def read_mask(path: Path) -> tuple[np.ndarray, int]:
    """A label image or volume by extension, and the axis its 2D slices are cut along."""
    from napari_segflow.core.io.labels import read_label_file

    axis = -1 if path.name.lower().endswith((".nii", ".nii.gz")) else 0  # NIfTI: slices along k
    return read_label_file(path), axis


def _budgets(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"budgets must be integers, got {text!r}") from None
    if any(v < 3 for v in values):
        raise argparse.ArgumentTypeError("each vertex budget must be at least 3")
    return values


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "polygon-check",
        help="would k-vertex polygons do as well as pixel masks, per class?",
        description="Trace every object of the masks, simplify it to k vertices, rasterise it "
        "back and report per class the fewest vertices that reach the IoU target.",
    )
    p.add_argument("masks", nargs="+", type=Path, help="label images (PNG, TIFF, NIfTI, NPY)")
    p.add_argument("--taxonomy", required=True, help="taxonomy file or preset name")
    p.add_argument("--iou", type=float, default=0.95, help="IoU target per object (0.95)")
    p.add_argument(
        "--fraction", type=float, default=0.9, help="fraction of objects that must reach it (0.9)"
    )
    p.add_argument(
        "--budgets",
        type=_budgets,
        default=DEFAULT_BUDGETS,
        help="comma-separated vertex budgets (10,15,20,25,30,50)",
    )
    p.add_argument(
        "--instances",
        metavar="CLASS",
        help="the masks are instance maps: every non-zero id is one object of this class",
    )
    p.add_argument(
        "--axis", type=int, help="axis to cut 3D masks into slices (NIfTI: last, others: first)"
    )
    p.add_argument("--out", type=Path, default=Path("."), help="folder for the JSON and HTML")
    p.set_defaults(func=run)


def _slices(arr: np.ndarray, axis: int, path: Path) -> list[np.ndarray]:
    if arr.ndim == 2:
        return [arr]
    if arr.ndim == 3:
        return list(np.moveaxis(arr, axis, 0))
    raise ValueError(f"{path}: expected a 2D or 3D label image, got shape {arr.shape}")


def run(args: argparse.Namespace) -> int:
    taxonomy = load_taxonomy(args.taxonomy)
    instance_class = None
    if args.instances is not None:
        try:
            instance_class = taxonomy.by_name(args.instances).id
        except KeyError:
            raise ValueError(
                f"--instances: no class {args.instances!r} in taxonomy {taxonomy.name!r}"
            ) from None
    prepare_report_folder(
        args.out,
        files=["polygon_check.json", "polygon_check.html"],
        inputs=args.masks,
        taxonomy=args.taxonomy,
    )
    classes = [instance_class] if instance_class is not None else list(taxonomy.ids)
    names = [taxonomy.by_id(c).name for c in classes]
    valid = np.array(sorted(taxonomy.valid_ids))
    images, sources = [], []
    for path in args.masks:
        arr, axis = read_mask(path)
        if arr.dtype.kind not in "iub":
            raise ValueError(f"{path}: label images hold integers, got {arr.dtype}")
        if instance_class is None:
            bad = np.setdiff1d(np.unique(arr), valid)
            if bad.size:
                raise ValueError(
                    f"{path}: values {bad[:5].tolist()} are not classes of taxonomy "
                    f"{taxonomy.name!r} (instance maps need --instances CLASS)"
                )
        slices = _slices(arr, args.axis if args.axis is not None else axis, path)
        images += slices
        sources.append(f"{path.name} ({len(slices)} slice{'s' * (len(slices) > 1)})")
        log.info("%s: %d slice(s) of %s", path, len(slices), slices[0].shape)
    report = polygon_sufficiency(
        images,
        classes,
        class_names=names,
        budgets=args.budgets,
        iou_target=args.iou,
        object_fraction=args.fraction,
        instance_class=instance_class,
    )
    print(report.table())
    args.out.mkdir(parents=True, exist_ok=True)
    data = report.to_dict()
    data["taxonomy"] = taxonomy.name
    data["masks"] = [str(p) for p in args.masks]
    json_path = args.out / "polygon_check.json"
    html_path = args.out / "polygon_check.html"
    atomic_write_bytes(json_path, json.dumps(data, indent=1).encode("utf-8"))
    colors = {c.id: c.hex_color for c in taxonomy.classes}
    page = report_html(
        report, title=f"Polygon sufficiency: {taxonomy.name}", sources=sources, colors=colors
    )
    atomic_write_bytes(html_path, page.encode("utf-8"))
    print(f"wrote {json_path} and {html_path}")
    return 0
