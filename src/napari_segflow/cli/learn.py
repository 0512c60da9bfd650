"""``segflow learn train``: a pixel classifier from annotated images or volumes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "learn",
        help="train a pixel classifier on the project's classes",
        description="Learn the project's classes from annotated images or volumes.",
    )
    learn_sub = p.add_subparsers(dest="learn_command", metavar="ACTION")
    t = learn_sub.add_parser(
        "train",
        help="images + label folders (or NIfTI volumes) and a taxonomy -> model file",
        description=(
            "Trains a pixel classifier (filter bank + LiteMedSAM embeddings, random forest) on "
            "the labelled pixels: label pixels equal to --unlabelled are not training data, so "
            "scribbles and a few labelled slices of a volume both work. Labels pair with images "
            "by name. Prints the per-class IoU on held-out images/slices and the AI gate "
            "(classes below 0.70 get ai_assist false). The model file is an .npz of plain "
            "arrays (no pickle); use it with `segflow prelabel --classifier`."
        ),
    )
    t.add_argument("images", type=Path, help="folder of images (2D, NIfTI, multi-page TIFF)")
    t.add_argument("--labels", type=Path, required=True, help="folder of label files, by name")
    t.add_argument("--taxonomy", required=True, help="taxonomy file or preset name")
    t.add_argument("--out", type=Path, required=True, help="model file to write (.npz)")
    t.add_argument(
        "--unlabelled",
        type=int,
        help="label value of pixels nobody labelled (default: the taxonomy's ignore id, else 255)",
    )
    t.add_argument(
        "--axis",
        type=int,
        help="slice axis of volumes in file order (default: NIfTI's last axis, a TIFF stack's first)",
    )
    t.add_argument("--window", help="intensity window: auto (default), a preset or LEVEL,WIDTH")
    t.add_argument(
        "--no-embeddings", action="store_true", help="filter bank only (no encoder; faster)"
    )
    t.add_argument("--trees", type=int, default=32, help="random forest trees (32)")
    t.add_argument(
        "--cv", type=int, default=3, help="cross-validation folds for the IoU table (3; 0 = none)"
    )
    t.add_argument("--report", type=Path, help="write the IoU table and gate as JSON here")
    t.add_argument(
        "--gated-taxonomy",
        type=Path,
        help="write the taxonomy with ai_assist set by the gate here (YAML or JSON)",
    )
    t.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    t.set_defaults(func=run_train)
    p.set_defaults(func=lambda args: _usage(p))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 1


def _window(text: str | None):
    if text is None:
        return "auto"
    if "," in text:
        level, _, width = text.partition(",")
        try:
            return (float(level), float(width))
        except ValueError:
            raise ValueError(f"--window: expected LEVEL,WIDTH or a preset, got {text!r}") from None
    return text


def _read_pairs(images_dir: Path, labels_dir: Path, axis: int | None):
    import numpy as np

    from napari_segflow.core.io.labels import label_files, read_labels
    from napari_segflow.core.prelabel.batch import image_files, read_image
    from napari_segflow.core.prelabel.volume import default_axis, read_volume, volume_kind

    images = image_files(images_dir)
    labels = label_files(labels_dir)
    if not images:
        raise ValueError(f"{images_dir}: no images")
    missing = sorted(set(images) - set(labels))
    if missing:
        raise ValueError(f"no label file for {', '.join(missing[:5])} in {labels_dir}")
    names, imgs, labs = [], [], []
    for stem, path in images.items():
        kind = volume_kind(path)
        lab = read_labels(labels[stem])
        if kind is not None:
            vol, _ = read_volume(path)
            ax = default_axis(kind, vol.ndim) if axis is None else axis
            if lab.shape != vol.shape:
                raise ValueError(f"{labels[stem].name}: shape {lab.shape}, volume {vol.shape}")
            vol, lab = np.moveaxis(vol, ax, 0), np.moveaxis(lab, ax, 0)
        else:
            vol = read_image(path)
            if lab.shape != vol.shape[:2]:
                raise ValueError(f"{labels[stem].name}: shape {lab.shape}, image {vol.shape[:2]}")
        names.append(stem)
        imgs.append(np.ascontiguousarray(vol))
        labs.append(np.ascontiguousarray(lab))
    return names, imgs, labs


def run_train(args: argparse.Namespace) -> int:
    import time

    from napari_segflow.core.learn import PixelClassifier
    from napari_segflow.core.taxonomy import load_taxonomy, save_taxonomy

    taxonomy = load_taxonomy(args.taxonomy)
    if args.trees < 1 or args.cv < 0 or args.threads < 1:
        raise ValueError("--trees and --threads must be >= 1, --cv >= 0")
    out = args.out.resolve()
    inputs = {p.resolve() for d in (args.images, args.labels) if d.is_dir() for p in d.iterdir()}
    for target in (args.out, args.report, args.gated_taxonomy):
        if target is not None and target.resolve() in inputs:
            raise ValueError(f"{target}: is an input file; choose another output path")
    if out.is_dir():
        raise ValueError(f"--out {args.out} is a folder; give a file name such as model.npz")
    unlabelled = args.unlabelled
    if unlabelled is None:
        unlabelled = taxonomy.ignore_id if taxonomy.ignore_id is not None else 255
    names, images, labels = _read_pairs(args.images, args.labels, args.axis)

    import torch

    torch.set_num_threads(args.threads)
    clf = PixelClassifier(
        embeddings=not args.no_embeddings,
        n_trees=args.trees,
        window=_window(args.window),
        taxonomy=taxonomy,
    )
    t0 = time.perf_counter()
    cv = None
    if args.cv:
        cv = clf.cross_validate(images, labels, unlabelled=unlabelled, folds=args.cv)
        print(cv.table())
        if cv.gate is not None and cv.gate.disabled:
            print(
                f"AI pre-labels off (IoU < {cv.gate.threshold:.2f}): {', '.join(cv.gate.disabled)}"
            )
    clf.fit(images, labels, unlabelled=unlabelled)
    clf.save(out)
    print(
        f"trained on {len(names)} file(s), {len(clf.classes)} classes, "
        f"{len(clf.feature_names())} features in {time.perf_counter() - t0:.1f} s"
    )
    print(f"wrote {args.out}")
    if args.report is not None:
        from napari_segflow.core.atomic import atomic_write_bytes

        doc = {"model": str(args.out), "files": names, "unlabelled": unlabelled}
        doc["cross_validation"] = None if cv is None else cv.to_dict()
        atomic_write_bytes(args.report, json.dumps(doc, indent=1).encode())
        print(f"wrote {args.report}")
    if args.gated_taxonomy is not None:
        if cv is None or cv.gate is None:
            print("--gated-taxonomy needs --cv >= 2", file=sys.stderr)
            return 2
        save_taxonomy(cv.gate.taxonomy, args.gated_taxonomy)
        print(f"wrote {args.gated_taxonomy}")
    return 0
