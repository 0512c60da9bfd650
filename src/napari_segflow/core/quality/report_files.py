"""One way to turn a report into its files: JSON, CSV and HTML text, written atomically.

Calibration and QA reports (and any later report) subclass :class:`ReportFiles` and supply the
three renderings; the mixin returns each text and writes it atomically when given a path, and
``save`` writes all three under the report's file stem.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from napari_segflow.core.atomic import atomic_write_bytes

__all__ = ["ReportFiles", "csv_float"]


def csv_float(value: float) -> str:
    """A float cell: six decimals, empty for NaN."""
    return "" if value != value else f"{value:.6f}"


def _emit(text: str, path: str | os.PathLike[str] | None) -> str:
    if path is not None:
        atomic_write_bytes(path, text.encode())
    return text


class ReportFiles:
    """Mixin for reports that are saved as ``<stem>.json``, ``<stem>.csv`` and ``<stem>.html``.

    Subclasses set :attr:`file_stem` and implement :meth:`to_dict`, :meth:`csv_table` and
    :meth:`html_page`.
    """

    file_stem: ClassVar[str] = "report"
    #: The files :meth:`save` writes (a report without a page leaves out ``"html"``).
    file_kinds: ClassVar[tuple[str, ...]] = ("json", "csv", "html")

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def csv_table(self) -> tuple[Sequence[str], Iterable[Sequence[Any]]]:  # pragma: no cover
        """The CSV header and rows."""
        raise NotImplementedError

    def html_page(self) -> str:  # pragma: no cover - abstract
        """A self-contained HTML page."""
        raise NotImplementedError

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """The report as JSON text; also written atomically to ``path`` when given."""
        return _emit(json.dumps(self.to_dict(), indent=2), path)

    def to_csv(self, path: str | os.PathLike[str] | None = None) -> str:
        """The report's table as CSV text; also written atomically to ``path`` when given."""
        header, rows = self.csv_table()
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
        return _emit(buf.getvalue(), path)

    def to_html(self, path: str | os.PathLike[str] | None = None) -> str:
        """A self-contained HTML page (figures embedded); also written to ``path`` when given."""
        return _emit(self.html_page(), path)

    def save(self, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
        """Write the report's files (:attr:`file_kinds`) into ``out_dir``; return their paths."""
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        writers = {"json": self.to_json, "csv": self.to_csv, "html": self.to_html}
        paths = {kind: d / f"{self.file_stem}.{kind}" for kind in self.file_kinds}
        for kind, path in paths.items():
            writers[kind](path)
        return paths
