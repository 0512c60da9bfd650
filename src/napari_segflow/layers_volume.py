"""Put a propagated volume into a Labels layer as AI-pending, and confirm or withdraw it.

napari model side only (no Qt). Edits go through the layer's provenance tracker
(:func:`napari_segflow.layers.track_provenance`), so labels and provenance move together: one
Ctrl+Z removes a propagation and its AI-pending marks, redo puts both back, and every dock that
listens to the tracker (pending regions, class counts) sees the change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_segflow.core.provenance import AI_CONFIRMED, AI_PENDING
from napari_segflow.layers import get_provenance, track_provenance

__all__ = ["VolumeEdit", "commit_propagation", "confirm_edit", "layer_provenance", "withdraw_edit"]


@dataclass(frozen=True, eq=False)
class VolumeEdit:
    """Which voxels one propagation wrote, and what they held before.

    Attributes
    ----------
    index : tuple of int arrays
        Voxel coordinates written (``np.nonzero`` style).
    old_values, old_provenance : arrays
        Their label and provenance values before the edit.
    class_id : int
    """

    index: tuple[np.ndarray, ...]
    old_values: np.ndarray
    old_provenance: np.ndarray
    class_id: int

    @property
    def count(self) -> int:
        return int(self.index[0].size)


def layer_provenance(layer) -> np.ndarray:
    """The layer's provenance array, created (all human) when it has none or a stale one."""
    return get_provenance(layer)


def commit_propagation(
    layer, labels: np.ndarray, *, slice_range: tuple[int, int] | None = None, keep=()
) -> list[VolumeEdit]:
    """Write a propagated label volume into ``layer`` as AI-pending, as one undoable edit.

    Only background voxels (0) and voxels the model itself wrote earlier (still pending) are
    overwritten, so a person's labels are never replaced by a proposal. Voxels of the slices in
    ``keep`` (the annotated ones) are left alone.

    Returns one :class:`VolumeEdit` per class, for :func:`confirm_edit` / :func:`withdraw_edit`.
    """
    data = layer.data
    if np.shape(labels) != np.shape(data):
        raise ValueError(
            f"labels of shape {np.shape(labels)} do not fit the layer's {np.shape(data)}"
        )
    prov = layer_provenance(layer)
    current = np.asarray(data)
    writable = (current == 0) | (prov == AI_PENDING)
    if slice_range is not None:
        lo, hi = slice_range
        writable[:lo] = False
        writable[hi + 1 :] = False
    for z in keep:
        writable[int(z)] = False
    edits = []
    for cid in [int(c) for c in np.unique(labels) if c != 0]:
        index = np.nonzero((labels == cid) & writable & (current != cid))
        if index[0].size == 0:
            continue
        edits.append(VolumeEdit(index, current[index].copy(), prov[index].copy(), cid))
    if edits:
        index = tuple(
            np.concatenate([e.index[d] for e in edits]) for d in range(len(edits[0].index))
        )
        values = np.concatenate([np.full(e.count, e.class_id) for e in edits])
        track_provenance(layer).write(index, values, AI_PENDING)
    return edits


def confirm_edit(layer, edit: VolumeEdit) -> int:
    """Mark the voxels of ``edit`` that still hold its class and are still pending as
    AI-confirmed; returns how many (0 after the propagation was undone)."""
    prov = layer_provenance(layer)
    still = (np.asarray(layer.data)[edit.index] == edit.class_id) & (
        prov[edit.index] == AI_PENDING
    )
    idx = tuple(i[still] for i in edit.index)
    if idx[0].size:
        track_provenance(layer).set_state(idx, AI_CONFIRMED)
    return int(still.sum())


def withdraw_edit(layer, edit: VolumeEdit) -> int:
    """Restore the voxels of ``edit`` that still hold its pending class (undoable); returns how
    many."""
    prov = layer_provenance(layer)
    data = np.asarray(layer.data)
    still = (data[edit.index] == edit.class_id) & (prov[edit.index] == AI_PENDING)
    idx = tuple(i[still] for i in edit.index)
    if idx[0].size:
        track_provenance(layer).write(idx, edit.old_values[still], edit.old_provenance[still])
    return int(still.sum())
