"""``segflow project``: create an annotation project, read its status, deliver and report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from napari_segflow.core.project import (
    EXPORT_FORMATS,
    STATUSES,
    create_project,
    export_project,
    open_project,
    project_report,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "project",
        help="annotation projects: init, status, export, report, take-over",
        description="An annotation project: images, taxonomy, annotators, per-annotator labels "
        "and each person's own state file in PROJECT/state/ (safe on a shared folder).",
    )
    cmds = p.add_subparsers(dest="project_command", metavar="ACTION", required=True)

    i = cmds.add_parser("init", help="create a project (refuses to overwrite one)")
    i.add_argument("project", type=Path, help="project folder")
    i.add_argument(
        "--images", required=True, type=Path, help="folder of images, or a .txt list of paths"
    )
    i.add_argument("--taxonomy", required=True, help="taxonomy file or preset name")
    i.add_argument("--gold", type=Path, help="folder of gold label files (the calibration set)")
    i.add_argument("--annotators", default="", help="comma-separated annotator names")
    i.add_argument(
        "--prelabels",
        type=Path,
        help="folder of `segflow prelabel` outputs (default PROJECT/prelabels)",
    )
    i.set_defaults(func=run_init)

    s = cmds.add_parser("status", help="images per status and per annotator")
    s.add_argument("project", type=Path)
    s.add_argument("--json", action="store_true", help="print the status as JSON")
    s.set_defaults(func=run_status)

    e = cmds.add_parser("export", help="deliver the finished labels")
    e.add_argument("project", type=Path)
    e.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    e.add_argument("--out", required=True, type=Path, help="output folder")
    e.add_argument(
        "--require-confirmed",
        action="store_true",
        help="refuse the export (nothing written) while AI pixels are unconfirmed",
    )
    e.set_defaults(func=run_export)

    r = cmds.add_parser("report", help="throughput and quality report (JSON, CSV, HTML)")
    r.add_argument("project", type=Path)
    r.add_argument("--out", required=True, type=Path, help="output folder")
    r.set_defaults(func=run_report)

    t = cmds.add_parser(
        "take-over",
        help="give an image held by a window that went away to another annotator",
    )
    t.add_argument("project", type=Path)
    t.add_argument("image", help="the image's name (file name without extension)")
    t.add_argument("--annotator", required=True, help="who takes the image")
    t.add_argument(
        "--stale-after",
        type=float,
        default=900.0,
        metavar="SECONDS",
        help="refuse while the holder worked on it less than this long ago (default 900)",
    )
    t.set_defaults(func=run_take_over)


def _open(path: Path):
    if not (path / "project.json").is_file():
        raise ValueError(f"{path}: not a segflow project (no project.json)")
    return open_project(path)


def run_init(args: argparse.Namespace) -> int:
    names = [a.strip() for a in args.annotators.split(",") if a.strip()]
    with create_project(
        args.project,
        images=args.images,
        taxonomy=args.taxonomy,
        gold=args.gold,
        annotators=names,
        prelabels=args.prelabels,
    ) as project:
        st = project.status()
    print(
        f"{args.project}: {st['images']} images, {st['gold']} gold, "
        f"annotators: {', '.join(names) or 'none yet'}"
    )
    return 0


def run_status(args: argparse.Namespace) -> int:
    with _open(args.project) as project:
        st = project.status()
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    done = sum(st["status"][k] for k in ("done", "in_review", "accepted"))
    print(f"{args.project}: {st['images']} images, {done} finished, {st['qa_batches']} QA batches")
    print("  " + ", ".join(f"{k} {st['status'][k]}" for k in STATUSES))
    for name, a in st["annotators"].items():
        prod = ", ".join(f"{k} {v}" for k, v in a["production"].items()) or "nothing yet"
        flags = f"; retrain: {', '.join(a['flags'])}" if a["flags"] else ""
        print(f"  {name}: {prod}; {a['seconds'] / 3600:.2f} h{flags}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    with _open(args.project) as project:
        summary = export_project(
            project, args.out, fmt=args.format, require_confirmed=args.require_confirmed
        )
    for w in summary.warnings:
        print(f"warning: {w}", file=sys.stderr)
    for stem, why in summary.failed.items():
        print(f"{stem}: {why}", file=sys.stderr)
    print(
        f"{len(summary.written)} file(s) -> {args.out}; {len(summary.left_out)} image(s) "
        f"not finished, {len(summary.failed)} failed"
    )
    return 1 if summary.failed else 0


def run_report(args: argparse.Namespace) -> int:
    with _open(args.project) as project:
        report = project_report(project)
    paths = report.save(args.out)
    print(", ".join(str(p) for p in paths.values()))
    return 0


def run_take_over(args: argparse.Namespace) -> int:
    if args.stale_after < 0:
        raise ValueError(f"--stale-after must be >= 0 seconds, got {args.stale_after:g}")
    with _open(args.project) as project:
        project.take_over(args.image, annotator=args.annotator, stale_after=args.stale_after)
    print(f"{args.image}: now held by {args.annotator}")
    return 0
