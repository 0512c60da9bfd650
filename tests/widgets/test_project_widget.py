"""The Project dock in a real viewer: real pet photos, real LiteMedSAM, a project on disk."""

from __future__ import annotations

import os

import numpy as np
import pytest

from napari_segflow.core.io.labels import read_labels
from napari_segflow.core.project import ACCEPTED, DONE, IN_PROGRESS, REJECTED, open_project
from napari_segflow.core.provenance import AI_CONFIRMED, PROVENANCE_KEY
from napari_segflow.core.taxonomy import save_taxonomy, taxonomy_from_dict
from napari_segflow.widgets.project import KEYS, LABELS_LAYER, ProjectWidget
from napari_segflow.widgets.prompt import PromptWidget

EMBED_TIMEOUT_MS = 120_000
PETS = ["Abyssinian_11", "Abyssinian_13", "Abyssinian_7"]  # the three smallest photos
TAX = {
    "name": "pets",
    "classes": [
        {"id": 1, "name": "pet", "color": "#ff7f0e"},
        {"id": 2, "name": "background", "color": "#1f77b4"},
        {"id": 3, "name": "outline", "color": "#aaaaaa"},
    ],
}


@pytest.fixture(scope="module")
def models():
    from napari_segflow.core.segment import load_model
    from napari_segflow.widgets._torch import prepare_torch

    prepare_torch()
    return {"medsam-lite": load_model("medsam-lite")}


@pytest.fixture
def setup(tmp_path, shared_data):
    images = tmp_path / "images"
    images.mkdir()
    for s in PETS:
        os.symlink(shared_data / "pets_oxford" / "images" / f"{s}.jpg", images / f"{s}.jpg")
    tax = save_taxonomy(taxonomy_from_dict(TAX), tmp_path / "pets.yaml")
    return tmp_path, images, tax


def _trimap(shared_data, stem):
    return read_labels(shared_data / "pets_oxford" / "trimaps" / f"{stem}.png")


def _dock(viewer, qtbot, models):
    prompt = PromptWidget(viewer, models=models)
    w = ProjectWidget(viewer, models=models, autosave_ms=100)
    qtbot.addWidget(prompt)
    qtbot.addWidget(w)
    w.connect_prompt(prompt)
    return w, prompt


def test_annotate_next_previous_resume_and_review(
    make_napari_viewer, qtbot, models, setup, shared_data
):
    tmp, images, tax = setup
    viewer = make_napari_viewer()
    w, prompt = _dock(viewer, qtbot, models)
    w.create_project(tmp / "proj", images, tax, annotators=["ana"])
    assert w.annotator == "ana" and w.item.stem == PETS[0]  # opened the first of the queue
    assert w._list.count() == 3 and "in progress" in w._list.item(0).text()
    assert {str(k) for k in viewer.keymap} >= {KEYS["next"], KEYS["previous"]}
    labels = viewer.layers[LABELS_LAYER]

    # image 1: paint a stroke; the autosave writes it without anyone pressing save
    labels.selected_label = 2
    labels.paint((20, 20), 2)
    labels.paint((22, 24), 2)
    saved = w.project.labels_path(PETS[0], annotator="ana")
    qtbot.waitUntil(saved.is_file, timeout=5000)
    painted = np.asarray(labels.data).copy()
    assert (painted == 2).any()
    np.testing.assert_array_equal(read_labels(saved), painted)

    # the next image's embedding is computed in the background while ana works
    qtbot.waitUntil(lambda: w.embedded_next == PETS[1], timeout=EMBED_TIMEOUT_MS)
    in_memory = dict(models["medsam-lite"].cache._items)  # what the background left there
    w.done_and_next()
    assert w.item.stem == PETS[1]
    prompt.refresh_embedding()
    qtbot.waitUntil(lambda: prompt.ready, timeout=EMBED_TIMEOUT_MS)
    # the first click needs no embedding: the dock uses the very object embedded in the
    # background, served from memory (the model's last_cache_hit is shared with the next
    # background embedding, which may run meanwhile)
    emb = prompt.session.embedding
    assert emb is not None and in_memory.get(emb.key) is emb

    # image 2: a box around the pet, the model's proposal accepted into class "pet"
    tri = _trimap(shared_data, PETS[1])
    rows, cols = np.nonzero(tri == 1)
    prompt.set_class(1)
    prompt.set_box((rows.min(), cols.min(), rows.max(), cols.max()))
    qtbot.waitUntil(lambda: not prompt.predicting, timeout=EMBED_TIMEOUT_MS)  # a worker thread
    proposal = prompt.proposal
    assert proposal is not None
    iou = np.logical_and(proposal, tri == 1).sum() / np.logical_or(proposal, tri == 1).sum()
    assert iou > 0.5
    prompt.accept()
    labels = viewer.layers[LABELS_LAYER]
    accepted = np.asarray(labels.data).copy()
    np.testing.assert_array_equal(accepted == 1, proposal)
    assert (labels.metadata[PROVENANCE_KEY] == AI_CONFIRMED).sum() == proposal.sum()

    # Previous goes back to image 1 with its labels; Next returns to image 2 with the proposal
    w.previous_image()
    assert w.item.stem == PETS[0] and w.item.source == "saved"
    np.testing.assert_array_equal(viewer.layers[LABELS_LAYER].data, painted)
    w.next_image()
    assert w.item.stem == PETS[1] and w.item.source == "saved"
    np.testing.assert_array_equal(viewer.layers[LABELS_LAYER].data, accepted)

    # one more stroke, autosaved; then napari "dies" (no close, no last save)
    labels = viewer.layers[LABELS_LAYER]
    labels.paint((3, 3), 3)
    last = np.asarray(labels.data).copy()
    path = w.project.labels_path(PETS[1], annotator="ana")
    qtbot.waitUntil(lambda: np.array_equal(read_labels(path), last), timeout=5000)
    w._autosave.stop()

    viewer2 = make_napari_viewer()
    w2, _ = _dock(viewer2, qtbot, models)
    w2.open_project(tmp / "proj")
    assert w2.item.stem == PETS[1]  # resumed where ana was
    np.testing.assert_array_equal(viewer2.layers[LABELS_LAYER].data, last)
    prov = viewer2.layers[LABELS_LAYER].metadata[PROVENANCE_KEY]
    assert (prov == AI_CONFIRMED).sum() == (proposal & (last == 1)).sum()
    w2.done_and_next()
    qtbot.waitUntil(lambda: (w2.last_progress or {}).get("done") == 2, timeout=10000)
    assert w2.last_progress["class_pixels"]["pet"] == (last == 1).sum()
    with open_project(tmp / "proj") as p:
        st = p.status()
    assert st["status"][DONE] == 2 and st["status"][IN_PROGRESS] == 1
    assert st["annotators"]["ana"]["production"][DONE] == 2

    # QA: a reviewer draws a batch of everything finished, corrects and accepts one, rejects one
    w2.set_annotator("rev")
    w2._qa_rate.value = 1.0
    assert w2.draw_qa_batch() == 1
    assert w2.mode == "qa" and w2.item.stem == PETS[0] and w2.item.source == "annotator"
    rev = viewer2.layers[LABELS_LAYER]
    rev.paint((100, 100), 1)
    corrected = np.asarray(rev.data).copy()
    w2._accept.click()
    assert w2.item.stem == PETS[1]
    w2._reject.click()
    assert w2.item is None  # nothing left to review
    with open_project(tmp / "proj") as p:
        st = p.status()["status"]
        (batch,) = p.qa_batches()
    assert st[ACCEPTED] == 1 and st[REJECTED] == 1
    assert batch["report"]["reviewed"] == 2
    np.testing.assert_array_equal(
        read_labels(tmp / "proj" / "labels" / "rev" / "qa" / f"{PETS[0]}.png"), corrected
    )
    # pet IoU: image 2 unchanged, the reviewer's new pet pixels on image 1 were missed by ana
    pet = (last == 1).sum() / ((last == 1).sum() + (corrected == 1).sum())
    assert batch["report"]["overall"]["per_class_iou"]["pet"] == pytest.approx(pet, abs=1e-6)
    # the dock shows the batch's IoU per class (the trend over batches)
    assert w2._qa_trend.text().splitlines()[1].startswith("#1 (2 reviewed)")
    assert f"pet {pet:.2f}" in w2._qa_trend.text()
    for dock in (w, w2):  # no background embedding may outlive the viewers
        qtbot.waitUntil(
            lambda d=dock: d._embed_worker is None and not d._progress_workers,
            timeout=EMBED_TIMEOUT_MS,
        )


def test_click_to_segment_dock_in_the_same_window_is_connected(
    make_napari_viewer, qtbot, models, setup
):
    tmp, images, tax = setup
    viewer = make_napari_viewer()
    prompt = PromptWidget(viewer, models=models)
    w = ProjectWidget(viewer)
    viewer.window.add_dock_widget(prompt, name="Click to segment")
    viewer.window.add_dock_widget(w, name="Project")
    w.create_project(tmp / "proj", images, tax, annotators=["ana"])
    assert w.prompt is prompt and w._models is models  # one model for both docks
    assert prompt.labels_layer is viewer.layers[LABELS_LAYER]
    assert prompt.image_layer is w.image_layer
    w.next_image()
    assert prompt.labels_layer is viewer.layers[LABELS_LAYER] and w.item.stem == PETS[1]
    qtbot.waitUntil(
        lambda: prompt.ready and w._embed_worker is None and not w._progress_workers,
        timeout=EMBED_TIMEOUT_MS,
    )


def test_calibration_mode_flags_a_class_and_resumes_in_that_mode(
    make_napari_viewer, qtbot, setup, shared_data
):
    tmp, images, tax = setup
    gold = tmp / "gold"
    gold.mkdir()
    os.symlink(shared_data / "pets_oxford" / "trimaps" / f"{PETS[0]}.png", gold / f"{PETS[0]}.png")
    from napari_segflow.core.project import create_project

    create_project(
        tmp / "proj", images=images, taxonomy=tax, gold=gold, annotators=["ana"]
    ).close()
    viewer = make_napari_viewer()
    w = ProjectWidget(viewer, model_name=None)
    qtbot.addWidget(w)
    w.open_project(tmp / "proj")
    w.set_mode("calibration")
    assert w.item.stem == PETS[0] and w._list.count() == 1  # only the gold image
    tri = _trimap(shared_data, PETS[0])
    labels = viewer.layers[LABELS_LAYER]
    labels.data_setitem(np.nonzero(tri == 1), 1)  # ana labels the pet, nothing else
    w.done_and_next()
    assert w.item is None  # the gold set is done
    # Cancel pressed while the gold image is scored: nothing stored, the buttons come back
    w._calib_progress = lambda done, total: w._calib_cancel.set()  # what Cancel does
    w.run_calibration()
    assert w._cancel_calib.isEnabled() and not w._calibrate.isEnabled()
    qtbot.waitUntil(lambda: w._calib_worker is None, timeout=20000)
    assert w.calibration_cancelled and not (tmp / "proj" / "calibration.json").exists()
    assert w._calibrate.isEnabled() and not w._cancel_calib.isEnabled()
    del w._calib_progress
    w._calib_cancel.clear()
    w._cancel_calib.setEnabled(True)
    w._cancel_calib.click()
    assert w._calib_cancel.is_set()  # the button is wired to the same event
    w._update_buttons()
    w.run_calibration()
    qtbot.waitUntil(lambda: "retrain" in w._flags.text(), timeout=20000)
    assert "'background'" in w._flags.text() and "'pet'" not in w._flags.text()
    with open_project(tmp / "proj") as p:
        st = p.status()
    assert st["annotators"]["ana"]["calibration"] == {DONE: 1}
    assert st["status"]["todo"] == 3  # production untouched
    qtbot.waitUntil(lambda: not w._progress_workers, timeout=10000)
    # a new window resumes in calibration mode, where ana was
    viewer2 = make_napari_viewer()
    w2 = ProjectWidget(viewer2, model_name=None)
    qtbot.addWidget(w2)
    w2.open_project(tmp / "proj")
    assert w2.mode == "calibration" and "'background'" in w2._flags.text()
    qtbot.waitUntil(lambda: not w2._progress_workers, timeout=10000)
