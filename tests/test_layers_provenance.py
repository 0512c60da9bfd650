"""commit_mask, provenance following undo/redo and human painting, and the displayed plane."""

import numpy as np
import pytest
from napari.components import ViewerModel
from napari.layers import Labels

from napari_segflow.core.plane import Plane
from napari_segflow.core.provenance import (
    AI_CONFIRMED,
    AI_PENDING,
    HUMAN,
    PROVENANCE_KEY,
    provenance_regions,
)
from napari_segflow.core.taxonomy import load_preset
from napari_segflow.layers import (
    commit_mask,
    confirm_region,
    current_plane,
    get_provenance,
    labels_layer_kwargs,
    reject_region,
)


def _paint_stroke(layer, coord, label):
    """A brush stroke as napari's paint mouse binding makes it: one undo item."""
    layer._begin_stroke()
    layer.paint(coord, label)
    layer._commit_stroke()


def test_commit_is_one_undo_step_and_provenance_follows():
    layer = Labels(np.zeros((20, 30), np.uint8))
    mask = np.zeros((20, 30), bool)
    mask[2:6, 3:9] = True
    idx = commit_mask(layer, mask, 3)
    prov = layer.metadata[PROVENANCE_KEY]
    assert idx[0].size == 24
    np.testing.assert_array_equal(layer.data == 3, mask)
    np.testing.assert_array_equal(prov == AI_CONFIRMED, mask)

    layer.undo()
    assert not layer.data.any() and not prov.any()
    layer.redo()
    np.testing.assert_array_equal(layer.data == 3, mask)
    np.testing.assert_array_equal(prov == AI_CONFIRMED, mask)


def test_human_paint_turns_ai_pixels_human_and_undo_brings_them_back():
    layer = Labels(np.zeros((20, 30), np.uint8))
    mask = np.zeros((20, 30), bool)
    mask[2:10, 3:12] = True
    commit_mask(layer, mask, 3)
    prov = get_provenance(layer)
    layer.brush_size = 3
    _paint_stroke(layer, (5, 6), 5)
    painted = layer.data == 5
    assert painted.sum() == 9
    assert (prov[painted] == HUMAN).all()
    np.testing.assert_array_equal(prov == AI_CONFIRMED, mask & ~painted)
    layer.undo()
    np.testing.assert_array_equal(prov == AI_CONFIRMED, mask)
    layer.redo()
    assert (prov[painted] == HUMAN).all()


def test_protect_keeps_other_classes_and_existing_human_pixels_stay_human():
    tax = load_preset("nuclei")  # 0 background, 1 nucleus, 2 debris
    data = np.zeros((10, 10), np.uint8)
    data[0:3, 0:3] = 2  # debris drawn by a person
    data[5, 5] = 1  # a nucleus pixel drawn by a person
    layer = Labels(data.copy(), **labels_layer_kwargs(tax))
    mask = np.zeros((10, 10), bool)
    mask[1:7, 1:7] = True
    commit_mask(layer, mask, 1, protect=True)
    prov = get_provenance(layer)
    assert (layer.data[0:3, 0:3] == 2).all()  # protected
    assert (layer.data[mask] != 0).all()
    assert prov[5, 5] == HUMAN  # already this class by hand
    expected = mask & (data == 0)
    np.testing.assert_array_equal(prov == AI_CONFIRMED, expected)
    commit_mask(layer, mask, 1, protect=False)
    assert (layer.data[mask] == 1).all()


def test_pending_regions_confirm_and_reject():
    layer = Labels(np.zeros((12, 12), np.uint8))
    a = np.zeros((12, 12), bool)
    a[1:4, 1:4] = True
    b = np.zeros((12, 12), bool)
    b[8:11, 6:12] = True
    commit_mask(layer, a, 2, provenance=AI_PENDING)
    commit_mask(layer, b, 4, provenance=AI_PENDING)
    prov = get_provenance(layer)
    big, small = provenance_regions(prov)
    assert (big.area, small.area) == (18, 9)
    confirm_region(layer, small)
    assert (prov[a] == AI_CONFIRMED).all()
    reject_region(layer, big)
    assert not layer.data[b].any() and (prov[b] == HUMAN).all()
    layer.undo()  # the rejection is undoable
    assert (layer.data[b] == 4).all() and (prov[b] == AI_PENDING).all()


def test_commit_on_a_transposed_volume_plane():
    layer = Labels(np.zeros((4, 5, 6), np.uint8))
    plane = Plane(axes=(2, 1), point=(3, 0, 0), shape=(4, 5, 6))
    mask = np.zeros(plane.plane_shape, bool)
    mask[5, 0] = mask[1, 4] = True
    commit_mask(layer, mask, 7, plane=plane)
    assert sorted(zip(*np.nonzero(layer.data), strict=True)) == [(3, 0, 5), (3, 4, 1)]
    with pytest.raises(ValueError, match="mask shape"):
        commit_mask(layer, np.ones((5, 6), bool), 1)


def test_current_plane_follows_dims_point_and_order():
    viewer = ViewerModel()
    viewer.add_image(np.zeros((4, 20, 30)))
    lab = viewer.add_labels(np.zeros((4, 20, 30), np.uint8))
    viewer.dims.set_point(0, 2)
    assert current_plane(viewer, lab) == Plane((1, 2), (2, 0, 0), (4, 20, 30))
    viewer.dims.order = (0, 2, 1)
    assert current_plane(viewer, lab).axes == (2, 1)
    viewer.dims.order = (1, 2, 0)
    viewer.dims.set_point(1, 7)
    assert current_plane(viewer, lab) == Plane((2, 0), (0, 7, 0), (4, 20, 30))
    viewer.dims.ndisplay = 3
    with pytest.raises(ValueError, match="2D"):
        current_plane(viewer, lab)
