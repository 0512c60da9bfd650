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

from napari_segflow.core.io.labels import match_label_files
from napari_segflow.core.quality.calibration import CalibrationReport, calibrate
from napari_segflow.core.taxonomy import LabelClass, Taxonomy, list_presets, load_preset
from napari_segflow.layers import get_taxonomy
from napari_segflow.widgets._layers import follow_layer_list, layer_choices

_FROM_GOLD = "from gold"
_LAYERS, _FOLDERS = "Labels layers", "folders"
DISAGREEMENT_LAYER = "annotator disagreement"
_FLAG = QColor(240, 128, 128)
_OK = QColor(170, 220, 170)
_NA = QColor(220, 220, 220)


def _ids_taxonomy(arrays: list[np.ndarray]) -> Taxonomy:
    """Every non-zero value is a class, for layers that carry no taxonomy."""
    ids = sorted(set().union(*(np.unique(a).tolist() for a in arrays)) - {0})
    return Taxonomy("from-labels", tuple(LabelClass(int(i), str(i), (0, 0, 0)) for i in ids))


def calibrate_folders(
    gold_dir: Path,
    annotators_dir: Path,
    *,
    taxonomy: Taxonomy | None,
    threshold: float,
    cancel=None,
) -> CalibrationReport:
    """Calibrate every subfolder of ``annotators_dir`` (one per annotator) against ``gold_dir``.

    Files are paired by name; problems (missing, wrong shape) end up in ``report.problems``.
    Without a taxonomy every non-zero value of the gold files is a class.
    """
    subdirs = sorted(d for d in Path(annotators_dir).iterdir() if d.is_dir())
    if not subdirs:
        raise ValueError(f"{annotators_dir}: no subfolders (one per annotator expected)")
    matched = match_label_files(gold_dir, {d.name: d for d in subdirs})
    if not matched.reference:
        raise ValueError(f"{gold_dir}: no readable gold files")
    tax = taxonomy or _ids_taxonomy(list(matched.reference.values()))
    report = calibrate(
        matched.reference, matched.others, taxonomy=tax, threshold=threshold, cancel=cancel
    )
    report.problems = [*matched.problems, *report.problems]
    return report


class CalibrationWidget(QWidget):
    """Pick a gold Labels layer and annotator Labels layers; show per-class IoU with flags."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.report: CalibrationReport | None = None
        self._worker = None
        self._cancel = False

        self._scale_layer = None  # gold layer whose scale/translate the disagreement layer copies
        self._source = ComboBox(label="compare", choices=[_LAYERS, _FOLDERS], value=_LAYERS)
        self._gold = ComboBox(label="gold", choices=self._labels_choices, nullable=True)
        self._gold_dir = FileEdit(label="gold folder", mode="d")
        self._ann_dir = FileEdit(label="annotators folder", mode="d")
        self._ann_dir.tooltip = "one subfolder per annotator; files matched to gold by name"
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
        self._image = ComboBox(label="disagreement of", choices=[])
        self._folder = FileEdit(label="report folder", mode="d")
        self._save = QPushButton("Save report (JSON, CSV, HTML)")
        self._polygons = QPushButton("Polygon check...")
        self._polygons.setToolTip(
            "Would k-vertex polygons do as well as pixel masks? Opens the Polygon check dock."
        )

        self._annotators.native.setMaximumHeight(110)
        self._form = Container(
            widgets=[
                self._source,
                self._gold,
                self._annotators,
                self._gold_dir,
                self._ann_dir,
                self._taxonomy,
                self._threshold,
            ]
        )
        self._folder_form = Container(widgets=[self._image, self._folder])
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
        layout.addWidget(self._polygons)

        self._source.changed.connect(self._on_source)
        self._image.changed.connect(self._on_image)
        self._on_source(self._source.value)
        self._run.clicked.connect(self._on_run)
        self._stop.clicked.connect(self._on_cancel)
        self._save.clicked.connect(self._on_save)
        self._polygons.clicked.connect(self.open_polygon_check)
        follow_layer_list(self.viewer, self.reset_choices)
        self.reset_choices()

    # ------------------------------------------------------------------ choices
    def _labels_choices(self, _widget=None):
        return layer_choices(
            self.viewer, napari.layers.Labels, lambda lay: lay.name != DISAGREEMENT_LAYER
        )

    def reset_choices(self, *_args) -> None:
        """Refresh the layer choices (napari calls this when layers change)."""
        self._gold.reset_choices()
        self._annotators.reset_choices()

    def set_layers(self, gold, annotators) -> None:
        """Select the gold layer and annotator layers (layer objects)."""
        self._gold.value = gold
        self._annotators.value = list(annotators)

    def _on_source(self, value: str) -> None:
        layers = value == _LAYERS
        for w in (self._gold, self._annotators):
            w.visible = layers
        for w in (self._gold_dir, self._ann_dir):
            w.visible = not layers

    def set_folders(self, gold_dir, annotators_dir) -> None:
        """Compare folders: gold files and one subfolder per annotator."""
        self._source.value = _FOLDERS
        self._gold_dir.value = gold_dir
        self._ann_dir.value = annotators_dir

    # ------------------------------------------------------------------ running
    def _folder_job(self):
        gold_dir, ann_dir = Path(str(self._gold_dir.value)), Path(str(self._ann_dir.value))
        for d, what in ((gold_dir, "gold"), (ann_dir, "annotators")):
            if not str(d) or str(d) == "." or not d.is_dir():
                raise ValueError(f"Choose the {what} folder.")
        choice = self._taxonomy.value
        tax = None if choice == _FROM_GOLD else load_preset(choice)
        return lambda cancel=None: calibrate_folders(
            gold_dir,
            ann_dir,
            taxonomy=tax,
            threshold=float(self._threshold.value),
            cancel=cancel,
        )

    def _job(self):
        """A function running the chosen comparison, and the layer giving scale/translate."""
        if self._source.value == _FOLDERS:
            return self._folder_job(), None
        gold_layer, gold, ann, tax = self._inputs()
        threshold = float(self._threshold.value)
        return (
            lambda cancel=None: calibrate(
                gold, ann, taxonomy=tax, threshold=threshold, cancel=cancel
            ),
            gold_layer,
        )

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
            job, gold_layer = self._job()
            report = job()
        except ValueError as exc:
            show_error(str(exc))
            return None
        self._show(report, gold_layer)
        return report

    def _on_run(self) -> None:
        try:
            job, gold_layer = self._job()
        except ValueError as exc:
            show_error(str(exc))
            return
        self._cancel = False
        worker = create_worker(
            job,
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
        elif isinstance(exc, ValueError):
            show_error(str(exc))
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
        self._scale_layer = gold_layer
        images = list(report.disagreement)
        with self._image.changed.blocked():
            self._image.choices = images
            if images:
                self._image.value = images[0]
        if images:
            self._add_disagreement(images[0])
        for line in report.problems:
            show_warning(f"left out: {line}")
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

        from napari_segflow.core.quality.report_html import (
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

    def _on_image(self, image) -> None:
        if self.report is not None and image in self.report.disagreement:
            self._add_disagreement(image)

    def _add_disagreement(self, image: str) -> None:
        """Show the disagreement map of ``image`` in the disagreement Labels layer."""
        data = self.report.disagreement[image]
        gold_layer = self._scale_layer
        if DISAGREEMENT_LAYER in self.viewer.layers:
            layer = self.viewer.layers[DISAGREEMENT_LAYER]
            if layer.data.shape == data.shape:
                # a new result, not an edit: replacing the whole array is intended here
                layer.data = data
                layer.metadata["segflow_image"] = image
                return
            self.viewer.layers.remove(layer)
        extra = {}
        if gold_layer is not None and gold_layer.ndim == data.ndim:
            extra = {"scale": gold_layer.scale, "translate": gold_layer.translate}
        self.viewer.add_labels(
            data,
            name=DISAGREEMENT_LAYER,
            opacity=0.7,
            metadata={"segflow_image": image},
            **extra,
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

    def open_polygon_check(self):
        """Dock the Polygon check widget (the polygon sufficiency report) beside this one."""
        _dock, widget = self.viewer.window.add_plugin_dock_widget(
            "napari-segflow", "Polygon check"
        )
        return widget
