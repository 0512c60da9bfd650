"""The project's state in one SQLite file: images, annotators, work, calibration and QA.

Every change runs in its own transaction (``BEGIN IMMEDIATE``), so several napari windows and
command-line runs on one machine can share a project: a writer waits for the lock instead of
failing (``timeout``), and readers never block writers (WAL journal). Label pixels never go into
the database; they live in per-annotator files beside it.

The image table carries the production status of each image, indexed, so the counts of a
project of 100,000 images come back in milliseconds.
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
    """The SQLite state of one project (``project.db``).

    Parameters
    ----------
    path : path-like
        The database file; created with the schema when missing and ``create`` is true.
    create : bool
        Allow creating a new database.
    timeout : float
        Seconds a writer waits for another window's transaction to finish.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, create: bool = False, timeout: float = 30.0
    ) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise ValueError(f"{self.path}: no project database")
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
        version = self._con.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if version is None or int(version[0]) != SCHEMA_VERSION:
            raise ValueError(f"{self.path}: unknown project schema {version and version[0]}")

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> ProjectStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed when the block succeeds, rolled back otherwise."""
        con = self._con
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

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
