"""The project-wide picture, put together read-only from everybody's own files.

Nobody stores "the status of image 17" in a shared place. It follows from:

- the production rows in each person's state file (``state/<name>.sqlite``): the row with the
  highest claim generation holds the image (a take-over outranks the stale claim it replaced);
- the QA batch files (``qa/batch-<n>.json``, each written once by whoever drew it) and the
  reviewers' verdicts in their own state files: the newest batch that holds an image decides
  ``in_review`` / ``accepted`` / ``rejected``; a rejection is answered when the annotator saves
  the image again after seeing it (their row records the batch it answered).

The arrays are built with numpy from a few plain queries per person, so the status of 100,000
images takes a fraction of a second, and a project caches the view until a state file or the
QA folder changes (SQLite's change counter in the file header says so).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_segflow.core.project.state import AnnotatorState
from napari_segflow.core.project.store import (
    ACCEPTED,
    DONE,
    IN_REVIEW,
    REJECTED,
    STATUSES,
    TODO,
)

__all__ = [
    "QA_DIR",
    "PersonRows",
    "ProjectView",
    "build_view",
    "positions",
    "read_batches",
    "read_person",
]

log = logging.getLogger(__name__)

QA_DIR = "qa"
CODE = {s: i for i, s in enumerate(STATUSES)}
#: Verdict codes in the view's arrays.
VERDICTS = ("pending", ACCEPTED, REJECTED)
_VCASE = "CASE verdict WHEN 'accepted' THEN 1 WHEN 'rejected' THEN 2 ELSE 0 END"
_CASE = "CASE status " + " ".join(f"WHEN '{s}' THEN {i}" for s, i in CODE.items()) + " ELSE 0 END"


@dataclass
class ProjectView:
    """Every image's status and holder, and each person's counts, at one moment."""

    names: list[str]
    status: np.ndarray  # code into STATUSES per image index
    holder: np.ndarray  # index into names, -1 for nobody
    answered: np.ndarray  # the QA batch the holder last answered
    people: dict[str, dict[str, Any]]
    batches: list[dict[str, Any]]
    newest: np.ndarray  # per image index the newest batch holding it, 0 for none
    winners: np.ndarray  # batch, image index, verdict code, seconds, reviewed, person
    reports: dict[int, dict[str, Any]] = field(default_factory=dict)

    @functools.cached_property
    def latest_batch(self) -> dict[int, int]:
        """``{image index: newest batch holding it}``."""
        nz = np.flatnonzero(self.newest)
        return dict(zip(nz.tolist(), self.newest[nz].tolist(), strict=True))

    @functools.cached_property
    def verdicts(self) -> dict[tuple[int, int], dict[str, Any]]:
        """``{(batch, image index): {"verdict", "reviewer", "seconds", "reviewed"}}``."""
        return {
            (int(b), int(j)): {"verdict": VERDICTS[int(c)], "reviewer": self.names[int(k)],
                               "seconds": float(s), "reviewed": float(r)}
            for b, j, c, s, r, k in self.winners.tolist()
        }  # fmt: skip

    def status_of(self, index: int) -> str:
        return STATUSES[int(self.status[index])]

    def holder_of(self, index: int) -> str | None:
        h = int(self.holder[index])
        return None if h < 0 else self.names[h]

    def counts(self) -> dict[str, int]:
        n = np.bincount(self.status, minlength=len(STATUSES))
        return {s: int(n[i]) for i, s in enumerate(STATUSES)}

    def verdict(self, batch: int, index: int) -> str:
        v = self.verdicts.get((batch, index))
        return "pending" if v is None else v["verdict"]


def read_batches(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The QA batch files, in the order drawn."""
    d = Path(root) / QA_DIR
    out = []
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return out
    for name in names:
        if name.startswith("batch-") and name.endswith(".json"):
            try:
                out.append(json.loads((d / name).read_text(encoding="utf-8")))
            except (OSError, ValueError) as exc:  # a batch is complete once its name exists
                log.warning("%s: unreadable QA batch (%s)", name, exc)
    return sorted(out, key=lambda b: int(b["batch"]))


def positions(ids: np.ndarray, image_ids) -> np.ndarray:
    """Index of each catalog id of ``image_ids`` in the sorted ``ids``; -1 for an unknown one.

    Examples
    --------
    >>> positions(np.array([1, 2, 5]), [5, 3, 1]).tolist()
    [2, -1, 0]
    """
    image_ids = np.asarray(image_ids, dtype=np.int64).reshape(-1)
    if not len(ids):
        return np.full(len(image_ids), -1, dtype=np.int64)
    j = np.clip(np.searchsorted(ids, image_ids), 0, len(ids) - 1)
    return np.where(ids[j] == image_ids, j, -1)


def _safe_rows(state: AnnotatorState, sql: str) -> list[tuple]:
    # a reader on another machine may meet a file mid-commit; its next look will see it whole
    for _ in range(3):
        try:
            return state.rows(sql)
        except sqlite3.DatabaseError as exc:
            last = exc
    log.warning("%s: unreadable just now (%s); counted as empty", state.path, last)
    return []


@dataclass
class PersonRows:
    """What the view needs from one person's state file (kept until the file changes)."""

    work: np.ndarray  # production rows: image_id, claim, answered, status code
    summary: dict[str, Any]
    verdicts: np.ndarray  # batch, image_id, verdict code, seconds, reviewed
    reports: list[tuple]


def read_person(state: AnnotatorState) -> PersonRows:
    """Read one person's state file for the view (a handful of queries)."""
    p: dict[str, Any] = {
        "production": {},
        "calibration": {},
        "seconds": 0.0,
        "current": None,
        "current_mode": None,
    }
    if not state.has_tables():
        return PersonRows(np.zeros((0, 4), dtype=np.int64), p, np.zeros((0, 5)), [])
    rows = _safe_rows(
        state, f"SELECT image_id, claim, answered, {_CASE} FROM work WHERE mode='production'"
    )
    work = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
    for mode, status, n, s in _safe_rows(
        state,
        "SELECT mode, status, COUNT(*), SUM(seconds) FROM work WHERE mode != 'qa' "
        "GROUP BY mode, status",
    ):
        if mode == "calibration":
            p["calibration"][status] = int(n)
        p["seconds"] = round(p["seconds"] + float(s or 0), 3)
    for stem, mode in _safe_rows(state, "SELECT stem, mode FROM current"):
        p["current"], p["current_mode"] = stem, mode
    verdicts = np.asarray(
        _safe_rows(
            state,
            f"SELECT batch, image_id, {_VCASE}, seconds, COALESCE(reviewed, 0) FROM verdicts",
        ),
        dtype=np.float64,
    ).reshape(-1, 5)
    reports = _safe_rows(state, "SELECT batch, computed, report FROM qa_reports")
    return PersonRows(work, p, verdicts, reports)


def build_view(
    n_images: int,
    ids: np.ndarray,
    persons: Mapping[str, PersonRows],
    batches: list[dict[str, Any]],
) -> ProjectView:
    """Aggregate everybody's rows (:func:`read_person`) over the catalog's image ``ids``."""
    names = list(persons)
    people = {
        n: {**persons[n].summary, "production": {}, "calibration": dict(
            persons[n].summary["calibration"])}
        for n in names
    }  # fmt: skip
    cols = [
        np.column_stack([persons[n].work, np.full(len(persons[n].work), k, dtype=np.int64)])
        for k, n in enumerate(names)
        if len(persons[n].work)
    ]
    status = np.zeros(n_images, dtype=np.int64)
    holder = np.full(n_images, -1, dtype=np.int64)
    answered = np.zeros(n_images, dtype=np.int64)
    if cols:
        w = np.concatenate(cols)  # image_id, claim, answered, code, person
        idx = positions(ids, w[:, 0])
        w, idx = w[idx >= 0], idx[idx >= 0]
        # per image the highest claim generation wins; ties (never in practice) go by name
        order = np.lexsort((w[:, 4], w[:, 1], idx))
        w, idx = w[order], idx[order]
        last = np.r_[idx[1:] != idx[:-1], True] if len(idx) else np.zeros(0, bool)
        w, idx = w[last], idx[last]
        status[idx] = w[:, 3]
        holder[idx] = w[:, 4]
        answered[idx] = w[:, 2]
    # the verdict on each (batch, image): a verdict beats a pending review, the later wins
    parts = [
        np.column_stack([persons[n].verdicts, np.full(len(persons[n].verdicts), k)])
        for k, n in enumerate(names)
        if len(persons[n].verdicts)
    ]
    win = np.zeros((0, 6))
    if parts:
        v = np.concatenate(parts)  # batch, image_id, code, seconds, reviewed, person
        j = positions(ids, v[:, 1].astype(np.int64))
        v, j = v[j >= 0], j[j >= 0]
        order = np.lexsort((v[:, 4], v[:, 2] > 0, j, v[:, 0]))
        v, j = v[order], j[order]
        last = np.r_[(v[1:, 0] != v[:-1, 0]) | (j[1:] != j[:-1]), True] if len(j) else []
        win = np.column_stack([v[last][:, 0], j[last], v[last][:, 2:]])
    reports: dict[int, dict[str, Any]] = {}
    report_time: dict[int, float] = {}
    for name in names:
        for batch, computed, doc in persons[name].reports:
            if computed > report_time.get(batch, -1.0):
                report_time[batch] = computed
                reports[int(batch)] = json.loads(doc)
    drawn = np.asarray(
        [(int(b["batch"]), int(it["image_id"])) for b in batches for it in b["items"]],
        dtype=np.int64,
    ).reshape(-1, 2)
    where = positions(ids, drawn[:, 1])
    newest = np.zeros(n_images, dtype=np.int64)
    np.maximum.at(newest, where[where >= 0], drawn[where >= 0, 0])
    vcode = np.zeros(n_images, dtype=np.int64)  # the verdict in each image's newest batch
    wj = win[:, 1].astype(np.int64)
    current = win[:, 0].astype(np.int64) == newest[wj]
    vcode[wj[current]] = win[current, 2].astype(np.int64)
    drawn_now = newest > 0
    status[drawn_now & (vcode == 0)] = CODE[IN_REVIEW]
    status[drawn_now & (vcode == 1)] = CODE[ACCEPTED]
    status[drawn_now & (vcode == 2) & (answered < newest)] = CODE[REJECTED]
    # each person's production counts: the images they hold, as their work row says
    # (a finished image stays "done" for its annotator while in review or accepted)
    held = holder >= 0
    for k, name in enumerate(names):
        mine = held & (holder == k)
        if not mine.any():
            continue
        codes = status[mine].copy()
        codes[np.isin(codes, [CODE[IN_REVIEW], CODE[ACCEPTED]])] = CODE[DONE]
        n = np.bincount(codes, minlength=len(STATUSES))
        people[name]["production"] = {
            s: int(n[i]) for i, s in enumerate(STATUSES) if n[i] and s != TODO
        }
    return ProjectView(names, status, holder, answered, people, batches, newest, win, reports)
