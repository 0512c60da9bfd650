"""The Volume dock widget: propagate an accepted mask, AI-pending results, confirm/withdraw."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segflow._reader import get_nifti_reader
from napari_segflow.core.io.volume_layout import NIFTI_META_KEY
from napari_segflow.core.provenance import AI_CONFIRMED, AI_PENDING, HUMAN, PROVENANCE_KEY
from napari_segflow.widgets.volume import VolumeWidget

KIDNEY = 3  # total_mr: kidney_left


@pytest.fixture(scope="module")
def model():
    import torch

    from napari_segflow.core.segment import load_model

    torch.set_num_threads(1)
    return load_model("medsam-lite", device="cpu")


@pytest.fixture
def setup(make_napari_viewer, shared_data, model, qtbot):
    d = shared_data / "abdomen_mr"
    path = str(d / "example_mr_sm.nii.gz")
    ((img, kw, _),) = get_nifti_reader(path)(path)
    seg_path = str(d / "example_seg_mr.nii.gz")
    ((seg, _, _),) = get_nifti_reader(seg_path)(seg_path)
    viewer = make_napari_viewer()
    image = viewer.add_image(img, **kw)
    z = 5
    accepted = np.zeros_like(seg)
    accepted[z][seg[z] == KIDNEY] = KIDNEY  # the annotator's accepted mask on slice 5
    labels = viewer.add_labels(accepted, name="organs", scale=kw["scale"])
    labels.selected_label = KIDNEY
    widget = VolumeWidget(viewer, model=model)
    qtbot.addWidget(widget)
    widget._image.value = image
    widget._labels.value = labels
    viewer.dims.set_current_step(0, z)
    return viewer, widget, image, labels, seg, z


def _run(widget, qtbot):
    worker = widget.propagate()
    assert worker is not None
    qtbot.waitUntil(lambda: widget._worker is None, timeout=300_000)


def test_propagate_adds_pending_voxels_then_confirm(setup, qtbot):
    viewer, widget, image, labels, seg, z = setup
    before = labels.data.copy()
    widget.set_slice_range(z - 1, z + 1)
    widget._method.value = "simple"
    _run(widget, qtbot)
    data = labels.data
    prov = labels.metadata[PROVENANCE_KEY]
    # slices outside the range untouched, the accepted slice kept as the annotator made it
    np.testing.assert_array_equal(data[: z - 1], before[: z - 1])
    np.testing.assert_array_equal(data[z + 2 :], before[z + 2 :])
    np.testing.assert_array_equal(data[z], before[z])
    assert not (prov[z] != HUMAN).any()
    for s in (z - 1, z + 1):
        new = data[s] == KIDNEY
        ref = seg[s] == KIDNEY
        assert 2 * (new & ref).sum() / (new.sum() + ref.sum()) > 0.7
        np.testing.assert_array_equal(prov[s] == AI_PENDING, new)
    assert widget._progress.value() == widget._progress.maximum() > 0
    assert labels.metadata[NIFTI_META_KEY] is image.metadata[NIFTI_META_KEY]
    n_pending = int((prov == AI_PENDING).sum())
    assert widget.confirm() == n_pending
    assert not (prov == AI_PENDING).any()
    assert int((prov == AI_CONFIRMED).sum()) == n_pending


def test_withdraw_and_undo_restore_the_layer(setup, qtbot):
    viewer, widget, image, labels, seg, z = setup
    before = labels.data.copy()
    widget.set_slice_range(z, z + 1)
    widget._method.value = "simple"
    _run(widget, qtbot)
    assert (labels.data[z + 1] == KIDNEY).any()
    labels.undo()  # one Ctrl+Z removes the whole propagation
    np.testing.assert_array_equal(labels.data, before)
    labels.redo()
    assert widget.withdraw() > 0
    np.testing.assert_array_equal(labels.data, before)
    assert not (labels.metadata[PROVENANCE_KEY] == AI_PENDING).any()


def test_cancel_changes_nothing(setup, qtbot):
    viewer, widget, image, labels, seg, z = setup
    before = labels.data.copy()
    widget._cancel.set()  # as if Cancel were pressed before the first slice
    widget._cancel.clear = lambda: None  # keep it set when propagate() starts
    _run(widget, qtbot)
    assert "Cancelled" in widget._status.text()
    np.testing.assert_array_equal(labels.data, before)
    assert widget.edits == []


def test_user_mistakes_are_messages_not_tracebacks(setup, qtbot):
    viewer, widget, image, labels, seg, z = setup
    viewer.dims.set_current_step(0, 15)  # nothing accepted on slice 15
    assert widget.propagate() is None
    viewer.dims.set_current_step(0, z)
    widget.set_slice_range(10, 19)  # the current slice outside the range
    assert widget.propagate() is None
    widget._labels.value = None
    assert widget.propagate() is None
