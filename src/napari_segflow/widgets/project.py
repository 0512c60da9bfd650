"""Project dock widget: work through a project's images one after another.

Open (or create) a project, pick the annotator and the mode, and the widget loads each image
with its labels under the project's taxonomy. Labels are saved atomically on every change of
image and every few seconds while there are unsaved edits, so a killed napari loses at most
that interval; reopening the project resumes at the image the annotator had open. While the
annotator works, the next image of the queue is embedded in the background so that the Click
to segment dock answers the first click on it from its cache.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, LineEdit
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_segflow.core.project import (
    ACCEPTED,
    DONE,
    MODES,
    REJECTED,
    SKIPPED,
    STATUSES,
    Project,
    WorkItem,
    create_project,
    open_project,
    read_image_file,
)
from napari_segflow.core.provenance import PROVENANCE_KEY
from napari_segflow.layers import labels_layer_kwargs, track_provenance
from napari_segflow.widgets._torch import prepare_torch
from napari_segflow.widgets.prompt import PromptWidget

logger = logging.getLogger(__name__)

IMAGE_LAYER = "project image"
LABELS_LAYER = "project labels"
_ALL = "all"
#: Keys bound in the viewer while the widget is open.
KEYS = {"next": "PageDown", "previous": "PageUp", "done": "Shift-Enter"}
#: Time between two edits longer than this counts as a break, not as work on the image.
IDLE_SECONDS = 120.0
#: The list shows at most this many rows around the current image (projects can be huge).
MAX_ROWS = 2000


class ProjectWidget(QWidget):
    """Open a project, pick annotator and mode, and go through the images.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    models : dict, optional
        Loaded promptable models by name, shared with the Click to segment widget (see
        :meth:`connect_prompt`); the next image is embedded with them in the background.
    autosave_ms : int
        Interval of the autosave while there are unsaved edits.
    model_name : str or None
        Model used to pre-embed the next image; None turns the background embedding off.
    """

    def __init__(
        self,
        napari_viewer: napari.viewer.Viewer,
        *,
        models: dict | None = None,
        autosave_ms: int = 10_000,
        model_name: str | None = "medsam-lite",
    ) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.project: Project | None = None
        self.item: WorkItem | None = None
        self.image_layer = None
        self.labels_layer = None
        self.prompt = None
        self._models: dict = models if models is not None else {}
        self.model_name = model_name
        self._edits = 0
        self._dirty = False
        self._last_activity = time.monotonic()
        self._active_seconds = 0.0
        self._embed_worker = None
        self.embedded_next: str | None = None  # stem whose embedding is in the model's cache
        self._entries: list = []
        self._progress_workers: set = set()
        self.last_progress: dict | None = None

        self._folder = FileEdit(label="project", mode="d")
        self._open_btn = QPushButton("Open project")
        self._images = FileEdit(label="images", mode="d")
        self._taxonomy = LineEdit(label="taxonomy", value="")
        self._taxonomy.tooltip = "taxonomy file or preset name"
        self._create_btn = QPushButton("Create project")
        self._annotator = ComboBox(label="annotator", choices=[], nullable=True)
        self._new_name = LineEdit(label="new annotator", value="")
        self._mode = ComboBox(label="mode", choices=list(MODES), value="production")
        self._filter = ComboBox(label="show", choices=[_ALL, *STATUSES], value=_ALL)
        self._list = QListWidget()
        self._prev = QPushButton(f"Previous ({KEYS['previous']})")
        self._next = QPushButton(f"Next ({KEYS['next']})")
        self._done = QPushButton(f"Done, next ({KEYS['done']})")
        self._skip = QPushButton("Skip")
        self._progress = QLabel("No project open.")
        self._progress.setWordWrap(True)
        self._flags = QLabel("")
        self._flags.setWordWrap(True)
        self._flags.setStyleSheet("color: #ffb347")
        self._calibrate = QPushButton("Run calibration")
        self._cancel_calib = QPushButton("Cancel")
        self._cancel_calib.setEnabled(False)
        self._calib_cancel = threading.Event()
        self.calibration_cancelled = False
        self._qa_trend = QLabel("")
        self._qa_trend.setWordWrap(True)
        self._qa_rate = FloatSpinBox(label="QA rate", value=0.15, min=0.01, max=1.0, step=0.05)
        self._draw = QPushButton("Draw QA batch")
        self._accept = QPushButton("Accept")
        self._reject = QPushButton("Reject")

        layout = QVBoxLayout(self)
        layout.addWidget(Container(widgets=[self._folder]).native)
        layout.addWidget(self._open_btn)
        box = QGroupBox("New project (in the folder above)")
        inner = QVBoxLayout(box)
        inner.addWidget(Container(widgets=[self._images, self._taxonomy]).native)
        inner.addWidget(self._create_btn)
        layout.addWidget(box)
        form = Container(widgets=[self._annotator, self._new_name, self._mode, self._filter])
        layout.addWidget(form.native)
        layout.addWidget(self._list)
        row = QHBoxLayout()
        for b in (self._prev, self._next):
            row.addWidget(b)
        layout.addLayout(row)
        row = QHBoxLayout()
        for b in (self._done, self._skip):
            row.addWidget(b)
        layout.addLayout(row)
        layout.addWidget(self._progress)
        layout.addWidget(self._flags)
        row = QHBoxLayout()
        row.addWidget(self._calibrate)
        row.addWidget(self._cancel_calib)
        layout.addLayout(row)
        qa = QGroupBox("QA")
        inner = QVBoxLayout(qa)
        inner.addWidget(Container(widgets=[self._qa_rate]).native)
        inner.addWidget(self._draw)
        row = QHBoxLayout()
        row.addWidget(self._accept)
        row.addWidget(self._reject)
        inner.addLayout(row)
        inner.addWidget(self._qa_trend)
        layout.addWidget(qa)
        layout.addStretch(1)

        self._autosave = QTimer(self)
        self._autosave.setInterval(int(autosave_ms))
        self._autosave.timeout.connect(self.autosave)
        self._autosave.start()

        self._open_btn.clicked.connect(lambda: self.open_project(self._folder.value))
        self._create_btn.clicked.connect(self._on_create)
        self._annotator.changed.connect(lambda _v: self._on_person_or_mode())
        self._new_name.changed.connect(self._on_new_name)
        self._mode.changed.connect(lambda _v: self._on_person_or_mode())
        self._filter.changed.connect(lambda _v: self.refresh_list())
        self._list.itemDoubleClicked.connect(
            lambda it: self.open_image(self._entries[self._list.row(it)].stem)
        )
        self._prev.clicked.connect(self.previous_image)
        self._next.clicked.connect(self.next_image)
        self._done.clicked.connect(self.done_and_next)
        self._skip.clicked.connect(self.skip)
        self._calibrate.clicked.connect(self.run_calibration)
        self._cancel_calib.clicked.connect(self._calib_cancel.set)
        self._draw.clicked.connect(self.draw_qa_batch)
        self._accept.clicked.connect(lambda: self.review(ACCEPTED))
        self._reject.clicked.connect(lambda: self.review(REJECTED))
        for name, fn in (
            ("next", self.next_image),
            ("previous", self.previous_image),
            ("done", self.done_and_next),
        ):
            self.viewer.bind_key(KEYS[name], lambda _v, f=fn: f(), overwrite=True)
        self._update_buttons()

    # ----------------------------------------------------------------- state
    @property
    def annotator(self) -> str | None:
        return self._annotator.value

    @property
    def mode(self) -> str:
        return self._mode.value

    def connect_prompt(self, prompt) -> None:
        """Share models with a Click to segment widget and point it at each opened image.

        A Click to segment dock in the same napari window is found and connected on its own.
        """
        self.prompt = prompt
        prompt._models.update(self._models)
        self._models = prompt._models
        if self.image_layer is not None:
            prompt.set_layers(image=self.image_layer, labels=self.labels_layer)

    def _update_buttons(self) -> None:
        has_item = self.item is not None
        qa = self.mode == "qa"
        for b in (self._done, self._skip):
            b.setEnabled(has_item and not qa)
        for b in (self._accept, self._reject):
            b.setEnabled(has_item and qa)
        self._draw.setEnabled(self.project is not None)
        running = getattr(self, "_calib_worker", None) is not None
        self._calibrate.setEnabled(
            self.project is not None and self.mode == "calibration" and not running
        )
        self._cancel_calib.setEnabled(running)

    # ----------------------------------------------------------------- project
    def _on_create(self) -> None:
        try:
            self.create_project(self._folder.value, self._images.value, self._taxonomy.value)
        except (ValueError, OSError) as exc:
            show_error(str(exc))

    def create_project(self, folder, images, taxonomy, *, annotators=()) -> Project:
        """Create a project (refused when one exists there) and open it."""
        create_project(folder, images=images, taxonomy=taxonomy, annotators=annotators).close()
        return self.open_project(folder)

    def open_project(self, folder) -> Project | None:
        """Open the project in ``folder``; the annotator list comes from it."""
        self._leave_image()
        try:
            project = open_project(Path(folder))
        except (ValueError, OSError) as exc:
            show_error(str(exc))
            return None
        if self.project is not None:
            self.project.close()
        self.project = project
        self._folder.value = Path(folder)
        with self._annotator.changed.blocked():
            self._annotator.choices = project.annotators
            self._annotator.value = project.annotators[0] if project.annotators else None
        resume = project.resume(self.annotator) if self.annotator else None
        if resume is not None:
            with self._mode.changed.blocked():
                self._mode.value = resume[0]  # back in the mode the annotator was working in
        self._on_person_or_mode()
        return project

    def _on_new_name(self, name: str) -> None:
        name = (name or "").strip()
        if not name or self.project is None:
            return
        try:
            self.project.add_annotator(name)
        except ValueError as exc:
            show_error(str(exc))
            return
        self._annotator.choices = self.project.annotators
        self._annotator.value = name
        self._new_name.value = ""

    def set_annotator(self, name: str) -> None:
        """Work as ``name`` (added to the project when new)."""
        if self.project is not None and name not in self.project.annotators:
            self.project.add_annotator(name)
            self._annotator.choices = self.project.annotators
        self._annotator.value = name

    def set_mode(self, mode: str) -> None:
        self._mode.value = mode

    def _on_person_or_mode(self) -> None:
        self._leave_image()
        self.refresh_list()
        self._show_flags()
        self._update_buttons()
        if self.project is None or self.annotator is None:
            return
        resume = self.project.resume(self.annotator)
        if resume is not None and resume[0] == self.mode:
            self.open_image(resume[1])
        else:
            stem = self.project.next_stem(annotator=self.annotator, mode=self.mode)
            if stem is not None:
                self.open_image(stem)

    def _show_flags(self) -> None:
        if self.project is None or self.annotator is None:
            self._flags.setText("")
            return
        flags = self.project.calibration_flags().get(self.annotator, [])
        self._flags.setText("\n".join(flags))

    def _show_qa_trend(self) -> None:
        """Per-class IoU of each reviewed QA batch, oldest first: is quality going up?"""
        lines = []
        for b in self.project.qa_batches() if self.project is not None else []:
            rep = b["report"]
            if not rep:
                continue
            overall = rep["overall"]
            per = ", ".join(
                f"{k} {v:.2f}" for k, v in overall["per_class_iou"].items() if v is not None
            )
            mean = overall.get("mean_iou")
            lines.append(
                f"#{b['batch']} ({rep['reviewed']} reviewed): mean "
                f"{'n/a' if mean is None else format(mean, '.2f')} | {per}"
            )
        self._qa_trend.setText(("IoU per QA batch:\n" + "\n".join(lines)) if lines else "")

    def refresh_list(self) -> None:
        """Fill the image list of the mode (with status), filtered by the chosen status."""
        self._list.clear()
        self._entries = []
        if self.project is None:
            return
        self._show_qa_trend()
        status = None if self._filter.value == _ALL else self._filter.value
        entries = self.project.images(mode=self.mode, annotator=self.annotator, status=status)
        current = self.item.stem if self.item is not None else None
        if len(entries) > MAX_ROWS:
            at = next((k for k, e in enumerate(entries) if e.stem == current), 0)
            start = min(max(at - MAX_ROWS // 2, 0), len(entries) - MAX_ROWS)
            entries = entries[start : start + MAX_ROWS]
        self._entries = entries
        for e in self._entries:
            who = f" ({e.annotator})" if e.annotator and e.annotator != self.annotator else ""
            mark = "▶ " if e.stem == current else ""
            self._list.addItem(f"{mark}{e.stem}: {e.status.replace('_', ' ')}{who}")
        self._update_progress()

    def _update_progress(self) -> None:
        """Count progress in a worker thread: it sums class pixels over the whole project."""
        if self.project is None:
            return
        root = self.project.root
        here = f"{self.item.stem} ({self.item.source})  |  " if self.item is not None else ""
        self._progress.setText(f"{here}counting progress...")

        def job():
            with open_project(root) as project:  # its own connection for this thread
                return project.progress()

        worker = create_worker(job)
        worker.returned.connect(lambda prog, h=here: self._show_progress(h, prog))
        worker.errored.connect(lambda exc: logger.debug("progress failed: %s", exc))
        worker.finished.connect(lambda w=worker: self._progress_workers.discard(w))
        self._progress_workers.add(worker)
        worker.start()

    def _show_progress(self, here: str, prog: dict) -> None:
        self.last_progress = prog
        px = ", ".join(f"{k} {v:,}" for k, v in prog["class_pixels"].items() if v)
        self._progress.setText(
            f"{here}{prog['done']}/{prog['total']} images done"
            + (f"\nlabelled pixels: {px}" if px else "")
        )

    # ----------------------------------------------------------------- images
    def _on_edit(self, _event=None) -> None:
        now = time.monotonic()
        self._active_seconds += min(now - self._last_activity, IDLE_SECONDS)
        self._last_activity = now
        self._edits += 1
        self._dirty = True

    def _on_provenance(self) -> None:
        self._dirty = True

    def _take_seconds(self) -> float:
        now = time.monotonic()
        seconds = self._active_seconds + min(now - self._last_activity, IDLE_SECONDS)
        self._active_seconds = 0.0
        self._last_activity = now
        return seconds

    def save(self, status: str | None = None) -> Path | None:
        """Save the current labels now (atomically), with time and edits since the last save."""
        if self.project is None or self.item is None or self.labels_layer is None:
            return None
        prov = self.labels_layer.metadata.get(PROVENANCE_KEY)
        try:
            path = self.project.save_item(
                self.item,
                np.asarray(self.labels_layer.data),
                prov,
                seconds=self._take_seconds(),
                edits=self._edits,
                status=status,
            )
        except (ValueError, OSError) as exc:
            show_error(f"Not saved: {exc}")
            return None
        self._edits = 0
        self._dirty = False
        return path

    def autosave(self) -> Path | None:
        """The timer's save: only when something changed since the last save."""
        if self._dirty and self.item is not None:
            return self.save()
        return None

    def _leave_image(self) -> None:
        if self.item is None:
            return
        # the item's own mode: the mode box may already show the next mode
        if self._dirty or (self.item.mode != "qa" and self.item.source == "prelabel"):
            self.save()
        elif self.item.mode == "production" and self.project is not None:
            self.project.release(self.item.stem, annotator=self.item.annotator)
        self.item = None

    def open_image(self, stem: str) -> WorkItem | None:
        """Save the current image and open ``stem`` with its labels (claims it in production)."""
        if self.project is None or self.annotator is None:
            show_warning("Open a project and choose an annotator first.")
            return None
        self._leave_image()
        try:
            item = self.project.open_item(stem, annotator=self.annotator, mode=self.mode)
        except (ValueError, OSError) as exc:
            show_error(str(exc))
            return None
        self.item = item
        self._show(item)
        self._edits = 0
        self._dirty = False
        self._active_seconds = 0.0
        self._last_activity = time.monotonic()
        self.refresh_list()
        self._update_buttons()
        self._embed_next()
        return item

    def _show(self, item: WorkItem) -> None:
        for name in (LABELS_LAYER, IMAGE_LAYER):
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
        rgb = item.image.ndim == 3 and item.image.shape[-1] in (3, 4) and not item.is_volume
        self.image_layer = self.viewer.add_image(item.image, name=IMAGE_LAYER, rgb=rgb)
        kwargs = labels_layer_kwargs(
            self.project.taxonomy, metadata={PROVENANCE_KEY: item.provenance.copy()}
        )
        self.labels_layer = self.viewer.add_labels(item.labels.copy(), name=LABELS_LAYER, **kwargs)
        tracker = track_provenance(self.labels_layer)
        tracker.changed.connect(self._on_provenance)
        self.labels_layer.events.paint.connect(self._on_edit)
        if self.project.taxonomy.classes:
            self.labels_layer.selected_label = self.project.taxonomy.classes[0].id
        self.viewer.layers.selection.active = self.labels_layer
        self.viewer.reset_view()
        if self.prompt is None:
            # a Click to segment dock in the same window works on the project's layers
            found = self.window().findChildren(PromptWidget)
            if found:
                self.connect_prompt(found[0])
        if self.prompt is not None:
            self.prompt.set_layers(image=self.image_layer, labels=self.labels_layer)

    def next_image(self) -> WorkItem | None:
        """Open the next image of the queue (done images are skipped)."""
        if self.project is None or self.annotator is None:
            return None
        after = self.item.stem if self.item is not None else None
        self._leave_image()
        stem = self.project.next_stem(annotator=self.annotator, mode=self.mode, after=after)
        if stem is None:
            show_info("Nothing left to do in this mode.")
            self.refresh_list()
            return None
        return self.open_image(stem)

    def previous_image(self) -> WorkItem | None:
        """Open the image before the current one (your own finished work included)."""
        if self.project is None or self.annotator is None or self.item is None:
            return None
        stem = self.project.previous_stem(
            annotator=self.annotator, mode=self.mode, before=self.item.stem
        )
        if stem is None:
            show_info("This is the first image.")
            return None
        return self.open_image(stem)

    def done_and_next(self) -> WorkItem | None:
        """Mark the current image done (saved) and open the next one."""
        if self.item is None or self.mode == "qa":
            return None
        if self.save(status=DONE) is None:
            return None
        return self.next_image()

    def skip(self) -> WorkItem | None:
        if self.item is None or self.mode == "qa":
            return None
        if self.save(status=SKIPPED) is None:
            return None
        return self.next_image()

    # ------------------------------------------------------- background embedding
    def _embed_next(self) -> None:
        """Embed the queue's next image in a worker thread so its first click is instant."""
        if self.project is None or self.item is None or self.item.is_volume:
            return
        if self.model_name is None:
            return
        stem = self.project.next_stem(
            annotator=self.annotator, mode=self.mode, after=self.item.stem
        )
        if stem is None or stem == self.embedded_next:
            return
        path = self.project.image_path(stem)
        prepare_torch()
        if self._embed_worker is not None:
            self._embed_worker.quit()
        worker = create_worker(self._embed_job, path, _progress={"total": 0, "desc": "next image"})
        worker.returned.connect(lambda _r, s=stem: setattr(self, "embedded_next", s))
        worker.errored.connect(lambda exc: logger.debug("pre-embedding failed: %s", exc))
        worker.finished.connect(lambda w=worker: self._embed_done(w))
        self._embed_worker = worker
        worker.start()

    def _embed_done(self, worker) -> None:
        if self._embed_worker is worker:
            self._embed_worker = None

    def _embed_job(self, path: Path):
        model = self._models.get(self.model_name)
        if model is None:
            from napari_segflow.core.segment import load_model

            model = load_model(self.model_name)
            self._models[self.model_name] = model
        pixels, _ = read_image_file(path)
        # the Click to segment widget's "auto" window passes 8-bit images as they are
        window = None
        if pixels.dtype != np.uint8 and not (pixels.ndim == 3 and pixels.shape[-1] in (3, 4)):
            from napari_segflow.core.segment.volume import volume_window

            window = volume_window(pixels, None)
        return model.embed(pixels, window=window)

    # ----------------------------------------------------------------- modes
    def run_calibration(self) -> None:
        """Score the finished calibration images against gold (in a worker thread)."""
        if self.project is None:
            return
        root = self.project.root
        cancel = self._calib_cancel
        cancel.clear()
        self.calibration_cancelled = False

        def job():
            with open_project(root) as project:  # its own connection for this thread
                try:
                    report = project.run_calibration(
                        cancel=cancel.is_set, progress=lambda d, t: self._calib_progress(d, t)
                    )
                except InterruptedError:
                    return None  # cancelled: nothing was stored
                return report, project.calibration_flags()

        worker = create_worker(job, _progress={"total": 0, "desc": "calibration"})
        worker.returned.connect(self._on_calibrated)
        worker.errored.connect(self._on_calibration_error)
        worker.finished.connect(self._on_calibration_finished)
        self._calib_worker = worker
        self._update_buttons()
        worker.start()

    def _calib_progress(self, done: int, total: int) -> None:
        # runs in the worker thread: only remember it (the progress bar is napari's)
        self.calibration_step = (done, total)

    def _on_calibration_error(self, exc: Exception) -> None:
        show_error(f"Calibration failed: {exc}")

    def _on_calibration_finished(self) -> None:
        self._calib_worker = None
        self._update_buttons()

    def _on_calibrated(self, result) -> None:
        if result is None:
            self.calibration_cancelled = True
            show_info("Calibration cancelled; the previous results are kept.")
            return
        report, flags = result
        self.calibration_report = report
        self._show_flags()
        n = sum(len(v) for v in flags.values())
        show_info(f"Calibration: {len(report.annotators)} annotator(s), {n} flag(s).")

    def draw_qa_batch(self) -> int | None:
        """Draw a QA batch from the finished images at the chosen rate; switch to QA mode."""
        if self.project is None:
            return None
        self._leave_image()
        rate = float(self._qa_rate.value)
        try:
            batch = self.project.draw_qa_batch(rates={"common": rate, "rare": max(rate, 0.30)})
        except ValueError as exc:
            show_error(str(exc))
            return None
        show_info(f"QA batch {batch} drawn.")
        if self.mode == "qa":
            self._on_person_or_mode()
        else:
            self.set_mode("qa")
        return batch

    def review(self, verdict: str) -> None:
        """Accept or reject the image under review (with the corrections made), then next."""
        if self.project is None or self.item is None or self.mode != "qa":
            return
        prov = self.labels_layer.metadata.get(PROVENANCE_KEY)
        try:
            self.project.review(
                self.item,
                verdict,
                np.asarray(self.labels_layer.data),
                prov,
                seconds=self._take_seconds(),
            )
        except (ValueError, OSError) as exc:
            show_error(str(exc))
            return
        self._dirty = False
        self.item = None
        self.next_image()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self._leave_image()
        self._autosave.stop()
        super().closeEvent(event)
