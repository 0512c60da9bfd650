"""``segflow rules-check``: which classes touch in a set of masks, and which pairs lack a rule."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from napari_segflow.core.taxonomy import Taxonomy, load_taxonomy
from napari_segflow.core.taxonomy.rules import touching_pairs


def read_mask(path: Path) -> np.ndarray:
    """Read a label file: class-index PNG, TIFF, NIfTI (``.nii``/``.nii.gz``) or NPY."""
    from napari_segflow.core.io.labels import read_label_file

    return np.asarray(read_label_file(path))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rules-check",
        help="list touching class pairs, their rules, and pairs that still need a rule",
    )
    p.add_argument(
        "masks", nargs="+", type=Path, metavar="MASK", help="PNG/TIFF/NIfTI label files"
    )
    p.add_argument("--taxonomy", required=True, help="taxonomy file or preset name")
    p.add_argument(
        "--strict", action="store_true", help="exit with code 1 when touching pairs lack a rule"
    )
    p.add_argument(
        "--connectivity",
        type=int,
        default=1,
        help="1: face neighbours (default); 2: also diagonals (2D) / edges (3D); 3: corners (3D)",
    )
    p.set_defaults(func=run)


def _masks(paths: list[Path], taxonomy: Taxonomy, connectivity: int) -> Iterator[np.ndarray]:
    valid = np.fromiter(taxonomy.valid_ids, dtype=np.int64)
    for path in paths:
        labels = read_mask(path)
        if labels.dtype.kind not in "iub":
            raise ValueError(f"{path}: labels must hold integers, got dtype {labels.dtype}")
        if not 1 <= connectivity <= labels.ndim:
            raise ValueError(
                f"{path}: connectivity {connectivity} needs 1..{labels.ndim} for {labels.ndim}D masks"
            )
        unknown = np.setdiff1d(np.unique(labels), valid)
        if unknown.size:
            shown = ", ".join(map(str, unknown[:10].tolist()))
            print(
                f"warning: {path}: ids not in taxonomy {taxonomy.name!r} are skipped: {shown}",
                file=sys.stderr,
            )
        yield labels


def run(args: argparse.Namespace) -> int:
    taxonomy = load_taxonomy(args.taxonomy)
    pairs = touching_pairs(
        _masks(args.masks, taxonomy, args.connectivity),
        taxonomy,
        connectivity=args.connectivity,
    )
    n = len(args.masks)
    print(
        f"{n} mask{'s' if n != 1 else ''}, taxonomy {taxonomy.name!r}, "
        f"connectivity {args.connectivity}: {len(pairs)} touching pair(s)"
    )
    width = max((len(" / ".join(p.classes)) for p in pairs), default=0)
    for p in pairs:
        name = " / ".join(p.classes)
        where = f"{p.contact_length:>9} px in {p.n_maps} mask(s)"
        if p.rule is None:
            print(f"  {name:<{width}}  {where}  no rule written")
        else:
            to = f" [-> {p.rule.resolve_to}]" if p.rule.resolve_to else ""
            print(f"  {name:<{width}}  {where}  rule{to}: {p.rule.text}")
    uncovered = [p for p in pairs if p.rule is None]
    if uncovered:
        print(f"uncovered pairs, by total contact ({len(uncovered)}):")
        for p in uncovered:
            print(f"  {' / '.join(p.classes):<{width}}  {p.contact_length:>9} px")
    else:
        print("every touching pair has a rule")
    return 1 if args.strict and uncovered else 0
