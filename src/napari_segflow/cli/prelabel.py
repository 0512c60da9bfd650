"""``segflow prelabel``: refine coarse labels into pixel-accurate pre-labels over a dataset."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from napari_segflow.core.prelabel.refine import RefineOptions

_DEFAULTS = RefineOptions()


def add_cluster_arguments(p: argparse.ArgumentParser, *, default_workers: int | None) -> None:
    """``--scheduler`` and ``--workers``, shared by every dataset-scale command.

    ``default_workers=None``: the command picks a count from the machine ("auto").
    """
    shown = "auto, from cores, memory and images" if default_workers is None else default_workers
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="address of an existing dask.distributed scheduler (e.g. tcp://head:8786)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=default_workers,
        help=f"without --scheduler: local worker processes, 0 = serial in this process "
        f"(default {shown})",
    )


def quiet_dask(verbose: bool = False) -> None:
    """dask.distributed logs every worker start and stop at INFO; keep that for ``-v``."""
    if verbose:
        return
    import distributed  # noqa: F401  (sets its own logger levels on import; override them after)

    for name in list(logging.root.manager.loggerDict):
        if name.split(".")[0] in ("distributed", "bokeh", "tornado"):
            logging.getLogger(name).setLevel(logging.ERROR)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prelabel",
        help="AI pre-labels from coarse labels, COCO or prompt JSON, on a local or dask cluster",
        description=(
            "Each class region of a coarse 2D label image is snapped to the picture's "
            "boundaries (--method snap: a colour graph cut limited to a band around the coarse "
            "boundary, neighbouring classes competing for the band) or refined by the model "
            "(--method model, and for prompt files). A new outline is kept only where the "
            "picture supports it; otherwise the coarse region is kept and flagged. Outputs per image: <stem>.png, <stem>.png.provenance.npz "
            "(model pixels AI-pending), <stem>.prelabel.json. Reruns skip finished images. "
            "Volumes (NIfTI .nii/.nii.gz, multi-page TIFF) are refined slice by slice along "
            "--axis with one intensity window per volume and written as <stem>.nii.gz (the "
            "source affine kept exactly) or <stem>.tif, with a provenance sidecar of the same "
            "shape; their coarse labels are volumes of the same shape, paired by name."
        ),
    )
    p.add_argument(
        "images",
        type=Path,
        help="folder of 2D images (TIFF, PNG, JPEG) and/or volumes (NIfTI, multi-page TIFF)",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--coarse", type=Path, help="folder of coarse label images, paired by name")
    src.add_argument("--coco", type=Path, help="COCO JSON with polygons, RLE masks or boxes")
    src.add_argument(
        "--prompts", type=Path, help="segflow-prompts/1 JSON of boxes/points per class"
    )
    src.add_argument(
        "--classifier",
        type=Path,
        metavar="MODEL",
        help="pixel-classifier file from `segflow learn train`: pre-label every image with it "
        "(classes with ai_assist false are skipped)",
    )
    p.add_argument(
        "--min-confidence",
        type=float,
        default=0.5,
        help="with --classifier: pixels below this confidence stay unlabelled (0.5)",
    )
    p.add_argument("--taxonomy", required=True, help="taxonomy file or preset name")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--model", help="model name (default medsam-lite)")
    p.add_argument("--checkpoint", help="weights file (default: bundled / cached)")
    p.add_argument(
        "--window", help="intensity window: preset (ct-soft-tissue, percentile...) or LEVEL,WIDTH"
    )
    p.add_argument(
        "--axis",
        type=int,
        help="slice axis of volumes, in file array order (default: NIfTI's last axis k, "
        "the first axis Z of a TIFF stack); one window per volume (auto unless --window)",
    )
    p.add_argument(
        "--method",
        choices=("snap", "model"),
        help="2D images with --coarse: snap each region to the picture's boundaries with a "
        "band-limited colour cut (snap, no model, fast) or refine it with the model (model). "
        "Prompt files and volumes always use the model (default snap, or model when --model "
        "or --checkpoint is given)",
    )
    p.add_argument(
        "--reference",
        type=Path,
        metavar="DIR",
        help="folder of reference label images paired by name (evaluation): reports give the "
        "IoU of the coarse input and of the output with them, per image and in total",
    )
    p.add_argument(
        "--min-iou",
        type=float,
        default=_DEFAULTS.min_iou,
        help=f"keep the model's version only above this IoU with the coarse region ({_DEFAULTS.min_iou})",
    )
    p.add_argument(
        "--band",
        type=float,
        default=_DEFAULTS.band,
        help=f"band half-width as a fraction of sqrt(object area) ({_DEFAULTS.band})",
    )
    p.add_argument(
        "--confidence",
        type=float,
        default=_DEFAULTS.confidence,
        help=f"minimum |logit| for the model to flip a pixel ({_DEFAULTS.confidence})",
    )
    p.add_argument(
        "--min-width",
        type=int,
        default=_DEFAULTS.min_width,
        help=f"ignore changes thinner than this many pixels ({_DEFAULTS.min_width})",
    )
    p.add_argument(
        "--no-edge-check",
        action="store_true",
        help="accept changes without stronger image edges along the new boundary",
    )
    add_cluster_arguments(p, default_workers=None)
    p.add_argument(
        "--threads", type=int, default=1, help="threads per image, torch or ONNX Runtime (1)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _window(text: str | None):
    if text is None:
        return None
    if "," in text:
        level, _, width = text.partition(",")
        try:
            return [float(level), float(width)]
        except ValueError:
            raise ValueError(f"--window: expected LEVEL,WIDTH or a preset, got {text!r}") from None
    return text


def run(args: argparse.Namespace) -> int:
    from napari_segflow.cli._checks import prepare_output_folder
    from napari_segflow.core.prelabel.batch import (
        PrelabelJob,
        image_files,
        make_tasks,
        run_prelabel,
    )
    from napari_segflow.core.prelabel.prompts import read_coco_prompts, read_prompts_json
    from napari_segflow.core.segment import available_models
    from napari_segflow.core.segment.preprocess import resolve_window
    from napari_segflow.core.taxonomy import load_taxonomy

    quiet_dask(getattr(args, "verbose", False))
    # everything a user can get wrong is checked here, before any image is read
    sources = [args.images, args.coarse, args.coco, args.prompts]
    if Path(args.taxonomy).exists():
        sources.append(Path(args.taxonomy))
    prepare_output_folder(args.out, inputs=[s for s in sources if s is not None])
    try:
        resolve_window(_window(args.window))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--window: {exc}") from None
    if args.checkpoint is not None and not Path(args.checkpoint).is_file():
        raise ValueError(f"--checkpoint {args.checkpoint}: no such file")
    taxonomy = load_taxonomy(args.taxonomy)
    method = args.method
    if method is None:
        method = "model" if args.model is not None or args.checkpoint is not None else "snap"
    args.model = args.model or "medsam-lite"
    if args.model not in available_models():
        raise ValueError(
            f"unknown model {args.model!r}; available: {', '.join(available_models())}"
        )
    if (args.workers is not None and args.workers < 0) or args.threads < 1:
        raise ValueError("--workers must be >= 0 and --threads >= 1")
    images = image_files(args.images)
    if not images:
        raise ValueError(f"{args.images}: no images ({', '.join(('.tif', '.png', '.jpg'))})")
    prompts = None
    if args.coco is not None:
        prompts = read_coco_prompts(args.coco, taxonomy=taxonomy)
    elif args.prompts is not None:
        prompts = read_prompts_json(args.prompts, taxonomy=taxonomy)
    classifier = None
    if args.classifier is not None:
        from napari_segflow.core.prelabel.batch import ImageTask
        from napari_segflow.core.prelabel.classifier import load_classifier

        if not 0 <= args.min_confidence <= 1:
            raise ValueError(f"--min-confidence must lie in [0, 1], got {args.min_confidence}")
        load_classifier(args.classifier, taxonomy=taxonomy)  # a wrong file fails here, once
        classifier = str(args.classifier.resolve())
        tasks, problems = [ImageTask(stem, str(path)) for stem, path in images.items()], {}
    else:
        tasks, problems = make_tasks(images, coarse_dir=args.coarse, prompts=prompts)
    for stem, why in problems.items():
        print(f"not queued: {stem}: {why}", file=sys.stderr)
    if prompts is not None:
        unmatched = sorted(set(prompts) - set(images))
        for stem in unmatched[:20]:
            print(
                f"not used: prompts for {stem!r} match no image in {args.images}", file=sys.stderr
            )
        if len(unmatched) > 20:
            print(f"not used: {len(unmatched) - 20} more prompt keys", file=sys.stderr)
    if args.reference is not None:
        if not args.reference.is_dir():
            raise ValueError(f"--reference {args.reference}: not a folder")
        from napari_segflow.core.io.labels import label_files

        refs = label_files(args.reference)
        missing = sorted(t.stem for t in tasks if t.stem not in refs)
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise ValueError(
                f"--reference {args.reference}: no reference labels for "
                f"{', '.join(missing[:5])}{more}"
            )
    snaps = method == "snap" and args.coarse is not None
    if snaps:
        from napari_segflow.core.prelabel.snap import SnapOptions

        options = SnapOptions().to_dict()
    else:
        options = RefineOptions(
            min_iou=args.min_iou,
            band=args.band,
            confidence=args.confidence,
            min_width=args.min_width,
            edge_check=not args.no_edge_check,
        ).to_dict()
    job = PrelabelJob(
        out_dir=str(args.out),
        taxonomy=taxonomy.to_dict(),
        model=args.model,
        checkpoint=args.checkpoint,
        window=_window(args.window),
        options=options,
        torch_threads=args.threads,
        axis=args.axis,
        classifier=classifier,
        min_confidence=args.min_confidence,
        method="snap" if snaps else "model",
        reference_dir=None if args.reference is None else str(args.reference),
    )
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), unit="img", desc="prelabel", file=sys.stderr)

    def progress(outcome, finished, total) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"{outcome.stem}: {outcome.status}", refresh=False)
        if outcome.status == "failed":
            msg = f"failed: {outcome.stem}: {outcome.reason}"
            (bar.write(msg, file=sys.stderr) if bar is not None else print(msg, file=sys.stderr))

    workers = args.workers
    if workers is None and args.scheduler is None:
        from napari_segflow.core.prelabel.workers import default_workers

        workers = default_workers(len(tasks), threads=args.threads)
    t0 = time.perf_counter()
    try:
        summary = run_prelabel(
            job,
            tasks,
            scheduler=args.scheduler,
            workers=workers,
            progress=progress,
        )
    finally:
        if bar is not None:
            bar.close()
    rate = summary.images_per_second
    stale = f" (redone as stale: {len(summary.stale)})" if summary.stale else ""
    print(
        f"done {len(summary.done)}{stale}, skipped {len(summary.skipped)}, "
        f"failed {len(summary.failed)}"
        f" in {time.perf_counter() - t0:.1f} s"
        + (f" ({rate:.2f} images/s)" if summary.done else "")
    )
    counts = ", ".join(f"{k} {v}" for k, v in sorted(summary.object_counts.items()))
    if counts:
        print(
            f"objects: {counts}; flagged for review: {summary.flagged_objects}; "
            f"pixels changed: {summary.pixels_changed}"
        )
    if summary.reference_images:
        print(
            f"IoU with the reference over {summary.reference_images} images: "
            f"before {summary.reference_iou('before'):.4f}, "
            f"after {summary.reference_iou('after'):.4f}"
        )
    for stem, why in sorted(summary.failed.items()):
        print(f"  failed {stem}: {why}")
    print(f"wrote {Path(args.out) / 'prelabel_summary.json'}")
    return 1 if summary.failed or problems else 0
