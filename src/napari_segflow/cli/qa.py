"""``segflow qa-sample`` and ``segflow qa-report``: stratified QA sampling and batch reports."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_segflow.cli._checks import prepare_report_folder
from napari_segflow.cli.prelabel import add_cluster_arguments, quiet_dask
from napari_segflow.core.io.labels import label_files, match_label_files, read_labels
from napari_segflow.core.quality.qa import (
    DEFAULT_RATES,
    class_frequencies,
    qa_batch_report,
    stratified_sample,
)
from napari_segflow.core.taxonomy import load_taxonomy


def _rate(text: str) -> tuple[str, float]:
    key, sep, value = text.partition("=")
    try:
        return key.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CLASS=RATE, got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "qa-sample",
        help="choose a stratified QA sample (rare classes oversampled), with reasons",
    )
    s.add_argument("labels", type=Path, help="folder of the dataset's label files")
    s.add_argument("--taxonomy", required=True, help="taxonomy file or preset name")
    s.add_argument(
        "--rate",
        action="append",
        type=_rate,
        default=[],
        metavar="KEY=RATE",
        help=f"sampling rate for 'common', 'rare' or a class name (defaults {DEFAULT_RATES})",
    )
    s.add_argument(
        "--rare-threshold", type=float, default=0.05, help="frequency below which a class is rare"
    )
    s.add_argument("--frequency", choices=["pixels", "images"], default="pixels")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, type=Path, help="output folder (qa_sample.json/.csv)")
    s.set_defaults(func=run_sample)

    r = sub.add_parser("qa-report", help="per-class IoU of a QA batch against gold, with warnings")
    r.add_argument("--taxonomy", required=True, help="taxonomy file or preset name")
    r.add_argument("--gold", required=True, type=Path, help="folder of gold label files")
    r.add_argument("--annotated", required=True, type=Path, help="folder of the batch's labels")
    r.add_argument("--threshold", type=float, default=0.75)
    r.add_argument("--out", required=True, type=Path, help="output folder (qa_report.*)")
    add_cluster_arguments(r, default_workers=0)
    r.set_defaults(func=run_report)


def run_sample(args: argparse.Namespace) -> int:
    taxonomy = load_taxonomy(args.taxonomy)
    unknown = [n for n, _ in args.rate if n not in taxonomy.names and n not in ("common", "rare")]
    if unknown:
        raise ValueError(
            f"--rate: unknown class {unknown[0]!r} (use 'common', 'rare' or a class of "
            f"{taxonomy.name!r}: "
            f"{', '.join(taxonomy.names[:20])}{', ...' if len(taxonomy.names) > 20 else ''})"
        )
    bad = [f"{name}={rate}" for name, rate in args.rate if not 0 <= rate <= 1]
    if bad:
        raise ValueError(f"--rate: {bad[0]}: a rate is a fraction in 0..1")
    prepare_report_folder(
        args.out,
        files=["qa_sample.json", "qa_sample.csv"],
        inputs=[args.labels],
        taxonomy=args.taxonomy,
    )
    files = label_files(args.labels)
    if not files:
        raise ValueError(f"{args.labels}: no label files (PNG, TIFF or NIfTI)")
    freqs, failed = {}, 0
    for stem, path in files.items():
        try:
            freqs.update(class_frequencies({stem: read_labels(path)}, taxonomy))
        except ValueError as exc:
            failed += 1
            print(f"skipped: {exc}", file=sys.stderr)
    sample = stratified_sample(
        freqs,
        rates=dict(args.rate),
        rare_threshold=args.rare_threshold,
        seed=args.seed,
        frequency=args.frequency,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sample.to_json(out / "qa_sample.json")
    sample.to_csv(out / "qa_sample.csv")
    for im in sample.images:
        print(f"{im.name}: {'; '.join(im.reasons)}")
    print(
        f"{len(sample.images)} of {sample.n_images} images chosen "
        f"(rare: {', '.join(sample.rare_classes) or 'none'}); wrote {out / 'qa_sample.json'}"
    )
    return 1 if failed else 0


def run_report(args: argparse.Namespace) -> int:
    taxonomy = load_taxonomy(args.taxonomy)
    prepare_report_folder(
        args.out,
        files=["qa_report.json", "qa_report.csv", "qa_report.html"],
        inputs=[args.gold, args.annotated],
        taxonomy=args.taxonomy,
    )
    if args.scheduler is not None or args.workers > 0:
        return _run_report_parallel(args, taxonomy)
    matched = match_label_files(args.gold, {"annotated": args.annotated})
    for line in matched.problems:
        print(f"skipped: {line}", file=sys.stderr)
    if not matched.others["annotated"]:
        raise ValueError("no annotated file matches a gold file by name and shape")
    gold = {k: matched.reference[k] for k in matched.others["annotated"]}
    report = qa_batch_report(
        gold, matched.others["annotated"], taxonomy=taxonomy, threshold=args.threshold
    )
    return _print_report(args, report, matched.problems)


def _run_report_parallel(args: argparse.Namespace, taxonomy) -> int:
    """Per-image confusion matrices on dask workers (--scheduler/--workers), summed."""
    from napari_segflow.core.quality.batch_metrics import calibrate_files

    quiet_dask(getattr(args, "verbose", False))
    scores = calibrate_files(
        args.gold,
        {"batch": args.annotated},
        taxonomy=taxonomy,
        threshold=args.threshold,
        scheduler=args.scheduler,
        workers=args.workers,
    )
    for line in scores.problems:
        print(f"skipped: {line}", file=sys.stderr)
    if not scores.images["batch"]:
        raise ValueError("no annotated file matches a gold file by name and shape")
    report = qa_batch_report({}, {}, taxonomy=taxonomy, threshold=args.threshold, report=scores)
    return _print_report(args, report, scores.problems)


def _print_report(args: argparse.Namespace, report, problems: list[str]) -> int:
    paths = report.save(args.out)
    for c in report.classes:
        v = report.per_class_iou[c]
        mark = "  BELOW THRESHOLD" if c in report.below_threshold else ""
        print(f"{c:24s} {'n/a' if v != v else f'{v:.3f}'}{mark}")
    print(f"mean IoU {report.mean_iou:.3f} (per-image mean {report.per_image_mean_iou_mean:.3f})")
    for w in report.warnings:
        print(f"WARNING: {w}")
    print(f"wrote {paths['json']}, {paths['csv']}, {paths['html']}")
    return 1 if problems else 0
