"""Rules dock widget: the written boundary rules, shown when they matter.

- The rules of the class being painted are listed as a checklist, so the annotator reads them
  before starting on the class.
- After every paint stroke (the Labels layer's ``paint`` event, which carries the edit's undo
  history) only the edited pixels are checked. When they touch a class with which a rule exists,
  the rule pops up as a napari notification, at most once per pair per ``throttle_s`` seconds.
- Every contact found is listed with a "Go to" button; pairs with no rule say "no rule written".

Other widgets that write a mask (accepting a model proposal, for instance) call
:meth:`RulesWidget.check_region` with the area they changed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import napari
import numpy as np
from magicgui.widgets import ComboBox
from napari.utils.notifications import show_info, show_warning
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_segflow.core.taxonomy import Taxonomy, TaxonomyError
from napari_segflow.core.taxonomy.rules import ConflictSite, contact_sites
from napari_segflow.layers import get_taxonomy
from napari_segflow.widgets._layers import follow_layer_list, layer_choices

__all__ = ["RulesWidget", "edited_region"]

#: Most contacts kept in the list (newest first).
MAX_LISTED = 50


def edited_region(
    history_item: Sequence[Any], shape: Sequence[int]
) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """The pixels changed by one napari Labels history item, as ``(box, mask of the box)``.

    ``Labels.events.paint`` carries ``value``: the list of history atoms of one undoable edit.
    Brush, fill and polygon edits store a bounding box (``slice_key``) with a mask of the changed
    pixels (``mask``, ``None`` when all changed); ``data_setitem`` stores a tuple
    ``(indices, old_values, new_values)`` with one index array per axis.

    Returns ``None`` when the item changed nothing.
    """
    ndim = len(shape)
    parts: list[tuple[tuple[slice, ...], np.ndarray | None, tuple[np.ndarray, ...] | None]] = []
    for atom in history_item:
        if hasattr(atom, "slice_key"):
            box = tuple(slice(int(s.start), int(s.stop)) for s in atom.slice_key)
            mask = None if atom.mask is None else np.asarray(atom.mask, dtype=bool)
            if mask is not None:
                mask = mask.reshape(tuple(s.stop - s.start for s in box))
            parts.append((box, mask, None))
        else:
            indices = tuple(np.asarray(ix).ravel() for ix in atom[0])
            if len(indices) != ndim or indices[0].size == 0:
                continue
            box = tuple(slice(int(ix.min()), int(ix.max()) + 1) for ix in indices)
            parts.append((box, None, indices))
    if not parts:
        return None
    union = tuple(
        slice(min(p[0][ax].start for p in parts), max(p[0][ax].stop for p in parts))
        for ax in range(ndim)
    )
    mask = np.zeros(tuple(s.stop - s.start for s in union), dtype=bool)
    for box, part_mask, indices in parts:
        if indices is not None:
            mask[tuple(ix - u.start for ix, u in zip(indices, union, strict=True))] = True
            continue
        local = tuple(
            slice(b.start - u.start, b.stop - u.start) for b, u in zip(box, union, strict=True)
        )
        if part_mask is None:
            mask[local] = True
        else:
            mask[local] |= part_mask
    if not mask.any():
        return None
    return union, mask


def _other(rule_classes: tuple[str, str], name: str) -> str:
    return rule_classes[1] if rule_classes[0] == name else rule_classes[0]


class RulesWidget(QWidget):
    """Show the rules of the selected class and remind of them after each edit."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, *, throttle_s: float = 30.0) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self._watched = None
        self._layer_of_sites = None  # the layer the listed contacts belong to
        self._pending: list[tuple[tuple[slice, ...], np.ndarray]] = []
        self._last_reminder: dict[tuple[int, tuple[int, int]], float] = {}
        self._read: set[frozenset[str]] = set()
        #: Contacts listed in the panel, newest first (one per class pair).
        self.sites: list[ConflictSite] = []
        #: Messages of the reminders shown so far (newest last).
        self.reminders: list[str] = []
        #: Number of edited regions checked so far.
        self.checks = 0

        self._labels = ComboBox(label="labels", choices=self._labels_choices, nullable=True)
        self._class_title = QLabel("Choose a Labels layer with a taxonomy.")
        self._class_title.setWordWrap(True)
        self._checklist = QListWidget()
        self._checklist.setWordWrap(True)
        self._sites_title = QLabel("Contacts made by recent edits: none yet")
        self._sites_title.setWordWrap(True)
        self._sites_list = QListWidget()
        self._sites_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._clear = QPushButton("Clear list")
        self._throttle = QDoubleSpinBox()
        self._throttle.setRange(0.0, 3600.0)
        self._throttle.setSuffix(" s")
        self._throttle.setValue(throttle_s)
        self._throttle.setToolTip("The same pair is reminded at most once in this time")
        self._connectivity = QSpinBox()
        self._connectivity.setRange(1, 3)
        self._connectivity.setValue(1)
        self._connectivity.setToolTip(
            "1: pixels sharing an edge (face in 3D) touch; 2: also diagonal; 3: corners (3D)"
        )

        self.setMinimumWidth(380)  # room for "a / b, n px: no rule written" on one line
        layout = QVBoxLayout(self)
        layout.addWidget(self._labels.native)
        layout.addWidget(self._class_title)
        layout.addWidget(self._checklist, 2)
        layout.addWidget(self._sites_title)
        layout.addWidget(self._sites_list, 3)
        form = QFormLayout()
        form.addRow("remind again after", self._throttle)
        form.addRow("connectivity", self._connectivity)
        layout.addLayout(form)
        layout.addWidget(self._clear)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        # the paint event can fire before the layer's data is written: check on the next loop
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._check_pending)
        self._labels.changed.connect(self._watch)
        self._checklist.itemChanged.connect(self._on_check)
        self._clear.clicked.connect(self.clear_sites)
        follow_layer_list(self.viewer, self.reset_choices)
        self.reset_choices()
        self._watch(self._labels.value)

    # ------------------------------------------------------------------ choices
    def _labels_choices(self, _widget=None):
        return layer_choices(self.viewer, napari.layers.Labels)

    def reset_choices(self, *_args) -> None:
        """Refresh the layer combo box (napari calls this when layers change)."""
        self._labels.reset_choices()
        if self._labels.value is None:
            choices = [lay for _, lay in self._labels_choices()]
            active = self.viewer.layers.selection.active
            if choices:
                self._labels.value = active if active in choices else choices[-1]

    @property
    def layer(self):
        """The Labels layer being watched."""
        return self._watched

    @property
    def throttle_s(self) -> float:
        """Seconds before the same pair is reminded again."""
        return float(self._throttle.value())

    @throttle_s.setter
    def throttle_s(self, value: float) -> None:
        self._throttle.setValue(float(value))

    @property
    def connectivity(self) -> int:
        """Which neighbours touch (see :func:`napari_segflow.core.taxonomy.rules.class_adjacency`)."""
        return int(self._connectivity.value())

    def set_layer(self, layer) -> None:
        """Watch ``layer`` (a Labels layer)."""
        self._labels.value = layer

    def _watch(self, layer) -> None:
        if layer is self._watched:
            self._show_rules()
            return
        if self._watched is not None:
            self._watched.events.paint.disconnect(self._on_paint)
            self._watched.events.selected_label.disconnect(self._show_rules)
            self._watched.events.metadata.disconnect(self._show_rules)
        self._watched = layer
        self._pending.clear()
        if layer is not None:
            layer.events.paint.connect(self._on_paint)
            layer.events.selected_label.connect(self._show_rules)
            layer.events.metadata.connect(self._show_rules)
        self._show_rules()

    def _taxonomy(self, layer) -> Taxonomy | None:
        try:
            return get_taxonomy(layer)
        except TaxonomyError as exc:
            show_warning(str(exc))
            return None

    # -------------------------------------------------------- class checklist
    def _show_rules(self, *_args) -> None:
        self._checklist.blockSignals(True)
        self._checklist.clear()
        layer = self._watched
        tax = None if layer is None else self._taxonomy(layer)
        if layer is None:
            self._class_title.setText("Choose a Labels layer.")
        elif tax is None:
            self._class_title.setText(
                f"{layer.name!r} has no taxonomy: apply one in the Taxonomy widget."
            )
        elif not tax.has_id(layer.selected_label):
            self._class_title.setText(
                f"Label {layer.selected_label} is not a class of {tax.name}."
            )
        else:
            cid = int(layer.selected_label)
            name = tax.by_id(cid).name
            rules = tax.rules_for(name)
            # the class id is named as such: a bare "(1)" read as the id of another class
            what = f"class {cid} {name!r}"
            if rules:
                n = f"{len(rules)} rule" + ("s" if len(rules) != 1 else "")
                self._class_title.setText(
                    f"Rules for {what}, {n}: tick each once you have read it."
                )
            else:
                self._class_title.setText(f"No rules written for {what}.")
            for rule in rules:
                to = f" (-> {rule.resolve_to})" if rule.resolve_to else ""
                item = QListWidgetItem(f"vs {_other(rule.classes, name)}{to}: {rule.text}")
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(
                    Qt.CheckState.Checked if rule.pair in self._read else Qt.CheckState.Unchecked
                )
                item.setData(Qt.ItemDataRole.UserRole, tuple(rule.classes))
                self._checklist.addItem(item)
        self._checklist.blockSignals(False)

    def _on_check(self, item: QListWidgetItem) -> None:
        pair = frozenset(item.data(Qt.ItemDataRole.UserRole))
        if item.checkState() == Qt.CheckState.Checked:
            self._read.add(pair)
        else:
            self._read.discard(pair)

    def checklist(self) -> list[tuple[str, bool]]:
        """The checklist as shown: ``(text, ticked)`` per rule of the selected class."""
        return [
            (
                self._checklist.item(i).text(),
                self._checklist.item(i).checkState() == Qt.CheckState.Checked,
            )
            for i in range(self._checklist.count())
        ]

    # ------------------------------------------------------------------ checks
    def _on_paint(self, event) -> None:
        layer = self._watched
        if layer is None:
            return
        region = edited_region(getattr(event, "value", None) or [], layer.data.shape)
        if region is not None:
            self._pending.append(region)
            self._timer.start()

    def _check_pending(self) -> None:
        pending, self._pending = self._pending, []
        layer = self._watched
        if layer is None:
            return
        for region in pending:
            self.check_region(layer, region)

    def check_region(self, layer, region: Any) -> list[ConflictSite]:
        """Check the contacts that the pixels in ``region`` of ``layer`` make; remind of rules.

        Parameters
        ----------
        layer : napari.layers.Labels
            A Labels layer with a taxonomy (see :func:`napari_segflow.layers.apply_taxonomy`).
        region : tuple of slices, boolean mask, or (tuple of slices, mask of that box)
            The pixels just written (see :func:`napari_segflow.core.taxonomy.rules.conflict_sites`).

        Returns
        -------
        list of ConflictSite
            Every contact the region makes, with or without a rule.
        """
        tax = self._taxonomy(layer)
        if tax is None:
            return []
        data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
        sites = contact_sites(
            data,  # only the region's box is read, also from lazy arrays
            tax,
            region=region,
            connectivity=min(self.connectivity, np.ndim(data)),
        )
        self.checks += 1
        if not sites:
            return sites
        self._list_sites(layer, sites)
        now = time.monotonic()
        for site in sites:
            if site.rule is None:
                continue
            key = (id(layer), site.ids)
            last = self._last_reminder.get(key)
            if last is not None and now - last < self.throttle_s:
                continue
            self._last_reminder[key] = now
            to = f" -> {site.rule.resolve_to}" if site.rule.resolve_to else ""
            message = f"Rule {site.classes[0]} / {site.classes[1]}{to}: {site.rule.text}"
            self.reminders.append(message)
            show_info(message)
        return sites

    # ---------------------------------------------------------------- site list
    def _list_sites(self, layer, sites: list[ConflictSite]) -> None:
        new_pairs = {s.ids for s in sites}
        kept = [s for s in self.sites if s.ids not in new_pairs]
        self.sites = (list(sites) + kept)[:MAX_LISTED]
        self._layer_of_sites = layer
        self._fill_sites()

    def _fill_sites(self) -> None:
        self._sites_list.clear()
        n_open = sum(s.rule is None for s in self.sites)
        if self.sites:
            extra = f" ({n_open} with no rule written)" if n_open else ""
            self._sites_title.setText(f"Contacts made by recent edits: {len(self.sites)}{extra}")
        else:
            self._sites_title.setText("Contacts made by recent edits: none yet")
        for site in self.sites:
            text = f"{site.classes[0]} / {site.classes[1]}, {site.contact_length} px: "
            text += "no rule written" if site.rule is None else site.rule.text
            row = QWidget()
            box = QHBoxLayout(row)
            box.setContentsMargins(2, 1, 2, 1)
            button = QPushButton("Go to")
            button.setToolTip("Centre the view on this contact")
            button.clicked.connect(lambda _=False, s=site: self.go_to(s))
            label = QLabel(text)
            # one line per contact, clipped to the panel; the full text is in the tooltip
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            label.setToolTip(f"{text}\naround {tuple(round(c, 1) for c in site.centroid)}")
            box.addWidget(button)
            box.addWidget(label, 1)
            item = QListWidgetItem()
            item.setSizeHint(row.sizeHint())
            self._sites_list.addItem(item)
            self._sites_list.setItemWidget(item, row)

    def site_rows(self) -> list[str]:
        """The text of each listed contact, in order."""
        rows = []
        for i in range(self._sites_list.count()):
            row = self._sites_list.itemWidget(self._sites_list.item(i))
            rows.append(row.findChild(QLabel).text())
        return rows

    def clear_sites(self) -> None:
        """Empty the list of contacts."""
        self.sites = []
        self._fill_sites()

    def go_to(self, site: ConflictSite, layer=None) -> None:
        """Centre the camera on ``site`` and move the sliders to its plane."""
        layer = layer or self._layer_of_sites or self._watched
        if layer is None:
            return
        world = np.asarray(layer.data_to_world(site.anchor), dtype=float)
        dims = self.viewer.dims
        offset = dims.ndim - world.size
        displayed = list(dims.displayed)
        hidden = [ax for ax in range(offset, dims.ndim) if ax not in displayed]
        if hidden:
            dims.set_point(hidden, [world[ax - offset] for ax in hidden])
        center = [world[ax - offset] for ax in displayed if ax >= offset]
        if len(center) == len(displayed):
            self.viewer.camera.center = tuple(center)
