"""Up-front checks every ``segflow`` command runs before any per-image work.

A mistake in the command line must cost one line and no time: an output that would replace an
input, an output folder that cannot be written, leftovers of a killed run. Each command calls
these helpers first; they raise :class:`~napari_segflow.cli.UserError`-style ``ValueError``
messages that :func:`napari_segflow.cli.main` prints as ``segflow <command>: error: ...``.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from napari_segflow.core.atomic import remove_stale_parts
from napari_segflow.core.io.guard import refuse_overwrite, same_file

__all__ = [
    "check_writable_folder",
    "prepare_output_folder",
    "prepare_report_folder",
    "refuse_overwrite",
    "same_file",
]

log = logging.getLogger(__name__)


def check_writable_folder(folder: Path, *, option: str = "--out") -> None:
    """Refuse an output folder that is a file, or cannot be created or written, up front."""
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise ValueError(f"{option} {folder}: {existing} is a file, not a folder")
    try:
        # a real probe: permission bits alone say nothing on read-only mounts or for root
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise ValueError(
            f"{option} {folder}: cannot write there ({exc.strerror or exc})"
        ) from None


def prepare_output_folder(
    folder: Path, *, inputs: Iterable[str | os.PathLike[str]] = (), option: str = "--out"
) -> None:
    """Everything a command checks about its output folder before it starts.

    Refuses a folder that is one of the ``inputs`` (by resolved path or same-file identity) or
    cannot be written; removes temporaries that killed writers left in it.
    """
    refuse_overwrite([folder], inputs, option=option)
    check_writable_folder(folder, option=option)
    removed = remove_stale_parts(folder)
    if removed:
        print(
            f"removed {len(removed)} unfinished temporary file(s) of an interrupted run in {folder}",
            file=sys.stderr,
        )


def prepare_report_folder(
    folder: Path,
    *,
    files: Iterable[str],
    inputs: Iterable[str | os.PathLike[str] | None],
    taxonomy: str | os.PathLike[str] | None = None,
    option: str = "--out",
) -> None:
    """:func:`prepare_output_folder` for a command that writes named report ``files``.

    Also refuses a report file that would replace one of the ``inputs`` or the ``taxonomy``
    file (a preset name is not a file and is left out). ``None`` inputs are skipped.
    """
    sources = [Path(p) for p in inputs if p is not None]
    if taxonomy is not None and Path(taxonomy).is_file():
        sources.append(Path(taxonomy))
    prepare_output_folder(folder, inputs=sources, option=option)
    refuse_overwrite([Path(folder) / name for name in files], sources, option=option)
