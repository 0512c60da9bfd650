"""Put a propagated volume into a Labels layer as AI-pending, and confirm or withdraw it.

napari model side only (no Qt). Edits go through ``layer.data_setitem`` so Ctrl+Z undoes them;
the provenance array in ``layer.metadata[PROVENANCE_KEY]`` records which voxels the model made.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_segflow.core.provenance import AI_CONFIRMED, AI_PENDING, PROVENANCE_KEY, new_provenance

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
    prov = layer.metadata.get(PROVENANCE_KEY)
    shape = np.shape(layer.data)
    if prov is None or np.shape(prov) != shape:
        prov = new_provenance(shape)
        layer.metadata[PROVENANCE_KEY] = prov
    return prov


def commit_propagation(
    layer, labels: np.ndarray, *, slice_range: tuple[int, int] | None = None, keep=()
) -> list[VolumeEdit]:
    """Write a propagated label volume into ``layer`` as AI-pending.

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
    edits = []
    for cid in [int(c) for c in np.unique(labels) if c != 0]:
        target = labels == cid
        if slice_range is not None:
            lo, hi = slice_range
            target[:lo] = False
            target[hi + 1 :] = False
        for z in keep:
            target[int(z)] = False
        current = np.asarray(data)
        target &= (current == 0) | (prov == AI_PENDING)
        target &= current != cid
        index = np.nonzero(target)
        if index[0].size == 0:
            continue
        edit = VolumeEdit(index, current[index].copy(), prov[index].copy(), cid)
        layer.data_setitem(index, cid)
        prov[index] = AI_PENDING
        edits.append(edit)
    layer.metadata[PROVENANCE_KEY] = prov
    return edits


def confirm_edit(layer, edit: VolumeEdit) -> int:
    """Mark the voxels of ``edit`` that still hold its class as AI-confirmed; returns how many."""
    prov = layer_provenance(layer)
    still = np.asarray(layer.data)[edit.index] == edit.class_id
    idx = tuple(i[still] for i in edit.index)
    prov[idx] = AI_CONFIRMED
    return int(still.sum())


def withdraw_edit(layer, edit: VolumeEdit) -> int:
    """Restore the voxels of ``edit`` that still hold its pending class; returns how many."""
    prov = layer_provenance(layer)
    data = np.asarray(layer.data)
    still = (data[edit.index] == edit.class_id) & (prov[edit.index] == AI_PENDING)
    idx = tuple(i[still] for i in edit.index)
    if idx[0].size:
        layer.data_setitem(idx, edit.old_values[still])
        prov[idx] = edit.old_provenance[still]
    return int(still.sum())
