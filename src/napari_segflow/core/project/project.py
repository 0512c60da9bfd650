"""An annotation project: images, taxonomy, annotators, labels per annotator and their status.

A project is a folder::

    PROJECT/
      project.json        what the project is (written last: its presence means "complete")
      project.db          the state (SQLite, see :mod:`.store`)
      taxonomy.json       the classes, copied in at creation
      prelabels/          AI pre-labels (``segflow prelabel --out PROJECT/prelabels``), optional
      labels/<annotator>/<stem>.png                  production labels (+ provenance sidecar)
      labels/<annotator>/calibration/<stem>.png      the annotator's labels of the gold set
      labels/<reviewer>/qa/<stem>.png                a reviewer's QA correction

Volumes (NIfTI, TIFF stacks) are stored as ``.nii.gz`` / ``.tif`` instead of ``.png``. Each
annotator only ever writes inside ``labels/<annotator>/``; every label file and sidecar is
written atomically, so a killed session leaves the last save intact.

Modes
-----
``production``
    The queue holds the images nobody has finished: ``todo``, plus the annotator's own
    ``in_progress`` and ``rejected`` images. Opening an image claims it.
``calibration``
    Every annotator labels the gold images; :meth:`Project.run_calibration` scores them
    against the gold labels and stores the per-class flags.
``qa``
    A reviewer works through a batch drawn with the stratified sampler, corrects each image
    and accepts or rejects it; :meth:`Project.qa_batch_report` scores the annotator's labels
    against the correction.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_segflow.core.atomic import atomic_write_bytes
from napari_segflow.core.io.labels import label_files, read_labels
from napari_segflow.core.io.png import write_png
from napari_segflow.core.prelabel.batch import (
    IMAGE_SUFFIXES,
    image_files,
    output_paths,
)
from napari_segflow.core.prelabel.volume import (
    volume_kind,
    volume_suffix,
    write_volume,
)
from napari_segflow.core.project.review import ReviewMixin
from napari_segflow.core.project.store import (
    ACCEPTED,
    DONE,
    IN_PROGRESS,
    IN_REVIEW,
    REJECTED,
    SKIPPED,
    STATUSES,
    TODO,
    ProjectStore,
)
from napari_segflow.core.project.work import (
    DB_FILE,
    MODES,
    PRELABEL_DIR,
    PROJECT_FILE,
    TAXONOMY_FILE,
    ImageEntry,
    PrelabelSource,
    ProjectError,
    ProjectExistsError,
    WorkItem,
    ai_stats,
    check_mode,
    check_name,
    read_image_file,
)
from napari_segflow.core.provenance import (
    AI_PENDING,
    HUMAN,
    new_provenance,
    read_provenance,
    write_provenance,
)
from napari_segflow.core.taxonomy import Taxonomy, load_taxonomy, save_taxonomy
from napari_segflow.core.taxonomy.classes import class_pixel_counts

__all__ = [
    "MODES",
    "ImageEntry",
    "PrelabelSource",
    "Project",
    "ProjectError",
    "ProjectExistsError",
    "WorkItem",
    "ai_stats",
    "create_project",
    "is_project",
    "open_project",
    "read_image_file",
]


def is_project(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds a project (its ``project.json`` or ``project.db``)."""
    p = Path(path)
    return (p / PROJECT_FILE).exists() or (p / DB_FILE).exists()


def _stem_of(path: Path) -> str | None:
    lower = path.name.lower()
    for suffix in IMAGE_SUFFIXES:
        if lower.endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def _image_list(images: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> dict:
    """``{stem: path}`` from a folder, a text file with one path a line, or a list of paths."""
    if isinstance(images, (str, os.PathLike)):
        p = Path(images)
        if p.is_dir():
            return image_files(p)
        if p.is_file() and p.suffix.lower() == ".txt":
            lines = p.read_text(encoding="utf-8").splitlines()
            items = [(p.parent / ln.strip()) for ln in lines if ln.strip() and ln[0] != "#"]
        else:
            raise ProjectError(f"{p}: not a folder of images or a .txt list of image paths")
    else:
        items = [Path(x) for x in images]
    out: dict[str, Path] = {}
    for path in items:
        stem = _stem_of(path)
        if stem is None:
            raise ProjectError(f"{path}: not an image file ({', '.join(IMAGE_SUFFIXES)})")
        if not path.is_file():
            raise ProjectError(f"{path}: no such image")
        if stem in out:
            raise ProjectError(f"two images named {stem!r}: {out[stem]}, {path}")
        out[stem] = path
    return out


def _rel(path: Path, root: Path) -> str:
    # not resolved: a symlinked image folder stays a link, and the project can move with it
    return os.path.relpath(os.path.abspath(path), os.path.abspath(root))


def create_project(
    path: str | os.PathLike[str],
    *,
    images: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    taxonomy: Taxonomy | str | os.PathLike[str],
    gold: str | os.PathLike[str] | None = None,
    annotators: Iterable[str] = (),
    prelabels: str | os.PathLike[str] | None = None,
) -> Project:
    """Create a project folder; refuse (changing nothing) when one is already there.

    Parameters
    ----------
    path : path-like
        The project folder (created when missing).
    images : path-like or sequence of path-like
        A folder of images, a ``.txt`` file listing image paths, or a list of paths. 2D images
        (PNG, JPEG, TIFF, GeoTIFF) and volumes (NIfTI, TIFF stacks).
    taxonomy : Taxonomy, path-like or preset name
    gold : path-like, optional
        Folder of reference label files named like the images: the calibration set.
    annotators : iterable of str
    prelabels : path-like, optional
        Folder of ``segflow prelabel`` outputs; default ``PROJECT/prelabels``.

    Raises
    ------
    ProjectExistsError
        When the folder already holds a project.
    ProjectError
        For bad images, gold labels or names; nothing is left behind.
    """
    root = Path(path)
    if is_project(root):
        raise ProjectExistsError(f"{root}: a project already exists there; nothing was changed")
    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
    found = _image_list(images)
    if not found:
        raise ProjectError(f"{images}: no images ({', '.join(IMAGE_SUFFIXES)})")
    names = [check_name(a) for a in annotators]
    gold_stems: set[str] = set()
    if gold is not None:
        gold_files = label_files(gold)
        missing = sorted(set(gold_files) - set(found))
        if missing:
            raise ProjectError(
                f"{gold}: gold labels without an image: {', '.join(missing[:5])}"
                + (" ..." if len(missing) > 5 else "")
            )
        if not gold_files:
            raise ProjectError(f"{gold}: no gold label files (PNG, TIFF or NIfTI)")
        gold_stems = set(gold_files)
    root.mkdir(parents=True, exist_ok=True)
    made = [root / TAXONOMY_FILE, root / DB_FILE]
    try:
        save_taxonomy(tax, root / TAXONOMY_FILE)
        with ProjectStore(root / DB_FILE, create=True) as store:
            store.add_images((s, _rel(p, root), s in gold_stems) for s, p in found.items())
            store.add_annotators(names)
            store.set_meta("created", time.time())
        config = {
            "format": "segflow-project",
            "version": 1,
            "name": root.resolve().name,
            "images": _rel(Path(images), root) if isinstance(images, (str, os.PathLike)) else None,
            "gold": _rel(Path(gold), root) if gold is not None else None,
            "prelabels": _rel(Path(prelabels), root) if prelabels is not None else PRELABEL_DIR,
        }
        atomic_write_bytes(root / PROJECT_FILE, json.dumps(config, indent=2).encode())
    except BaseException:
        for p in [*made, root / f"{DB_FILE}-wal", root / f"{DB_FILE}-shm"]:
            if p.exists():
                p.unlink()
        raise
    return Project(root)


def open_project(path: str | os.PathLike[str]) -> Project:
    """Open an existing project folder."""
    return Project(path)


class Project(ReviewMixin):
    """An open project. Thread-safe for one window; several windows each open their own."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.root = Path(path)
        cfg = self.root / PROJECT_FILE
        if not cfg.is_file():
            raise ProjectError(f"{self.root}: not a segflow project (no {PROJECT_FILE})")
        try:
            self.config = json.loads(cfg.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ProjectError(f"{cfg}: cannot be read ({exc})") from None
        if self.config.get("format") != "segflow-project":
            raise ProjectError(f"{cfg}: not a segflow project file")
        self.taxonomy = load_taxonomy(self.root / TAXONOMY_FILE)
        self.store = ProjectStore(self.root / DB_FILE)
        self.prelabel_sources: list[PrelabelSource] = []

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ paths
    def _resolve(self, rel: str | None) -> Path | None:
        return None if rel is None else Path(os.path.normpath(self.root / rel))

    @property
    def gold_dir(self) -> Path | None:
        return self._resolve(self.config.get("gold"))

    @property
    def prelabel_dir(self) -> Path | None:
        return self._resolve(self.config.get("prelabels"))

    def image_path(self, stem: str) -> Path:
        row = self.store.query("SELECT path FROM images WHERE stem=?", (stem,))
        if not row:
            raise ProjectError(f"no image {stem!r} in the project")
        return Path(os.path.normpath(self.root / row[0]["path"]))

    def _image_id(self, stem: str) -> int:
        row = self.store.query("SELECT id FROM images WHERE stem=?", (stem,))
        if not row:
            raise ProjectError(f"no image {stem!r} in the project")
        return int(row[0]["id"])

    def labels_path(self, stem: str, *, annotator: str, mode: str = "production") -> Path:
        """Where ``annotator``'s labels of ``stem`` live in ``mode``."""
        check_mode(mode)
        d = self.root / "labels" / check_name(annotator)
        if mode != "production":
            d = d / mode
        return d / f"{stem}{volume_suffix(volume_kind(self.image_path(stem)))}"

    def add_prelabel_source(self, source: PrelabelSource) -> None:
        """Offer pre-labels from elsewhere (the pixel classifier): tried after ``prelabels/``."""
        self.prelabel_sources.append(source)

    # ------------------------------------------------------------------ people
    @property
    def annotators(self) -> list[str]:
        return [r["name"] for r in self.store.query("SELECT name FROM annotators ORDER BY name")]

    def add_annotator(self, name: str) -> None:
        self.store.add_annotators([check_name(name)])

    # ------------------------------------------------------------------ status
    def __len__(self) -> int:
        return int(self.store.query("SELECT COUNT(*) FROM images")[0][0])

    def status(self) -> dict[str, Any]:
        """The counts ``segflow project status --json`` prints.

        ``{"images": N, "gold": n, "status": {status: n}, "annotators": {name: {...}},
        "qa_batches": n}``; each annotator has ``production`` and ``calibration`` counts per
        status, ``seconds`` spent, ``current`` (the image to resume) and calibration ``flags``.
        """
        counts = dict.fromkeys(STATUSES, 0)
        for r in self.store.query("SELECT status, COUNT(*) AS n FROM images GROUP BY status"):
            counts[r["status"]] = int(r["n"])
        n = sum(counts.values())
        n_gold = int(self.store.query("SELECT COUNT(*) FROM images WHERE gold=1")[0][0])
        people: dict[str, Any] = {}
        for r in self.store.query("SELECT name, current_stem, current_mode FROM annotators"):
            people[r["name"]] = {
                "production": {},
                "calibration": {},
                "seconds": 0.0,
                "current": r["current_stem"],
                "current_mode": r["current_mode"],
                "flags": [],
            }
        for r in self.store.query(
            "SELECT annotator, mode, status, COUNT(*) AS n, SUM(seconds) AS s FROM work "
            "WHERE mode != 'qa' GROUP BY annotator, mode, status"
        ):
            a = people.setdefault(
                r["annotator"],
                {"production": {}, "calibration": {}, "seconds": 0.0, "flags": []},
            )
            a[r["mode"]][r["status"]] = int(r["n"])
            a["seconds"] = round(a["seconds"] + float(r["s"] or 0), 3)
        for r in self.store.query("SELECT annotator, class FROM calibration WHERE flagged=1"):
            if r["annotator"] in people:
                people[r["annotator"]]["flags"].append(r["class"])
        batches = int(self.store.query("SELECT COUNT(*) FROM qa_batches")[0][0])
        return {
            "images": n,
            "gold": n_gold,
            "status": counts,
            "annotators": people,
            "qa_batches": batches,
        }

    def images(
        self, *, mode: str = "production", annotator: str | None = None, status: str | None = None
    ) -> list[ImageEntry]:
        """The image list of ``mode`` with each image's status there (optionally filtered).

        Production: every image and its project status. Calibration: the gold images and
        ``annotator``'s status on each. QA: the images of every batch, ``in_review`` until a
        reviewer's verdict.
        """
        check_mode(mode)
        if mode == "production":
            rows = self.store.query(
                "SELECT stem, path, gold, status, annotator FROM images ORDER BY id"
            )
            out = [
                ImageEntry(
                    r["stem"],
                    Path(os.path.normpath(self.root / r["path"])),
                    bool(r["gold"]),
                    r["status"],
                    r["annotator"],
                )
                for r in rows
            ]
        elif mode == "calibration":
            rows = self.store.query(
                "SELECT i.stem, i.path, w.status FROM images i LEFT JOIN work w ON "
                "w.image_id = i.id AND w.mode = 'calibration' AND w.annotator = ? "
                "WHERE i.gold = 1 ORDER BY i.id",
                (annotator or "",),
            )
            out = [
                ImageEntry(
                    r["stem"],
                    Path(os.path.normpath(self.root / r["path"])),
                    True,
                    r["status"] or TODO,
                    annotator,
                )
                for r in rows
            ]
        else:
            rows = self.store.query(
                "SELECT i.stem, i.path, i.gold, q.verdict, q.annotator FROM qa_items q "
                "JOIN images i ON i.id = q.image_id ORDER BY q.batch_id, i.id"
            )
            verdict = {"pending": IN_REVIEW, "accepted": ACCEPTED, "rejected": REJECTED}
            out = [
                ImageEntry(
                    r["stem"],
                    Path(os.path.normpath(self.root / r["path"])),
                    bool(r["gold"]),
                    verdict[r["verdict"]],
                    r["annotator"],
                )
                for r in rows
            ]
        if status is not None:
            out = [e for e in out if e.status == status]
        return out

    def _open_for(self, entry: ImageEntry, mode: str, annotator: str) -> bool:
        """Whether ``entry`` is still to do for ``annotator`` in ``mode`` (the queue)."""
        if mode == "production":
            return entry.status == TODO or (
                entry.annotator == annotator and entry.status in (IN_PROGRESS, REJECTED)
            )
        if mode == "calibration":
            return entry.status in (TODO, IN_PROGRESS)
        return entry.status == IN_REVIEW

    def _visible_for(self, entry: ImageEntry, mode: str, annotator: str) -> bool:
        if mode == "production":
            return entry.status == TODO or entry.annotator == annotator
        return True

    def next_stem(
        self, *, annotator: str, mode: str = "production", after: str | None = None
    ) -> str | None:
        """The next image of ``annotator``'s queue after ``after`` (wrapping), or None."""
        if mode == "production":
            # one indexed query per direction: fast on projects of 100,000 images
            after_id = 0
            if after is not None:
                rows = self.store.query("SELECT id FROM images WHERE stem=?", (after,))
                after_id = int(rows[0]["id"]) if rows else 0
            # "+status": walk the primary key in order instead of sorting the status index
            cond = "(+status=? OR (annotator=? AND +status IN (?, ?))) AND stem IS NOT ?"
            params = [TODO, annotator, IN_PROGRESS, REJECTED, after]
            for where, extra in (("id > ?", [after_id]), ("id <= ?", [after_id])):
                rows = self.store.query(
                    f"SELECT stem FROM images WHERE {where} AND {cond} ORDER BY id LIMIT 1",
                    [*extra, *params],
                )
                if rows:
                    return rows[0]["stem"]
            return None
        entries = self.images(mode=mode, annotator=annotator)
        start = 0
        if after is not None:
            stems = [e.stem for e in entries]
            start = stems.index(after) + 1 if after in stems else 0
        order = entries[start:] + entries[:start]
        for e in order:
            if e.stem != after and self._open_for(e, mode, annotator):
                return e.stem
        return None

    def previous_stem(
        self, *, annotator: str, mode: str = "production", before: str
    ) -> str | None:
        """The image before ``before`` that ``annotator`` may open (own work included)."""
        entries = self.images(mode=mode, annotator=annotator)
        stems = [e.stem for e in entries]
        if before not in stems:
            return None
        for e in reversed(entries[: stems.index(before)]):
            if self._visible_for(e, mode, annotator):
                return e.stem
        return None

    def resume(self, annotator: str) -> tuple[str, str] | None:
        """``(mode, stem)`` the annotator had open last, or None."""
        rows = self.store.query(
            "SELECT current_stem, current_mode FROM annotators WHERE name=?", (annotator,)
        )
        if not rows or rows[0]["current_stem"] is None:
            return None
        return rows[0]["current_mode"], rows[0]["current_stem"]

    def progress(self, *, annotator: str | None = None) -> dict[str, Any]:
        """Production progress: ``{"done": n, "total": N, "class_pixels": {class: pixels}}``.

        Done counts images at ``done`` or later (in review, accepted).
        """
        total = len(self)
        tables = "FROM work w JOIN images i ON i.id = w.image_id"
        where = "WHERE w.mode='production' AND i.status IN (?, ?, ?) AND i.annotator = w.annotator"
        params: list[Any] = [DONE, IN_REVIEW, ACCEPTED]
        if annotator is not None:
            where += " AND w.annotator = ?"
            params.append(annotator)
        done = int(self.store.query(f"SELECT COUNT(*) {tables} {where}", params)[0][0])
        pixels: dict[str, int] = dict.fromkeys(self.taxonomy.names, 0)
        # summed inside SQLite (json_each), not parsed row by row in Python
        for r in self.store.query(
            f"SELECT j.key AS k, SUM(j.value) AS v {tables}, json_each(w.class_pixels) j "
            f"{where} GROUP BY j.key",
            params,
        ):
            pixels[r["k"]] = int(r["v"])
        return {"done": done, "total": total, "class_pixels": pixels}

    # ------------------------------------------------------------------ work
    def _read_image(self, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
        return read_image_file(path)

    def _read_labels(self, path: Path, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        labels = read_labels(path)
        if labels.shape != shape:
            raise ProjectError(f"{path}: labels {labels.shape} do not match the image {shape}")
        prov = read_provenance(path)
        if prov is None or prov.shape != labels.shape:
            prov = new_provenance(labels.shape)
        return labels, prov

    def _prelabels(self, stem: str, image: np.ndarray, shape: tuple[int, ...], suffix: str):
        d = self.prelabel_dir
        if d is not None:
            path = output_paths(d, stem, suffix)[0]
            if path.is_file():
                labels, prov = self._read_labels(path, shape)
                if read_provenance(path) is None:  # a plain label file: all of it is the AI's
                    prov = np.where(labels != self._blank(), AI_PENDING, HUMAN).astype(np.uint8)
                return labels, prov
        for source in self.prelabel_sources:
            got = source(stem, image)
            if got is not None:
                labels, prov = (np.asarray(a) for a in got)
                if labels.shape != shape or prov.shape != shape:
                    raise ProjectError(f"{stem}: pre-labels {labels.shape} do not match {shape}")
                return labels, prov.astype(np.uint8)
        return None

    def _blank(self) -> int:
        u = self.taxonomy.unlabeled_id
        return 0 if u is None else int(u)

    def _new_labels(self, shape: tuple[int, ...]) -> np.ndarray:
        dtype = np.uint8 if self.taxonomy.max_id <= 255 else np.uint16
        return np.full(shape, self._blank(), dtype=dtype)

    def _qa_item(self, stem: str):
        rows = self.store.query(
            "SELECT q.batch_id, q.annotator, q.verdict FROM qa_items q JOIN images i "
            "ON i.id = q.image_id WHERE i.stem=? ORDER BY q.batch_id DESC LIMIT 1",
            (stem,),
        )
        if not rows:
            raise ProjectError(f"{stem}: not in a QA batch")
        return rows[0]

    def open_item(self, stem: str, *, annotator: str, mode: str = "production") -> WorkItem:
        """Open ``stem`` for ``annotator`` in ``mode``: read the pixels and the labels to edit.

        Production claims the image for the annotator (refused when someone else holds it);
        labels come from the annotator's last save, else from the AI pre-labels (AI-pending),
        else empty. In QA the reviewer starts from their correction, else the annotator's labels.
        """
        check_mode(mode)
        check_name(annotator)
        path = self.image_path(stem)
        kind = volume_kind(path)
        image, affine = self._read_image(path)
        shape = tuple(image.shape) if kind is not None else tuple(image.shape[:2])
        image_id = self._image_id(stem)
        own = self.labels_path(stem, annotator=annotator, mode=mode)
        now = time.time()
        with self.store.transaction() as con:
            if mode == "production":
                row = con.execute(
                    "SELECT status, annotator FROM images WHERE id=?", (image_id,)
                ).fetchone()
                holder = row["annotator"]
                if holder is not None and holder != annotator:
                    raise ProjectError(f"{stem} is {row['status']} by {holder}")
                if row["status"] == TODO:
                    con.execute(
                        "UPDATE images SET status=?, annotator=? WHERE id=?",
                        (IN_PROGRESS, annotator, image_id),
                    )
            if mode != "qa":
                con.execute(
                    "INSERT OR IGNORE INTO work (image_id, annotator, mode, status, started, "
                    "updated) VALUES (?, ?, ?, ?, ?, ?)",
                    (image_id, annotator, mode, IN_PROGRESS, now, now),
                )
                con.execute(
                    "UPDATE work SET status=? WHERE image_id=? AND annotator=? AND mode=? "
                    "AND status=?",
                    (IN_PROGRESS, image_id, annotator, mode, TODO),
                )
            con.execute(
                "INSERT INTO annotators (name, current_stem, current_mode, added) "
                "VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                "current_stem=excluded.current_stem, current_mode=excluded.current_mode",
                (annotator, stem, mode, now),
            )
        suffix = volume_suffix(kind)
        ai = self._prelabels(stem, image, shape, suffix) if mode == "production" else None
        if own.is_file():
            labels, prov = self._read_labels(own, shape)
            source = "saved"
        elif mode == "qa":
            who = self._qa_item(stem)["annotator"]
            labels, prov = self._read_labels(self.labels_path(stem, annotator=who), shape)
            source = "annotator"
        elif ai is not None:
            labels, prov = ai[0].copy(), ai[1].copy()
            source = "prelabel"
        else:
            labels, prov = self._new_labels(shape), new_provenance(shape)
            source = "new"
        return WorkItem(
            stem,
            mode,
            annotator,
            path,
            image,
            labels,
            prov,
            own,
            source,
            ai_labels=None if ai is None else ai[0],
            ai_provenance=None if ai is None else ai[1],
            affine=affine,
        )

    def save_item(
        self,
        item: WorkItem,
        labels: np.ndarray | None = None,
        provenance: np.ndarray | None = None,
        *,
        seconds: float = 0.0,
        edits: int = 0,
        status: str | None = None,
    ) -> Path:
        """Save the labels of an open item atomically and record the work in one transaction.

        Parameters
        ----------
        item : WorkItem
        labels, provenance : ndarray, optional
            The current labels (default: ``item.labels``) and provenance.
        seconds, edits : float, int
            Time spent and edits made since the last save (added up).
        status : str, optional
            New status (``done``, ``skipped``, ``in_progress``); None keeps it.
        """
        labels = np.asarray(item.labels if labels is None else labels)
        prov = np.asarray(item.provenance if provenance is None else provenance, dtype=np.uint8)
        if labels.shape != item.labels.shape or prov.shape != labels.shape:
            raise ProjectError(f"{item.stem}: labels {labels.shape} differ from the image")
        if status is not None and status not in (IN_PROGRESS, DONE, SKIPPED):
            raise ProjectError(
                f"status {status!r}: an annotator sets in_progress, done or skipped"
            )
        image_id = self._image_id(item.stem)
        if item.mode == "production":
            row = self.store.query("SELECT status, annotator FROM images WHERE id=?", (image_id,))
            if row[0]["annotator"] not in (None, item.annotator):
                raise ProjectError(f"{item.stem} belongs to {row[0]['annotator']}")
            if row[0]["status"] in (IN_REVIEW, ACCEPTED):
                raise ProjectError(f"{item.stem} is {row[0]['status']}: it can no longer change")
        # the label file goes last, as in the batch pre-labeller
        write_provenance(item.labels_path, prov)
        if item.is_volume:
            write_volume(labels, item.labels_path, affine=item.affine, taxonomy=self.taxonomy)
        else:
            write_png(labels, item.labels_path, taxonomy=self.taxonomy)
        counts = class_pixel_counts(labels, self.taxonomy)
        class_pixels = {self.taxonomy.by_id(k).name: v for k, v in counts.items() if v}
        n_ai, accepted, corrected = ai_stats(labels, prov, item.ai_labels, item.ai_provenance)
        now = time.time()
        with self.store.transaction() as con:
            if item.mode == "qa":
                q = self._qa_item(item.stem)
                con.execute(
                    "UPDATE qa_items SET seconds = seconds + ?, reviewer=? "
                    "WHERE batch_id=? AND image_id=?",
                    (float(seconds), item.annotator, q["batch_id"], image_id),
                )
                return item.labels_path
            con.execute(
                "INSERT OR IGNORE INTO work (image_id, annotator, mode, status, started, updated) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (image_id, item.annotator, item.mode, IN_PROGRESS, item.opened, now),
            )
            con.execute(
                "UPDATE work SET seconds = seconds + ?, edits = edits + ?, ai_pixels=?, "
                "ai_accepted=?, ai_corrected=?, class_pixels=?, updated=?, "
                "status = COALESCE(?, status), "
                "finished = CASE WHEN ? = 'done' THEN ? ELSE finished END "
                "WHERE image_id=? AND annotator=? AND mode=?",
                (
                    float(seconds), int(edits), n_ai, accepted, corrected,
                    json.dumps(class_pixels), now, status, status, now,
                    image_id, item.annotator, item.mode,
                ),
            )  # fmt: skip
            if item.mode == "production" and status is not None:
                con.execute(
                    "UPDATE images SET status=?, annotator=? WHERE id=?",
                    (status, item.annotator, image_id),
                )
        return item.labels_path

    def release(self, stem: str, *, annotator: str) -> None:
        """Give an image the annotator opened but never saved back to the shared queue."""
        image_id = self._image_id(stem)
        with self.store.transaction() as con:
            saved = con.execute(
                "SELECT COUNT(*) FROM work WHERE image_id=? AND annotator=? AND mode='production' "
                "AND updated > started",
                (image_id, annotator),
            ).fetchone()[0]
            if not saved and not self.labels_path(stem, annotator=annotator).exists():
                con.execute(
                    "UPDATE images SET status=?, annotator=NULL WHERE id=? AND annotator=? "
                    "AND status=?",
                    (TODO, image_id, annotator, IN_PROGRESS),
                )
                con.execute(
                    "DELETE FROM work WHERE image_id=? AND annotator=? AND mode='production'",
                    (image_id, annotator),
                )
