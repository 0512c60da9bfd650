"""``segflow calibrate``: score annotators against a gold set, class by class."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_segflow.cli._checks import prepare_report_folder
from napari_segflow.cli.prelabel import add_cluster_arguments, quiet_dask
from napari_segflow.core.io.labels import match_label_files
from napari_segflow.core.quality.batch_metrics import calibrate_files
from napari_segflow.core.quality.calibration import AI_GATE_THRESHOLD, ai_prelabel_gate, calibrate
from napari_segflow.core.taxonomy import load_taxonomy, save_taxonomy


def _annotator(text: str) -> tuple[str, Path]:
    name, sep, folder = text.partition("=")
    if not sep or not name.strip() or not folder.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {text!r}")
    return name.strip(), Path(folder)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="per-class IoU of annotators against gold masks; flags, plots, AI pre-label gate",
        description=(
            "Files are matched by name without extension (PNG, TIFF, NIfTI). A missing or "
            "shape-mismatched file is reported by name and the run continues; the exit code "
            "is then 1."
        ),
    )
    p.add_argument("--taxonomy", required=True, help="taxonomy file or preset name")
    p.add_argument("--gold", required=True, type=Path, help="folder of gold label files")
    p.add_argument(
        "--annotator",
        action="append",
        type=_annotator,
        default=[],
        metavar="NAME=DIR",
        help="an annotator's folder (repeat for each annotator)",
    )
    p.add_argument("--threshold", type=float, default=0.75, help="flag IoU below this (0.75)")
    p.add_argument(
        "--dilation-ratio",
        type=float,
        default=0.02,
        help="boundary IoU band width as a fraction of the image diagonal (0.02)",
    )
    p.add_argument(
        "--prelabels",
        type=Path,
        help="folder of model pre-labels: classes below --ai-threshold get ai_assist false",
    )
    p.add_argument("--ai-threshold", type=float, default=AI_GATE_THRESHOLD)
    p.add_argument("--out", required=True, type=Path, help="output folder for the reports")
    add_cluster_arguments(p, default_workers=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    taxonomy = load_taxonomy(args.taxonomy)
    if not args.annotator and args.prelabels is None:
        raise ValueError("give at least one --annotator NAME=DIR (or --prelabels DIR)")
    names = [n for n, _ in args.annotator]
    if len(set(names)) != len(names):
        raise ValueError(f"annotator names must be unique, got {names}")
    folders = dict(args.annotator)
    prepare_report_folder(
        args.out,
        files=["report.json", "report.csv", "report.html", "taxonomy_ai_gated.yaml"],
        inputs=[args.gold, *folders.values(), args.prelabels],
        taxonomy=args.taxonomy,
    )
    if args.prelabels is not None:
        folders["__prelabels__"] = args.prelabels
    # --scheduler/--workers: per-image confusion matrices on dask workers, summed here
    parallel = args.scheduler is not None or args.workers > 0
    if parallel:
        quiet_dask(getattr(args, "verbose", False))
    cluster = {"scheduler": args.scheduler, "workers": args.workers}
    problems: list[str] = []
    if not parallel:
        matched = match_label_files(args.gold, folders)
        problems = matched.problems
    for line in problems:
        print(f"skipped: {line}", file=sys.stderr)
    written: list[Path] = []
    if args.annotator:
        if parallel:
            report = calibrate_files(
                args.gold,
                {n: folders[n] for n in names},
                taxonomy=taxonomy,
                threshold=args.threshold,
                dilation_ratio=args.dilation_ratio,
                **cluster,
            )
            problems = problems + report.problems
            for line in report.problems:
                print(f"skipped: {line}", file=sys.stderr)
        else:
            report = calibrate(
                matched.reference,
                {n: matched.others[n] for n in names},
                taxonomy=taxonomy,
                threshold=args.threshold,
                dilation_ratio=args.dilation_ratio,
            )
        written += report.save(args.out).values()
        for a, name in enumerate(report.annotators):
            flags = [c for who, c in report.flagged if who == name]
            mean = report.mean_iou[a]
            print(
                f"{name}: mean IoU {mean:.3f} on {len(report.images[name])} images; "
                + (f"retrain on: {', '.join(flags)}" if flags else "no class below threshold")
            )
    if args.prelabels is not None:
        if parallel:
            scores = calibrate_files(
                args.gold,
                {"model": args.prelabels},
                taxonomy=taxonomy,
                threshold=args.ai_threshold,
                dilation_ratio=None,
                **cluster,
            )
            problems = problems + scores.problems
            gate = ai_prelabel_gate(
                {}, {}, taxonomy=taxonomy, threshold=args.ai_threshold, report=scores
            )
        else:
            gate = ai_prelabel_gate(
                matched.reference,
                matched.others["__prelabels__"],
                taxonomy=taxonomy,
                threshold=args.ai_threshold,
            )
        path = save_taxonomy(gate.taxonomy, Path(args.out) / "taxonomy_ai_gated.yaml")
        written.append(path)
        off = ", ".join(gate.disabled) or "none"
        print(f"AI pre-labels: ai_assist turned off for: {off}")
    for path in written:
        print(f"wrote {path}")
    return 1 if problems else 0
