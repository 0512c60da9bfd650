"""Move a project made with one shared state database to one state file per person.

Projects created before per-person state kept everything in ``project.db``: the status and
holder of each image, every annotator's work, the calibration scores, the QA batches and the
verdicts. Opening such a project migrates it once, under a lock file, and the old database
stays as the (now sealed, read-only) catalog:

- each person's work rows, the image they had open, their verdicts and the batch reports they
  completed go into ``state/<name>.sqlite``;
- every image somebody held becomes a claim file (``claims/<stem>@0.json``) naming them;
- each QA batch becomes ``qa/batch-<n>.json``; the calibration scores ``calibration.json``;
- last, ``project.json`` says ``"state": "per-annotator"``: its presence marks the end.

A migration cut short (a killed process) leaves ``project.json`` unchanged, so the next opening
runs it again from the untouched old tables; every step can be repeated.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from napari_segflow.core.atomic import atomic_write_bytes, create_once
from napari_segflow.core.project.claims import ClaimTaken, add_claim
from napari_segflow.core.project.review import CALIBRATION_FILE
from napari_segflow.core.project.state import STATE_DIR, AnnotatorState
from napari_segflow.core.project.store import REJECTED, TODO, ProjectStore
from napari_segflow.core.project.view import QA_DIR
from napari_segflow.core.project.work import (
    DB_FILE,
    PROJECT_FILE,
    STATE_LAYOUT,
    ProjectError,
)

__all__ = ["migrate_project"]

LOCK_FILE = ".migrate.lock"
#: A lock older than this (seconds) belongs to a migration that was killed.
LOCK_STALE_S = 120.0


def _migrated(root: Path) -> bool:
    try:
        doc = json.loads((root / PROJECT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return doc.get("state") == STATE_LAYOUT


def migrate_project(root: str | os.PathLike[str], *, wait: float = 60.0) -> bool:
    """Migrate the project at ``root`` to per-person state; False when it already was.

    Several windows opening an old project at once: one migrates, the others wait for it.
    """
    root = Path(root)
    lock = root / LOCK_FILE
    deadline = time.monotonic() + wait
    while True:
        if _migrated(root):
            return False
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.close(fd)
            break
        except FileExistsError:
            try:
                if time.time() - lock.stat().st_mtime > LOCK_STALE_S:
                    lock.unlink(missing_ok=True)  # its migration was killed: start again
                    continue
            except FileNotFoundError:
                continue
            if time.monotonic() > deadline:
                raise ProjectError(
                    f"{root}: another window is migrating the project (remove {LOCK_FILE} "
                    "if none is)"
                ) from None
            time.sleep(0.2)
    try:
        if _migrated(root):
            return False
        _migrate(root)
    finally:
        lock.unlink(missing_ok=True)
    return True


def _migrate(root: Path) -> None:
    store = ProjectStore(root / DB_FILE)
    q = store.query
    stems = {r["id"]: r["stem"] for r in q("SELECT id, stem FROM images")}
    latest: dict[int, int] = {
        r["image_id"]: r["b"]
        for r in q("SELECT image_id, MAX(batch_id) AS b FROM qa_items GROUP BY image_id")
    }
    people = {r["name"] for r in q("SELECT name FROM annotators")}
    people |= {r["annotator"] for r in q("SELECT DISTINCT annotator FROM work")}
    people |= {r["reviewer"] for r in q("SELECT DISTINCT reviewer FROM qa_items") if r["reviewer"]}
    tmp = root / f".migrate-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / STATE_DIR).mkdir(parents=True)
    # the report of a batch goes to its last reviewer
    report_by: dict[int, str] = {}
    for r in q(
        "SELECT batch_id, reviewer FROM qa_items WHERE reviewer IS NOT NULL ORDER BY reviewed"
    ):
        report_by[r["batch_id"]] = r["reviewer"]
    batches = {r["id"]: dict(r) for r in q("SELECT * FROM qa_batches")}
    for name in sorted(people):
        st = AnnotatorState(tmp, name, writable=True)
        with st.transaction() as con:
            for r in q(
                "SELECT w.* FROM work w JOIN images i ON i.id = w.image_id WHERE w.annotator=?",
                (name,),
            ):
                status = r["status"]
                answered = latest.get(r["image_id"], 0)
                if status == REJECTED:  # rejected and not finished again: not answered
                    status, answered = "done", 0
                con.execute(
                    "INSERT INTO work (image_id, mode, status, claim, answered, seconds, edits, "
                    "ai_pixels, ai_accepted, ai_corrected, class_pixels, started, finished, "
                    "updated) VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        r["image_id"], r["mode"], status, answered, r["seconds"], r["edits"],
                        r["ai_pixels"], r["ai_accepted"], r["ai_corrected"], r["class_pixels"],
                        r["started"], r["finished"], r["updated"],
                    ),
                )  # fmt: skip
            for r in q("SELECT current_stem, current_mode FROM annotators WHERE name=?", (name,)):
                if r["current_stem"] is not None:
                    con.execute(
                        "INSERT OR REPLACE INTO current VALUES (0, ?, ?, ?)",
                        (r["current_stem"], r["current_mode"], time.time()),
                    )
            for r in q("SELECT * FROM qa_items WHERE reviewer=?", (name,)):
                con.execute(
                    "INSERT INTO verdicts VALUES (?, ?, ?, ?, ?)",
                    (r["batch_id"], r["image_id"], r["verdict"], r["seconds"], r["reviewed"]),
                )
            for b, who in report_by.items():
                if who == name and batches.get(b, {}).get("report"):
                    con.execute(
                        "INSERT INTO qa_reports VALUES (?, ?, ?)",
                        (b, time.time(), batches[b]["report"]),
                    )
        st.close()
    # claims: whoever held an image keeps it
    for r in q("SELECT stem, annotator FROM images WHERE annotator IS NOT NULL AND status!=?",
               (TODO,)):  # fmt: skip
        try:
            add_claim(root, r["stem"], 0, annotator=r["annotator"])
        except ClaimTaken:
            pass  # made by an earlier, interrupted migration
    (root / QA_DIR).mkdir(exist_ok=True)
    for b in sorted(batches.values(), key=lambda b: b["id"]):
        items = [
            {"stem": stems[r["image_id"]], "image_id": r["image_id"],
             "annotator": r["annotator"], "reasons": json.loads(r["reasons"])}
            for r in q("SELECT * FROM qa_items WHERE batch_id=? ORDER BY image_id", (b["id"],))
        ]  # fmt: skip
        doc = {"batch": b["id"], "created": b["created"], "seed": b["seed"], "items": items}
        create_once(root / QA_DIR / f"batch-{b['id']}.json", json.dumps(doc).encode())
    cal = [
        {"annotator": r["annotator"], "class": r["class"], "iou": r["iou"],
         "flagged": bool(r["flagged"])}
        for r in q("SELECT * FROM calibration ORDER BY annotator, class")
    ]  # fmt: skip
    if cal:
        doc = {"run": max(r["run"] for r in q("SELECT run FROM calibration")), "results": cal}
        atomic_write_bytes(root / CALIBRATION_FILE, json.dumps(doc, indent=1).encode())
    (root / STATE_DIR).mkdir(exist_ok=True)
    for f in (tmp / STATE_DIR).iterdir():
        if f.suffix == ".sqlite":
            os.replace(f, root / STATE_DIR / f.name)
    shutil.rmtree(tmp, ignore_errors=True)
    store.seal()
    store.close()
    config = json.loads((root / PROJECT_FILE).read_text(encoding="utf-8"))
    config.update(version=2, state=STATE_LAYOUT)
    atomic_write_bytes(root / PROJECT_FILE, json.dumps(config, indent=2).encode())
