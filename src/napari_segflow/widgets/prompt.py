"""Click-to-segment dock widget: prompts on the viewer -> a proposed mask -> explicit accept.

The widget owns three helper layers: a Points layer for clicks (click = positive, Shift-click or
the polarity toggle = negative), a Shapes layer for one box, and a preview Labels layer that shows
the model's proposal. Nothing reaches the annotation layer until the annotator accepts; accepted
pixels are written through the layer's history (Ctrl+Z undoes) and marked AI-confirmed in its
provenance record. Pending AI regions (from batch pre-labelling) are listed for review.

Keys (on the prompt and preview layers): ``A`` accept, ``X`` reject, ``C`` next candidate,
``N`` toggle positive/negative clicks.
"""

from __future__ import annotations

import logging

import napari
import numpy as np
from magicgui.widgets import ComboBox
from napari.qt.threading import create_worker
from napari.utils.colormaps import DirectLabelColormap
from napari.utils.notifications import show_info, show_warning
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_segflow.core.plane import Plane
from napari_segflow.core.provenance import (
    AI_CONFIRMED,
    AI_PENDING,
    ProvenanceRegion,
    provenance_regions,
    region_labels,
)
from napari_segflow.core.segment import WINDOW_PRESETS, available_models, load_model
from napari_segflow.core.segment.prompting import PromptSession
from napari_segflow.core.segment.volume import volume_window
from napari_segflow.layers import (
    commit_mask,
    confirm_region,
    current_plane,
    get_taxonomy,
    reject_region,
    track_provenance,
)
from napari_segflow.widgets._layers import follow_layer_list, layer_choices
from napari_segflow.widgets._messages import model_error
from napari_segflow.widgets._shutdown import stop_workers_on_close
from napari_segflow.widgets._torch import prepare_torch, warm_up

__all__ = ["PromptWidget"]

logger = logging.getLogger(__name__)

POINTS_NAME = "segflow prompts"
BOX_NAME = "segflow box"
PREVIEW_NAME = "segflow proposal"
PENDING_NAME = "segflow AI pending"
_POS, _NEG = (0.1, 0.9, 0.2, 1.0), (1.0, 0.2, 0.2, 1.0)
KEYS = {"accept": "a", "reject": "x", "next_candidate": "c", "toggle_polarity": "n"}


def _camera(viewer):
    scene = getattr(viewer, "scene", None)  # napari >= 0.9 moved the camera to viewer.scene
    return scene.camera if scene is not None else viewer.camera


_MIN_MAX = "min-max"


class PromptWidget(QWidget):
    """Segment with clicks and a box, accept the proposal into a Labels layer under a class.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer to work in.
    models : dict, optional
        Loaded models by name, shared with other widgets; models load on first use otherwise.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, *, models: dict | None = None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self._models: dict[str, object] = models if models is not None else {}
        self.session = PromptSession()
        self._worker = None
        self._predict_worker = None  # the prediction being computed, at most one
        self._predict_again = False  # prompts changed meanwhile: predict once it returns
        self._plane: Plane | None = None  # the plane the proposal on show belongs to
        self._tracked = None
        self.preview = None
        self.pending_layer = None  # outlines of AI-made pixels nobody has confirmed yet
        self.regions: list[ProvenanceRegion] = []

        names = tuple(available_models())
        self._image = ComboBox(label="image", choices=self._image_choices, nullable=True)
        self._labels = ComboBox(label="labels", choices=self._labels_choices, nullable=True)
        self._model = ComboBox(
            label="model", choices=names, value="medsam-lite" if "medsam-lite" in names else None
        )
        self._class = ComboBox(label="class", choices=self._class_choices, nullable=True)
        self._window = ComboBox(
            label="window", choices=["auto", *WINDOW_PRESETS, _MIN_MAX], value="auto"
        )
        self._window.tooltip = (
            "Intensity window before the model, one for the whole image or volume. auto: CT "
            "soft-tissue (level 40, width 400) for Hounsfield data, 8-bit images as they are, "
            "else the volume's 0.5-99.5 percentiles."
        )
        self._windows: dict[tuple, object] = {}  # (data id, choice) -> resolved window
        self._protect = QCheckBox("protect pixels of other classes")
        self._protect.setChecked(True)
        self._negative = QCheckBox(f"clicks are negative ({KEYS['toggle_polarity'].upper()})")
        self._multimask = QCheckBox("several candidates")
        self._refine = QCheckBox("fit mask to the image (colour and edges)")
        self._refine.setChecked(self._model.value == "medsam-lite")
        self._refine.setToolTip(
            "Refine the model's mask with a graph cut on the image's colours and edges, the "
            "model's answer as prior (on by default for medsam-lite, which sees 256 px)."
        )
        self._cancel = QPushButton("Cancel embedding")
        self._cancel.setVisible(False)
        self._status = QLabel("Choose an image and a Labels layer.")
        self._status.setWordWrap(True)
        self._gate = QLabel("")
        self._gate.setWordWrap(True)
        self._gate.setStyleSheet("color: #ffb347")
        self._paint = QPushButton("Paint manually")
        self._paint.setVisible(False)
        self._points_btn = QPushButton("Clicks")
        self._box_btn = QPushButton("Box")
        self._accept = QPushButton(f"Accept ({KEYS['accept'].upper()})")
        self._reject = QPushButton(f"Reject ({KEYS['reject'].upper()})")
        self._next = QPushButton(f"Next candidate ({KEYS['next_candidate'].upper()})")
        self._pending = QListWidget()
        self._confirm_region = QPushButton("Confirm")
        self._reject_region = QPushButton("Reject")
        self._goto_region = QPushButton("Go to")

        layout = QVBoxLayout(self)
        form = QFormLayout()
        for w in (self._image, self._labels, self._model, self._class, self._window):
            form.addRow(w.label, w.native)
        layout.addLayout(form)
        for w in (self._protect, self._negative, self._multimask, self._refine):
            layout.addWidget(w)
        row = QHBoxLayout()
        row.addWidget(self._points_btn)
        row.addWidget(self._box_btn)
        layout.addLayout(row)
        row = QHBoxLayout()
        for b in (self._accept, self._reject, self._next):
            row.addWidget(b)
        layout.addLayout(row)
        layout.addWidget(self._status)
        layout.addWidget(self._cancel)
        layout.addWidget(self._gate)
        layout.addWidget(self._paint)
        box = QGroupBox("Pending AI regions")
        inner = QVBoxLayout(box)
        inner.addWidget(self._pending)
        row = QHBoxLayout()
        for b in (self._confirm_region, self._reject_region, self._goto_region):
            row.addWidget(b)
        inner.addLayout(row)
        layout.addWidget(box)
        layout.addStretch(1)

        self._embed_timer = QTimer(self)
        self._embed_timer.setSingleShot(True)
        self._embed_timer.setInterval(200)  # coalesce slider drags into one embedding
        self._pending_timer = QTimer(self)
        self._pending_timer.setSingleShot(True)
        self._pending_timer.setInterval(150)

        self.points = self._make_points()
        self.box = self._make_box()

        self._embed_timer.timeout.connect(self.refresh_embedding)
        self._pending_timer.timeout.connect(self.refresh_pending)
        self._image.changed.connect(self._schedule_embedding)
        self._model.changed.connect(self._schedule_embedding)
        self._window.changed.connect(self._schedule_embedding)
        self._labels.changed.connect(self._on_labels_changed)
        self._class.changed.connect(self._on_class_changed)
        self._multimask.toggled.connect(lambda _on: self.predict())
        self._refine.toggled.connect(lambda _on: self.predict())
        self._model.changed.connect(lambda name: self._refine.setChecked(name == "medsam-lite"))
        self._points_btn.clicked.connect(self.use_clicks)
        self._box_btn.clicked.connect(self.use_box)
        self._accept.clicked.connect(self.accept)
        self._reject.clicked.connect(self.reject)
        self._next.clicked.connect(self.next_candidate)
        self._cancel.clicked.connect(self.cancel_embedding)
        self._paint.clicked.connect(self.paint_manually)
        self._confirm_region.clicked.connect(
            lambda: self.confirm_pending(self._pending.currentRow())
        )
        self._reject_region.clicked.connect(
            lambda: self.reject_pending(self._pending.currentRow())
        )
        self._goto_region.clicked.connect(lambda: self.go_to_pending(self._pending.currentRow()))
        self._pending.itemDoubleClicked.connect(
            lambda item: self.go_to_pending(self._pending.row(item))
        )
        self.viewer.dims.events.current_step.connect(self._schedule_embedding)
        self.viewer.dims.events.order.connect(self._schedule_embedding)
        self.viewer.dims.events.ndisplay.connect(self._schedule_embedding)
        follow_layer_list(self.viewer, self.reset_choices)
        stop_workers_on_close(self, self._stop_workers)
        self.reset_choices()
        self._on_labels_changed(self._labels.value)

    def _stop_workers(self) -> list:
        """The window closes: drop the work being computed and hand its workers back."""
        self._embed_timer.stop()
        self._predict_again = False
        workers = [self._worker, self._predict_worker]
        for worker in workers:
            if worker is not None:
                worker.quit()  # its result is not delivered; the model call runs to its end
        return workers

    # ------------------------------------------------------------------ choices
    def _image_choices(self, _widget=None):
        return layer_choices(self.viewer, napari.layers.Image)

    def _labels_choices(self, _widget=None):
        return layer_choices(
            self.viewer, napari.layers.Labels, lambda lay: lay is not self.preview
        )

    def _class_choices(self, _widget=None):
        layer = self._labels.value
        if layer is None:
            return []
        tax = get_taxonomy(layer)
        if tax is None:  # plain label values when the layer has no taxonomy
            top = max(9, int(layer.selected_label))
            return [(f"label {i}", i) for i in range(1, top + 1)]
        return [(f"{c.id}  {c.name}", c.id) for c in tax.classes]

    def reset_choices(self, *_args) -> None:
        """Refresh the combo boxes (napari calls this when layers change)."""
        for combo in (self._image, self._labels, self._class):
            combo.reset_choices()
            if combo.value is None:  # a layer appeared: take it rather than stay empty
                first = next((c for c in combo.choices if c is not None), None)
                if first is not None:
                    combo.value = first

    @property
    def image_layer(self):
        return self._image.value

    @property
    def labels_layer(self):
        return self._labels.value

    @property
    def class_id(self) -> int | None:
        return self._class.value

    def set_layers(self, image=None, labels=None) -> None:
        """Choose the image and Labels layers (layer objects)."""
        if image is not None:
            self._image.value = image
        if labels is not None:
            self._labels.value = labels

    def set_class(self, class_id: int) -> None:
        self._class.value = int(class_id)

    def set_model(self, name: str) -> None:
        self._model.value = name

    # ------------------------------------------------------------ helper layers
    def _make_points(self, ndim: int = 2):
        layer = napari.layers.Points(
            np.zeros((0, ndim)),
            name=POINTS_NAME,
            features={"positive": np.zeros(0, dtype=bool)},
            feature_defaults={"positive": True},
            size=8,
            border_color="white",
        )
        layer.mouse_drag_callbacks.insert(0, self._on_click_press)
        layer.events.data.connect(self._on_points_changed)
        self._bind_keys(layer)
        return layer

    def _make_box(self, ndim: int = 2):
        layer = napari.layers.Shapes(
            ndim=ndim, name=BOX_NAME, edge_color="yellow", face_color="transparent", edge_width=2
        )
        layer.events.data.connect(self._on_box_changed)
        self._bind_keys(layer)
        return layer

    def _bind_keys(self, layer) -> None:
        for action, key in KEYS.items():
            method = getattr(self, action)
            layer.bind_key(key, lambda _layer, m=method: m(), overwrite=True)

    def _ensure_helper_layers(self) -> None:
        """Match the helper layers to the Labels layer (dims, scale) and add them to the viewer."""
        labels = self.labels_layer
        if labels is None:
            return
        ndim = labels.ndim
        if self.points.ndim != ndim:
            self.points.events.data.disconnect(self._on_points_changed)
            self._remove_layer(self.points)
            self.points = self._make_points(ndim)
        if self.box.ndim != ndim:
            self.box.events.data.disconnect(self._on_box_changed)
            self._remove_layer(self.box)
            self.box = self._make_box(ndim)
        shape = tuple(np.shape(labels.data))
        if self.preview is None or tuple(self.preview.data.shape) != shape:
            self._remove_layer(self.preview)
            self.preview = napari.layers.Labels(
                np.zeros(shape, dtype=np.uint8), name=PREVIEW_NAME, opacity=0.9
            )
            self.preview.contour = 2  # an outline, so a proposal never looks like accepted labels
            self._bind_keys(self.preview)
        if self.pending_layer is None or tuple(self.pending_layer.data.shape) != shape:
            self._remove_layer(self.pending_layer)
            self.pending_layer = napari.layers.Labels(
                np.zeros(shape, dtype=np.uint8),
                name=PENDING_NAME,
                opacity=1.0,
                colormap=DirectLabelColormap(
                    color_dict={None: (0, 0, 0, 0), 0: (0, 0, 0, 0), 1: (1.0, 0.55, 0.0, 1.0)},
                    background_value=0,
                ),
            )
            self.pending_layer.contour = 1  # pending pixels stand out from confirmed ones
            self.pending_layer.editable = False
        for layer in (self.pending_layer, self.preview, self.box, self.points):
            # each assignment refreshes the layer (hundreds of ms per click): only on a change
            if not np.array_equal(layer.scale, labels.scale):
                layer.scale = labels.scale
            if not np.array_equal(layer.translate, labels.translate):
                layer.translate = labels.translate
            if layer not in self.viewer.layers:
                self.viewer.layers.append(layer)
        self._color_preview()

    def _remove_layer(self, layer) -> None:
        if layer is not None and layer in self.viewer.layers:
            self.viewer.layers.remove(layer)

    def _color_preview(self) -> None:
        if self.preview is None:
            return
        rgba = (1.0, 0.85, 0.1, 1.0)
        tax = get_taxonomy(self.labels_layer) if self.labels_layer is not None else None
        if tax is not None and self.class_id is not None and tax.has_id(self.class_id):
            rgba = tuple(v / 255 for v in tax.by_id(self.class_id).color) + (1.0,)
        if getattr(self.preview, "_segflow_rgba", None) == rgba:
            return  # a new colormap refreshes the layer: only when the colour changes
        self.preview._segflow_rgba = rgba
        self.preview.colormap = DirectLabelColormap(
            color_dict={None: (0, 0, 0, 0), 0: (0, 0, 0, 0), 1: rgba}, background_value=0
        )

    def use_clicks(self) -> None:
        """Make the prompt Points layer active in add mode (click = positive)."""
        self._ensure_helper_layers()
        self.viewer.layers.selection.active = self.points
        self.points.mode = "add"

    def use_box(self) -> None:
        """Make the box Shapes layer active in rectangle mode."""
        self._ensure_helper_layers()
        self.viewer.layers.selection.active = self.box
        self.box.mode = "add_rectangle"

    # ------------------------------------------------------------------ prompts
    def _on_click_press(self, layer, event):
        # runs before napari's add-point callback: decide the new point's polarity
        negative = self._negative.isChecked() ^ ("Shift" in event.modifiers)
        layer.feature_defaults = {"positive": not negative}

    def toggle_polarity(self) -> None:
        """Switch plain clicks between positive and negative."""
        self._negative.setChecked(not self._negative.isChecked())

    def add_point(self, rc, *, positive: bool = True) -> None:
        """Add a click at plane ``(row, col)`` of the current slice."""
        plane = self._current_plane()
        if plane is None:
            return
        self._ensure_helper_layers()
        self.points.feature_defaults = {"positive": bool(positive)}
        self.points.add(plane.to_data([rc]))
        self.points.feature_defaults = {"positive": True}

    def set_box(self, box) -> None:
        """Set the box prompt ``(row_min, col_min, row_max, col_max)`` on the current slice."""
        plane = self._current_plane()
        if plane is None:
            return
        self._ensure_helper_layers()
        r0, c0, r1, c1 = box
        corners = plane.to_data([[r0, c0], [r0, c1], [r1, c1], [r1, c0]])
        self.box.events.data.disconnect(self._on_box_changed)
        try:
            self.box.data = self._boxes_off_plane(plane)
        finally:
            self.box.events.data.connect(self._on_box_changed)
        self.box.add_rectangles(corners)

    def _boxes_off_plane(self, plane: Plane) -> list:
        return [
            s
            for s, t in zip(self.box.data, self.box.shape_type, strict=True)
            if not (t == "rectangle" and plane.contains(s).all())
        ]

    def _on_points_changed(self, event) -> None:
        action = getattr(event, "action", None)
        if action is not None and str(action) not in ("added", "removed", "changed"):
            return
        self._color_points()
        self.predict()

    def _color_points(self) -> None:
        n = len(self.points.data)
        if n == 0:
            return
        pos = np.asarray(self.points.features["positive"], dtype=bool)
        if pos.shape[0] != n:
            return
        colors = np.where(pos[:, None], np.array(_POS), np.array(_NEG))
        if not np.allclose(self.points.face_color, colors):
            self.points.face_color = colors

    def _on_box_changed(self, event) -> None:
        action = getattr(event, "action", None)
        if action is not None and str(action) not in ("added", "removed", "changed"):
            return
        if str(action) == "added":
            self._keep_last_box()
        self.predict()

    def _keep_last_box(self) -> None:
        """One box per slice: a newly drawn rectangle replaces the earlier ones."""
        plane = self._current_plane()
        if plane is None:
            return
        on = [
            i
            for i, (shape, kind) in enumerate(zip(self.box.data, self.box.shape_type, strict=True))
            if kind == "rectangle" and plane.contains(shape).all()
        ]
        if len(on) < 2:
            return
        self.box.events.data.disconnect(self._on_box_changed)
        try:
            self.box.selected_data = set(on[:-1])
            self.box.remove_selected()
        finally:
            self.box.events.data.connect(self._on_box_changed)

    def prompts(self, plane: Plane | None = None) -> tuple[np.ndarray, np.ndarray, tuple | None]:
        """The prompts on ``plane`` (default: current): ``(points (N, 2), labels (N,), box)``.

        Coordinates are ``(row, col)`` of the plane; the box is the last rectangle drawn.
        """
        plane = plane or self._current_plane()
        pts = np.zeros((0, 2))
        labels = np.zeros(0, dtype=int)
        box = None
        if plane is None:
            return pts, labels, box
        data = np.asarray(self.points.data)
        if len(data) and data.shape[1] == len(plane.shape):
            on = plane.contains(data)
            pts = plane.to_plane(data[on])
            labels = np.asarray(self.points.features["positive"], dtype=bool)[on].astype(int)
        for shape, kind in zip(self.box.data, self.box.shape_type, strict=True):
            if kind == "rectangle" and shape.shape[1] == len(plane.shape):
                if plane.contains(shape).all():
                    box = plane.box_to_plane(shape)
        return pts, labels, box

    # ---------------------------------------------------------------- embedding
    def _current_plane(self) -> Plane | None:
        labels = self.labels_layer
        if labels is None:
            return None
        try:
            return current_plane(self.viewer, labels)
        except ValueError as exc:
            self._status.setText(str(exc))
            return None

    def _schedule_embedding(self, *_args) -> None:
        self._embed_timer.start()

    def _token(self, plane: Plane) -> tuple:
        image = self.image_layer  # id of its data too: replacing the pixels needs a new embedding
        data = getattr(image, "data", None)
        return (
            id(image),
            id(data),
            id(self.labels_layer),
            self._model.value,
            self._window.value,
            plane.key,
        )

    def current_window(self):
        """The intensity window for the chosen image: resolved once per image/volume and choice.

        One window for the whole volume keeps slices comparable (a per-slice stretch would map
        the same tissue to different grey levels on every slice).
        """
        image = self.image_layer
        if image is None:
            return None
        choice = self._window.value
        data = image.data
        key = (id(data), choice)
        if key not in self._windows:
            if choice == "auto" and (image.rgb or np.dtype(data.dtype) == np.uint8):
                win = None  # 8-bit pictures go to the model as they are
            else:
                win = volume_window(data, None if choice == _MIN_MAX else choice)
            self._windows = {key: win}  # only the current image's window is kept
        return self._windows[key]

    @property
    def ready(self) -> bool:
        """Whether the embedding of the current image/slice is available."""
        plane = self._current_plane()
        return plane is not None and self.session.ready_for(self._token(plane))

    def _image_plane(self, plane: Plane) -> np.ndarray:
        image = self.image_layer  # only the plane is read: lazy (dask, zarr) volumes stay lazy
        return np.asarray(plane.take(image.data, channel_axis=bool(image.rgb)))

    def refresh_embedding(self) -> None:
        """Start computing the embedding of the current image/slice (in a worker thread)."""
        self._embed_timer.stop()
        image, labels, name = self.image_layer, self.labels_layer, self._model.value
        plane = self._current_plane()
        if image is None or labels is None or name is None or plane is None:
            return
        self._ensure_helper_layers()
        token = self._token(plane)
        if token != getattr(self, "_shown_token", None):
            self._clear_proposal()
        self._shown_token = token
        if self.session.ready_for(token) or self.session.wanted == token:
            return
        if image.multiscale:
            self._status.setText("Multiscale images are not supported yet; open one level.")
            return
        img_shape = np.shape(image.data)[:-1] if image.rgb else np.shape(image.data)
        if tuple(img_shape) != plane.shape:
            self._status.setText(
                f"Image {image.name!r} {tuple(img_shape)} and labels {labels.name!r} "
                f"{plane.shape} differ in shape."
            )
            return
        pixels = self._image_plane(plane)
        prepare_torch()
        if self._worker is not None:
            self._worker.quit()  # its result, if it still comes, is stale and dropped
        self.session.want(token)
        self._status.setText(f"Computing the {name} embedding...")
        window = self.current_window()
        worker = create_worker(
            self._embed_job,
            name,
            pixels,
            window,
            _progress={"total": 0, "desc": f"{name} embedding"},
            _ignore_errors=True,  # _on_embed_error tells the user; no second traceback
        )
        worker.returned.connect(lambda emb, t=token: self._on_embedded(t, emb))
        worker.finished.connect(lambda w=worker: self._on_worker_done(w))
        worker.errored.connect(lambda exc, t=token: self._on_embed_error(t, exc))
        self._worker = worker
        self._cancel.setVisible(True)
        worker.start()

    def cancel_embedding(self) -> None:
        """Stop waiting for the embedding being computed (its result will be dropped)."""
        if self.session.wanted is not None:
            self.session.abandon(self.session.wanted)
        if self._worker is not None:
            self._worker.quit()
        self._cancel.setVisible(False)
        self._status.setText("Embedding cancelled; change slice or image to start again.")

    def _on_worker_done(self, worker) -> None:
        if self._worker is worker:
            self._worker = None
            self._cancel.setVisible(False)

    def _embed_job(self, name: str, pixels: np.ndarray, window=None):
        model = self._models.get(name)
        if model is None:
            warm_up()  # torch's import and the model's build stay in this worker thread
            model = load_model(name)
            self._models[name] = model
        return model, model.embed(pixels, window=window)

    def _on_embedded(self, token: tuple, model_and_embedding) -> None:
        model, embedding = model_and_embedding
        if not self.session.offer(token, embedding, model=model):
            return  # the user moved on: a stale result
        self._status.setText("Ready: draw a box or click on the object.")
        self.predict()

    def _on_embed_error(self, token: tuple, exc: Exception) -> None:
        self.session.abandon(token)
        logger.debug("embedding failed", exc_info=exc)
        msg = model_error(self._model.value, exc)
        show_warning(msg)
        self._status.setText(msg)

    # --------------------------------------------------------------- prediction
    def _gate_reason(self) -> str | None:
        labels, cid = self.labels_layer, self.class_id
        tax = get_taxonomy(labels) if labels is not None else None
        if tax is None or cid is None or not tax.has_id(cid):
            return None
        c = tax.by_id(cid)
        if not c.ai_assist:
            return (
                f"AI assistance is off for class {c.name!r} (its taxonomy sets ai_assist: false);"
                " paint it by hand."
            )
        return None

    def predict(self) -> None:
        """Ask for a proposal from the current prompts; the model runs in a worker thread.

        The GUI thread only gathers the prompts and later shows the answer. While one
        prediction runs, further requests (a burst of clicks) wait as one: when it returns, its
        answer is shown and a single prediction from the prompts as they are then follows, so
        the last prompts always get their answer and no stale one is shown after it.
        :attr:`predicting` tells whether one is on its way.
        """
        plane = self._current_plane()
        if plane is None or not self.ready:
            return None
        if self._gate_reason() is not None:
            self._clear_proposal()
            return None
        if self._predict_worker is not None:
            self._predict_again = True  # latest request wins: taken when the running one ends
            return None
        pts, lab, box = self.prompts(plane)
        model = self.session.model
        no_base = box is None and self.session.result is None  # clicks alone, nothing to refine
        if no_base and len(pts) and not getattr(model, "supports_points", True):
            self._clear_proposal()
            self._status.setText(f"{model.name} needs a box: draw a rectangle first.")
            return None
        refine = self._refine.isChecked() if hasattr(model, "refine") else None
        request = self.session.request(
            pts, lab, box, multimask=self._multimask.isChecked(), refine=refine
        )
        if request is None:
            self._clear_proposal()
            return None
        worker = create_worker(request.run, _ignore_errors=True)  # errors: _on_predict_error
        worker.returned.connect(lambda res, r=request, p=plane: self._on_predicted(r, p, res))
        worker.errored.connect(self._on_predict_error)
        worker.finished.connect(lambda w=worker: self._on_predict_done(w))
        self._predict_worker = worker
        worker.start()
        return None

    @property
    def predicting(self) -> bool:
        """Whether a prediction is being computed or waiting to be."""
        return self._predict_worker is not None or self._predict_again

    def _on_predicted(self, request, plane: Plane, result) -> None:
        if not self.session.take(request, result):
            return  # accepted, rejected or moved on meanwhile: a stale answer
        self._plane = plane
        self._show_proposal()

    def _on_predict_error(self, exc: Exception) -> None:
        if isinstance(exc, ValueError):  # a prompt the model cannot use: say why
            show_warning(str(exc))
            return
        logger.debug("prediction failed", exc_info=exc)
        msg = model_error(self._model.value, exc)
        show_warning(msg)
        self._status.setText(msg)

    def _on_predict_done(self, worker) -> None:
        if self._predict_worker is not worker:
            return
        self._predict_worker = None
        if self._predict_again:
            self._predict_again = False
            self.predict()

    @property
    def candidates(self) -> np.ndarray | None:
        """All candidate masks ``(K, rows, cols)`` of the current proposal."""
        return self.session.candidates

    @property
    def proposal(self) -> np.ndarray | None:
        """The proposal shown, ``(rows, cols)`` bool on the current plane, or ``None``."""
        return self.session.proposal

    def next_candidate(self) -> None:
        """Show the next of the model's candidate masks."""
        self.session.next_candidate()
        self._show_proposal()

    def _show_proposal(self) -> None:
        mask = self.proposal
        if mask is None or self._plane is None:
            return
        self._ensure_helper_layers()
        self.preview.data[...] = 0
        self.preview.data[self._plane.indices(mask)] = 1
        self.preview.refresh()
        k = len(self.candidates)
        extra = f", candidate {self.session.candidate + 1}/{k}" if k > 1 else ""
        self._status.setText(
            f"Proposal: {int(mask.sum()):,} px, score {self.session.score:.2f}{extra}"
        )

    def _clear_proposal(self) -> None:
        self.session.clear()
        self._plane = None
        if self.preview is not None and self.preview.data.any():
            self.preview.data[...] = 0
            self.preview.refresh()

    # ----------------------------------------------------------- accept/reject
    def accept(self):
        """Write the proposal into the Labels layer under the chosen class (undoable).

        Returns the written full-array indices, or ``None`` when nothing was written.
        """
        labels, cid, mask = self.labels_layer, self.class_id, self.proposal
        reason = self._gate_reason()
        if reason is not None:
            show_warning(reason)
            return None
        if labels is None or cid is None:
            show_warning("Choose a Labels layer and a class first.")
            return None
        if mask is None or self._plane is None:
            show_info("No proposal to accept: draw a box or click first.")
            return None
        index = commit_mask(
            labels,
            mask,
            cid,
            protect=self._protect.isChecked(),
            provenance=AI_CONFIRMED,
            plane=self._plane,
        )
        self._clear_prompts()
        self._status.setText(f"Accepted {index[0].size:,} px as class {cid}.")
        return index

    def reject(self) -> None:
        """Drop the proposal and the prompts on the current slice."""
        self._clear_prompts()
        self._status.setText("Rejected.")

    def _clear_prompts(self) -> None:
        plane = self._current_plane()
        self._clear_proposal()
        if plane is None:
            return
        self.points.events.data.disconnect(self._on_points_changed)
        self.box.events.data.disconnect(self._on_box_changed)
        try:
            data = np.asarray(self.points.data)
            if len(data):
                keep = ~plane.contains(data)
                if not keep.all():
                    self.points.selected_data = set(np.nonzero(~keep)[0].tolist())
                    self.points.remove_selected()
            if len(self.box.data):
                self.box.data = self._boxes_off_plane(plane)
        finally:
            self.points.events.data.connect(self._on_points_changed)
            self.box.events.data.connect(self._on_box_changed)

    # -------------------------------------------------------------- class gate
    def _on_class_changed(self, _value=None) -> None:
        reason = self._gate_reason()
        self._gate.setText(reason or "")
        self._paint.setVisible(reason is not None)
        self._accept.setEnabled(reason is None)
        self._color_preview()
        if reason is not None:
            self._clear_proposal()
        else:
            self.predict()

    def paint_manually(self) -> None:
        """Switch the Labels layer to the paint brush with the chosen class."""
        labels, cid = self.labels_layer, self.class_id
        if labels is None or cid is None:
            return
        labels.selected_label = int(cid)
        self.viewer.layers.selection.active = labels
        labels.mode = "paint"

    # ------------------------------------------------------------ labels layer
    def _on_labels_changed(self, layer=None) -> None:
        self._class.reset_choices()
        if self._tracked is not None:
            self._tracked.changed.disconnect(self._schedule_pending)
            old = self._tracked.layer
            if old is not None:
                old.events.metadata.disconnect(self._on_taxonomy_changed)
            self._tracked = None
        if layer is not None:
            self._tracked = track_provenance(layer)
            self._tracked.changed.connect(self._schedule_pending)
            layer.events.metadata.connect(self._on_taxonomy_changed)
            self._ensure_helper_layers()
            self._schedule_embedding()
        self._on_class_changed()
        self.refresh_pending()

    def _on_taxonomy_changed(self, _event=None) -> None:
        """The Labels layer got a (new) taxonomy: new classes, new AI gating."""
        self._class.reset_choices()
        self._on_class_changed()

    # ---------------------------------------------------------- pending review
    def _schedule_pending(self, *_args) -> None:
        self._pending_timer.start()

    def refresh_pending(self) -> None:
        """Re-list the connected regions of AI-pending pixels."""
        self._pending_timer.stop()
        labels = self.labels_layer
        self.regions = []
        if labels is not None and self._tracked is not None:
            self.regions = provenance_regions(self._tracked.provenance)
            if self.pending_layer is not None and self.pending_layer.data.shape == np.shape(
                self._tracked.provenance
            ):
                self.pending_layer.data = (self._tracked.provenance == AI_PENDING).astype(np.uint8)
        tax = get_taxonomy(labels) if labels is not None else None
        self._pending.clear()
        for i, r in enumerate(self.regions):
            counts = region_labels(np.asarray(labels.data), r)
            value = max(counts, key=counts.get)
            name = tax.by_id(value).name if tax is not None and tax.has_id(value) else str(value)
            where = ", ".join(f"{c:.0f}" for c in r.centroid)
            item = QListWidgetItem(f"{i + 1:>3}  {name}  {r.area:,} px  at ({where})")
            item.setData(Qt.ItemDataRole.UserRole, i)
            self._pending.addItem(item)

    def _region(self, row: int) -> ProvenanceRegion | None:
        if not 0 <= row < len(self.regions):
            show_info("Select a pending region first.")
            return None
        return self.regions[row]

    def confirm_pending(self, row: int) -> None:
        """A person confirms pending region ``row``."""
        region = self._region(row)
        if region is not None:
            confirm_region(self.labels_layer, region)
            self.refresh_pending()

    def reject_pending(self, row: int) -> None:
        """Remove pending region ``row`` from the labels (undoable)."""
        region = self._region(row)
        if region is not None:
            reject_region(self.labels_layer, region)
            self.refresh_pending()

    def go_to_pending(self, row: int) -> None:
        """Move the viewer to pending region ``row``: its slice, centred."""
        region = self._region(row)
        labels = self.labels_layer
        if region is None or labels is None:
            return
        world = np.asarray(labels.data_to_world(region.centroid), dtype=float)
        offset = self.viewer.dims.ndim - len(world)
        for ax, v in enumerate(world):
            if ax + offset not in self.viewer.dims.displayed:
                self.viewer.dims.set_point(ax + offset, v)
        shown = [world[d - offset] for d in self.viewer.dims.displayed if d >= offset]
        if len(shown) == 2:
            _camera(self.viewer).center = tuple(shown)
        self._pending.setCurrentRow(row)
