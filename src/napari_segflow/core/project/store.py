"""The project's catalog (``project.db``): the images, the gold flags, the first annotators.

It is written once, when the project is created, and then sealed (rollback journal, no WAL
files) so every session opens it read-only and immutable: no lock, nothing written, also on a
network share. The people's work lives in their own state files (:mod:`.state`).

Projects made before per-person state kept everything here (work, calibration, QA batches and
verdicts, the status column of each image); the schema still holds those tables so such a
database can be read and migrated (:mod:`.migrate`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from napari_segflow.core.project.state import write_transaction

__all__ = [
    "ACCEPTED",
    "DONE",
    "IN_PROGRESS",
    "IN_REVIEW",
    "REJECTED",
    "SCHEMA_VERSION",
    "SKIPPED",
    "STATUSES",
    "TODO",
    "ProjectStore",
]

TODO = "todo"
IN_PROGRESS = "in_progress"
DONE = "done"
SKIPPED = "skipped"
IN_REVIEW = "in_review"
ACCEPTED = "accepted"
REJECTED = "rejected"
#: Every status an image (or one annotator's work on it) can have, in workflow order.
STATUSES = (TODO, IN_PROGRESS, DONE, SKIPPED, IN_REVIEW, ACCEPTED, REJECTED)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    stem TEXT UNIQUE NOT NULL,
    path TEXT NOT NULL,
    gold INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'todo',
    annotator TEXT
);
CREATE INDEX IF NOT EXISTS images_status ON images (status);
CREATE INDEX IF NOT EXISTS images_annotator ON images (annotator);
CREATE TABLE IF NOT EXISTS annotators (
    name TEXT PRIMARY KEY,
    current_stem TEXT,
    current_mode TEXT,
    added REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS work (
    image_id INTEGER NOT NULL REFERENCES images (id),
    annotator TEXT NOT NULL,
    mode TEXT NOT NULL,
    status TEXT NOT NULL,
    seconds REAL NOT NULL DEFAULT 0,
    edits INTEGER NOT NULL DEFAULT 0,
    ai_pixels INTEGER NOT NULL DEFAULT 0,
    ai_accepted INTEGER NOT NULL DEFAULT 0,
    ai_corrected INTEGER NOT NULL DEFAULT 0,
    class_pixels TEXT NOT NULL DEFAULT '{}',
    started REAL,
    finished REAL,
    updated REAL,
    PRIMARY KEY (image_id, annotator, mode)
);
CREATE INDEX IF NOT EXISTS work_counts ON work (mode, annotator, status, seconds);
CREATE TABLE IF NOT EXISTS calibration (
    annotator TEXT NOT NULL,
    class TEXT NOT NULL,
    iou REAL,
    flagged INTEGER NOT NULL,
    run REAL NOT NULL,
    PRIMARY KEY (annotator, class)
);
CREATE TABLE IF NOT EXISTS qa_batches (
    id INTEGER PRIMARY KEY,
    created REAL NOT NULL,
    seed INTEGER NOT NULL,
    report TEXT
);
CREATE TABLE IF NOT EXISTS qa_items (
    batch_id INTEGER NOT NULL REFERENCES qa_batches (id),
    image_id INTEGER NOT NULL REFERENCES images (id),
    annotator TEXT NOT NULL,
    reasons TEXT NOT NULL DEFAULT '[]',
    verdict TEXT NOT NULL DEFAULT 'pending',
    reviewer TEXT,
    seconds REAL NOT NULL DEFAULT 0,
    reviewed REAL,
    PRIMARY KEY (batch_id, image_id)
);
"""


class ProjectStore:
    """The catalog database of one project (``project.db``).

    Parameters
    ----------
    path : path-like
        The database file; created with the schema when missing and ``create`` is true.
    create : bool
        Allow creating a new database.
    readonly : bool
        Open a sealed catalog read-only and immutable (every session after creation).
    timeout : float
        Seconds a writer waits for another window's transaction to finish.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = False,
        readonly: bool = False,
        timeout: float = 30.0,
    ) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise ValueError(f"{self.path}: no project database")
        if readonly:
            # a sealed catalog never changes: no locks, no journal, nothing written
            uri = self.path.resolve().as_uri() + "?mode=ro&immutable=1"
            self._con = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self._con.row_factory = sqlite3.Row
            self._check_version()
            return
        # autocommit mode: transactions are opened explicitly in :meth:`transaction`
        self._con = sqlite3.connect(
            str(self.path), timeout=timeout, isolation_level=None, check_same_thread=False
        )
        self._con.row_factory = sqlite3.Row
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=NORMAL")
        self._con.execute("PRAGMA foreign_keys=ON")
        self._ensure_schema(create)

    def _ensure_schema(self, create: bool) -> None:
        if create:
            # executescript commits on its own; it only runs on an empty, new file
            self._con.executescript(_SCHEMA)
            with self.transaction() as con:
                con.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
                )
        self._check_version()

    def _check_version(self) -> None:
        version = self._con.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if version is None or int(version[0]) != SCHEMA_VERSION:
            raise ValueError(f"{self.path}: unknown project schema {version and version[0]}")

    def close(self) -> None:
        self._con.close()

    def seal(self) -> None:
        """End the writing: fold the WAL back into the file and leave WAL mode for good."""
        self._con.execute("PRAGMA journal_mode=DELETE")

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Plain tuples of one query (faster than :meth:`query` for many rows)."""
        cur = self._con.cursor()
        cur.row_factory = None
        return cur.execute(sql, params).fetchall()

    def __enter__(self) -> ProjectStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed when the block succeeds, rolled back otherwise."""
        with write_transaction(self._con) as con:
            yield con

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self._con.execute(sql, params).fetchall()

    # ------------------------------------------------------------------ images
    def add_images(self, rows: Iterable[tuple[str, str, bool]]) -> int:
        """Add ``(stem, path, gold)`` rows in one transaction; return how many were added."""
        with self.transaction() as con:
            before = con.execute("SELECT COUNT(*) FROM images").fetchone()[0]
            con.executemany(
                "INSERT INTO images (stem, path, gold) VALUES (?, ?, ?)",
                ((s, p, int(g)) for s, p, g in rows),
            )
            return con.execute("SELECT COUNT(*) FROM images").fetchone()[0] - before

    def add_annotators(self, names: Iterable[str]) -> None:
        now = time.time()
        with self.transaction() as con:
            con.executemany(
                "INSERT OR IGNORE INTO annotators (name, added) VALUES (?, ?)",
                ((n, now) for n in names),
            )

    def set_meta(self, key: str, value: Any) -> None:
        with self.transaction() as con:
            con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._con.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])
