"""Pre-labelling core: helpers on hand-made arrays, refinement with real LiteMedSAM weights."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import tifffile

from napari_segflow.core.prelabel.evaluate import polygon_mask, simplify_polygon
from napari_segflow.core.prelabel.refine import (
    ObjectPrompt,
    RefineOptions,
    _full_logits,
    band_mask,
    coarse_mask_logits,
    mask_iou,
    objects_from_labels,
    prelabel_image,
)
from napari_segflow.core.provenance import AI_PENDING, HUMAN
from napari_segflow.core.taxonomy import load_preset


@pytest.fixture(scope="module")
def model():
    from napari_segflow.core.segment import load_model

    return load_model("medsam-lite", device="cpu")


@pytest.fixture(scope="module")
def nuclei(shared_data):
    img = tifffile.imread(shared_data / "nuclei_dsb2018" / "img2d.tif")
    inst = tifffile.imread(shared_data / "nuclei_dsb2018" / "mask2d.tif")
    return img[:128, :128], inst[:128, :128]


def _polygons(inst: np.ndarray, class_id: int = 1, min_area: int = 16) -> np.ndarray:
    out = np.zeros(inst.shape, np.uint8)
    for i in np.unique(inst)[1:]:
        m = inst == i
        if m.sum() >= min_area:
            out[polygon_mask(simplify_polygon(m, 15), inst.shape)] = class_id
    return out


# ------------------------------------------------------------------------ helpers
def test_band_mask_is_a_ring_around_the_boundary():
    m = np.zeros((20, 20), bool)
    m[5:15, 5:15] = True
    band = band_mask(m, 2)
    assert band[5:7, 5:15].all() and band[3:5, 5:15].all()  # inside and outside the edge
    assert not band[7:13, 7:13].any()  # deep inside
    assert not band[:3].any()  # far outside
    assert not band_mask(m, 0).any()


def test_objects_from_labels_splits_components_per_class_and_skips_unlabelled():
    lab = np.zeros((10, 10), np.uint8)
    lab[1:3, 1:3] = 1
    lab[6:9, 6:9] = 1
    lab[1:3, 6:9] = 2
    lab[3, 3] = 1  # touches the first square diagonally: one 8-connected object
    objs = objects_from_labels(lab)
    assert [(o.class_id, o.bbox()) for o in objs] == [
        (1, (1, 1, 3, 3)),
        (1, (6, 6, 8, 8)),
        (2, (1, 6, 2, 8)),
    ]
    assert len(objects_from_labels(lab, connectivity=1)) == 4
    assert sum(int(o.mask.sum()) for o in objs) == int((lab > 0).sum())


def test_coarse_mask_logits_follow_the_model_geometry(model):
    """Decoding the logits the way the model decodes its own gives the coarse mask back."""
    import torch
    import torch.nn.functional as F

    h, w = 60, 100  # not square: resized to 154x256, padded at the bottom
    m = np.zeros((h, w), bool)
    m[10:40, 55:90] = True
    logits = coarse_mask_logits(m, model, magnitude=8.0)
    assert logits.shape == (1, 256, 256)
    nh = round(h * 256 / w)
    assert (logits[0, nh:] < 0).all()  # padding is "outside"
    back = F.interpolate(
        torch.from_numpy(logits[None, :, :nh, :]),
        size=(h, w),
        mode="bilinear",
        align_corners=False,
    )[0, 0].numpy()
    assert mask_iou(back > 0, m) > 0.97
    assert coarse_mask_logits(m, object()) is None  # unknown backend: no mask prompt


def test_full_resolution_logits_reproduce_the_models_mask(model, nuclei):
    img = nuclei[0][:50, :90]
    res = model.predict(model.embed(img), box=(10, 20, 35, 60))
    full = _full_logits(model, res.logits, img.shape)
    assert full.shape == img.shape
    assert np.array_equal(full > 0, res.mask)


# --------------------------------------------------------------------- refinement
def test_refinement_stays_in_the_band_and_marks_changes_pending(model, nuclei):
    img, inst = nuclei
    coarse = _polygons(inst)
    # looser than the defaults so that the model does change pixels here
    opts = RefineOptions(min_iou=0.8, confidence=2.0, min_width=1, edge_check=False)
    res = prelabel_image(img, model, coarse=coarse, options=opts)
    changed = res.labels != coarse
    # provenance marks exactly the pixels the model changed
    assert np.array_equal(res.provenance == AI_PENDING, changed)
    assert set(np.unique(res.provenance)) <= {HUMAN, AI_PENDING}
    assert changed.any(), "the model changed nothing at all"
    # every change lies within the widest allowed band of the coarse boundary
    assert not (changed & ~band_mask(coarse > 0, opts.max_band_px)).any()
    # flagged objects keep their coarse pixels exactly
    for o, obj in zip(res.objects, objects_from_labels(coarse), strict=True):
        if o.flagged:
            assert o.status == "kept" and o.iou_coarse < opts.min_iou and o.reason
            assert (res.labels[obj.mask] == 1).all()
        else:
            assert o.status == "refined" and o.iou_coarse >= opts.min_iou
    assert sum(o.changed for o in res.objects) == int(changed.sum())
    # a lower confidence bar lets the model change more pixels
    loose = replace(opts, confidence=0.0)
    assert (prelabel_image(img, model, coarse=coarse, options=loose).labels != coarse).sum() > (
        changed.sum()
    )


def test_strict_agreement_keeps_every_coarse_region_and_flags_it(model, nuclei):
    img, inst = nuclei
    coarse = _polygons(inst)
    opts = RefineOptions(min_iou=1.0, confidence=2.0, min_width=1, edge_check=False)
    res = prelabel_image(img, model, coarse=coarse, options=opts)
    assert np.array_equal(res.labels, coarse)
    assert not res.provenance.any()
    refined = [o for o in res.objects if o.status == "refined"]
    assert all(o.changed == 0 for o in refined)  # only objects the model did not touch pass
    assert len(res.flagged) == len(res.objects) - len(refined) > 0


def test_classes_without_ai_assist_are_copied_untouched(model, nuclei):
    img, inst = nuclei
    tax = load_preset("nuclei").with_ai_assist({"debris": False})
    coarse = _polygons(inst)
    ids = [i for i in np.unique(inst)[1:] if (inst == i).sum() >= 16]
    debris = np.isin(inst, ids[::2]) & (coarse > 0)
    coarse[debris] = 2
    res = prelabel_image(img, model, coarse=coarse, taxonomy=tax)
    assert res.copied_classes == (2,)
    assert (res.labels[coarse == 2] == 2).all()
    assert not (res.provenance[coarse == 2]).any()
    copied = [o for o in res.objects if o.class_id == 2]
    assert copied and all(o.status == "copied" and o.changed == 0 for o in copied)


def test_box_prompt_without_mask_paints_only_unlabelled_pixels(model, nuclei):
    img, inst = nuclei
    ids = [i for i in np.unique(inst)[1:] if (inst == i).sum() >= 80]
    target = inst == ids[0]
    rows, cols = np.nonzero(target)
    box = (rows.min(), cols.min(), rows.max(), cols.max())
    res = prelabel_image(
        img,
        model,
        prompts=[ObjectPrompt(1, box=box)],
        options=RefineOptions(min_score_new=0.0),
    )
    assert [o.status for o in res.objects] == ["added"]
    painted = res.labels == 1
    assert np.array_equal(painted, res.provenance == AI_PENDING)
    assert mask_iou(painted, target) > 0.5
    # a prompt the model is not trusted on is rejected, nothing painted
    res = prelabel_image(
        img, model, prompts=[ObjectPrompt(1, box=box)], options=RefineOptions(min_score_new=1.01)
    )
    assert res.objects[0].status == "rejected" and res.objects[0].flagged
    assert not res.labels.any()


def test_prelabel_image_refuses_bad_input(model):
    img = np.zeros((32, 32), np.uint8)
    with pytest.raises(ValueError, match="coarse labels or prompts"):
        prelabel_image(img, model)
    with pytest.raises(ValueError, match="do not match"):
        prelabel_image(img, model, coarse=np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="min_iou"):
        RefineOptions(min_iou=2)


def test_sam2_geometry_points_and_mask_prompt(nuclei):
    """SAM 2 (real code, random weights): square mask frame, clicks, full pipeline runs."""
    from napari_segflow.core.segment import load_model

    sam = load_model("sam2.1-tiny", pretrained=False, device="cpu")
    img, inst = nuclei
    crop = img[:40, :70]
    res = sam.predict(sam.embed(crop), box=(5, 5, 30, 50))
    assert np.array_equal(_full_logits(sam, res.logits, crop.shape) > 0, res.mask)
    coarse = _polygons(inst[:40, :70])
    out = prelabel_image(crop, sam, coarse=coarse)
    assert out.labels.shape == crop.shape
    # whatever random weights say, pixels outside every band never change
    outside = ~band_mask(coarse > 0, RefineOptions().max_band_px)
    assert np.array_equal(out.labels[outside], coarse[outside])
