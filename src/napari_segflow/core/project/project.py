"""An annotation project: images, taxonomy, annotators, labels per annotator and their status.

A project is a folder::

    PROJECT/
      project.json        what the project is (written last: its presence means "complete")
      project.db          the catalog: images, gold flags, first annotators (written once)
      taxonomy.json       the classes, copied in at creation
      prelabels/          AI pre-labels (``segflow prelabel --out PROJECT/prelabels``), optional
      state/<name>.sqlite                            one person's work, verdicts (:mod:`.state`)
      claims/<stem>@<n>.json                         who holds an image (:mod:`.claims`)
      qa/batch-<n>.json                              a QA batch, written once by who drew it
      calibration.json                               the last calibration run's scores and flags
      labels/<annotator>/<stem>.png                  production labels (+ provenance sidecar)
      labels/<annotator>/calibration/<stem>.png      the annotator's labels of the gold set
      labels/<reviewer>/qa/<stem>.png                a reviewer's QA correction

Volumes (NIfTI, TIFF stacks) are stored as ``.nii.gz`` / ``.tif`` instead of ``.png``. A
person's session writes only that person's files: their state file, the claim files they
create, and ``labels/<name>/``; everybody else's are only read (:mod:`.view`). Every label file
and sidecar is written atomically, so a killed session leaves the last save intact.

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

import functools
import json
import os
import threading
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
from napari_segflow.core.project.claims import ClaimTaken, add_claim, current_claim
from napari_segflow.core.project.review import ReviewMixin
from napari_segflow.core.project.state import AnnotatorState, change_counter, state_files
from napari_segflow.core.project.store import (
    ACCEPTED,
    DONE,
    IN_PROGRESS,
    IN_REVIEW,
    REJECTED,
    SKIPPED,
    TODO,
    ProjectStore,
)
from napari_segflow.core.project.view import (
    CODE,
    QA_DIR,
    PersonRows,
    ProjectView,
    build_view,
    read_batches,
    read_person,
)
from napari_segflow.core.project.work import (
    DB_FILE,
    MODES,
    PRELABEL_DIR,
    PROJECT_FILE,
    STATE_LAYOUT,
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
            store.seal()
        config = {
            "format": "segflow-project",
            "version": 2,
            "state": STATE_LAYOUT,
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
    """An open project. Thread-safe for one window; several windows each open their own.

    Opening a project in the old single-database layout migrates it first (see
    :mod:`.migrate`).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.root = Path(path)
        self.config = self._read_config()
        if self.config.get("state") != STATE_LAYOUT:
            from napari_segflow.core.project.migrate import migrate_project

            migrate_project(self.root)
            self.config = self._read_config()
        self.taxonomy = load_taxonomy(self.root / TAXONOMY_FILE)
        # the catalog never changes after creation: opened immutable, no lock on a share
        self.store = ProjectStore(self.root / DB_FILE, readonly=True)
        ids = np.asarray(self.store.rows("SELECT id, gold FROM images ORDER BY id"), np.int64)
        ids = ids.reshape(-1, 2)
        self._ids = np.ascontiguousarray(ids[:, 0])
        self._gold = ids[:, 1].astype(bool)
        self._listed = [r[0] for r in self.store.rows("SELECT name FROM annotators")]
        self._states: dict[str, AnnotatorState] = {}
        self._cache: tuple[Any, ProjectView] | None = None
        self._memo: dict[str, tuple[Any, PersonRows]] = {}
        # (the batch list it was drawn from, {image index: (newest batch, its item)})
        self._qa_cache: tuple[Any, dict[int, tuple[int, dict[str, Any]]]] | None = None
        self._batch_cache: tuple[tuple[str, ...], list[dict[str, Any]]] | None = None
        self._lock = threading.RLock()
        self.prelabel_sources: list[PrelabelSource] = []

    # names and paths load on first use: counting needs neither (fast `segflow project status`)
    @functools.cached_property
    def _stems(self) -> list[str]:
        return [r[0] for r in self.store.rows("SELECT stem FROM images ORDER BY id")]

    @functools.cached_property
    def _index(self) -> dict[str, int]:
        return {s: j for j, s in enumerate(self._stems)}

    @functools.cached_property
    def _paths(self) -> list[str]:
        return [r[0] for r in self.store.rows("SELECT path FROM images ORDER BY id")]

    def _read_config(self) -> dict[str, Any]:
        cfg = self.root / PROJECT_FILE
        if not cfg.is_file():
            raise ProjectError(f"{self.root}: not a segflow project (no {PROJECT_FILE})")
        try:
            config = json.loads(cfg.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ProjectError(f"{cfg}: cannot be read ({exc})") from None
        if config.get("format") != "segflow-project":
            raise ProjectError(f"{cfg}: not a segflow project file")
        return config

    def close(self) -> None:
        with self._lock:
            for st in self._states.values():
                st.close()
            self._states.clear()
            self.store.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ state files
    def _readable(self, name: str) -> AnnotatorState | None:
        """``name``'s state file when it exists and holds tables (a person who saved), else None."""
        st = self._state(name)
        return st if st is not None and st.has_tables() else None

    def _people(self, view: ProjectView, annotator: str | None = None):
        """``(k, name, state)`` of every person of ``view`` with a readable state file, ``k``
        their index in ``view.holder``; only ``annotator``'s when given."""
        for k, name in enumerate(view.names):
            if annotator is not None and name != annotator:
                continue
            st = self._readable(name)
            if st is not None:
                yield k, name, st

    def _state(self, name: str, *, write: bool = False) -> AnnotatorState | None:
        """``name``'s state file: writable for their own sessions, else read-only (or None)."""
        with self._lock:
            st = self._states.get(name)
            if st is not None and (st.writable or not write):
                return st
            if write:
                if st is not None:
                    st.close()
                st = AnnotatorState(self.root, check_name(name), writable=True)
            else:
                try:
                    st = AnnotatorState(self.root, name)
                except FileNotFoundError:
                    return None
            self._states[name] = st
            return st

    def _recover(self, name: str) -> None:
        """Acting as ``name``: a file of theirs left mid-commit by a killed window is rolled
        back by opening it for writing (their own file; nobody else ever repairs it)."""
        st = self._state(name)
        if st is not None and not st.writable and not st.has_tables():
            self._state(name, write=True)

    def _view(self) -> ProjectView:
        """Everybody's state aggregated read-only; rebuilt only when a file changed."""
        with self._lock:
            files = state_files(self.root)
            qa, batches = self._batches()
            sig = (tuple((n, change_counter(p)) for n, p in files.items()), qa)
            if self._cache is not None and self._cache[0] == sig:
                return self._cache[1]
            # only the files that changed are read again (after an own save: one file)
            persons: dict[str, PersonRows] = {}
            for (n, n_sig), _ in zip(sig[0], files, strict=True):
                old = self._memo.get(n)
                if old is not None and n_sig is not None and old[0] == n_sig:
                    persons[n] = old[1]
                elif (st := self._state(n)) is not None:
                    if not st.has_tables() and old is not None:
                        # unreadable just now (a writer died mid-commit; its owner's next
                        # session rolls it back): keep what was read last
                        persons[n] = old[1]
                        continue
                    persons[n] = read_person(st)
                    self._memo[n] = (n_sig, persons[n])
            view = build_view(len(self._ids), self._ids, persons, batches)
            if self._batch_cache is not None and batches is self._batch_cache[1]:
                self._cache = (sig, view)  # not while a batch file is still being written
            return view

    def work_rows(self, *, mode: str = "production") -> list[tuple[str, dict[str, Any]]]:
        """``(person, row)`` for every work row of ``mode`` in everybody's state (read-only)."""
        out = []
        for name in state_files(self.root):
            st = self._readable(name)
            if st is None:
                continue
            for r in st.query("SELECT * FROM work WHERE mode=? ORDER BY image_id", (mode,)):
                out.append((name, dict(r)))
        return out

    # ------------------------------------------------------------------ paths
    def _resolve(self, rel: str | None) -> Path | None:
        return None if rel is None else Path(os.path.normpath(self.root / rel))

    @property
    def gold_dir(self) -> Path | None:
        return self._resolve(self.config.get("gold"))

    @property
    def prelabel_dir(self) -> Path | None:
        return self._resolve(self.config.get("prelabels"))

    def _j(self, stem: str) -> int:
        j = self._index.get(stem)
        if j is None:
            raise ProjectError(f"no image {stem!r} in the project")
        return j

    def image_path(self, stem: str) -> Path:
        return Path(os.path.normpath(self.root / self._paths[self._j(stem)]))

    def _image_id(self, stem: str) -> int:
        return int(self._ids[self._j(stem)])

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
        return sorted(set(self._listed) | set(state_files(self.root)))

    def add_annotator(self, name: str) -> None:
        """Add a person: their own state file is created (nothing shared is written)."""
        self._state(check_name(name), write=True)

    # ------------------------------------------------------------------ status
    def __len__(self) -> int:
        return len(self._ids)

    def status(self) -> dict[str, Any]:
        """The counts ``segflow project status --json`` prints.

        ``{"images": N, "gold": n, "status": {status: n}, "annotators": {name: {...}},
        "qa_batches": n}``; each annotator has ``production`` and ``calibration`` counts per
        status, ``seconds`` spent, ``current`` (the image to resume) and calibration ``flags``.
        Everybody's state files are read, none is written.
        """
        view = self._view()
        people: dict[str, Any] = {}
        for name in self.annotators:
            p = view.people.get(name)
            people[name] = {
                "production": dict(p["production"]) if p else {},
                "calibration": dict(p["calibration"]) if p else {},
                "seconds": p["seconds"] if p else 0.0,
                "current": p["current"] if p else None,
                "current_mode": p["current_mode"] if p else None,
                "flags": [],
            }
        for r in self._calibration_results():
            if r["flagged"] and r["annotator"] in people:
                people[r["annotator"]]["flags"].append(r["class"])
        return {
            "images": len(self),
            "gold": int(self._gold.sum()),
            "status": view.counts(),
            "annotators": people,
            "qa_batches": len(view.batches),
        }

    def _entry(self, j: int, status: str, annotator: str | None) -> ImageEntry:
        path = Path(os.path.normpath(self.root / self._paths[j]))
        return ImageEntry(self._stems[j], path, bool(self._gold[j]), status, annotator)

    def images(
        self, *, mode: str = "production", annotator: str | None = None, status: str | None = None
    ) -> list[ImageEntry]:
        """The image list of ``mode`` with each image's status there (optionally filtered).

        Production: every image and its project status. Calibration: the gold images and
        ``annotator``'s status on each. QA: the images of every batch, ``in_review`` until a
        reviewer's verdict.
        """
        check_mode(mode)
        view = self._view()
        if mode == "production":
            codes = view.status
            sel = (
                range(len(self))
                if status is None
                else np.flatnonzero(codes == CODE.get(status, -1))
            )
            return [self._entry(j, view.status_of(j), view.holder_of(j)) for j in sel]
        if mode == "calibration":
            mine: dict[int, str] = {}
            st = self._readable(annotator) if annotator else None
            if st is not None:
                mine = dict(st.rows("SELECT image_id, status FROM work WHERE mode='calibration'"))
            out = [
                self._entry(j, mine.get(int(self._ids[j]), TODO), annotator)
                for j in np.flatnonzero(self._gold)
            ]
        else:
            names = {"pending": IN_REVIEW, "accepted": ACCEPTED, "rejected": REJECTED}
            out = []
            for b in view.batches:
                for item in sorted(b["items"], key=lambda it: it["image_id"]):
                    j = self._index.get(item["stem"])
                    if j is not None:
                        verdict = view.verdict(int(b["batch"]), j)
                        out.append(self._entry(j, names[verdict], item["annotator"]))
        if status is not None:
            out = [e for e in out if e.status == status]
        return out

    def _open_for(self, entry: ImageEntry, mode: str, annotator: str) -> bool:
        """Whether ``entry`` is still to do for ``annotator`` in ``mode`` (the queue)."""
        if mode == "calibration":
            return entry.status in (TODO, IN_PROGRESS)
        return entry.status == IN_REVIEW

    def _mine(self, view: ProjectView, annotator: str) -> np.ndarray:
        k = view.names.index(annotator) if annotator in view.names else -2
        return view.holder == k

    def next_stem(
        self, *, annotator: str, mode: str = "production", after: str | None = None
    ) -> str | None:
        """The next image of ``annotator``'s queue after ``after`` (wrapping), or None."""
        self._recover(annotator)
        if mode == "production":
            view = self._view()
            queue = (view.status == CODE[TODO]) | (
                self._mine(view, annotator)
                & np.isin(view.status, [CODE[IN_PROGRESS], CODE[REJECTED]])
            )
            start = 0
            if after is not None and after in self._index:
                start = self._index[after] + 1
                queue[self._index[after]] = False
            hits = np.flatnonzero(queue[start:])
            if len(hits):
                return self._stems[start + int(hits[0])]
            hits = np.flatnonzero(queue[:start])
            return self._stems[int(hits[0])] if len(hits) else None
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
        if mode == "production":
            if before not in self._index:
                return None
            view = self._view()
            visible = (view.status == CODE[TODO]) | self._mine(view, annotator)
            hits = np.flatnonzero(visible[: self._index[before]])
            return self._stems[int(hits[-1])] if len(hits) else None
        entries = self.images(mode=mode, annotator=annotator)
        stems = [e.stem for e in entries]
        if before not in stems:
            return None
        i = stems.index(before)
        return entries[i - 1].stem if i > 0 else None

    def resume(self, annotator: str) -> tuple[str, str] | None:
        """``(mode, stem)`` the annotator had open last, or None."""
        self._recover(annotator)
        st = self._readable(annotator)
        if st is None:
            return None
        rows = st.query("SELECT stem, mode FROM current")
        if not rows or rows[0]["stem"] is None:
            return None
        return rows[0]["mode"], rows[0]["stem"]

    def progress(self, *, annotator: str | None = None) -> dict[str, Any]:
        """Production progress: ``{"done": n, "total": N, "class_pixels": {class: pixels}}``.

        Done counts images at ``done`` or later (in review, accepted) of their holder.
        """
        view = self._view()
        finished = np.isin(view.status, [CODE[DONE], CODE[IN_REVIEW], CODE[ACCEPTED]])
        finished &= view.holder >= 0
        if annotator is not None:
            finished &= self._mine(view, annotator)
        pixels: dict[str, int] = dict.fromkeys(self.taxonomy.names, 0)
        for k, _, st in self._people(view, annotator):
            done_rows = "FROM work w, json_each(w.class_pixels) j WHERE w.mode='production' "
            done_rows += "AND w.status='done'"
            # summed inside SQLite; rows whose image is not (or no longer) this person's
            # finished work (rejected, taken over) are taken off again below
            for key, v in st.rows(f"SELECT j.key, SUM(j.value) {done_rows} GROUP BY j.key"):
                pixels[key] = pixels.get(key, 0) + int(v)
            ids = np.asarray(
                st.rows("SELECT image_id FROM work WHERE mode='production' AND status='done'"),
                dtype=np.int64,
            ).reshape(-1)
            ids = ids[np.isin(ids, self._ids)]
            j = np.searchsorted(self._ids, ids)
            gone = ids[~(finished[j] & (view.holder[j] == k))]
            for chunk in range(0, len(gone), 500):
                part = [int(x) for x in gone[chunk : chunk + 500]]
                marks = ",".join("?" * len(part))
                for key, v in st.rows(
                    f"SELECT j.key, SUM(j.value) {done_rows} AND w.image_id IN ({marks}) "
                    "GROUP BY j.key",
                    part,
                ):
                    pixels[key] -= int(v)
        return {"done": int(finished.sum()), "total": len(self), "class_pixels": pixels}

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

    def _batches(self) -> tuple[tuple[str, ...], list[dict[str, Any]]]:
        """(the QA folder's listing, its batch files): read again only when the listing changed.

        A batch file never changes once its name exists, so the listing is its signature; a
        listing with a file not readable yet (an exclusive create still writing, where hard
        links are missing) is not kept, so the file is read again next time.
        """
        with self._lock:
            try:
                listing = tuple(sorted(os.listdir(self.root / QA_DIR)))
            except FileNotFoundError:
                listing = ()
            if self._batch_cache is not None and self._batch_cache[0] == listing:
                return self._batch_cache
            batches = read_batches(self.root)
            names = [n for n in listing if n.startswith("batch-") and n.endswith(".json")]
            if len(batches) == len(names):
                self._batch_cache = (listing, batches)
            return listing, batches

    def _drawn(self) -> dict[int, tuple[int, dict[str, Any]]]:
        """``{image index: (newest batch, its item)}``, cached until the QA folder changes."""
        with self._lock:
            _, batches = self._batches()
            if self._qa_cache is None or self._qa_cache[0] is not batches:
                drawn: dict[int, tuple[int, dict[str, Any]]] = {}
                for b in batches:
                    for it in b["items"]:
                        j = self._index.get(it["stem"])
                        if j is not None:
                            drawn[j] = (int(b["batch"]), it)
                self._qa_cache = (batches, drawn)
            return self._qa_cache[1]

    def _verdict(self, batch: int, image_id: int) -> str:
        """The verdict on one image of one batch: every reviewer's file, one indexed lookup each.

        As in the aggregated view, a verdict beats a pending review and the later of two
        verdicts counts.
        """
        best, when = "pending", -1.0
        for name in state_files(self.root):
            st = self._readable(name)
            if st is None:
                continue
            for verdict, reviewed in st.rows(
                "SELECT verdict, reviewed FROM verdicts WHERE batch=? AND image_id=?",
                (batch, image_id),
            ):
                if verdict != "pending" and (reviewed or 0.0) > when:
                    best, when = verdict, reviewed or 0.0
        return best

    def _qa_item(self, stem: str) -> dict[str, Any]:
        """The newest QA batch holding ``stem``: ``{"batch_id", "annotator"}``."""
        got = self._drawn().get(self._j(stem))
        if got is None:
            raise ProjectError(f"{stem}: not in a QA batch")
        b, item = got
        return {"batch_id": b, "annotator": item["annotator"]}

    def _claim(self, stem: str, annotator: str) -> int:
        """Claim ``stem`` for ``annotator`` (a claim file); the generation held."""
        while True:
            c = current_claim(self.root, stem)
            if c is not None and not c.released:
                if c.annotator == annotator:
                    return c.generation
                view = self._view()
                status = view.status_of(self._j(stem))
                raise ProjectError(
                    f"{stem} is {IN_PROGRESS if status == TODO else status} by {c.annotator}"
                )
            gen = 0 if c is None else c.generation + 1
            try:
                return add_claim(self.root, stem, gen, annotator=annotator).generation
            except ClaimTaken:
                continue  # somebody was faster: look at their claim

    def take_over(self, stem: str, *, annotator: str, stale_after: float = 900.0) -> None:
        """Take an image whose holder went away (a crashed window never reopened).

        Refused while the holder's last sign of work on it (the claim, their last save, by
        their clock) is younger than ``stale_after`` seconds. The holder's labels stay in
        their folder; if they come back, saving tells them the image was taken over.
        """
        check_name(annotator)
        image_id = self._image_id(stem)  # an unknown image: refused before any claim file
        c = current_claim(self.root, stem)
        if c is None or c.released or c.annotator == annotator:
            self._claim(stem, annotator)
            return
        last = c.time
        st = self._readable(c.annotator) if c.annotator else None
        if st is not None:
            rows = st.rows(
                "SELECT MAX(updated) FROM work WHERE image_id=? AND mode='production'",
                (image_id,),
            )
            last = max(last, float(rows[0][0] or 0.0))
        age = time.time() - last
        if age < stale_after:
            raise ProjectError(
                f"{stem}: {c.annotator} worked on it {age:.0f} s ago; a claim goes stale "
                f"after {stale_after:.0f} s"
            )
        try:
            add_claim(self.root, stem, c.generation + 1, annotator=annotator)
        except ClaimTaken:
            raise ProjectError(f"{stem}: somebody else took it over just now") from None

    def open_item(self, stem: str, *, annotator: str, mode: str = "production") -> WorkItem:
        """Open ``stem`` for ``annotator`` in ``mode``: read the pixels and the labels to edit.

        Production claims the image for the annotator (refused when someone else holds it);
        labels come from the annotator's last save, else from the AI pre-labels (AI-pending),
        else empty. In QA the reviewer starts from their correction, else the annotator's labels.
        Only the annotator's own files are written (claim, state, labels).
        """
        check_mode(mode)
        check_name(annotator)
        path = self.image_path(stem)
        kind = volume_kind(path)
        image, affine = self._read_image(path)
        shape = tuple(image.shape) if kind is not None else tuple(image.shape[:2])
        image_id = self._image_id(stem)
        own = self.labels_path(stem, annotator=annotator, mode=mode)
        qa = self._qa_item(stem) if mode == "qa" else None
        gen = self._claim(stem, annotator) if mode == "production" else 0
        now = time.time()
        with self._state(annotator, write=True).transaction() as con:
            if mode != "qa":
                con.execute(
                    "INSERT OR IGNORE INTO work (image_id, mode, status, claim, started, "
                    "updated) VALUES (?, ?, ?, ?, ?, ?)",
                    (image_id, mode, IN_PROGRESS, gen, now, now),
                )
                con.execute(
                    "UPDATE work SET status=? WHERE image_id=? AND mode=? AND status=?",
                    (IN_PROGRESS, image_id, mode, TODO),
                )
                con.execute(
                    "UPDATE work SET claim=? WHERE image_id=? AND mode=?", (gen, image_id, mode)
                )
            con.execute(
                "INSERT OR REPLACE INTO current (one, stem, mode, updated) VALUES (0, ?, ?, ?)",
                (stem, mode, now),
            )
        suffix = volume_suffix(kind)
        ai = self._prelabels(stem, image, shape, suffix) if mode == "production" else None
        if own.is_file():
            labels, prov = self._read_labels(own, shape)
            source = "saved"
        elif qa is not None:
            labels, prov = self._read_labels(
                self.labels_path(stem, annotator=qa["annotator"]), shape
            )
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
        qa = self._qa_item(item.stem) if item.mode == "qa" else None
        answered = 0
        if item.mode == "production":
            c = current_claim(self.root, item.stem)
            if c is not None and c.holder not in (None, item.annotator):
                raise ProjectError(f"{item.stem} belongs to {c.holder}")
            # one image's QA state, without aggregating everybody (this runs on every autosave)
            batch = self._drawn().get(self._j(item.stem), (0, None))[0]
            if batch:
                verdict = self._verdict(batch, image_id)
                if verdict in ("pending", ACCEPTED):
                    now_status = IN_REVIEW if verdict == "pending" else ACCEPTED
                    raise ProjectError(f"{item.stem} is {now_status}: it can no longer change")
            # finishing a rejected image answers the batch that rejected it
            answered = batch if status is not None else 0
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
        with self._state(item.annotator, write=True).transaction() as con:
            if qa is not None:
                con.execute(
                    "INSERT OR IGNORE INTO verdicts (batch, image_id) VALUES (?, ?)",
                    (qa["batch_id"], image_id),
                )
                con.execute(
                    "UPDATE verdicts SET seconds = seconds + ? WHERE batch=? AND image_id=?",
                    (float(seconds), qa["batch_id"], image_id),
                )
                return item.labels_path
            con.execute(
                "INSERT OR IGNORE INTO work (image_id, mode, status, started, updated) "
                "VALUES (?, ?, ?, ?, ?)",
                (image_id, item.mode, IN_PROGRESS, item.opened, now),
            )
            con.execute(
                "UPDATE work SET seconds = seconds + ?, edits = edits + ?, ai_pixels=?, "
                "ai_accepted=?, ai_corrected=?, class_pixels=?, updated=?, "
                "status = COALESCE(?, status), answered = MAX(answered, ?), "
                "finished = CASE WHEN ? = 'done' THEN ? ELSE finished END "
                "WHERE image_id=? AND mode=?",
                (
                    float(seconds), int(edits), n_ai, accepted, corrected,
                    json.dumps(class_pixels), now, status, answered, status, now,
                    image_id, item.mode,
                ),
            )  # fmt: skip
        return item.labels_path

    def release(self, stem: str, *, annotator: str) -> None:
        """Give an image the annotator opened but never saved back to the shared queue."""
        image_id = self._image_id(stem)
        st = self._readable(annotator)
        if st is None:
            return
        saved = st.rows(
            "SELECT COUNT(*) FROM work WHERE image_id=? AND mode='production' "
            "AND updated > started",
            (image_id,),
        )[0][0]
        if saved or self.labels_path(stem, annotator=annotator).exists():
            return
        c = current_claim(self.root, stem)
        if c is None or c.holder != annotator:
            return
        with self._state(annotator, write=True).transaction() as con:
            con.execute(
                "DELETE FROM work WHERE image_id=? AND mode='production' AND status=?",
                (image_id, IN_PROGRESS),
            )
        try:
            add_claim(self.root, stem, c.generation + 1, annotator=annotator, released=True)
        except ClaimTaken:
            pass  # taken over meanwhile: it is no longer ours to give back
