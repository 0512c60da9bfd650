"""How fast a project answers "where are we?", against status kept in files beside the labels.

A project of N images (default 2,000; ``--images 100000`` for the issue's target) with four
annotators and a realistic status mix is created on disk. Timed:

- ``project.status()``: the counts that ``segflow project status`` prints, aggregated from
  every person's own state file and the QA batch, with the cache dropped (as after a save),
  warm (nothing changed), and in a fresh ``open_project`` (what the command line does);
- baseline ``one shared SQLite database``: the same counts from the single database every
  annotator wrote before (the same content, the queries of before);
- ``project.progress()`` and ``next_stem``: what the dock calls on every image change;
- baseline ``status files``: the same counts read from one small JSON status file per image
  in the annotators' label folders (what a file-only design, like the batch pre-labeller's
  ``<stem>.prelabel.json``, would have to read);
- the autosave of one 512x512 label image (PNG + provenance sidecar + one transaction)
  against writing the same PNG alone.

Run from the repository root: ``PYTHONPATH=src python benchmarks/bench_project.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from napari_segflow.core.io.png import write_png
from napari_segflow.core.project import STATUSES, create_project, open_project
from napari_segflow.core.project.state import AnnotatorState
from napari_segflow.core.project.store import ProjectStore

ANNOTATORS = ("ana", "ben", "cho", "dev")


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def make_project(root: Path, n: int, seed: int = 0):
    images = root / "images"
    images.mkdir(parents=True)
    tiny = np.zeros((8, 8), dtype=np.uint8)
    for i in range(n):
        Image.fromarray(tiny).save(images / f"img_{i:06d}.png")
    t0 = time.perf_counter()
    project = create_project(
        root / "proj", images=images, taxonomy="cityscapes", annotators=ANNOTATORS
    )
    t_init = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    status = rng.choice(
        ["todo", "in_progress", "done", "skipped", "in_review", "accepted", "rejected"],
        size=n,
        p=[0.40, 0.02, 0.40, 0.01, 0.05, 0.10, 0.02],
    )
    who = rng.choice(ANNOTATORS, size=n)
    now = time.time()
    rows = [
        (str(s), None if s == "todo" else str(a), i + 1)
        for i, (s, a) in enumerate(zip(status, who, strict=True))
    ]
    seconds = rng.uniform(30, 120, size=n)
    pixels = '{"road": 40, "car": 24}'
    # each annotator's own state file; images in review, accepted or rejected are "done" in
    # their annotator's file and get their status from a QA batch and the reviewer's verdicts
    for name in ANNOTATORS:
        st = AnnotatorState(root / "proj", name, writable=True)
        with st.transaction() as con:
            con.executemany(
                "INSERT INTO work (image_id, mode, status, seconds, class_pixels, started, "
                "updated) VALUES (?, 'production', ?, ?, ?, ?, ?)",
                [
                    (i, s if s in ("in_progress", "done", "skipped") else "done",
                     float(seconds[i - 1]), pixels, now, now)
                    for s, a, i in rows
                    if a == name
                ],
            )  # fmt: skip
        st.close()
    qa = [(s, a, i) for s, a, i in rows if s in ("in_review", "accepted", "rejected")]
    (root / "proj" / "qa").mkdir()
    (root / "proj" / "qa" / "batch-1.json").write_text(
        json.dumps(
            {
                "batch": 1,
                "created": now,
                "seed": 0,
                "items": [
                    {"stem": f"img_{i - 1:06d}", "image_id": i, "annotator": a, "reasons": []}
                    for _, a, i in qa
                ],
            }  # fmt: skip
        )
    )
    rev = AnnotatorState(root / "proj", "rev", writable=True)
    with rev.transaction() as con:
        con.executemany(
            "INSERT INTO verdicts (batch, image_id, verdict, reviewed) VALUES (1, ?, ?, ?)",
            [(i, s, now) for s, _, i in qa if s != "in_review"],
        )
    rev.close()
    # the single shared database of before, with the same content, for the baseline
    with ProjectStore(root / "single.db", create=True) as single:
        with single.transaction() as con:
            con.executemany(
                "INSERT INTO images (id, stem, path, status, annotator) VALUES (?, ?, '', ?, ?)",
                [(i, f"img_{i - 1:06d}", s, a) for s, a, i in rows],
            )
            con.executemany(
                "INSERT INTO work (image_id, annotator, mode, status, seconds, class_pixels, "
                "started, updated) VALUES (?, ?, 'production', ?, ?, ?, ?, ?)",
                [(i, a, s, float(seconds[i - 1]), pixels, now, now)
                 for s, a, i in rows if a is not None],
            )  # fmt: skip
    # the file-only baseline: one status file per finished or started image
    for s, a, i in rows:
        if a is not None:
            d = root / "proj" / "labels" / a
            d.mkdir(parents=True, exist_ok=True)
            (d / f"img_{i - 1:06d}.status.json").write_text(
                json.dumps({"status": s, "seconds": 60.0})
            )
    return project, t_init


def status_from_files(root: Path, n: int) -> dict:
    counts = dict.fromkeys(STATUSES, 0)
    seen = 0
    for d in sorted((root / "labels").iterdir()):
        for f in d.glob("*.status.json"):
            counts[json.loads(f.read_text())["status"]] += 1
            seen += 1
    counts["todo"] += n - seen
    return counts


def status_single(db: ProjectStore) -> dict:
    """The counts as the single shared database answered them (the queries of before)."""
    counts = dict.fromkeys(STATUSES, 0)
    for r in db.query("SELECT status, COUNT(*) AS n FROM images GROUP BY status"):
        counts[r["status"]] = int(r["n"])
    people: dict = {}
    for r in db.query(
        "SELECT annotator, mode, status, COUNT(*) AS n, SUM(seconds) AS s FROM work "
        "WHERE mode != 'qa' GROUP BY annotator, mode, status"
    ):
        people.setdefault(r["annotator"], {})[r["status"]] = int(r["n"])
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000, help="images in the project (2000)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        project, t_init = make_project(root, args.images)
        n = args.images

        def cold():
            project._cache = None  # everything read again, as in a window just opened
            project._memo.clear()
            return project.status()

        def one_changed():
            project._cache = None  # as after ana's own save: her file is read again
            project._memo.pop("ana", None)
            return project.status()

        def fresh():  # what `segflow project status` does: open the folder, count
            with open_project(root / "proj") as p:
                return p.status()

        t_status, st = timed(cold, args.repeat)
        t_warm, _ = timed(project.status, args.repeat)
        t_one, _ = timed(one_changed, args.repeat)
        t_fresh, _ = timed(fresh, args.repeat)
        with ProjectStore(root / "single.db") as single:
            t_single, counts = timed(lambda: status_single(single), args.repeat)
        assert counts == st["status"], (counts, st["status"])
        t_files, counts = timed(
            lambda: status_from_files(root / "proj", n), max(1, args.repeat // 2)
        )
        assert counts == st["status"], (counts, st["status"])

        def cold_progress():
            project._cache = None
            project._memo.clear()
            return project.progress()

        t_prog, _ = timed(cold_progress, args.repeat)
        t_next, _ = timed(lambda: project.next_stem(annotator="ana"), args.repeat)

        item = project.open_item(project.next_stem(annotator="ana"), annotator="ana")
        labels = np.random.default_rng(1).integers(0, 19, size=(512, 512)).astype(np.uint8)
        item.labels = np.zeros_like(labels)
        item.provenance = np.zeros_like(labels)
        t_save, _ = timed(lambda: project.save_item(item, labels, seconds=1.0), args.repeat)
        t_png, _ = timed(
            lambda: write_png(labels, root / "plain.png", taxonomy=project.taxonomy), args.repeat
        )
        project.close()

    ms = 1e3
    print(f"project of {n:,} images, {len(ANNOTATORS)} annotators + 1 reviewer, each with "
          f"their own state file (median of {args.repeat})")  # fmt: skip
    print(f"  create project (init)              {t_init * ms:9.1f} ms")
    print(f"  {'':36s}{'segflow':>10s}   baseline")
    print(f"  {'status, all files read again':36s}{t_status * ms:8.1f}ms"
          f"  {t_single * ms:8.1f}ms  one shared SQLite database (before)")  # fmt: skip
    print(f"  {'status, nothing changed (cached)':36s}{t_warm * ms:8.2f}ms"
          f"  {t_files * ms:8.1f}ms  one status file per image")  # fmt: skip
    label = "status, one person's file changed"
    print(f"  {label:36s}{t_one * ms:8.1f}ms")
    print(f"  {'open project + status (the CLI)':36s}{t_fresh * ms:8.1f}ms")
    print(f"  {'progress (done, class pixels)':36s}{t_prog * ms:8.1f}ms")
    print(f"  {'next image of the queue':36s}{t_next * ms:8.2f}ms")
    print(f"  {'autosave 512x512 labels':36s}{t_save * ms:8.1f}ms"
          f"  {t_png * ms:8.1f}ms  PNG alone")  # fmt: skip
    print(f"  status: {st['status']}")


if __name__ == "__main__":
    main()
