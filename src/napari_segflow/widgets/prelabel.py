"""Pre-label dock widget: learn the project's classes from painted pixels and propose them.

Training data are the human and AI-confirmed pixels of the chosen Labels layers (every image
and slice that has labels); unpainted pixels are not training data. Predictions go into the
target layer as AI-pending (the annotator confirms them), never over a person's pixels,
leaving uncertain pixels and classes whose ``ai_assist`` is false unlabelled. Training and
prediction run in a worker with progress and Cancel.
"""

from __future__ import annotations

import math

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Select
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_segflow.core.learn import LearnCancelled, PixelClassifier
from napari_segflow.core.prelabel.classifier import apply_prelabels
from napari_segflow.core.provenance import AI_PENDING, PROVENANCE_KEY
from napari_segflow.layers import (
    background_value,
    get_provenance,
    get_taxonomy,
    track_provenance,
)
from napari_segflow.widgets._layers import follow_layer_list, layer_choices

_OFF = QColor(240, 128, 128)
_ON = QColor(170, 220, 170)


def training_labels(layer) -> np.ndarray:
    """The layer's labels with pixels nobody painted or confirmed set to ``-1`` (int32).

    Background and AI-pending pixels are not training data; human and AI-confirmed ones are.
    """
    data = np.asarray(layer.data).astype(np.int32)
    prov = layer.metadata.get(PROVENANCE_KEY)
    out = np.where(data == background_value(layer), -1, data)
    if prov is not None and np.shape(prov) == data.shape:
        out[np.asarray(prov) == AI_PENDING] = -1
    return out


class PrelabelWidget(QWidget):
    """Train a pixel classifier on painted Labels layers and pre-label the image or volume."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.classifier: PixelClassifier | None = None
        self.cross_validation = None
        self._engine = None
        self._worker = None
        self._cancel = False
        self._live_layer = None
        self._pending_live = False
        self._committing = False

        self._image = ComboBox(label="image", choices=self._image_choices, nullable=True)
        self._target = ComboBox(label="pre-label into", choices=self._labels_choices)
        self._train_on = Select(label="train on", choices=self._labels_choices)
        self._train_on.native.setMaximumHeight(90)
        self._embeddings = CheckBox(text="encoder embeddings (LiteMedSAM)", value=True)
        self._min_conf = FloatSpinBox(
            label="min confidence", value=0.5, min=0.0, max=1.0, step=0.05
        )
        self._live = CheckBox(text="live: retrain after each stroke", value=False)
        self._model_file = FileEdit(label="model file", mode="w", filter="*.npz")
        self._form = Container(
            widgets=[
                self._image,
                self._target,
                self._train_on,
                self._embeddings,
                self._min_conf,
                self._live,
            ]
        )
        self._train = QPushButton("Train")
        self._measure = QPushButton("Measure IoU + gate")
        self._predict = QPushButton("Pre-label slice")
        self._predict_all = QPushButton("Pre-label all")
        self._stop = QPushButton("Cancel")
        self._stop.setEnabled(False)
        self._save = QPushButton("Save model")
        self._load = QPushButton("Load model")
        self._status = QLabel("Paint a few strokes of each class, then Train.")
        self._status.setWordWrap(True)
        self._table = QTableWidget()

        layout = QVBoxLayout(self)
        layout.addWidget(self._form.native)
        for buttons in (
            (self._train, self._measure),
            (self._predict, self._predict_all, self._stop),
        ):
            row = QHBoxLayout()
            for b in buttons:
                row.addWidget(b)
            layout.addLayout(row)
        layout.addWidget(self._status)
        layout.addWidget(self._table, stretch=1)
        layout.addWidget(Container(widgets=[self._model_file]).native)
        row = QHBoxLayout()
        row.addWidget(self._save)
        row.addWidget(self._load)
        layout.addLayout(row)

        self._train.clicked.connect(self._on_train)
        self._measure.clicked.connect(self._on_measure)
        self._predict.clicked.connect(lambda: self._on_predict(whole=False))
        self._predict_all.clicked.connect(lambda: self._on_predict(whole=True))
        self._stop.clicked.connect(self._on_cancel)
        self._save.clicked.connect(self._on_save)
        self._load.clicked.connect(self._on_load)
        self._live.changed.connect(self._on_live)
        self._target.changed.connect(lambda _v: self._on_live(self._live.value))
        follow_layer_list(self.viewer, self.reset_choices)
        self.reset_choices()

    # ------------------------------------------------------------------ choices
    def _image_choices(self, _widget=None):
        return layer_choices(self.viewer, napari.layers.Image)

    def _labels_choices(self, _widget=None):
        return layer_choices(self.viewer, napari.layers.Labels)

    def reset_choices(self, *_args) -> None:
        """Refresh the layer choices (napari calls this when layers change)."""
        self._image.reset_choices()
        self._target.reset_choices()
        self._train_on.reset_choices()

    def set_layers(self, image, target, train_on=None) -> None:
        """Choose the image, the target Labels layer and the training layers (objects)."""
        self._image.value = image
        self._target.value = target
        self._train_on.value = list(train_on) if train_on is not None else [target]

    # ------------------------------------------------------------------ inputs
    def _taxonomy(self):
        target = self._target.value
        return None if target is None else get_taxonomy(target)

    def _image_for(self, labels_layer):
        """The chosen image when its shape fits, else the first image layer that fits."""
        shape = np.shape(labels_layer.data)
        candidates = [self._image.value] + [lay for _, lay in self._image_choices()]
        for lay in candidates:
            if lay is None:
                continue
            data = np.asarray(lay.data)
            spatial = data.shape[:-1] if lay.rgb else data.shape
            if spatial == shape:
                return lay
        raise ValueError(f"No image layer has the shape of labels layer {labels_layer.name!r}.")

    def _training_set(self):
        layers = list(self._train_on.value or []) or (
            [self._target.value] if self._target.value is not None else []
        )
        if not layers:
            raise ValueError("Choose the Labels layers to train on.")
        images, labels = [], []
        for lay in layers:
            lab = training_labels(lay)
            if not np.any(lab >= 0):
                continue
            images.append(np.asarray(self._image_for(lay).data))
            labels.append(lab)
        if not images:
            raise ValueError("Nothing is painted yet: paint a few strokes of each class.")
        # unpainted pixels get a value above every id in use (the classifier skips it)
        tax = self._taxonomy()
        top = max([int(lab.max()) for lab in labels] + [tax.max_id if tax is not None else 0])
        unlabelled = top + 1
        return images, [np.where(lab < 0, unlabelled, lab) for lab in labels], unlabelled

    def _new_classifier(self) -> PixelClassifier:
        if self._embeddings.value:
            from napari_segflow.widgets._torch import prepare_torch

            prepare_torch()  # on the main thread, before the worker builds the model
        return PixelClassifier(
            embeddings=bool(self._embeddings.value), taxonomy=self._taxonomy(), model=self._engine
        )

    def _engine_model(self):
        """The engine model (built once, in the worker that first needs it; shared after)."""
        if self._engine is None:
            from napari_segflow.core.segment import load_model

            self._engine = load_model("medsam-lite")
        return self._engine

    def _with_engine(self, clf: PixelClassifier, work):
        """Run ``work()`` after giving ``clf`` the shared engine model (in the worker)."""

        def job():
            if clf.embeddings and clf.model is None:
                clf.model = self._engine_model()
            return work()

        return job

    # ------------------------------------------------------------------ running
    def _start(self, job, on_done, desc: str) -> None:
        if self._worker is not None:
            show_info("Pre-label: busy; wait or Cancel.")
            return
        self._cancel = False
        worker = create_worker(job, _progress={"desc": desc}, _ignore_errors=True)
        worker.returned.connect(on_done)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        for b in (self._train, self._measure, self._predict, self._predict_all):
            b.setEnabled(False)
        self._stop.setEnabled(True)
        self._worker = worker
        self._status.setText(f"{desc}...")
        worker.start()

    def _cancelled(self) -> bool:
        return self._cancel

    def train(self) -> PixelClassifier:
        """Train now (blocking) on the painted pixels; the widget keeps the classifier."""
        images, labels, unlabelled = self._training_set()
        clf = self._new_classifier()
        clf = self._with_engine(clf, lambda: clf.fit(images, labels, unlabelled=unlabelled))()
        self._trained(clf)
        return clf

    def _on_train(self) -> None:
        try:
            images, labels, unlabelled = self._training_set()
            clf = self._new_classifier()
        except ValueError as exc:
            show_error(str(exc))
            return
        self._start(
            self._with_engine(
                clf,
                lambda: clf.fit(images, labels, unlabelled=unlabelled, cancelled=self._cancelled),
            ),
            self._trained,
            "Training the pixel classifier",
        )

    def _trained(self, clf: PixelClassifier) -> None:
        self.classifier = clf
        names = ", ".join(str(int(c)) for c in clf.classes)
        self._status.setText(f"Trained on classes {names}. Pre-label, or Measure the IoU.")
        # live mode: pre-label once this worker has finished (see _on_finished)

    def measure(self):
        """Cross-validate now (blocking) and show the IoU table and the AI gate."""
        images, labels, unlabelled = self._training_set()
        clf = self._new_classifier()
        cv = self._with_engine(
            clf, lambda: clf.cross_validate(images, labels, unlabelled=unlabelled)
        )()
        self._show_cv(cv)
        return cv

    def _on_measure(self) -> None:
        try:
            images, labels, unlabelled = self._training_set()
            clf = self._new_classifier()
        except ValueError as exc:
            show_error(str(exc))
            return
        self._start(
            self._with_engine(
                clf,
                lambda: clf.cross_validate(
                    images, labels, unlabelled=unlabelled, cancelled=self._cancelled
                ),
            ),
            self._show_cv,
            "Measuring per-class IoU",
        )

    def _show_cv(self, cv) -> None:
        self.cross_validation = cv
        rows = cv.rows()
        self._table.clear()
        self._table.setRowCount(len(rows))
        self._table.setColumnCount(3)
        self._table.setHorizontalHeaderLabels(["class", "held-out IoU", "AI pre-labels"])
        for r, (_cid, name, iou, assist) in enumerate(rows):
            self._table.setItem(r, 0, QTableWidgetItem(name))
            self._table.setItem(r, 1, QTableWidgetItem("n/a" if math.isnan(iou) else f"{iou:.3f}"))
            item = QTableWidgetItem("-" if assist is None else ("on" if assist else "off"))
            if assist is not None:
                item.setBackground(_ON if assist else _OFF)
            self._table.setItem(r, 2, item)
        self._table.resizeColumnsToContents()
        text = f"Mean IoU {cv.mean_iou:.3f} on {cv.units} held-out images/slices."
        if cv.gate is not None:
            from napari_segflow.layers import apply_taxonomy

            # the gate's verdict goes into the layer's taxonomy: off classes are not pre-labelled
            apply_taxonomy(self._target.value, cv.gate.taxonomy)
            off = ", ".join(cv.gate.disabled) or "none"
            text += f" AI off (IoU < {cv.gate.threshold:.2f}): {off}."
        self._status.setText(text)

    def _plane_slices(self, target) -> list[int] | None:
        """The displayed slice of a 3D layer (its first axis), or None for 2D."""
        if np.ndim(target.data) != 3:
            return None
        step = self.viewer.dims.current_step
        return [int(step[-3])]

    def predict(self, *, whole: bool = True):
        """Predict now (blocking) and write AI-pending pre-labels; returns the pixels written."""
        job, target, slices = self._predict_job(whole)
        return self._commit(target, slices, job())

    def _predict_job(self, whole: bool):
        if self.classifier is None:
            raise ValueError("Train (or load) a classifier first.")
        target = self._target.value
        if target is None:
            raise ValueError("Choose the Labels layer to pre-label into.")
        image = np.asarray(self._image_for(target).data)
        slices = None if whole else self._plane_slices(target)
        clf = self.classifier
        return (
            self._with_engine(
                clf, lambda: clf.predict(image, slices=slices, cancelled=self._cancelled)
            ),
            target,
            slices,
        )

    def _on_predict(self, *, whole: bool) -> None:
        try:
            job, target, slices = self._predict_job(whole)
        except ValueError as exc:
            show_error(str(exc))
            return
        self._start(
            job, lambda res: self._commit(target, slices, res), "Pre-labelling with the classifier"
        )

    def _commit(self, target, slices, res) -> int:
        taxonomy = get_taxonomy(target)
        labels = np.asarray(res.labels)
        conf = np.asarray(res.confidence)
        if taxonomy is not None:
            mask, _ = apply_prelabels(
                labels, conf, taxonomy=taxonomy, min_confidence=float(self._min_conf.value)
            )
        else:
            mask = conf >= float(self._min_conf.value)
        # never over a person's pixels: only background or still-pending AI pixels change
        prov = get_provenance(target)
        data = np.asarray(target.data)
        mask &= (data == background_value(target)) | (prov == AI_PENDING)
        mask &= labels != background_value(target)
        if slices is not None:
            keep = np.zeros(data.shape[0], bool)
            keep[slices] = True
            mask &= keep[:, None, None]
        self._committing = True  # our own writes are not strokes (live mode)
        index = np.nonzero(mask)
        try:
            # all classes in one undoable edit, through the provenance tracker (one Ctrl+Z)
            track_provenance(target).write(index, labels[index], AI_PENDING)
        finally:
            self._committing = False
        n = int(index[0].size)
        self._status.setText(
            f"{n} pixels pre-labelled (AI-pending: confirm them); uncertain pixels left empty."
        )
        return n

    def _on_cancel(self) -> None:
        self._cancel = True

    def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, LearnCancelled):
            show_info("Pre-label: cancelled.")
            self._status.setText("Cancelled.")
        elif isinstance(exc, ValueError):
            show_error(str(exc))
        else:
            show_error(f"Pre-label failed: {exc}")

    def _on_finished(self) -> None:
        for b in (self._train, self._measure, self._predict, self._predict_all):
            b.setEnabled(True)
        self._stop.setEnabled(False)
        self._worker = None
        if self._pending_live:
            self._pending_live = False
            if self.classifier is not None and not self._cancel:
                self._on_predict(whole=False)

    # ------------------------------------------------------------------ live mode
    def _on_live(self, on: bool) -> None:
        if self._live_layer is not None:
            self._live_layer.events.paint.disconnect(self._on_stroke)
            self._live_layer = None
        target = self._target.value
        if on and target is not None:
            target.events.paint.connect(self._on_stroke)
            self._live_layer = target

    def _on_stroke(self, _event=None) -> None:
        """After a stroke: retrain, then pre-label the displayed slice (skipped while busy)."""
        if self._worker is not None or self._committing:
            return
        self._pending_live = True
        self._on_train()

    # ------------------------------------------------------------------ files
    def _on_save(self) -> None:
        if self.classifier is None:
            show_error("Train a classifier first.")
            return
        path = str(self._model_file.value)
        if not path or path == ".":
            show_error("Choose a model file name (.npz).")
            return
        try:
            self.classifier.save(path)
        except (OSError, ValueError) as exc:
            show_error(f"Cannot save: {exc}")
            return
        show_info(f"Saved {path}")

    def _on_load(self) -> None:
        path = str(self._model_file.value)
        try:
            clf = PixelClassifier.load(path, taxonomy=self._taxonomy())
        except (OSError, ValueError) as exc:
            show_error(str(exc))
            return
        if clf.embeddings:
            from napari_segflow.widgets._torch import prepare_torch

            prepare_torch()
            clf.model = self._engine  # None: built by the first prediction's worker
        self._trained(clf)
