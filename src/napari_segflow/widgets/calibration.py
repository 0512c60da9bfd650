"""Calibration dock widget: score annotator Labels layers against a gold Labels layer."""

from __future__ import annotations

from pathlib import Path

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, Select
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from napari_segflow.core.calibration import CalibrationReport, calibrate
from napari_segflow.core.taxonomy import LabelClass, Taxonomy, list_presets, load_preset
from napari_segflow.layers import get_taxonomy

_FROM_GOLD = "from gold layer"
DISAGREEMENT_LAYER = "annotator disagreement"
_FLAG = QColor(240, 128, 128)
_OK = QColor(170, 220, 170)
_NA = QColor(220, 220, 220)


def _ids_taxonomy(arrays: list[np.ndarray]) -> Taxonomy:
    """Every non-zero value is a class, for layers that carry no taxonomy."""
    ids = sorted(set().union(*(np.unique(a).tolist() for a in arrays)) - {0})
    return Taxonomy("from-labels", tuple(LabelClass(int(i), str(i), (0, 0, 0)) for i in ids))


class CalibrationWidget(QWidget):
    """Pick a gold Labels layer and annotator Labels layers; show per-class IoU with flags."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.report: CalibrationReport | None = None
        self._worker = None
        self._cancel = False

        self._gold = ComboBox(label="gold", choices=self._labels_choices, nullable=True)
        self._annotators = Select(label="annotators", choices=self._labels_choices)
        self._taxonomy = ComboBox(
            label="taxonomy", choices=[_FROM_GOLD, *list_presets()], value=_FROM_GOLD
        )
        self._threshold = FloatSpinBox(label="threshold", value=0.75, min=0, max=1, step=0.05)
        self._run = QPushButton("Calibrate")
        self._stop = QPushButton("Cancel")
        self._stop.setEnabled(False)
        self._summary = QLabel("Choose a gold layer and one or more annotator layers.")
        self._summary.setWordWrap(True)
        self._table = QTableWidget()
        self._tabs = QTabWidget()
        self._folder = FileEdit(label="report folder", mode="d")
        self._save = QPushButton("Save report (JSON, CSV, HTML)")

        self._annotators.native.setMaximumHeight(110)
        self._form = Container(
            widgets=[self._gold, self._annotators, self._taxonomy, self._threshold]
        )
        self._folder_form = Container(widgets=[self._folder])
        layout = QVBoxLayout(self)
        layout.addWidget(self._form.native)
        row = QHBoxLayout()
        row.addWidget(self._run)
        row.addWidget(self._stop)
        layout.addLayout(row)
        layout.addWidget(self._summary)
        layout.addWidget(self._table, stretch=1)
        layout.addWidget(self._tabs, stretch=2)
        layout.addWidget(self._folder_form.native)
        layout.addWidget(self._save)

        self._run.clicked.connect(self._on_run)
        self._stop.clicked.connect(self._on_cancel)
        self._save.clicked.connect(self._on_save)
        self.viewer.layers.events.inserted.connect(self.reset_choices)
        self.viewer.layers.events.removed.connect(self.reset_choices)
        self.reset_choices()

    # ------------------------------------------------------------------ choices
    def _labels_choices(self, _widget=None):
        return [
            (lay.name, lay)
            for lay in self.viewer.layers
            if isinstance(lay, napari.layers.Labels) and lay.name != DISAGREEMENT_LAYER
        ]

    def reset_choices(self, *_args) -> None:
        """Refresh the layer choices (napari calls this when layers change)."""
        self._gold.reset_choices()
        self._annotators.reset_choices()

    def set_layers(self, gold, annotators) -> None:
        """Select the gold layer and annotator layers (layer objects)."""
        self._gold.value = gold
        self._annotators.value = list(annotators)

    # ------------------------------------------------------------------ running
    def _inputs(self):
        gold = self._gold.value
        annotators = [a for a in (self._annotators.value or []) if a is not gold]
        if gold is None:
            raise ValueError("Choose a gold Labels layer.")
        if not annotators:
            raise ValueError("Choose at least one annotator Labels layer (other than the gold).")
        shape = gold.data.shape
        for lay in annotators:
            if lay.data.shape != shape:
                raise ValueError(
                    f"Layer {lay.name!r} has shape {lay.data.shape}, the gold layer {shape}."
                )
        gold_data = np.asarray(gold.data)
        ann = {lay.name: {gold.name: np.asarray(lay.data)} for lay in annotators}
        choice = self._taxonomy.value
        if choice == _FROM_GOLD:
            tax = get_taxonomy(gold) or _ids_taxonomy(
                [gold_data, *(d[gold.name] for d in ann.values())]
            )
        else:
            tax = load_preset(choice)
        return gold, {gold.name: gold_data}, ann, tax

    def compute(self) -> CalibrationReport | None:
        """Run the calibration now (blocking) and show it; ``None`` after a user mistake."""
        try:
            gold_layer, gold, ann, tax = self._inputs()
        except ValueError as exc:
            show_error(str(exc))
            return None
        report = calibrate(gold, ann, taxonomy=tax, threshold=float(self._threshold.value))
        self._show(report, gold_layer)
        return report

    def _on_run(self) -> None:
        try:
            gold_layer, gold, ann, tax = self._inputs()
        except ValueError as exc:
            show_error(str(exc))
            return
        self._cancel = False
        threshold = float(self._threshold.value)
        worker = create_worker(
            calibrate,
            gold,
            ann,
            taxonomy=tax,
            threshold=threshold,
            cancel=lambda: self._cancel,
            _progress={"desc": "Calibrating annotators"},
        )
        worker.returned.connect(lambda rep: self._show(rep, gold_layer))
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._run.setEnabled(False)
        self._stop.setEnabled(True)
        self._worker = worker
        worker.start()

    def _on_cancel(self) -> None:
        self._cancel = True

    def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, InterruptedError):
            show_info("Calibration cancelled.")
        else:
            show_error(f"Calibration failed: {exc}")

    def _on_finished(self) -> None:
        self._run.setEnabled(True)
        self._stop.setEnabled(False)
        self._worker = None

    # ------------------------------------------------------------------ results
    def _show(self, report: CalibrationReport, gold_layer) -> None:
        self.report = report
        self._fill_table(report)
        self._fill_plots(report)
        self._add_disagreement(report, gold_layer)
        flags = ", ".join(f"{a}: {c}" for a, c in report.flagged) or "none"
        self._summary.setText(f"Threshold {report.threshold:.2f}. Flagged (retrain on): {flags}.")
        if report.flagged:
            show_warning(f"{len(report.flagged)} annotator/class pairs below the threshold.")

    def _fill_table(self, report: CalibrationReport) -> None:
        cols = [*report.classes, "mean IoU"]
        self._table.clear()
        self._table.setRowCount(len(report.annotators))
        self._table.setColumnCount(len(cols))
        self._table.setHorizontalHeaderLabels(cols)
        self._table.setVerticalHeaderLabels(report.annotators)
        for r in range(len(report.annotators)):
            values = [*report.iou[r], report.mean_iou[r]]
            for c, v in enumerate(values):
                item = QTableWidgetItem("n/a" if np.isnan(v) else f"{v:.3f}")
                item.setForeground(QColor(0, 0, 0))  # readable on the light flag colours
                if np.isnan(v):
                    item.setBackground(_NA)
                elif v < report.threshold:
                    item.setBackground(_FLAG)
                    item.setToolTip("below threshold: retrain on this class")
                else:
                    item.setBackground(_OK)
                if c < len(report.classes) and not np.isnan(report.boundary_iou[r, c]):
                    item.setToolTip(
                        (item.toolTip() + "\n" if item.toolTip() else "")
                        + f"boundary IoU {report.boundary_iou[r, c]:.3f}"
                    )
                self._table.setItem(r, c, item)
        self._table.resizeColumnsToContents()

    def cell_color(self, row: int, col: int) -> QColor:
        """Background colour of a table cell (flagged cells are red)."""
        return self._table.item(row, col).background().color()

    def _fill_plots(self, report: CalibrationReport) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg

        from napari_segflow.core.report_html import (
            class_bar_figure,
            heatmap_figure,
            pairwise_figure,
        )

        self._tabs.clear()
        figs = {
            "heatmap": heatmap_figure(
                report.iou, report.annotators, report.classes, threshold=report.threshold
            ),
            "per class": class_bar_figure(
                report.iou, report.annotators, report.classes, threshold=report.threshold
            ),
            "agreement": pairwise_figure(report.pairwise_mean_iou, report.annotators),
        }
        for name, fig in figs.items():
            canvas = FigureCanvasQTAgg(fig)
            canvas.setMinimumHeight(220)
            self._tabs.addTab(canvas, name)

    def _add_disagreement(self, report: CalibrationReport, gold_layer) -> None:
        (data,) = report.disagreement.values()
        if DISAGREEMENT_LAYER in self.viewer.layers:
            layer = self.viewer.layers[DISAGREEMENT_LAYER]
            if layer.data.shape == data.shape:
                # a new result, not an edit: replacing the whole array is intended here
                layer.data = data
                return
            self.viewer.layers.remove(layer)
        self.viewer.add_labels(
            data,
            name=DISAGREEMENT_LAYER,
            scale=gold_layer.scale,
            translate=gold_layer.translate,
            opacity=0.7,
        )

    def _on_save(self) -> None:
        if self.report is None:
            show_error("Run the calibration first.")
            return
        folder = Path(str(self._folder.value))
        if not str(self._folder.value) or str(self._folder.value) == ".":
            show_error("Choose a report folder first.")
            return
        try:
            paths = self.report.save(folder)
        except OSError as exc:
            show_error(f"Could not write the report: {exc}")
            return
        show_info(f"Wrote {', '.join(p.name for p in paths.values())} to {folder}")
