"""The Pre-label dock: train on painted strokes, AI-pending pre-labels, gate, Cancel, live mode."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from napari_segflow.core.provenance import AI_PENDING, HUMAN, PROVENANCE_KEY
from napari_segflow.core.taxonomy import taxonomy_from_dict
from napari_segflow.layers import get_taxonomy, labels_layer_kwargs, track_provenance
from napari_segflow.widgets.prelabel import PrelabelWidget, training_labels

NUCLEUS, DEBRIS, BACKGROUND = 1, 2, 3
TAX = taxonomy_from_dict(
    {
        "name": "cells",
        "classes": [
            {"id": NUCLEUS, "name": "nucleus", "color": "#ff00ff"},
            {"id": DEBRIS, "name": "debris", "color": "#ffff00"},
            {"id": BACKGROUND, "name": "background", "color": "#303030"},
        ],
    }
)


def _strokes(inst):
    """A line across a few nuclei and a few background lines, as class ids (0 elsewhere)."""
    lab = np.zeros(inst.shape, np.uint8)
    ids = [i for i in np.unique(inst) if i]
    for i in ids[:: max(1, len(ids) // 8)][:8]:
        core = ndi.binary_erosion(inst == i, iterations=2)
        if core.any():
            r = int(np.round(np.argwhere(core)[:, 0].mean()))
            lab[r][core[r]] = NUCLEUS
    far = ndi.distance_transform_edt(inst == 0) > 4
    for r in np.linspace(10, inst.shape[0] - 10, 4).astype(int):
        lab[r, np.flatnonzero(far[r])[:60]] = BACKGROUND
    return lab


@pytest.fixture
def setup(make_napari_viewer, shared_data, qtbot):
    d = shared_data / "nuclei_dsb2018"
    img = tifffile.imread(d / "img2d.tif")[:160, :192]
    inst = tifffile.imread(d / "mask2d.tif")[:160, :192]
    viewer = make_napari_viewer()
    image = viewer.add_image(img, name="nuclei")
    labels = viewer.add_labels(
        np.zeros(img.shape, np.uint8), name="cells", **labels_layer_kwargs(TAX)
    )
    track_provenance(labels)
    strokes = _strokes(inst)
    for cid in (NUCLEUS, BACKGROUND):
        labels.data_setitem(np.nonzero(strokes == cid), cid)  # the annotator's strokes
    widget = PrelabelWidget(viewer)
    qtbot.addWidget(widget)
    widget.set_layers(image, labels)
    widget._embeddings.value = False  # the encoder path is covered by the core tests
    return viewer, widget, labels, inst, strokes


def _undo_pending(labels):
    while np.any(labels.metadata[PROVENANCE_KEY] == AI_PENDING):
        labels.undo()


def _wait(widget, qtbot):
    qtbot.waitUntil(lambda: widget._worker is None, timeout=120_000)


def test_train_and_prelabel_in_a_worker(setup, qtbot):
    viewer, widget, labels, inst, strokes = setup
    assert np.count_nonzero(training_labels(labels) >= 0) == np.count_nonzero(strokes)
    widget._on_train()
    assert not widget._train.isEnabled() and widget._stop.isEnabled()  # busy while it runs
    _wait(widget, qtbot)
    assert widget.classifier is not None and widget.classifier.classes.tolist() == [1, 3]
    widget._on_predict(whole=True)
    _wait(widget, qtbot)
    data, prov = np.asarray(labels.data), labels.metadata[PROVENANCE_KEY]
    # the strokes are untouched and human; everything added is AI-pending
    assert np.array_equal(data[strokes > 0], strokes[strokes > 0])
    assert np.all(prov[strokes > 0] == HUMAN)
    added = (strokes == 0) & (data != 0)
    assert added.sum() > 1000 and np.all(prov[added] == AI_PENDING)
    nuc = data == NUCLEUS
    iou = np.count_nonzero(nuc & (inst > 0)) / np.count_nonzero(nuc | (inst > 0))
    assert iou > 0.6
    assert len(np.unique(data[added])) == 2  # both classes were pre-labelled ...
    # ... and one undo removes all the pre-labels and their provenance again
    labels.undo()
    assert np.array_equal(np.asarray(labels.data), strokes)
    assert not np.any(labels.metadata[PROVENANCE_KEY] == AI_PENDING)


def test_uncertain_pixels_human_pixels_and_gated_classes(setup, qtbot):
    viewer, widget, labels, inst, strokes = setup
    widget.train()
    # a person's pixel inside a nucleus stays as it is
    r, c = np.argwhere((inst > 0) & (strokes == 0))[0]
    labels.data_setitem((np.array([r]), np.array([c])), DEBRIS)
    widget._min_conf.value = 0.95
    strict = widget.predict(whole=True)
    _undo_pending(labels)
    widget._min_conf.value = 0.5
    loose = widget.predict(whole=True)
    assert 0 < strict < loose  # uncertain pixels are left unlabelled
    assert labels.data[r, c] == DEBRIS
    _undo_pending(labels)
    # a class whose ai_assist is off is never pre-labelled
    from napari_segflow.layers import apply_taxonomy

    apply_taxonomy(labels, get_taxonomy(labels).with_ai_assist({"nucleus": False}))
    widget.predict(whole=True)
    added = (strokes == 0) & (np.asarray(labels.data) == NUCLEUS)
    assert not added.any()


def test_measure_shows_iou_and_sets_the_gate(setup, shared_data, qtbot):
    viewer, widget, labels, inst, strokes = setup
    # a second painted image (another crop, another shape) gives two held-out units
    d = shared_data / "nuclei_dsb2018"
    img2 = tifffile.imread(d / "img2d.tif")[256:384, 256:400]
    inst2 = tifffile.imread(d / "mask2d.tif")[256:384, 256:400]
    viewer.add_image(img2, name="nuclei 2")
    lab2 = viewer.add_labels(
        np.zeros(img2.shape, np.uint8), name="cells 2", **labels_layer_kwargs(TAX)
    )
    s2 = _strokes(inst2)
    for cid in (NUCLEUS, BACKGROUND):
        lab2.data_setitem(np.nonzero(s2 == cid), cid)
    widget._train_on.value = [labels, lab2]
    cv = widget.measure()
    assert cv.units == 2
    table = {
        widget._table.item(r, 0).text(): widget._table.item(r, 2).text()
        for r in range(widget._table.rowCount())
    }
    # a class of the taxonomy gets its gate verdict; the row says on or off
    assert table["nucleus"] == ("off" if "nucleus" in cv.gate.disabled else "on")
    gated = get_taxonomy(labels)
    for name in cv.gate.disabled:
        assert gated.by_name(name).ai_assist is False
    assert "Mean IoU" in widget._status.text()


def test_cancel_stops_training(setup, qtbot):
    viewer, widget, labels, inst, strokes = setup
    widget._on_train()
    widget._on_cancel()
    _wait(widget, qtbot)
    assert widget.classifier is None
    assert widget._status.text() == "Cancelled."


def test_live_mode_retrains_after_a_stroke(setup, qtbot):
    viewer, widget, labels, inst, strokes = setup
    widget._live.value = True
    assert widget.classifier is None
    far = (ndi.distance_transform_edt(inst == 0) > 4) & (strokes == 0)
    rows, cols = np.nonzero(far)
    labels.data_setitem((rows[:40], cols[:40]), BACKGROUND)  # one more stroke
    # the stroke starts training, then the displayed image is pre-labelled
    qtbot.waitUntil(lambda: np.any(labels.metadata[PROVENANCE_KEY] == AI_PENDING), timeout=120_000)
    _wait(widget, qtbot)
    assert widget.classifier is not None and not widget._pending_live
    widget._live.value = False
    assert widget._live_layer is None


def test_nothing_painted_is_a_clear_error(make_napari_viewer, qtbot, monkeypatch):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32), np.float32))
    labels = viewer.add_labels(np.zeros((32, 32), np.uint8), **labels_layer_kwargs(TAX))
    widget = PrelabelWidget(viewer)
    qtbot.addWidget(widget)
    widget.set_layers(viewer.layers[0], labels)
    errors = []
    monkeypatch.setattr("napari_segflow.widgets.prelabel.show_error", errors.append)
    widget._on_train()
    assert widget._worker is None
    assert errors == ["Nothing is painted yet: paint a few strokes of each class."]
