"""One person's project state: ``state/<name>.sqlite``, written only by that person's sessions.

An annotator's (or reviewer's) work, the image they had open, their QA verdicts and the QA
reports they completed live in their own SQLite file. Only their own napari windows and
command-line runs open it for writing; everybody else opens it read-only to aggregate the
project's status. That is what makes a shared folder safe: two people never write one file, so
no lock ever has to work between two machines.

The file uses SQLite's rollback journal, not WAL: WAL needs shared memory between all processes
that open the file, which a network share cannot give to readers on other machines. Several
windows of one person on one machine take turns through SQLite's own locks (``BEGIN
IMMEDIATE`` and a busy timeout); each change is one transaction.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["STATE_DIR", "AnnotatorState", "change_counter", "state_files"]

STATE_DIR = "state"
STATE_SUFFIX = ".sqlite"
STATE_SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS current (
    one INTEGER PRIMARY KEY CHECK (one = 0),
    stem TEXT,
    mode TEXT,
    updated REAL
);
CREATE TABLE IF NOT EXISTS work (
    image_id INTEGER NOT NULL,
    mode TEXT NOT NULL,
    status TEXT NOT NULL,
    claim INTEGER NOT NULL DEFAULT 0,
    answered INTEGER NOT NULL DEFAULT 0,
    seconds REAL NOT NULL DEFAULT 0,
    edits INTEGER NOT NULL DEFAULT 0,
    ai_pixels INTEGER NOT NULL DEFAULT 0,
    ai_accepted INTEGER NOT NULL DEFAULT 0,
    ai_corrected INTEGER NOT NULL DEFAULT 0,
    class_pixels TEXT NOT NULL DEFAULT '{}',
    started REAL,
    finished REAL,
    updated REAL,
    PRIMARY KEY (image_id, mode)
);
CREATE TABLE IF NOT EXISTS verdicts (
    batch INTEGER NOT NULL,
    image_id INTEGER NOT NULL,
    verdict TEXT NOT NULL DEFAULT 'pending',
    seconds REAL NOT NULL DEFAULT 0,
    reviewed REAL,
    PRIMARY KEY (batch, image_id)
);
CREATE TABLE IF NOT EXISTS qa_reports (
    batch INTEGER PRIMARY KEY,
    computed REAL NOT NULL,
    report TEXT NOT NULL
);
"""


def state_files(root: str | os.PathLike[str]) -> dict[str, Path]:
    """``{name: path}`` of every person's state file in the project folder ``root``."""
    d = Path(root) / STATE_DIR
    out: dict[str, Path] = {}
    try:
        entries = list(os.scandir(d))
    except FileNotFoundError:
        return out
    for e in entries:
        if e.name.endswith(STATE_SUFFIX) and not e.name.startswith("."):
            out[e.name[: -len(STATE_SUFFIX)]] = Path(e.path)
    return dict(sorted(out.items()))


def change_counter(path: str | os.PathLike[str]) -> tuple[int, int, int] | None:
    """A cheap signature of a state file that changes with every committed transaction.

    SQLite's rollback journal bumps the "file change counter" in the header (bytes 24-27) on
    each commit; size and mtime are added for safety. None when the file is unreadable.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(28)
            st = os.fstat(f.fileno())
    except OSError:
        return None
    counter = int.from_bytes(head[24:28], "big") if len(head) == 28 else -1
    return counter, st.st_size, st.st_mtime_ns


@contextlib.contextmanager
def write_transaction(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; rolled back when the block raises."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


class AnnotatorState:
    """The state file of one person (``state/<name>.sqlite``).

    Parameters
    ----------
    root : path-like
        The project folder.
    name : str
        The annotator or reviewer (already checked).
    writable : bool
        Open for writing (the person's own sessions; the file is created when missing). Others
        open it read-only and never change it.
    timeout : float
        Seconds a writer waits for another window of the same person.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        name: str,
        *,
        writable: bool = False,
        timeout: float = 30.0,
    ) -> None:
        self.name = name
        self.path = Path(root) / STATE_DIR / f"{name}{STATE_SUFFIX}"
        self.writable = writable
        if writable:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(
                str(self.path), timeout=timeout, isolation_level=None, check_same_thread=False
            )
            con.execute("PRAGMA journal_mode=DELETE")
            con.execute("PRAGMA synchronous=FULL")
        else:
            if not self.path.is_file():
                raise FileNotFoundError(self.path)
            uri = self.path.resolve().as_uri() + "?mode=ro"
            con = sqlite3.connect(
                uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        con.row_factory = sqlite3.Row
        self._con = con
        if writable:
            self._ensure_schema()

    def _ensure_schema(self) -> None:
        with self.transaction() as con:
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    con.execute(stmt)
            con.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(STATE_SCHEMA_VERSION),)
            )
            con.execute("INSERT OR IGNORE INTO meta VALUES ('name', ?)", (self.name,))
            con.execute("INSERT OR IGNORE INTO meta VALUES ('created', ?)", (repr(time.time()),))
        version = self.query("SELECT value FROM meta WHERE key='schema'")[0][0]
        if int(version) != STATE_SCHEMA_VERSION:
            raise ValueError(f"{self.path}: unknown state schema {version}")

    def close(self) -> None:
        self._con.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction of this person's file: all of it is committed or none."""
        if not self.writable:
            raise PermissionError(f"{self.path}: opened read-only (it is {self.name}'s file)")
        with write_transaction(self._con) as con:
            yield con

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Rows of one read (a consistent snapshot of the file)."""
        return self._con.execute(sql, params).fetchall()

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Plain tuples (faster than :meth:`query` for the many rows of a status count)."""
        cur = self._con.cursor()
        cur.row_factory = None
        return cur.execute(sql, params).fetchall()

    def has_tables(self) -> bool:
        """Whether the schema is there (a brand-new file, or one mid-commit, may not show it)."""
        try:
            rows = self.query("SELECT name FROM sqlite_master WHERE type='table' AND name='work'")
        except sqlite3.DatabaseError:  # e.g. a crashed writer's hot journal, read-only here
            return False
        return bool(rows)
