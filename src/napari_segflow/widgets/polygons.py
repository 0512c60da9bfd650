"""Polygon check dock widget: would k-vertex polygons reproduce this Labels layer, per class?"""

from __future__ import annotations

from collections.abc import Iterator

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox
from napari.qt.threading import thread_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_segflow.core.quality.polygons import (
    DEFAULT_BUDGETS,
    ObjectResult,
    PolygonReport,
    ReportRing,
    measure_objects,
    report_rings,
    summarize,
)
from napari_segflow.layers import get_taxonomy
from napari_segflow.widgets._layers import follow_layer_list, layer_choices
from napari_segflow.widgets._shutdown import stop_workers_on_close

_HOLE_COLOR = "cyan"
_DEFAULT_COLOR = "yellow"


def _check(
    images: list[np.ndarray],
    class_ids: list[int],
    names: list[str],
    *,
    iou_target: float,
    object_fraction: float,
    show_budget: int,
    instance_class: int | None,
) -> Iterator[int | tuple[PolygonReport, list[tuple[int, ReportRing]]]]:
    """Measure slice by slice (yielding the count done), then summarise and collect the rings."""
    objects: list[ObjectResult] = []
    rings: list[tuple[int, ReportRing]] = []
    for i, img in enumerate(images):
        found = measure_objects(img, class_ids, image=i, instance_class=instance_class)
        objects += found
        if found:
            rings += [
                (i, r)
                for r in report_rings(
                    img,
                    found,
                    show_budget,
                    DEFAULT_BUDGETS,
                    class_ids=class_ids,
                    instance_class=instance_class,
                )
            ]
        yield i + 1
    report = summarize(
        objects,
        class_ids,
        class_names=names,
        iou_target=iou_target,
        object_fraction=object_fraction,
        n_images=len(images),
    )
    return report, rings


class PolygonCheckWidget(QWidget):
    """Run the polygon sufficiency check on a Labels layer and show its k-vertex polygons."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.report: PolygonReport | None = None
        self.shapes_layer: napari.layers.Shapes | None = None
        self._worker = None
        self._pbar = None

        self._labels = ComboBox(label="labels", choices=self._labels_choices, nullable=True)
        self._instances = CheckBox(text="instance map (each id is one object)", value=False)
        self._iou = FloatSpinBox(label="IoU target", value=0.95, min=0.5, max=1.0, step=0.01)
        self._fraction = FloatSpinBox(label="of objects", value=0.9, min=0.5, max=1.0, step=0.05)
        self._budget = ComboBox(
            label="show polygons at k", choices=list(DEFAULT_BUDGETS), value=20
        )
        self._run = QPushButton("Check polygons")
        self._cancel = QPushButton("Cancel")
        self._cancel.setEnabled(False)
        self._status = QLabel("Choose a Labels layer and run the check.")
        self._status.setWordWrap(True)
        self._table = QTableWidget(0, 0)

        # Inside a scroll area: in a short window, stacked under other docks, the fields keep
        # their height and the dock scrolls instead of squeezing them.
        content = QWidget()
        layout = QVBoxLayout(content)
        form = QFormLayout()
        form.addRow(self._labels.label, self._labels.native)
        form.addRow(self._instances.native)
        pair = QHBoxLayout()
        pair.addWidget(self._iou.native)
        pair.addWidget(QLabel(self._fraction.label))
        pair.addWidget(self._fraction.native)
        form.addRow(self._iou.label, pair)
        form.addRow(self._budget.label, self._budget.native)
        layout.addLayout(form)
        row = QHBoxLayout()
        row.addWidget(self._run)
        row.addWidget(self._cancel)
        layout.addLayout(row)
        layout.addWidget(self._status)
        self._table.setMinimumHeight(120)
        layout.addWidget(self._table, 1)
        self._scroll = QScrollArea()
        self._scroll.setWidgetResizable(True)
        self._scroll.setFrameShape(QFrame.Shape.NoFrame)
        self._scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self._scroll)

        self._run.clicked.connect(self.run)
        self._cancel.clicked.connect(self.cancel)
        follow_layer_list(self.viewer, self.reset_choices)
        stop_workers_on_close(self, self._stop_workers)
        self.reset_choices()
        active = self.viewer.layers.selection.active
        if isinstance(active, napari.layers.Labels):
            self._labels.value = active

    def _labels_choices(self, _widget=None):
        return layer_choices(self.viewer, napari.layers.Labels)

    def reset_choices(self, *_args) -> None:
        """Refresh the layer combo box (napari calls this when layers change)."""
        self._labels.reset_choices()
        if self._labels.value is None:
            layers = [c for c in self._labels.choices if c is not None]
            if layers:
                self._labels.value = layers[0]

    def set_labels_layer(self, layer: napari.layers.Labels) -> None:
        """Choose the Labels layer to check."""
        self.reset_choices()
        self._labels.value = layer

    # ------------------------------------------------------------------ running
    def _classes(self, layer, data: np.ndarray) -> tuple[list[int], list[str], int | None]:
        if self._instances.value:
            return [1], ["object"], 1
        tax = get_taxonomy(layer)
        present = [int(v) for v in np.unique(data) if v != 0]
        if tax is not None:
            ids = [c.id for c in tax.classes if c.id in present and c.id != tax.unlabeled_id]
            return ids, [tax.by_id(i).name for i in ids], None
        return present, [f"label {i}" for i in present], None

    def run(self) -> None:
        """Start the check in a worker thread (the viewer stays responsive)."""
        layer = self._labels.value
        if layer is None:
            show_error("Choose a Labels layer first.")
            return
        if self._worker is not None:
            show_info("A polygon check is already running.")
            return
        data = np.asarray(layer.data)
        if data.ndim not in (2, 3):
            show_error(f"The polygon check needs a 2D or 3D Labels layer, not {data.ndim}D.")
            return
        class_ids, names, instance_class = self._classes(layer, data)
        if not class_ids:
            show_error(f"Layer {layer.name!r} holds no labelled pixels to check.")
            return
        images = [data] if data.ndim == 2 else list(data)
        self._source = layer
        self._shown_budget = int(self._budget.value)
        self._worker = thread_worker(_check, start_thread=False)(
            images,
            class_ids,
            names,
            iou_target=float(self._iou.value),
            object_fraction=float(self._fraction.value),
            show_budget=self._shown_budget,
            instance_class=instance_class,
        )
        self._pbar = progress(total=len(images), desc="Polygon check")
        self._worker.yielded.connect(self._on_progress)
        self._worker.returned.connect(self._on_done)
        self._worker.errored.connect(self._on_error)
        self._worker.finished.connect(self._on_finished)
        self._run.setEnabled(False)
        self._cancel.setEnabled(True)
        self._status.setText(f"Checking {layer.name!r} ({len(images)} slice(s))...")
        self._worker.start()

    def _stop_workers(self) -> list:
        """The window closes: stop the check after the current slice and return its worker."""
        if self._worker is not None:
            self._worker.quit()
        return [self._worker]

    def cancel(self) -> None:
        """Stop a running check after the current slice."""
        if self._worker is not None:
            self._worker.quit()
            self._status.setText("Polygon check cancelled.")

    def _on_progress(self, done: int) -> None:
        if self._pbar is not None:
            self._pbar.n = done
            self._pbar.refresh()

    def _on_error(self, exc: Exception) -> None:
        show_error(f"Polygon check failed: {exc}")

    def _on_finished(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self._worker = None
        self._run.setEnabled(True)
        self._cancel.setEnabled(False)

    def _on_done(self, result) -> None:
        report, rings = result
        self.report = report
        self._fill_table(report)
        self.shapes_layer = self._add_shapes(rings)
        self._status.setText(
            f"{len(report.objects)} objects in {report.n_images} slice(s). Cells: fraction of "
            f"objects reaching IoU >= {report.iou_target:g}. Cost in vertices with polygons "
            f"where they suffice: {report.polygon_cost:,} vs {report.mask_cost:,} for exact "
            f"masks (ratio {report.cost_ratio:.2f})."
        )

    # ------------------------------------------------------------------ output
    def _fill_table(self, report: PolygonReport) -> None:
        heads = ["class", "objects", *[f"k={k}" for k in report.budgets], "verdict"]
        self._table.clear()
        self._table.setColumnCount(len(heads))
        self._table.setHorizontalHeaderLabels(heads)
        self._table.setRowCount(len(report.classes))
        for r, c in enumerate(report.classes):
            cells = [c.name, str(c.n_objects), *[f"{f:.2f}" for f in c.fraction_reaching]]
            cells.append(c.verdict)
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if 2 <= col < 2 + len(report.budgets):
                    i = col - 2
                    item.setToolTip(
                        f"median IoU {c.median_iou[i]:.3f}, boundary IoU "
                        f"{c.mean_boundary_iou[i]:.3f}, median max deviation "
                        f"{c.median_max_deviation[i]:.1f} px"
                    )
                self._table.setItem(r, col, item)
        self._table.resizeColumnsToContents()

    def _add_shapes(self, rings: list[tuple[int, ReportRing]]) -> napari.layers.Shapes | None:
        if not rings:
            return None
        layer = self._source
        tax = get_taxonomy(layer)
        three_d = np.asarray(layer.data).ndim == 3
        data, edge = [], []
        for z, ring in rings:
            v = ring.vertices
            data.append(np.column_stack([np.full(len(v), z), v]) if three_d else v)
            if ring.hole:
                edge.append(_HOLE_COLOR)
            elif tax is not None and tax.has_id(ring.class_id) and not self._instances.value:
                edge.append(tax.by_id(ring.class_id).hex_color)
            else:
                edge.append(_DEFAULT_COLOR)
        features = {
            "object": [r.object_id for _, r in rings],
            "class": [r.class_id for _, r in rings],
            "hole": [r.hole for _, r in rings],
            "iou": [round(r.iou, 4) for _, r in rings],
        }
        return self.viewer.add_shapes(
            data,
            shape_type="polygon",
            edge_color=edge,
            face_color="transparent",
            edge_width=0.5,
            features=features,
            name=f"{layer.name} polygons k={self._shown_budget}",
            scale=layer.scale,
            translate=layer.translate,
        )
