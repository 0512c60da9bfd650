"""Volume dock widget: propagate the mask (or box) on the current slice through the volume.

The work runs in a napari ``thread_worker``; progress shows in the widget and in napari's
activity dock, Cancel stops it between two slices. Results enter the Labels layer as
AI-pending (provenance) until the annotator confirms or withdraws them here.
"""

from __future__ import annotations

import logging
import threading

import napari
import numpy as np
from magicgui.widgets import ComboBox
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_segflow.core.segment.checkpoints import CheckpointError
from napari_segflow.core.segment.volume import Prompt, PropagationCancelled
from napari_segflow.layers_volume import commit_propagation, confirm_edit, withdraw_edit
from napari_segflow.widgets._layers import follow_layer_list, layer_choices
from napari_segflow.widgets._messages import model_error
from napari_segflow.widgets._shutdown import stop_workers_on_close
from napari_segflow.widgets._torch import prepare_torch, warm_up

__all__ = ["VolumeWidget"]

log = logging.getLogger(__name__)

_DEFAULT_MODELS = [
    "medsam-lite",
    "sam2.1-tiny",
    "sam2.1-small",
    "sam2.1-base-plus",
    "sam2.1-large",
]
_CURRENT_MASK = "mask of the selected label"


def _model_names() -> list[str]:
    try:
        from napari_segflow.core.segment import available_models

        names = list(available_models())
    except ImportError:
        names = []
    return names or list(_DEFAULT_MODELS)


class _Relay(QObject):
    """Carries progress from the worker thread to the GUI thread (queued signal)."""

    progressed = Signal(int, int)


class VolumeWidget(QWidget):
    """Propagate one slice's accepted mask or box through a 3D image, as AI-pending labels."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, *, model=None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self._models: dict[str, object] = {}
        if model is not None:  # an already loaded model (scripts, tests)
            self._models[getattr(model, "name", "model")] = model
        self._cancel = threading.Event()
        self._worker = None
        self._pbar = None
        self.edits = []  # VolumeEdit objects of the last run, until confirmed or withdrawn
        self._target = None

        self._image = ComboBox(label="image", choices=self._image_choices, nullable=True)
        self._labels = ComboBox(label="labels", choices=self._labels_choices, nullable=True)
        self._prompt = ComboBox(label="prompt", choices=self._prompt_choices)
        names = list(dict.fromkeys([*self._models, *_model_names()]))
        self._model = ComboBox(label="model", choices=names, value=names[0])
        self._method = ComboBox(label="method", choices=["refined", "simple"], value="refined")
        self._direction = ComboBox(
            label="direction", choices=["both", "forward", "backward"], value="both"
        )
        self._first = QSpinBox()
        self._last = QSpinBox()
        self._propagate = QPushButton("Propagate")
        self._cancel_btn = QPushButton("Cancel")
        self._cancel_btn.setEnabled(False)
        self._confirm = QPushButton("Confirm propagated")
        self._withdraw = QPushButton("Withdraw propagated")
        self._progress = QProgressBar()
        self._status = QLabel("")
        self._status.setWordWrap(True)

        layout = QVBoxLayout(self)
        form = QFormLayout()
        for w in (
            self._image,
            self._labels,
            self._prompt,
            self._model,
            self._method,
            self._direction,
        ):
            form.addRow(w.label, w.native)
        rng = QHBoxLayout()
        rng.addWidget(self._first)
        rng.addWidget(QLabel("to"))
        rng.addWidget(self._last)
        form.addRow("slices", rng)
        layout.addLayout(form)
        row = QHBoxLayout()
        row.addWidget(self._propagate)
        row.addWidget(self._cancel_btn)
        layout.addLayout(row)
        layout.addWidget(self._progress)
        row2 = QHBoxLayout()
        row2.addWidget(self._confirm)
        row2.addWidget(self._withdraw)
        layout.addLayout(row2)
        layout.addWidget(self._status)
        layout.addStretch(1)

        self._relay = _Relay()
        self._relay.progressed.connect(self._on_progress)
        self._propagate.clicked.connect(self.propagate)
        self._cancel_btn.clicked.connect(self.cancel)
        self._confirm.clicked.connect(self.confirm)
        self._withdraw.clicked.connect(self.withdraw)
        self._image.changed.connect(self._on_image_changed)
        follow_layer_list(self.viewer, self.reset_choices)
        stop_workers_on_close(self, self._stop_workers)
        self.reset_choices()
        self._update_buttons()

    def _stop_workers(self) -> list:
        """The window closes: cancel the propagation (between two slices) and return its worker."""
        self._cancel.set()
        return [self._worker]

    # ------------------------------------------------------------------ choices
    def _image_choices(self, _widget=None):
        return layer_choices(
            self.viewer, napari.layers.Image, lambda lay: lay.ndim - (1 if lay.rgb else 0) == 3
        )

    def _labels_choices(self, _widget=None):
        return layer_choices(self.viewer, napari.layers.Labels, lambda lay: lay.ndim == 3)

    def _prompt_choices(self, _widget=None):
        shapes = [
            (f"rectangle in {lay.name}", lay)
            for lay in self.viewer.layers
            if isinstance(lay, napari.layers.Shapes)
        ]
        return [(_CURRENT_MASK, _CURRENT_MASK), *shapes]

    def reset_choices(self, *_args) -> None:
        """Refresh the layer combo boxes (napari calls this when layers change)."""
        for combo in (self._image, self._labels, self._prompt):
            combo.reset_choices()
        self._on_image_changed(self._image.value)

    def _on_image_changed(self, layer) -> None:
        n = 0 if layer is None else int(layer.data.shape[0])
        for box in (self._first, self._last):
            box.setRange(0, max(n - 1, 0))
        self._first.setValue(0)
        self._last.setValue(max(n - 1, 0))

    # ------------------------------------------------------------------ settings
    def set_slice_range(self, first: int, last: int) -> None:
        """Limit the propagation to slices ``first``..``last`` (inclusive)."""
        self._first.setValue(int(first))
        self._last.setValue(int(last))

    @property
    def slice_range(self) -> tuple[int, int]:
        a, b = self._first.value(), self._last.value()
        return (min(a, b), max(a, b))

    def current_slice(self) -> int:
        """The slice the viewer shows (its first axis)."""
        return int(self.viewer.dims.current_step[0])

    def _get_model(self, name: str):
        if name not in self._models:
            from napari_segflow.core.segment import load_model

            warm_up()  # called from the worker thread: torch's import stays off the GUI thread
            self._models[name] = load_model(name)
        return self._models[name]

    def _build_prompt(self, labels_layer, z: int) -> tuple[int, Prompt] | None:
        cid = int(labels_layer.selected_label)
        source = self._prompt.value
        if source == _CURRENT_MASK:
            mask = np.asarray(labels_layer.data[z]) == cid
            if not mask.any():
                show_error(
                    f"Slice {z} has no voxels of label {cid}: accept a mask there first "
                    "(or draw a rectangle in a Shapes layer and choose it as the prompt)."
                )
                return None
            return cid, Prompt(mask=mask)
        rects = [
            np.asarray(d)
            for d, kind in zip(source.data, source.shape_type, strict=False)
            if kind == "rectangle"
        ]
        on_slice = [r for r in rects if r.shape[1] == 3 and np.allclose(r[:, 0], z)] or [
            r for r in rects if r.shape[1] == 2
        ]
        if not on_slice:
            show_error(f"Draw a rectangle on slice {z} in {source.name!r} first.")
            return None
        pts = on_slice[-1][:, -2:]
        box = (*np.floor(pts.min(axis=0)).astype(int), *np.ceil(pts.max(axis=0)).astype(int))
        return cid, Prompt(box=tuple(int(v) for v in box))

    def _update_buttons(self) -> None:
        running = self._worker is not None
        self._propagate.setEnabled(not running)
        self._cancel_btn.setEnabled(running)
        self._confirm.setEnabled(not running and bool(self.edits))
        self._withdraw.setEnabled(not running and bool(self.edits))

    # ------------------------------------------------------------------ actions
    def propagate(self):
        """Start propagating from the current slice; returns the worker (None on a user error)."""
        image, labels = self._image.value, self._labels.value
        if image is None or labels is None:
            show_error("Choose a 3D image and a 3D Labels layer first.")
            return None
        vol = np.asarray(image.data)
        spatial = vol.shape[:-1] if image.rgb else vol.shape
        if tuple(spatial) != tuple(labels.data.shape):
            show_error(
                f"The image {tuple(spatial)} and the Labels layer {labels.data.shape} differ in shape."
            )
            return None
        z = self.current_slice()
        lo, hi = self.slice_range
        if not lo <= z <= hi:
            show_error(f"The current slice {z} is outside the chosen range {lo}-{hi}.")
            return None
        built = self._build_prompt(labels, z)
        if built is None:
            return None
        cid, prompt = built
        self._copy_volume_metadata(image, labels)
        prepare_torch()
        name, method, direction = self._model.value, self._method.value, self._direction.value
        self._cancel.clear()
        self._progress.setRange(0, 1)
        self._progress.setValue(0)
        self._pbar = napari.utils.progress(total=hi - lo + 1, desc="Propagating")
        self._target = (labels, (z,) if prompt.mask is not None else (), (lo, hi))
        relay, cancel = self._relay, self._cancel

        @thread_worker(ignore_errors=True)  # errors reach _on_error, not the Qt event loop
        def run():
            from napari_segflow.core.segment.volume import segment_volume_multi

            model = self._get_model(name)
            return segment_volume_multi(
                model,
                vol,
                {cid: prompt},
                z,
                direction=direction,
                method=method,
                slice_range=(lo, hi),
                progress=lambda d, t: relay.progressed.emit(int(d), int(t)),
                cancel=cancel.is_set,
            )

        worker = run()
        worker.returned.connect(self._on_done)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._status.setText(f"Propagating label {cid} from slice {z} ({name}, {method})...")
        self._update_buttons()
        worker.start()
        return worker

    def cancel(self) -> None:
        """Ask the running propagation to stop before its next slice."""
        self._cancel.set()
        self._status.setText("Cancelling...")

    def _on_progress(self, done: int, total: int) -> None:
        self._progress.setRange(0, total)
        self._progress.setValue(done)
        if self._pbar is not None:
            self._pbar.total = total
            self._pbar.n = done
            self._pbar.refresh()

    def _on_done(self, result: np.ndarray) -> None:
        labels, keep, rng = self._target
        self.edits = commit_propagation(labels, result, slice_range=rng, keep=keep)
        n = sum(e.count for e in self.edits)
        slices = len({int(s) for e in self.edits for s in np.unique(e.index[0])})
        msg = (
            f"{n:,} voxels on {slices} slices added as AI-pending: check them, then "
            "Confirm or Withdraw."
        )
        self._status.setText(msg)
        show_info(msg)

    def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, PropagationCancelled):
            self._status.setText("Cancelled: nothing was changed.")
            show_info("Propagation cancelled: nothing was changed.")
        elif isinstance(exc, ValueError) and not isinstance(exc, CheckpointError):
            self._status.setText(str(exc))
            show_error(str(exc))
        else:
            log.error("volume propagation failed", exc_info=exc)
            msg = model_error(self._model.value, exc)
            self._status.setText(msg)
            show_error(msg)

    def _on_finished(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self._worker = None
        self._update_buttons()

    def confirm(self) -> int:
        """Mark the last propagation's voxels as AI-confirmed."""
        if not self.edits:
            show_warning("Nothing to confirm: propagate first.")
            return 0
        labels = self._target[0]
        n = sum(confirm_edit(labels, e) for e in self.edits)
        self.edits = []
        self._update_buttons()
        if n:
            self._status.setText(f"{n:,} propagated voxels confirmed.")
        else:
            msg = (
                "Nothing to confirm: the propagated voxels were undone, painted over or withdrawn."
            )
            self._status.setText(msg)
            show_info(msg)
        return n

    def withdraw(self) -> int:
        """Remove the last propagation's voxels that are still pending."""
        if not self.edits:
            show_warning("Nothing to withdraw: propagate first.")
            return 0
        labels = self._target[0]
        n = sum(withdraw_edit(labels, e) for e in self.edits)
        self.edits = []
        self._update_buttons()
        self._status.setText(f"{n:,} propagated voxels withdrawn.")
        return n

    @staticmethod
    def _copy_volume_metadata(image, labels) -> None:
        """Give the labels the image's NIfTI affine so saving them keeps it exactly."""
        from napari_segflow.core.io.volume_layout import NIFTI_META_KEY

        src = image.metadata.get(NIFTI_META_KEY)
        if src is not None and NIFTI_META_KEY not in labels.metadata:
            labels.metadata[NIFTI_META_KEY] = src
