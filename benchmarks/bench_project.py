"""How fast a project answers "where are we?", against status kept in files beside the labels.

A project of N images (default 2,000; ``--images 100000`` for the issue's target) with four
annotators and a realistic status mix is created on disk. Timed:

- ``project.status()``: the SQLite counts that ``segflow project status`` prints;
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
from napari_segflow.core.project import STATUSES, create_project

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
    with project.store.transaction() as con:
        rows = [
            (str(s), None if s == "todo" else str(a), i + 1)
            for i, (s, a) in enumerate(zip(status, who, strict=True))
        ]
        con.executemany("UPDATE images SET status=?, annotator=? WHERE id=?", rows)
        con.executemany(
            "INSERT INTO work (image_id, annotator, mode, status, seconds, class_pixels, "
            "started, updated) VALUES (?, ?, 'production', ?, ?, ?, ?, ?)",
            [
                (i, a, s, float(rng.uniform(30, 120)), '{"road": 40, "car": 24}', now, now)
                for s, a, i in rows
                if a is not None
            ],
        )
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000, help="images in the project (2000)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        project, t_init = make_project(root, args.images)
        n = args.images
        t_status, st = timed(project.status, args.repeat)
        t_files, counts = timed(
            lambda: status_from_files(root / "proj", n), max(1, args.repeat // 2)
        )
        assert counts == st["status"], (counts, st["status"])
        t_prog, _ = timed(project.progress, args.repeat)
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

    print(f"project of {n:,} images, {len(ANNOTATORS)} annotators (median of {args.repeat})")
    print(f"  create project (init)           {t_init * 1e3:9.1f} ms")
    print(f"  {'':32s}{'segflow':>12s}{'baseline':>12s}")
    print(
        f"  {'status counts':32s}{t_status * 1e3:10.2f}ms{t_files * 1e3:10.1f}ms  (status files)"
    )
    print(f"  {'progress (done, class pixels)':32s}{t_prog * 1e3:10.1f}ms")
    print(f"  {'next image of the queue':32s}{t_next * 1e3:10.2f}ms")
    print(
        f"  {'autosave 512x512 labels':32s}{t_save * 1e3:10.1f}ms{t_png * 1e3:10.1f}ms  (PNG alone)"
    )
    print(f"  status: {st['status']}")


if __name__ == "__main__":
    main()
