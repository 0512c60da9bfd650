"""``segflow export``: write label images in delivery formats."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_segflow.core.io import png_paths, read_png, write_png
from napari_segflow.core.taxonomy import load_taxonomy

FORMATS = {"png"}


def read_labels(path: Path):
    """Read a label image by extension (PNG here; other formats register with the readers)."""
    suffix = path.suffix.lower()
    if suffix == ".png":
        return read_png(path)
    if suffix in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    if suffix == ".npy":
        import numpy as np

        return np.load(path)
    raise ValueError(f"{path}: unsupported label file type {suffix!r}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export label images (PNG class-index masks, ...)")
    p.add_argument("inputs", nargs="+", type=Path, help="label images (PNG, TIFF, NPY)")
    p.add_argument("--format", default="png", help="output format (png)")
    p.add_argument("--taxonomy", required=True, help="taxonomy file or preset name")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--color", action="store_true", help="also write colour previews")
    p.add_argument(
        "--cityscapes", action="store_true", help="name files <stem>_gtFine_labelIds.png"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.format not in FORMATS:
        raise ValueError(f"unknown format {args.format!r}; choose from {sorted(FORMATS)}")
    taxonomy = load_taxonomy(args.taxonomy)
    failed = 0
    for path in args.inputs:
        try:
            labels = read_labels(path)
            index_path, color_path = png_paths(args.out, path.stem, cityscapes=args.cityscapes)
            written = write_png(
                labels,
                index_path,
                taxonomy=taxonomy,
                color_path=color_path if args.color else None,
            )
        except (ValueError, OSError) as exc:
            failed += 1
            print(f"{path}: {exc}")
            continue
        print(f"{path} -> {', '.join(map(str, written))}")
    return 1 if failed else 0
