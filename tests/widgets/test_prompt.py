"""The click-to-segment widget in a real viewer, with the real LiteMedSAM weights."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_segflow.core.provenance import AI_CONFIRMED, AI_PENDING, HUMAN, PROVENANCE_KEY
from napari_segflow.core.taxonomy import load_preset
from napari_segflow.layers import commit_mask, labels_layer_kwargs, new_labels_data
from napari_segflow.widgets.prompt import (
    BOX_NAME,
    POINTS_NAME,
    PREVIEW_NAME,
    PromptWidget,
    _camera,
)

EMBED_TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def models():
    """One LiteMedSAM for the whole module (loading it takes seconds on a CPU)."""
    from napari_segflow.core.segment import load_model
    from napari_segflow.widgets._torch import prepare_torch

    prepare_torch()  # as the widget does before its first embedding
    return {"medsam-lite": load_model("medsam-lite")}


@pytest.fixture(scope="module")
def nuclei(shared_data):
    """A 160x160 crop of the DSB2018 nuclei image and its instance mask."""
    img = tifffile.imread(shared_data / "nuclei_dsb2018" / "img2d.tif")[:160, :160]
    inst = tifffile.imread(shared_data / "nuclei_dsb2018" / "mask2d.tif")[:160, :160]
    return img, inst


def _largest_instance(inst):
    ids, counts = np.unique(inst[inst > 0], return_counts=True)
    return inst == ids[np.argmax(counts)]


def _bbox(mask, margin=2):
    rows, cols = np.nonzero(mask)
    h, w = mask.shape
    return (
        max(rows.min() - margin, 0),
        max(cols.min() - margin, 0),
        min(rows.max() + margin, h - 1),
        min(cols.max() + margin, w - 1),
    )


def _drag(layer, start, end, modifiers=()):
    """Press at ``start``, move to and release at ``end`` (world coordinates) on ``layer``."""
    from napari.utils._proxies import ReadOnlyWrapper
    from napari.utils.interactions import (
        mouse_move_callbacks,
        mouse_press_callbacks,
        mouse_release_callbacks,
    )

    class _Event:
        def __init__(self, kind, position):
            self.type = kind
            self.position = tuple(float(v) for v in position)
            self.pos = np.asarray(position[:2], dtype=float) * 4  # canvas pixels, far apart
            self.modifiers = tuple(modifiers)
            self.is_dragging = kind == "mouse_move"
            self.handled = False
            self.view_direction = None
            self.dims_displayed = [0, 1]

    steps = [("mouse_press", start, mouse_press_callbacks)]
    if tuple(end) != tuple(start):
        steps.append(("mouse_move", end, mouse_move_callbacks))
    steps.append(("mouse_release", end, mouse_release_callbacks))
    for kind, position, run in steps:
        run(layer, ReadOnlyWrapper(_Event(kind, position), exceptions=("handled",)))


def _iou(a, b):
    return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()


def _settle(qtbot, w):
    """Wait until the proposals asked for so far are computed (in the widget's worker thread)."""
    qtbot.waitUntil(lambda: not w.predicting, timeout=EMBED_TIMEOUT_MS)


def _widget(viewer, qtbot, models, image, labels):
    w = PromptWidget(viewer, models=models)
    qtbot.addWidget(w)
    w.set_layers(image=image, labels=labels)
    w.refresh_embedding()
    qtbot.waitUntil(lambda: w.ready, timeout=EMBED_TIMEOUT_MS)
    return w


@pytest.fixture
def nuclei_setup(make_napari_viewer, qtbot, models, nuclei):
    img, inst = nuclei
    tax = load_preset("nuclei")
    viewer = make_napari_viewer()
    image = viewer.add_image(img, name="nuclei")
    labels = viewer.add_labels(
        new_labels_data(img.shape, tax), name="nuclei labels", **labels_layer_kwargs(tax)
    )
    w = _widget(viewer, qtbot, models, image, labels)
    w.settle = lambda: _settle(qtbot, w)
    return viewer, w, labels, _largest_instance(inst)


def test_box_proposal_accept_undo_and_provenance(nuclei_setup):
    viewer, w, labels, nucleus = nuclei_setup
    assert {POINTS_NAME, BOX_NAME, PREVIEW_NAME} <= {lay.name for lay in viewer.layers}
    w.set_class(1)
    w.set_box(_bbox(nucleus))
    w.settle()
    proposal = w.proposal
    assert proposal is not None and proposal.any()
    assert _iou(proposal, nucleus) > 0.6  # the real model segments the real nucleus
    preview = viewer.layers[PREVIEW_NAME]
    np.testing.assert_array_equal(preview.data == 1, proposal)
    assert not labels.data.any()  # nothing written before an explicit accept

    before = labels.data.copy()
    w.accept()
    np.testing.assert_array_equal(labels.data == 1, proposal)  # exactly the proposal's pixels
    np.testing.assert_array_equal(labels.data[~proposal], before[~proposal])
    prov = labels.metadata[PROVENANCE_KEY]
    np.testing.assert_array_equal(prov == AI_CONFIRMED, proposal)
    assert w.proposal is None and not preview.data.any()  # accepted: prompts cleared
    assert len(viewer.layers[BOX_NAME].data) == 0

    # a person paints over part of the accepted region: those pixels become human
    r, c = np.argwhere(proposal)[len(np.argwhere(proposal)) // 2]
    labels.brush_size = 3
    labels._begin_stroke()
    labels.paint((r, c), 2)
    labels._commit_stroke()
    painted = labels.data == 2
    assert painted.any()
    assert (prov[painted] == HUMAN).all()
    assert (prov[proposal & ~painted] == AI_CONFIRMED).all()

    # Ctrl+Z / Ctrl+Shift+Z as napari binds them on Labels layers
    from app_model.types import KeyBinding

    ctrl_z = type(labels).class_keymap[KeyBinding.from_str("Ctrl-Z")]
    ctrl_shift_z = type(labels).class_keymap[KeyBinding.from_str("Ctrl-Shift-Z")]
    ctrl_z(labels)  # the stroke
    ctrl_z(labels)  # the accept
    np.testing.assert_array_equal(labels.data, before)
    assert not prov.any()
    ctrl_shift_z(labels)  # redo the accept
    np.testing.assert_array_equal(labels.data == 1, proposal)
    np.testing.assert_array_equal(prov == AI_CONFIRMED, proposal)


def test_gated_class_refuses_and_offers_painting(nuclei_setup):
    viewer, w, labels, nucleus = nuclei_setup
    tax = load_preset("nuclei").with_ai_assist({"debris": False})
    w.set_class(2)
    assert w._gate.text() == ""
    # calibration turns AI assistance off for debris: the widget follows the layer's taxonomy
    labels.metadata = {**labels.metadata, **labels_layer_kwargs(tax)["metadata"]}
    assert "ai_assist" in w._gate.text()
    w.set_box(_bbox(nucleus))
    w.settle()
    assert w.proposal is None
    assert w.accept() is None
    assert not labels.data.any()
    w.paint_manually()
    assert labels.mode == "paint" and labels.selected_label == 2
    w.set_class(1)  # an assisted class works again with the same box
    w.settle()
    assert w.proposal is not None and w.proposal.any()


def test_clicks_refine_and_shift_click_is_negative(nuclei_setup):
    viewer, w, labels, nucleus = nuclei_setup
    w.set_class(1)
    w.set_box(_bbox(nucleus, margin=6))
    w.settle()
    first = w.proposal.copy()
    # several candidates: C cycles them and the preview follows
    w._multimask.setChecked(True)
    w.settle()
    assert len(w.candidates) == 3
    shown = w.session.candidate
    w.next_candidate()
    assert w.session.candidate == (shown + 1) % 3
    preview = viewer.layers[PREVIEW_NAME]
    np.testing.assert_array_equal(preview.data == 1, w.candidates[w.session.candidate])
    w._multimask.setChecked(False)
    w.settle()

    w.use_clicks()
    points = viewer.layers[POINTS_NAME]
    inside = np.argwhere(nucleus)[len(np.argwhere(nucleus)) // 2]
    outside = np.argwhere(~nucleus & first)
    outside = outside[0] if len(outside) else np.argwhere(~nucleus)[0]
    _drag(points, tuple(inside), tuple(inside))  # a plain click: positive
    _drag(points, tuple(outside), tuple(outside), modifiers=("Shift",))  # negative
    np.testing.assert_array_equal(points.data, [inside, outside])
    assert points.features["positive"].tolist() == [True, False]
    pts, lab, _box = w.prompts()
    np.testing.assert_array_equal(pts, [inside, outside])
    assert lab.tolist() == [1, 0]
    w.settle()
    assert w.proposal is not None  # re-predicted with the cached embedding and logits
    # the widget's keys are bound on its layers: N toggles polarity, X rejects
    from app_model.types import KeyBinding

    assert not w._negative.isChecked()
    points.keymap[KeyBinding.from_str("N")](points)
    assert w._negative.isChecked()
    points.keymap[KeyBinding.from_str("X")](points)
    assert w.proposal is None and len(points.data) == 0


def test_predictions_run_off_the_gui_thread_and_a_burst_ends_with_the_last_clicks(
    nuclei_setup, qtbot, monkeypatch
):
    import threading

    viewer, w, labels, nucleus = nuclei_setup
    model = w.session.model
    calls = []  # (thread, number of clicks, mask_input, result) of every model call
    real = model.predict

    def recording(emb, **kw):
        points = kw.get("points")
        res = real(emb, **kw)
        n = 0 if points is None else len(points)
        calls.append((threading.get_ident(), n, kw.get("mask_input"), res))
        return res

    monkeypatch.setattr(model, "predict", recording)
    # the model's own answer: two identical refined calls were seen to differ by a few pixels
    # (the graph cut's k-means start draws from OpenCV's random state)
    w._refine.setChecked(False)
    w.settle()
    w.set_class(1)
    box = _bbox(nucleus, margin=6)
    w.set_box(box)
    assert w.predicting and w.proposal is None  # the GUI thread went on; the model runs
    w.settle()
    assert w.proposal is not None

    # a burst of five clicks, faster than the model answers (no events run between them)
    inside = np.argwhere(nucleus)
    clicks = [tuple(inside[i]) for i in np.linspace(0, len(inside) - 1, 5).astype(int)]
    for rc in clicks:
        w.add_point(rc)
    w.settle()
    main = threading.get_ident()
    assert calls and all(c[0] != main for c in calls)
    # the first click's call ran, the next four waited as one: two calls, the last with all 5
    assert [c[1] for c in calls] == [0, 1, 5]
    pts, lab, last_box = w.prompts()
    assert len(pts) == 5 and last_box == box
    # it refined the answer shown before it (the one-click answer), as one click at a time does
    previous = calls[1][3].logits
    np.testing.assert_array_equal(calls[2][2], previous)
    expected = real(
        w.session.embedding, points=pts, point_labels=lab, box=box, mask_input=previous
    )
    np.testing.assert_array_equal(w.proposal, expected.mask)
    np.testing.assert_array_equal(viewer.layers[PREVIEW_NAME].data == 1, expected.mask)

    # accepting while a prediction runs writes what is shown; the late answer is dropped
    w.add_point(clicks[0], positive=False)
    assert w.predicting
    on_show = w.proposal.copy()
    index = w.accept()
    assert index is not None
    w.settle()
    assert w.proposal is None and not viewer.layers[PREVIEW_NAME].data.any()
    np.testing.assert_array_equal(labels.data == 1, on_show)


def test_pending_regions_listed_confirmed_and_rejected(nuclei_setup):
    viewer, w, labels, nucleus = nuclei_setup
    other = np.zeros_like(nucleus)
    other[150:156, 150:158] = True
    commit_mask(labels, nucleus, 1, provenance=AI_PENDING)
    commit_mask(labels, other, 2, provenance=AI_PENDING)
    w.refresh_pending()
    assert w._pending.count() == 2
    assert len(w.regions) == 2 and w.regions[1].area == 48
    # pending pixels are outlined in their own layer, so they never look like confirmed labels
    np.testing.assert_array_equal(w.pending_layer.data.astype(bool), nucleus | other)
    assert w.pending_layer in viewer.layers and w.pending_layer.contour == 1
    w.go_to_pending(1)
    assert w._pending.currentRow() == 1
    np.testing.assert_allclose(_camera(viewer).center[-2:], w.regions[1].centroid)
    prov = labels.metadata[PROVENANCE_KEY]
    w.confirm_pending(1)
    assert (prov[other] == AI_CONFIRMED).all()
    assert w._pending.count() == 1
    np.testing.assert_array_equal(w.pending_layer.data.astype(bool), nucleus)
    w.reject_pending(0)
    assert not labels.data[nucleus].any()
    assert w._pending.count() == 0


def test_volume_current_slice_any_axis_order(make_napari_viewer, qtbot, models, shared_data):
    import nibabel as nib

    vol = np.asarray(nib.load(shared_data / "abdomen_mr" / "example_mr_sm.nii.gz").dataobj)
    seg = np.asarray(nib.load(shared_data / "abdomen_mr" / "example_seg_mr.nii.gz").dataobj)
    z = 10  # slices run along the last axis; display axes (0, 1), slider on axis 2
    organ_id = np.bincount(seg[:, :, z][seg[:, :, z] > 0].ravel()).argmax()
    organ = seg[:, :, z] == organ_id
    viewer = make_napari_viewer()
    image = viewer.add_image(vol, name="mr")
    labels = viewer.add_labels(np.zeros(vol.shape, np.uint8), name="mr labels")
    viewer.dims.order = (2, 0, 1)
    viewer.dims.set_point(2, z)
    w = _widget(viewer, qtbot, models, image, labels)
    w.set_class(5)
    # draw the box with the mouse on the widget's Shapes layer, as a person would
    w.use_box()
    box_layer = viewer.layers[BOX_NAME]
    r0, c0, r1, c1 = _bbox(organ)
    _drag(box_layer, (r0 + 5, c0 + 5, z), (r1 - 5, c1 - 5, z))
    _drag(box_layer, (r0, c0, z), (r1, c1, z))  # a second box replaces the first
    assert len(box_layer.data) == 1
    assert w.prompts()[2] == (r0, c0, r1, c1)
    _settle(qtbot, w)
    proposal = w.proposal
    assert proposal is not None and proposal.shape == organ.shape
    assert _iou(proposal, organ) > 0.5
    w.accept()
    np.testing.assert_array_equal(labels.data[:, :, z] == 5, proposal)
    assert np.count_nonzero(labels.data) == proposal.sum()  # only the current slice

    # move on twice before the first embedding can finish: only the last slice's is kept
    viewer.dims.set_point(2, z + 1)
    w.refresh_embedding()
    assert w.proposal is None and not w.ready
    viewer.dims.set_point(2, z + 2)
    w.refresh_embedding()
    qtbot.waitUntil(lambda: w.ready, timeout=EMBED_TIMEOUT_MS)
    qtbot.wait(200)  # let a late result of the abandoned slice arrive, if it does
    # the slice embedded with the volume's one window (a cache hit)
    expected = models["medsam-lite"].embed(vol[:, :, z + 2], window=w.current_window()).key
    assert w.session.embedding.key == expected

    # cancel: the embedding still finishes in its thread but its result is dropped
    viewer.dims.set_point(2, z + 3)
    w.refresh_embedding()
    w.cancel_embedding()
    qtbot.waitUntil(lambda: w._worker is None, timeout=EMBED_TIMEOUT_MS)
    assert not w.ready and w.session.embedding.key == expected


def test_session_refines_with_previous_logits_and_restarts_on_a_new_box(models, nuclei):
    from napari_segflow.core.segment.prompting import PromptSession

    img, inst = nuclei
    model = models["medsam-lite"]
    nucleus = _largest_instance(inst)
    box = _bbox(nucleus, margin=8)
    s = PromptSession(model)
    s.want("crop")
    s.offer("crop", model.embed(img))
    first = s.predict([], [], box)
    np.testing.assert_array_equal(first.mask, model.predict(s.embedding, box=box).mask)
    click = np.argwhere(nucleus)[0][None].astype(float)
    second = s.predict(click, [1], box)  # same box: the previous logits go back in
    expected = model.predict(
        s.embedding, points=click, point_labels=[1], box=box, mask_input=first.logits
    )
    np.testing.assert_array_equal(second.mask, expected.mask)
    # the box removed, clicks alone: they edit the previous answer through its logits
    third = s.predict(click, [1], None)
    expected = model.predict(s.embedding, points=click, point_labels=[1], mask_input=second.logits)
    np.testing.assert_array_equal(third.mask, expected.mask)
    # a click with neither box nor earlier logits finds the object under it
    alone = model.predict(s.embedding, points=click, point_labels=[1])
    r, c = (int(v) for v in click[0])
    assert alone.mask[r, c] and (alone.mask & nucleus).sum() > 0.5 * nucleus.sum()
    other = _bbox(nucleus, margin=3)
    fourth = s.predict(click, [1], other)  # a new box starts afresh
    fresh = model.predict(s.embedding, points=click, point_labels=[1], box=other)
    np.testing.assert_array_equal(fourth.mask, fresh.mask)
    assert s.predict([], [], None) is None and s.proposal is None


def test_empty_viewer_and_no_proposal_are_handled_without_errors(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    w = PromptWidget(viewer)
    qtbot.addWidget(w)
    assert w._model.value == "medsam-lite"  # the offline default is preselected
    assert w.accept() is None and w.predict() is None and not w.ready
    w.reject()
    w.next_candidate()
    labels = viewer.add_labels(np.zeros((8, 8), np.uint8))
    assert w.labels_layer is labels and w.accept() is None
    assert not labels.data.any()


def test_one_intensity_window_per_volume(make_napari_viewer, qtbot, models, shared_data):
    """CT in Hounsfield units gets the soft-tissue window; other volumes one fixed window."""
    from napari_segflow.core.io.nifti import read_nifti
    from napari_segflow.core.segment import WINDOW_PRESETS

    viewer = make_napari_viewer()
    w = PromptWidget(viewer, models=models)
    qtbot.addWidget(w)
    rng = np.random.default_rng(0)
    ct = rng.integers(-1024, 1500, size=(6, 40, 40)).astype(np.int16)
    ct_layer = viewer.add_image(ct, name="ct")
    labels = viewer.add_labels(np.zeros(ct.shape, np.uint8))
    w.set_layers(image=ct_layer, labels=labels)
    assert w.current_window() == WINDOW_PRESETS["ct-soft-tissue"]
    w._window.value = "ct-bone"
    assert w.current_window() == WINDOW_PRESETS["ct-bone"]

    mr = read_nifti(shared_data / "abdomen_mr" / "example_mr_sm.nii.gz").data
    mr_layer = viewer.add_image(mr.transpose(2, 1, 0), name="mr")
    w.set_layers(image=mr_layer, labels=viewer.add_labels(np.zeros(mr_layer.data.shape, np.uint8)))
    w._window.value = "auto"
    win = w.current_window()
    lo, hi = np.percentile(mr, (0.5, 99.5))
    assert win.bounds[0] == pytest.approx(lo, abs=2) and win.bounds[1] == pytest.approx(hi, abs=2)
    # the window is the volume's: moving through the slices keeps it
    viewer.dims.set_point(0, 3)
    assert w.current_window() is win
    # the model sees the volume window: a slice's embedding equals embedding it with that window
    w.refresh_embedding()
    qtbot.waitUntil(lambda: w.ready, timeout=EMBED_TIMEOUT_MS)
    plane = w._current_plane()
    direct = models["medsam-lite"].embed(w._image_plane(plane), window=win)
    assert w.session.embedding.key == direct.key  # the key hashes pixels and preprocessing
    per_slice = models["medsam-lite"].embed(w._image_plane(plane))
    assert per_slice.key != direct.key

    rgb = viewer.add_image(rng.integers(0, 255, (30, 30, 3), dtype=np.uint8), rgb=True)
    w.set_layers(image=rgb, labels=viewer.add_labels(np.zeros((30, 30), np.uint8)))
    assert w.current_window() is None  # 8-bit pictures go in as they are
