"""Taxonomy dock widget: load a taxonomy, set up a Labels layer, pick the class to paint."""

from __future__ import annotations

from pathlib import Path

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_segflow._writer import REQUIRE_CONFIRMED_KEY, save_labels
from napari_segflow.core.io.validate import unknown_ids
from napari_segflow.core.taxonomy import (
    Taxonomy,
    TaxonomyError,
    class_pixel_counts,
    list_presets,
    load_preset,
    load_taxonomy,
)
from napari_segflow.layers import (
    apply_taxonomy,
    get_taxonomy,
    labels_layer_kwargs,
    new_labels_data,
    track_provenance,
)
from napari_segflow.widgets._layers import follow_layer_list, layer_choices

_FROM_FILE = "from file..."


def _swatch(rgb: tuple[int, int, int]) -> QIcon:
    pix = QPixmap(14, 14)
    pix.fill(QColor(*rgb))
    return QIcon(pix)


class TaxonomyWidget(QWidget):
    """Load a taxonomy and apply it to Labels layers; the class list selects the paint label."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.taxonomy: Taxonomy | None = None
        self._watched = None  # the Labels layer whose counts the list shows
        self.counts: dict[int, int] = {}

        self._source = ComboBox(
            label="taxonomy", choices=[*list_presets(), _FROM_FILE], value="cityscapes"
        )
        self._file = FileEdit(label="file", mode="r", filter="Taxonomy (*.yaml *.yml *.json)")
        self._load = QPushButton("Load taxonomy")
        self._image = ComboBox(label="image", choices=self._image_choices, nullable=True)
        self._labels = ComboBox(label="labels", choices=self._labels_choices, nullable=True)
        self._create = QPushButton("New Labels layer for image")
        self._apply = QPushButton("Apply to Labels layer")
        self._save = QPushButton("Save labels...")
        self._save.setToolTip(
            "Save with segflow's writer (PNG, GeoTIFF, COCO JSON, NIfTI): taxonomy, AI "
            "provenance and georeference kept"
        )
        self._title = QLabel("No taxonomy loaded")
        self._title.setWordWrap(True)
        self._classes = QListWidget()
        self._require = QCheckBox("require confirmed AI pixels when saving")
        self._require.setToolTip(
            "Saving this Labels layer (File > Save) refuses it while AI-made pixels are not "
            "confirmed, like `segflow export --require-confirmed`; unticked, it warns and saves "
            "them as AI-pending in the provenance sidecar."
        )
        self._details = QLabel("")
        self._details.setWordWrap(True)
        self._details.setTextFormat(Qt.TextFormat.PlainText)

        layout = QVBoxLayout(self)
        layout.addWidget(Container(widgets=[self._source, self._file]).native)
        layout.addWidget(self._load)
        layout.addWidget(Container(widgets=[self._image, self._labels]).native)
        row = QHBoxLayout()
        row.addWidget(self._create)
        row.addWidget(self._apply)
        row.addWidget(self._save)
        layout.addLayout(row)
        layout.addWidget(self._require)
        layout.addWidget(self._title)
        layout.addWidget(self._classes)
        layout.addWidget(self._details)

        self._count_timer = QTimer(self)
        self._count_timer.setSingleShot(True)
        self._count_timer.setInterval(150)  # coalesce paint events into one recount

        self._load.clicked.connect(self._on_load)
        self._create.clicked.connect(self._on_create)
        self._apply.clicked.connect(self._on_apply)
        self._save.clicked.connect(lambda: self.save_labels())
        self._classes.currentRowChanged.connect(self._on_class_row)
        self._count_timer.timeout.connect(self.refresh_counts)
        self._labels.changed.connect(self._on_labels_changed)
        self._require.toggled.connect(self._on_require_toggled)
        follow_layer_list(self.viewer, self.reset_choices)
        self.reset_choices()
        active = self.viewer.layers.selection.active
        if isinstance(active, napari.layers.Labels):
            self._labels.value = active
        for combo in (self._image, self._labels):
            layers = [c for c in combo.choices if c is not None]
            if combo.value is None and layers:
                combo.value = layers[0]
        if self._labels.value is not None:
            self._on_labels_changed(self._labels.value)

    # ------------------------------------------------------------------ choices
    def _image_choices(self, _widget=None):
        return layer_choices(self.viewer, napari.layers.Image)

    def _labels_choices(self, _widget=None):
        return layer_choices(self.viewer, napari.layers.Labels)

    def reset_choices(self, *_args) -> None:
        """Refresh the layer combo boxes (napari calls this when layers change)."""
        self._image.reset_choices()
        self._labels.reset_choices()

    # ------------------------------------------------------------------ actions
    def load(self, source: str | Path) -> Taxonomy:
        """Load a taxonomy from a preset name or a file and show it."""
        tax = load_preset(source) if str(source) in list_presets() else load_taxonomy(source)
        self.set_taxonomy(tax)
        return tax

    def set_taxonomy(self, taxonomy: Taxonomy) -> None:
        self.taxonomy = taxonomy
        if taxonomy.name in list_presets() and self._source.value != _FROM_FILE:
            self._source.value = taxonomy.name
        self._title.setText(
            f"{taxonomy.name}: {len(taxonomy.classes)} classes, {len(taxonomy.rules)} rules"
        )
        self._fill_class_list()

    def _on_load(self) -> None:
        source = self._source.value
        if source == _FROM_FILE:
            raw = str(self._file.value or "").strip()
            path = Path(raw)
            if raw in ("", ".") or path.is_dir():
                show_error("Choose a taxonomy file (YAML or JSON) first.")
                return
            if not path.is_file():
                show_error(f"Taxonomy file not found: {path}")
                return
            source = path
        try:
            self.load(source)
        except TaxonomyError as exc:
            show_error(str(exc))
            return
        show_info(f"Loaded taxonomy {self.taxonomy.name!r}")

    def create_labels_layer(self, image_layer=None) -> napari.layers.Labels | None:
        """Add a Labels layer matching ``image_layer`` (2D/3D, RGB collapsed) with the taxonomy."""
        image_layer = image_layer or self._image.value
        if self.taxonomy is None:
            self.load(self._source.value if self._source.value != _FROM_FILE else "cityscapes")
        if image_layer is None:
            show_error("Choose an image layer first.")
            return None
        shape = image_layer.data.shape[:-1] if image_layer.rgb else image_layer.data.shape
        # the labels inherit the image's georeference / affine so writers keep the source geometry
        kwargs = labels_layer_kwargs(self.taxonomy, metadata=dict(image_layer.metadata))
        layer = self.viewer.add_labels(
            new_labels_data(tuple(shape), self.taxonomy),
            name=f"{image_layer.name} labels",
            scale=image_layer.scale[: len(shape)],
            translate=image_layer.translate[: len(shape)],
            **kwargs,
        )
        self._labels.value = layer
        self._watch(layer)
        return layer

    def _on_create(self) -> None:
        try:
            self.create_labels_layer()
        except TaxonomyError as exc:
            show_error(str(exc))

    def apply_to(self, layer=None) -> None:
        """Apply the loaded taxonomy to an existing Labels layer."""
        layer = layer or self._labels.value
        if layer is None:
            show_error("Choose a Labels layer first.")
            return
        if self.taxonomy is None:
            show_error("Load a taxonomy first.")
            return
        apply_taxonomy(layer, self.taxonomy)
        self._watch(layer)
        absent = unknown_ids(np.asarray(layer.data), self.taxonomy)
        if absent:
            shown = ", ".join(str(i) for i in absent[:10]) + (", ..." if len(absent) > 10 else "")
            show_warning(
                f"Layer {layer.name!r} holds {len(absent)} id(s) absent from taxonomy "
                f"{self.taxonomy.name!r}: {shown}. They show uncoloured and saving refuses them; "
                "choose the matching taxonomy or relabel them."
            )

    def _on_apply(self) -> None:
        self.apply_to()

    def save_labels(self, path: str | Path | None = None, layer=None) -> list[str]:
        """Save the Labels layer with segflow's writer for the file's extension.

        Unlike napari's Save dialog, which preselects napari's own writer, this always keeps
        the taxonomy, the provenance sidecar and the georeference. Returns the files written
        (empty after a refusal, which is shown as an error).
        """
        layer = layer or self._labels.value
        if layer is None:
            show_error("Choose a Labels layer first.")
            return []
        if path is None:
            path, _ = QFileDialog.getSaveFileName(
                self,
                f"Save {layer.name!r} with segflow",
                f"{layer.name}.png",
                "Class-index PNG (*.png);;GeoTIFF (*.tif *.tiff);;COCO JSON (*.json);;"
                "NIfTI (*.nii.gz *.nii)",
            )
            if not path:
                return []
        try:
            written = save_labels(layer, str(path))
        except (ValueError, OSError) as exc:
            show_error(str(exc))
            return []
        show_info(f"Saved {', '.join(Path(w).name for w in written)}")
        return written

    # --------------------------------------------------------------- class list
    def _on_labels_changed(self, layer) -> None:
        if layer is None:
            return
        tax = get_taxonomy(layer)
        if tax is not None:
            self.set_taxonomy(tax)
        self._watch(layer)

    def _watch(self, layer) -> None:
        if self._watched is layer:
            self.refresh_counts()
            return
        if self._watched is not None:
            for ev in (self._watched.events.paint, self._watched.events.data):
                ev.disconnect(self._schedule_count)
            self._watched.events.selected_label.disconnect(self._sync_selection)
            track_provenance(self._watched).changed.disconnect(self._schedule_count)
        self._watched = layer
        layer.events.paint.connect(self._schedule_count)
        layer.events.data.connect(self._schedule_count)
        # napari's undo/redo emit no paint event; the provenance tracker wraps them and says so
        track_provenance(layer).changed.connect(self._schedule_count)
        layer.events.selected_label.connect(self._sync_selection)
        self.refresh_counts()
        self._sync_selection()
        self._require.blockSignals(True)
        self._require.setChecked(bool(layer.metadata.get(REQUIRE_CONFIRMED_KEY, False)))
        self._require.blockSignals(False)

    def _on_require_toggled(self, on: bool) -> None:
        if self._watched is not None:
            self._watched.metadata[REQUIRE_CONFIRMED_KEY] = bool(on)

    def _schedule_count(self, *_args) -> None:
        self._count_timer.start()

    def _fill_class_list(self) -> None:
        self._classes.blockSignals(True)
        self._classes.clear()
        for c in self.taxonomy.classes:
            item = QListWidgetItem(_swatch(c.color), f"{c.id:>3}  {c.name}")
            item.setData(Qt.ItemDataRole.UserRole, c.id)
            item.setToolTip(c.description)
            self._classes.addItem(item)
        self._classes.blockSignals(False)
        self.refresh_counts()

    def refresh_counts(self) -> None:
        """Recount the pixels of each class in the watched Labels layer."""
        if self.taxonomy is None:
            return
        counts = {}
        if self._watched is not None:
            counts = class_pixel_counts(np.asarray(self._watched.data), self.taxonomy)
        self.counts = counts
        for row, c in enumerate(self.taxonomy.classes):
            suffix = f"  ({counts[c.id]:,} px)" if c.id in counts else ""
            self._classes.item(row).setText(f"{c.id:>3}  {c.name}{suffix}")

    def select_class(self, class_id: int) -> None:
        """Make ``class_id`` the paint label of the watched layer."""
        if self._watched is not None:
            self._watched.selected_label = int(class_id)
        self._show_details(int(class_id))

    def _on_class_row(self, row: int) -> None:
        if self.taxonomy is None or row < 0:
            return
        self.select_class(self.taxonomy.classes[row].id)

    def _sync_selection(self, *_args) -> None:
        if self.taxonomy is None or self._watched is None:
            return
        label = int(self._watched.selected_label)
        if self.taxonomy.has_id(label):
            row = self.taxonomy.ids.index(label)
            if self._classes.currentRow() != row:
                self._classes.setCurrentRow(row)
            self._show_details(label)

    def _show_details(self, class_id: int) -> None:
        if self.taxonomy is None or not self.taxonomy.has_id(class_id):
            self._details.setText("")
            return
        c = self.taxonomy.by_id(class_id)
        lines = [f"{c.name}: {c.description}" if c.description else c.name]
        if not c.ai_assist:
            lines.append("AI assistance is off for this class.")
        for rule in self.taxonomy.rules_for(c.name):
            other = rule.classes[1] if rule.classes[0] == c.name else rule.classes[0]
            lines.append(f"vs {other}: {rule.text}")
        self._details.setText("\n".join(lines))
