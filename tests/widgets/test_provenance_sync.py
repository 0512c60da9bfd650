"""Labels and AI provenance move together through propagate, undo, redo, paint, confirm and
withdraw, and every dock that shows them (pending regions, outline layer, class counts) follows."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segflow._reader import get_nifti_reader
from napari_segflow.core.provenance import AI_CONFIRMED, AI_PENDING, HUMAN
from napari_segflow.core.taxonomy import load_preset
from napari_segflow.layers import apply_taxonomy, commit_mask, get_provenance
from napari_segflow.widgets.prompt import PromptWidget
from napari_segflow.widgets.taxonomy import TaxonomyWidget
from napari_segflow.widgets.volume import VolumeWidget

KIDNEY = 3  # total_mr: kidney_left


@pytest.fixture(scope="module")
def model():
    import torch

    from napari_segflow.core.segment import load_model

    torch.set_num_threads(1)
    return load_model("medsam-lite", device="cpu")


@pytest.fixture
def docks(make_napari_viewer, shared_data, model, qtbot):
    d = shared_data / "abdomen_mr"
    path = str(d / "example_mr_sm.nii.gz")
    ((img, kw, _),) = get_nifti_reader(path)(path)
    seg_path = str(d / "example_seg_mr.nii.gz")
    ((seg, _, _),) = get_nifti_reader(seg_path)(seg_path)
    viewer = make_napari_viewer()
    image = viewer.add_image(img, **kw)
    z = 5
    accepted = np.zeros_like(seg)
    accepted[z][seg[z] == KIDNEY] = KIDNEY
    labels = viewer.add_labels(accepted, name="organs", scale=kw["scale"])
    apply_taxonomy(labels, load_preset("abdomen-mr"))
    labels.selected_label = KIDNEY
    volume = VolumeWidget(viewer, model=model)
    prompt = PromptWidget(viewer, models={model.name: model})
    taxonomy = TaxonomyWidget(viewer)
    for w in (volume, prompt, taxonomy):
        qtbot.addWidget(w)
    volume._image.value = image
    volume._labels.value = labels
    prompt.set_layers(image=image, labels=labels)
    taxonomy._labels.value = labels
    viewer.dims.set_current_step(0, z)
    return viewer, volume, prompt, taxonomy, labels, z


def _settle(qtbot):
    qtbot.wait(400)  # the docks coalesce refreshes on 150 ms timers


def _pending(labels) -> int:
    return int((get_provenance(labels) == AI_PENDING).sum())


def test_propagation_undo_redo_confirm_keep_every_dock_in_step(docks, qtbot):
    viewer, volume, prompt, taxonomy, labels, z = docks
    accepted = int((labels.data == KIDNEY).sum())
    volume.set_slice_range(z, z + 2)
    volume._method.value = "simple"
    assert volume.propagate() is not None
    qtbot.waitUntil(lambda: volume._worker is None, timeout=300_000)
    n = sum(e.count for e in volume.edits)
    assert n > 0
    _settle(qtbot)
    # the pending list and the outline layer show exactly the propagated voxels
    assert _pending(labels) == n
    assert sum(r.area for r in prompt.regions) == n
    assert prompt._pending.count() == len(prompt.regions) > 0
    assert int(prompt.pending_layer.data.sum()) == n
    assert taxonomy.counts[KIDNEY] == accepted + n

    labels.undo()  # Ctrl+Z: labels and pending marks leave together
    _settle(qtbot)
    assert _pending(labels) == 0
    assert prompt.regions == [] and prompt._pending.count() == 0
    assert int(prompt.pending_layer.data.sum()) == 0
    assert taxonomy.counts[KIDNEY] == accepted

    labels.redo()
    _settle(qtbot)
    assert _pending(labels) == n
    assert sum(r.area for r in prompt.regions) == n
    assert taxonomy.counts[KIDNEY] == accepted + n

    # a person paints over some pending voxels: they become human-made
    edit = volume.edits[0]
    first = tuple(a[:10] for a in edit.index)
    labels.data_setitem(first, 0)
    _settle(qtbot)
    assert _pending(labels) == n - 10
    assert (get_provenance(labels)[first] == HUMAN).all()
    assert volume.confirm() == n - 10
    _settle(qtbot)
    assert _pending(labels) == 0 and prompt.regions == []
    assert int((get_provenance(labels) == AI_CONFIRMED).sum()) == n - 10


def test_confirm_after_undo_says_nothing_is_left(docks, qtbot):
    viewer, volume, prompt, taxonomy, labels, z = docks
    volume.set_slice_range(z, z + 1)
    volume._method.value = "simple"
    volume.propagate()
    qtbot.waitUntil(lambda: volume._worker is None, timeout=300_000)
    labels.undo()
    assert volume.confirm() == 0
    assert "Nothing to confirm" in volume._status.text()
    assert _pending(labels) == 0


def test_withdraw_is_undoable_with_its_provenance(docks, qtbot):
    viewer, volume, prompt, taxonomy, labels, z = docks
    before = labels.data.copy()
    volume.set_slice_range(z, z + 1)
    volume._method.value = "simple"
    volume.propagate()
    qtbot.waitUntil(lambda: volume._worker is None, timeout=300_000)
    n = _pending(labels)
    assert volume.withdraw() == n > 0
    np.testing.assert_array_equal(labels.data, before)
    assert _pending(labels) == 0
    labels.undo()  # undo the withdrawal: the proposal and its pending marks come back
    _settle(qtbot)
    assert _pending(labels) == n
    assert sum(r.area for r in prompt.regions) == n


def test_2d_pending_commit_follows_undo_and_redo(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((40, 50), np.uint8))
    labels = viewer.add_labels(np.zeros((40, 50), np.uint8))
    prompt = PromptWidget(viewer, models={})
    qtbot.addWidget(prompt)
    prompt.set_layers(image=image, labels=labels)
    mask = np.zeros((40, 50), bool)
    mask[5:15, 10:30] = True
    commit_mask(labels, mask, 2, provenance=AI_PENDING)
    _settle(qtbot)
    assert [r.area for r in prompt.regions] == [200]
    labels.undo()
    _settle(qtbot)
    assert prompt.regions == [] and not labels.data.any()
    labels.redo()
    _settle(qtbot)
    assert [r.area for r in prompt.regions] == [200]
    assert (labels.data[mask] == 2).all()


def test_confirmed_voxels_come_back_confirmed_after_undo_and_redo(docks, qtbot):
    viewer, volume, prompt, taxonomy, labels, z = docks
    volume.set_slice_range(z, z + 1)
    volume._method.value = "simple"
    volume.propagate()
    qtbot.waitUntil(lambda: volume._worker is None, timeout=300_000)
    n = volume.confirm()
    assert n > 0
    labels.undo()
    assert int((get_provenance(labels) != HUMAN).sum()) == 0
    labels.redo()
    assert int((get_provenance(labels) == AI_CONFIRMED).sum()) == n
    assert _pending(labels) == 0
