"""napari model-side helpers (no Qt): taxonomy on Labels layers, kwargs for new layers,
undoable mask commits with AI provenance, and the plane the viewer shows.

Widgets, readers and sample data all go through these functions, so a Labels layer looks the same
(colours, class names in the status bar, taxonomy in metadata) whichever way it was made.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
from psygnal import Signal

from .core.plane import Plane
from .core.provenance import (
    AI_CONFIRMED,
    HUMAN,
    PROVENANCE_KEY,
    ProvenanceRegion,
    new_provenance,
)
from .core.taxonomy import Taxonomy, taxonomy_from_dict

__all__ = [
    "TAXONOMY_KEY",
    "ProvenanceTracker",
    "apply_taxonomy",
    "background_value",
    "commit_mask",
    "confirm_region",
    "current_plane",
    "get_provenance",
    "get_taxonomy",
    "labels_dtype",
    "labels_layer_kwargs",
    "new_labels_data",
    "reject_region",
    "track_provenance",
]

#: Key under which a Labels layer's ``metadata`` holds its taxonomy (as a plain dict).
TAXONOMY_KEY = "segflow_taxonomy"


def labels_dtype(taxonomy: Taxonomy) -> np.dtype:
    """The smallest unsigned dtype that holds every id of ``taxonomy``."""
    return np.dtype(np.uint8 if taxonomy.max_id <= 255 else np.uint16)


def new_labels_data(shape: tuple[int, ...], taxonomy: Taxonomy) -> np.ndarray:
    """An unlabelled label array of ``shape`` (filled with the taxonomy's unlabelled id)."""
    fill = taxonomy.unlabeled_id or 0
    return np.full(shape, fill, dtype=labels_dtype(taxonomy))


def _colormap_dict(taxonomy: Taxonomy) -> dict[Any, tuple[float, float, float, float]]:
    colors: dict[Any, tuple[float, float, float, float]] = {None: (0.0, 0.0, 0.0, 0.0)}
    colors.update(taxonomy.color_dict())
    if taxonomy.unlabeled_id is not None:
        colors[taxonomy.unlabeled_id] = (0.0, 0.0, 0.0, 0.0)
    return colors


def _features(taxonomy: Taxonomy) -> dict[str, list]:
    return {
        "index": [c.id for c in taxonomy.classes],
        "class": [c.name for c in taxonomy.classes],
    }


def labels_layer_kwargs(taxonomy: Taxonomy, *, metadata: dict | None = None) -> dict[str, Any]:
    """Keyword arguments for ``napari.layers.Labels`` that carry ``taxonomy``.

    Usable in ``LayerData`` tuples returned by readers and sample-data functions.
    """
    from napari.utils.colormaps import DirectLabelColormap

    meta = dict(metadata or {})
    meta[TAXONOMY_KEY] = taxonomy.to_dict()
    cmap = DirectLabelColormap(
        color_dict=_colormap_dict(taxonomy), background_value=taxonomy.unlabeled_id or 0
    )
    return {"colormap": cmap, "features": _features(taxonomy), "metadata": meta}


def apply_taxonomy(layer, taxonomy: Taxonomy) -> None:
    """Give an existing Labels layer the taxonomy's colours, class names and metadata."""
    kwargs = labels_layer_kwargs(taxonomy, metadata=layer.metadata)
    layer.colormap = kwargs["colormap"]
    layer.features = kwargs["features"]
    layer.metadata = kwargs["metadata"]
    if taxonomy.classes and not taxonomy.has_id(layer.selected_label):
        layer.selected_label = taxonomy.classes[0].id


def get_taxonomy(layer) -> Taxonomy | None:
    """The taxonomy stored on ``layer`` by :func:`apply_taxonomy`, or ``None``."""
    data = getattr(layer, "metadata", {}).get(TAXONOMY_KEY)
    if data is None:
        return None
    if isinstance(data, Taxonomy):
        return data
    return taxonomy_from_dict(data, source=f"layer {getattr(layer, 'name', '?')!r} metadata")


def background_value(layer) -> int:
    """The label meaning "nothing here" on ``layer``: the taxonomy's unlabelled id, else 0."""
    tax = get_taxonomy(layer)
    if tax is not None and tax.unlabeled_id is not None:
        return int(tax.unlabeled_id)
    return int(getattr(layer.colormap, "background_value", 0) or 0)


# ---------------------------------------------------------------------------------- provenance
#
# The provenance array lives in ``layer.metadata[PROVENANCE_KEY]`` and follows Ctrl+Z / redo.
# napari's Labels history stores "atoms" (one per data_setitem call or paint stroke) grouped into
# items; undo replays the top item. The tracker remembers, per atom, the provenance values before
# and after the edit, and wraps the layer's ``undo``/``redo`` (which the Ctrl+Z keybinding calls)
# to replay them on the item that napari is about to undo or redo. Human edits (brush, fill,
# eraser, any data_setitem outside :func:`commit_mask`) reach the tracker through
# ``layer.events.paint`` and turn the pixels they changed into HUMAN.

_TRACKERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _Step:
    __slots__ = ("after", "atoms", "before", "index")

    def __init__(self, atoms, index, before, after) -> None:
        self.atoms = atoms  # keeps the atoms alive so that their ids stay unique
        self.index = index
        self.before = before
        self.after = after


def _atom_indices(atom) -> tuple[np.ndarray, ...]:
    """Full-array indices of the pixels a napari Labels history atom changed."""
    if isinstance(atom, tuple) and len(atom) == 3 and isinstance(atom[0], tuple):
        return tuple(np.asarray(a, dtype=np.intp).ravel() for a in atom[0])
    # napari's mask-based atom: (slice_key, mask, old_values, new_value)
    slice_key, mask = atom[0], atom[1]
    shape = tuple(s.stop - s.start for s in slice_key)
    local = np.nonzero(np.ones(shape, bool) if mask is None else np.asarray(mask, bool))
    return tuple(ax + s.start for ax, s in zip(local, slice_key, strict=True))


class ProvenanceTracker:
    """Keeps a Labels layer's provenance array consistent with its edits, undo and redo.

    Get it with :func:`track_provenance`; one tracker per layer. ``changed`` is emitted after
    every provenance change (edits, undo, redo, confirmations).
    """

    changed = Signal()

    def __init__(self, layer) -> None:
        self._layer = weakref.ref(layer)
        self._steps: dict[int, _Step] = {}
        self._ai_write: tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray] | None = None
        layer.events.paint.connect(self._on_paint)
        self._orig_undo, self._orig_redo = layer.undo, layer.redo
        layer.undo = self.undo
        layer.redo = self.redo

    @property
    def layer(self):
        return self._layer()

    @property
    def provenance(self) -> np.ndarray:
        """The layer's provenance array (created all-human when missing or of the wrong shape)."""
        layer = self.layer
        prov = layer.metadata.get(PROVENANCE_KEY)
        shape = tuple(np.shape(layer.data))
        if not isinstance(prov, np.ndarray) or prov.shape != shape or prov.dtype != np.uint8:
            prov = (
                new_provenance(shape)
                if prov is None or np.shape(prov) != shape
                else np.asarray(prov, dtype=np.uint8)
            )
            layer.metadata[PROVENANCE_KEY] = prov
            self._steps.clear()
        return prov

    # ------------------------------------------------------------------------ edits
    def write(self, indices: tuple[np.ndarray, ...], value, state) -> None:
        """Write label ``value`` at ``indices`` through the layer's history, provenance ``state``.

        ``value`` and ``state`` are scalars or arrays with one entry per index (a withdrawal
        puts back the old labels and their old provenance in one undoable edit). Pixels whose
        label changes get ``state``; pixels that already hold ``value`` keep HUMAN provenance
        (a person made them) and otherwise get ``state`` too.
        """
        layer = self.layer
        prov = self.provenance
        if not indices or indices[0].size == 0:
            return
        before = prov[indices].copy()
        if isinstance(value, np.ndarray):
            value = value.astype(np.asarray(layer.data).dtype, copy=False)
        else:
            value = int(value)
        changed = np.asarray(layer.data[indices]) != value
        state = np.asarray(state, dtype=np.uint8)
        after = np.where(changed | (before != HUMAN), state, before).astype(np.uint8)
        self._ai_write = (indices, before, after)
        try:
            layer.data_setitem(indices, value)
        finally:
            self._ai_write = None
        # no history item (nothing changed, or a stroke holds the history): not undoable
        prov[indices] = after
        self.changed.emit()

    def set_state(self, indices: tuple[np.ndarray, ...], state: int) -> None:
        """Set provenance only (labels untouched), e.g. a person confirms pending pixels.

        Edits still in the undo history that wrote these pixels redo them in the new state, so
        confirmed pixels that are undone and redone come back confirmed, not pending again.
        """
        prov = self.provenance
        prov[indices] = np.uint8(state)
        if indices and indices[0].size and self._steps:
            shape = prov.shape
            changed = np.ravel_multi_index(indices, shape)
            for step in {id(st): st for st in self._steps.values()}.values():
                hit = np.isin(np.ravel_multi_index(step.index, shape), changed)
                if hit.any():
                    step.after = np.where(hit, np.uint8(state), step.after).astype(np.uint8)
        self.changed.emit()

    def _on_paint(self, event) -> None:
        atoms = list(getattr(event, "value", None) or [])
        if not atoms:
            return
        prov = self.provenance
        if self._ai_write is not None:
            index, before, after = self._ai_write
            self._remember(atoms, index, before, after)
            return
        changed = False
        for atom in atoms:
            try:
                index = _atom_indices(atom)
            except (TypeError, AttributeError, IndexError):  # an atom kind we do not know
                continue
            before = prov[index].copy()
            if not np.any(before != HUMAN):
                continue
            after = np.zeros_like(before)
            prov[index] = after
            self._remember([atom], index, before, after)
            changed = True
        if changed:
            self.changed.emit()

    def _remember(self, atoms, index, before, after) -> None:
        step = _Step(atoms, index, before, after)
        for atom in atoms:
            self._steps[id(atom)] = step
        self._prune()

    def _prune(self) -> None:
        layer = self.layer
        limit = 2 * int(getattr(layer, "_history_limit", 100) or 100) + 16
        if len(self._steps) <= limit:
            return
        alive = {
            id(a)
            for hist in (getattr(layer, "_undo_history", ()), getattr(layer, "_redo_history", ()))
            for item in hist
            for a in item
        }
        self._steps = {k: v for k, v in self._steps.items() if k in alive}

    # ------------------------------------------------------------------------ history
    def _replay(self, history, original, undoing: bool) -> None:
        item = history[-1] if history else None
        original()
        if not item:
            return
        prov = self.provenance
        seen = set()
        for atom in item:
            step = self._steps.get(id(atom))
            if step is None or id(step) in seen:
                continue
            seen.add(id(step))
            prov[step.index] = step.before if undoing else step.after
        self.changed.emit()

    def undo(self) -> None:
        """The layer's undo, with provenance following it."""
        layer = self.layer
        self._replay(getattr(layer, "_undo_history", ()), self._orig_undo, undoing=True)

    def redo(self) -> None:
        """The layer's redo, with provenance following it."""
        layer = self.layer
        self._replay(getattr(layer, "_redo_history", ()), self._orig_redo, undoing=False)


def track_provenance(layer) -> ProvenanceTracker:
    """The provenance tracker of a Labels layer (created and attached on first use)."""
    tracker = _TRACKERS.get(layer)
    if tracker is None:
        tracker = ProvenanceTracker(layer)
        _TRACKERS[layer] = tracker
    return tracker


def get_provenance(layer) -> np.ndarray:
    """The provenance array of a Labels layer (tracked from now on)."""
    return track_provenance(layer).provenance


def _full_indices(layer, mask: np.ndarray, plane: Plane | None) -> tuple[np.ndarray, ...]:
    mask = np.asarray(mask, dtype=bool)
    if plane is not None:
        if plane.shape != tuple(np.shape(layer.data)):
            raise ValueError(f"plane of shape {plane.shape} does not fit layer {layer.name!r}")
        return plane.indices(mask)
    if mask.shape != tuple(np.shape(layer.data)):
        raise ValueError(
            f"mask shape {mask.shape} differs from layer {layer.name!r} shape {np.shape(layer.data)}"
        )
    return tuple(a.astype(np.intp) for a in np.nonzero(mask))


def commit_mask(
    layer,
    mask: np.ndarray,
    class_id: int,
    *,
    protect: bool = False,
    provenance: int = AI_CONFIRMED,
    plane: Plane | None = None,
) -> tuple[np.ndarray, ...]:
    """Write ``class_id`` into a Labels layer where ``mask`` is true, as one undoable edit.

    Parameters
    ----------
    layer : napari.layers.Labels
        The target layer.
    mask : ndarray of bool
        Pixels to write: the layer's full shape, or the plane's ``(rows, cols)`` with ``plane``.
    class_id : int
        The label value to write.
    protect : bool
        Leave pixels that already hold another class (neither background nor ``class_id``).
    provenance : int
        Provenance state for the written pixels: ``AI_CONFIRMED`` when a person accepted a model
        proposal, ``AI_PENDING`` for unreviewed pre-labels, ``HUMAN`` for manual work.
    plane : Plane, optional
        The displayed plane ``mask`` belongs to (current slice of a volume, any axis order).

    Returns
    -------
    tuple of ndarray
        Full-array indices of the pixels written (after protection).
    """
    index = _full_indices(layer, mask, plane)
    if protect and index[0].size:
        current = np.asarray(layer.data[index])
        keep = (current == background_value(layer)) | (current == class_id)
        index = tuple(a[keep] for a in index)
    track_provenance(layer).write(index, int(class_id), int(provenance))
    return index


def confirm_region(layer, region: ProvenanceRegion) -> None:
    """A person confirms a region of pending AI pixels: they become AI-confirmed."""
    track_provenance(layer).set_state(region.indices, AI_CONFIRMED)


def reject_region(layer, region: ProvenanceRegion) -> None:
    """A person rejects a region of AI pixels: they go back to background (undoable)."""
    track_provenance(layer).write(region.indices, background_value(layer), HUMAN)


# ---------------------------------------------------------------------------------- planes


def current_plane(viewer, layer) -> Plane:
    """The plane of ``layer``'s data that ``viewer`` displays (2D view, any axis order).

    Raises
    ------
    ValueError
        When the viewer shows 3D, or the displayed axes are not axes of ``layer``.
    """
    dims = viewer.dims
    if dims.ndisplay != 2:
        raise ValueError("Switch the viewer to 2D display to segment a slice.")
    shape = tuple(np.shape(layer.data))
    if getattr(layer, "rgb", False):
        shape = shape[:-1]
    ndim = len(shape)
    offset = dims.ndim - ndim  # a layer with fewer dims fills the last world dims
    axes = tuple(int(a) - offset for a in dims.displayed)
    if any(a < 0 for a in axes):
        raise ValueError(f"layer {layer.name!r} has no axis on the displayed plane")
    world = np.asarray(dims.point, dtype=float)[offset:]
    data_point = np.asarray(layer.world_to_data(world), dtype=float)[-ndim:]
    point = tuple(
        int(np.clip(np.floor(v + 0.5), 0, n - 1)) for v, n in zip(data_point, shape, strict=True)
    )
    return Plane(axes=axes, point=point, shape=shape)
