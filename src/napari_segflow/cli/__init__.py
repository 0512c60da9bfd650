"""The ``segflow`` command line: batch jobs over the same core as the napari widgets.

Each subcommand lives in its own module under :mod:`napari_segflow.cli` and exposes
``register(subparsers)``; add a module name to ``_COMMANDS`` to add a command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from napari_segflow import __version__

_COMMANDS = [
    "taxonomy",
    "export",
    "gui",
    "calibrate",
    "qa",
    "rules_check",
    "polygon_check",
    "prelabel",
    "project",
    "learn",
]


class UserError(Exception):
    """A mistake in the command line or its inputs: printed as one line, exit code 2."""


def one_line(exc: BaseException, limit: int = 500) -> str:
    """An exception's message as one bounded line (library messages may span lines)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segflow",
        description="Batch jobs of napari-segflow: taxonomies, export, calibration, QA, pre-labelling.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``segflow`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except (UserError, ValueError, OSError) as exc:
        # user mistakes (bad files, invalid taxonomy, refused export) get one line, not a traceback
        print(f"segflow {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except (MemoryError, RecursionError) as exc:
        # inputs are bounded before they are read; should one still exhaust memory or
        # recursion, say so in one line (-v logs the traceback)
        logging.getLogger(__name__).info("traceback", exc_info=True)
        what = "out of memory" if isinstance(exc, MemoryError) else "input nested too deeply"
        print(f"segflow {args.command}: error: {what}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"segflow {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
