"""Snapping coarse polygons to the picture: never below the polygons, clearly above on photos.

Real data only: pets_oxford photographs (15-vertex polygons of the pet, scored against the
trimap's outline and, the usual way, with the trimap's unknown band ignored), the same photographs
with each pet reshaped to be its polygon (exact polygons on photographs), SpaceNet building
footprints (already exact polygons), DSB 2018 nuclei and abdomen MR slices (grey pictures), the
photographs with crisp outlines (sharp pictures) and with 25-vertex polygons as their truths. ``benchmarks/bench_prelabel_quality.py`` prints the table.
"""

from __future__ import annotations

import cv2
import nibabel as nib
import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from napari_segflow.core.prelabel.evaluate import polygon_mask, simplify_polygon
from napari_segflow.core.prelabel.refine import grey_gradient, mask_iou
from napari_segflow.core.prelabel.snap import (
    SnapOptions,
    _on_edge,
    _on_edge_fraction,
    _outline,
    snap_labels,
)
from napari_segflow.core.provenance import AI_PENDING
from napari_segflow.core.taxonomy import ConflictRule, LabelClass, Taxonomy

PETS = 8  # the first pets of the manifest; about 0.3 s each


def pet_truth(tri: np.ndarray) -> np.ndarray:
    """The pet as drawn: the trimap's pet pixels plus the band pixels nearer the pet than the
    background (the band is drawn around the annotated outline), largest piece."""
    fg, bg = tri == 1, tri == 2
    near = ndi.distance_transform_edt(~fg) < ndi.distance_transform_edt(~bg)
    lab, _ = ndi.label(fg | ((tri == 3) & near))
    return lab == np.argmax(np.bincount(lab.ravel())[1:]) + 1


def coarse_polygons(inst: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, list]:
    coarse = np.zeros(inst.shape, np.uint8)
    kept = []
    for i in np.unique(inst)[1:]:
        m = inst == i
        if m.sum() >= 16:
            c = int(np.bincount(classes[m]).argmax())
            coarse[polygon_mask(simplify_polygon(m, 15), inst.shape)] = c
            kept.append((i, c))
    return coarse, kept


def scores(inst, classes, coarse, out, kept, valid=None):
    """Mean per-object IoU before and after, in each object's box grown by 3 px; only on
    ``valid`` pixels when given (the trimap's unknown band left out)."""
    before, after = [], []
    for i, c in kept:
        rows, cols = np.nonzero(inst == i)
        sl = (slice(max(rows.min() - 3, 0), rows.max() + 4),
              slice(max(cols.min() - 3, 0), cols.max() + 4))  # fmt: skip
        v = np.ones(inst[sl].shape, bool) if valid is None else valid[sl]
        t = (classes[sl] == c) & v
        before.append(mask_iou((coarse[sl] == c) & v, t))
        after.append(mask_iou((out[sl] == c) & v, t))
    return np.mean(before), np.mean(after)


@pytest.fixture(scope="module")
def pets(pet_photos):
    return [(img, pet_truth(tri).astype(np.int32), tri) for _, img, tri in pet_photos(PETS)]


def test_pets_snapped_clearly_above_the_polygons(pets):
    before, after, before_i, after_i = [], [], [], []
    for img, inst, tri in pets:
        coarse, kept = coarse_polygons(inst, inst)
        res = snap_labels(img, coarse)
        b, a = scores(inst, inst, coarse, res.labels, kept)
        before.append(b)
        after.append(a)
        # the usual score of Oxford pets: the trimap's unknown band ignored
        valid = (tri != 3) & ~((tri == 1) & (inst == 0))
        b, a = scores(inst, inst, coarse, res.labels, kept, valid)
        before_i.append(b)
        after_i.append(a)
        # the report tells the truth: changed pixels are exactly the AI-pending ones
        diff = int(np.count_nonzero(res.labels != coarse))
        assert diff == int(np.count_nonzero(res.provenance == AI_PENDING))
        assert diff == sum(o.changed for o in res.objects)
    # measured on these 8: polygons 0.9285, snapped 0.9454 (all 40 in the benchmark)
    assert np.mean(after) > np.mean(before) + 0.01, (np.mean(before), np.mean(after))
    assert np.mean(np.array(after) < np.array(before) - 0.01) <= 0.2
    # band ignored: polygons 0.9949, snapped 0.9980 (60 % of what the polygons miss)
    assert np.mean(after_i) > np.mean(before_i) + 0.002, (np.mean(before_i), np.mean(after_i))
    assert min(np.array(after_i) - np.array(before_i)) > -0.01  # worst measured: -0.0049


def recolour(img, pet, as_pet, as_background) -> np.ndarray:
    """``img`` with ``as_pet`` pixels taken from the nearest pet pixel and ``as_background``
    pixels from the nearest background pixel, both 3 px from the pet's outline."""
    _, near_pet = ndi.distance_transform_edt(~ndi.binary_erosion(pet, iterations=3),
                                             return_indices=True)  # fmt: skip
    _, near_bg = ndi.distance_transform_edt(ndi.binary_dilation(pet, iterations=3),
                                            return_indices=True)  # fmt: skip
    out = img.copy()
    for fill, near in ((as_pet, near_pet), (as_background, near_bg)):
        out[fill] = img[near[0][fill], near[1][fill]]
    return out


def reshape_to_polygon(img: np.ndarray, pet: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The photo with its pet reshaped to the pet's 15-vertex polygon: background inside the
    polygon filled from the nearest pet pixel, pet outside it from the nearest background pixel
    (:func:`recolour`). The polygon is then the object's true outline."""
    poly = polygon_mask(simplify_polygon(pet, 15), pet.shape)
    return recolour(img, pet, poly & ~pet, pet & ~poly), poly


def test_exact_polygons_on_photographs_are_never_lowered(pets):
    # the COCO-MVal case: the truth IS a polygon, and a cut would move it onto fur and clutter
    before, after, unchecked = [], [], []
    for img, inst, _ in pets:
        photo, poly = reshape_to_polygon(img, inst > 0)
        truth = poly.astype(np.int32)
        coarse, kept = coarse_polygons(truth, truth)
        res = snap_labels(photo, coarse)
        b, a = scores(truth, truth, coarse, res.labels, kept)
        assert a >= b, (b, a)
        before.append(b)
        after.append(a)
        assert all(o.status == "kept" and "edges" in o.reason for o in res.objects)
        off = snap_labels(photo, coarse, options=SnapOptions(max_on_edge=1.0))
        unchecked.append(scores(truth, truth, coarse, off.labels, kept)[1])
    # without the on-edge check the snap lowers these 8 from 0.9972 to 0.9826
    assert np.mean(unchecked) < np.mean(before) - 0.005, (np.mean(before), np.mean(unchecked))


def test_polygon_truths_on_photographs_are_not_lowered(pets):
    # the COCO way of drawing: the truth is a 25-vertex polygon along the pet on the untouched
    # photograph, straight across the fur's curves; the coarse input is its 15-vertex polygon
    before, after = [], []
    for img, inst, _ in pets:
        truth = polygon_mask(simplify_polygon(inst > 0, 25), inst.shape).astype(np.int32)
        coarse, kept = coarse_polygons(truth, truth)
        res = snap_labels(img, coarse)
        b, a = scores(truth, truth, coarse, res.labels, kept)
        before.append(b)
        after.append(a)
    # measured on these 8: polygons 0.9444, snapped 0.9463; worst pet -0.018
    assert np.mean(after) >= np.mean(before), (np.mean(before), np.mean(after))
    assert min(np.array(after) - np.array(before)) > -0.025


def crisp_outline(img: np.ndarray, pet: np.ndarray) -> np.ndarray:
    """The photo with the pixels within 3 px of the pet's outline replaced by the nearest pixel
    3 px away on the same side (:func:`recolour`): the colours step at the outline (a sharp
    picture)."""
    inner = pet & ~ndi.binary_erosion(pet, iterations=3)
    outer = ~pet & ndi.binary_dilation(pet, iterations=3)
    return recolour(img, pet, inner, outer)


def test_crisp_outlines_are_snapped_most_of_the_way(pets):
    # sharp pictures (the GrabCut-set case): corners the polygons cut are given back, and the
    # drawn sides that touch the outline only at their corners are not taken as exact
    before, after = [], []
    for img, inst, _ in pets:
        coarse, kept = coarse_polygons(inst, inst)
        res = snap_labels(crisp_outline(img, inst > 0), coarse)
        b, a = scores(inst, inst, coarse, res.labels, kept)
        before.append(b)
        after.append(a)
    # measured on these 8: polygons 0.9285, snapped 0.9604; worst pet -0.0031
    assert np.mean(after) > np.mean(before) + 0.025, (np.mean(before), np.mean(after))
    assert min(np.array(after) - np.array(before)) > -0.01


def test_on_edge_fraction_leaves_out_the_corners():
    # a disc drawn as a 9-gon with its corners just outside the disc: the outline lies on the
    # disc's edge for a tenth of its length (enough to be taken as exact), all of it at the corners
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:200, :200]
    disc = (yy - 100) ** 2 + (xx - 100) ** 2 <= 80**2
    noise = rng.integers(-20, 20, (200, 200, 3))
    img = (np.where(disc[..., None], 200, 40) + noise).astype(np.uint8)
    t = np.linspace(0, 2 * np.pi, 9, endpoint=False)
    drawn = polygon_mask(np.stack([100 + 81 * np.sin(t), 100 + 81 * np.cos(t)], 1), disc.shape)
    grad, line = grey_gradient(img), _outline(drawn)
    whole = np.count_nonzero(_on_edge(grad, drawn, line)) / np.count_nonzero(line)
    assert whole > SnapOptions().max_on_edge
    assert _on_edge_fraction(grad, drawn, line, 6.0) < 0.02
    out = snap_labels(img, drawn.astype(np.uint8))
    assert out.counts() == {"refined": 1}
    assert mask_iou(out.labels == 1, disc) > mask_iou(drawn, disc) + 0.02
    # a polygon drawn exactly along a square: its sides lie on the edge between the corners
    square = np.zeros_like(disc)
    square[40:160, 40:160] = True
    img = (np.where(square[..., None], 200, 40) + noise).astype(np.uint8)
    assert _on_edge_fraction(grey_gradient(img), square, _outline(square), 6.0) > 0.8
    assert snap_labels(img, square.astype(np.uint8)).counts() == {"kept": 1}


def test_small_objects_keep_their_outline(pets):
    # the pets shrunk to an eighth: 40-60 px across, where the snap lost IoU on every set
    img, inst, _ = pets[0]
    h, w = inst.shape
    size = (w // 8, h // 8)
    small = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    truth = cv2.resize((inst > 0).astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0.5
    coarse = polygon_mask(simplify_polygon(truth, 15), truth.shape).astype(np.uint8)
    area = int(np.count_nonzero(coarse))
    assert area < SnapOptions().min_area
    res = snap_labels(small, coarse)
    assert np.array_equal(res.labels, coarse)
    assert res.objects[0].status == "kept" and "too small" in res.objects[0].reason
    # below the minimum set by hand, it is cut
    cut = snap_labels(small, coarse, options=SnapOptions(min_area=area // 2))
    assert "too small" not in cut.objects[0].reason


def test_a_snap_that_barely_moves_the_outline_is_not_applied():
    rng = np.random.default_rng(0)
    img = rng.integers(90, 130, (96, 96, 3)).astype(np.uint8)
    img[16:80, 16:80] = rng.integers(0, 30, (64, 64, 3)) + np.array([200, 0, 0], np.uint8)
    rough = np.zeros((96, 96), np.uint8)
    rough[19:77, 19:77] = 1
    moved = snap_labels(img, rough)
    iou = moved.objects[0].iou_coarse
    assert moved.counts() == {"refined": 1} and 0.8 < iou < 0.99
    # the same snap judged too close to the drawn outline to be worth a change
    res = snap_labels(img, rough, options=SnapOptions(max_iou=iou - 0.01))
    assert np.array_equal(res.labels, rough)
    assert res.counts() == {"unchanged": 1} and "not moved" in res.objects[0].reason
    assert not res.objects[0].flagged


def _buildings(data):
    pan = tifffile.imread(data / "spacenet_atlanta" / "sample_geotiff.tif")
    fp = tifffile.imread(data / "spacenet_atlanta" / "sample_fp_mask_from_geojson.tif") > 0
    lab, _ = ndi.label(fp)
    return pan[:300, :300], lab[:300, :300], (lab[:300, :300] > 0).astype(np.int32)


def _nuclei(data):
    img = tifffile.imread(data / "nuclei_dsb2018" / "img2d.tif")[:160, :160]
    inst = tifffile.imread(data / "nuclei_dsb2018" / "mask2d.tif")[:160, :160]
    return img, inst, (inst > 0).astype(np.int32)


def _organs(data):
    mr = np.asarray(nib.load(data / "abdomen_mr" / "example_mr_sm.nii.gz").dataobj)
    seg = np.asarray(nib.load(data / "abdomen_mr" / "example_seg_mr.nii.gz").dataobj)
    organs = seg[:, :, 19].astype(np.int32)
    return mr[:, :, 19], organs, organs


@pytest.mark.parametrize("load", [_buildings, _nuclei, _organs], ids=["buildings", "nuclei", "mr"])
def test_snapped_never_below_the_polygons(shared_data, load):
    img, inst, classes = load(shared_data)
    coarse, kept = coarse_polygons(inst, classes)
    assert len(kept) >= 3
    res = snap_labels(img, coarse)
    before, after = scores(inst, classes, coarse, res.labels, kept)
    assert after >= before, (before, after)
    # grey pictures keep their outlines and every object says so
    assert all(o.status == "kept" and o.flagged for o in res.objects)


def test_grey_snapping_is_an_option_and_it_loses(shared_data):
    # the measurement behind grey=False: on the MR slice the intensity-only cut is worse
    # (with the on-edge check off; with it, these organ outlines are kept as exact)
    img, inst, classes = _organs(shared_data)
    coarse, kept = coarse_polygons(inst, classes)
    forced = snap_labels(img, coarse, options=SnapOptions(grey=True, max_on_edge=1.0, min_area=0))
    assert any(o.status == "refined" for o in forced.objects)
    before, after = scores(inst, classes, coarse, forced.labels, kept)
    assert after < before


def test_neighbours_compete_and_a_rule_decides_ties(pets):
    img, inst, _ = pets[0]
    # the pet drawn as two classes split by a vertical line: along the line both cuts claim
    # the same fur, and only a written rule or the colour evidence can settle it
    coarse, _ = coarse_polygons(inst, inst)
    cols = np.nonzero(coarse.any(axis=0))[0]
    mid = (cols[0] + cols[-1]) // 2
    two = coarse.copy()
    two[:, mid:][coarse[:, mid:] == 1] = 2
    classes = (LabelClass(1, "left", (255, 0, 0)), LabelClass(2, "right", (0, 0, 255)))
    rule = ConflictRule(("left", "right"), "the right half wins", resolve_to="right")
    # every change the cuts propose is accepted, so that they do meet along the line
    loose = SnapOptions(min_evidence=0, piece_edge_gain=0, min_piece=1, min_iou=0, max_on_edge=1.0)
    free = snap_labels(img, two, taxonomy=Taxonomy("halves", classes), options=loose)
    ruled = snap_labels(
        img, two, taxonomy=Taxonomy("halves", classes, rules=(rule,)), options=loose
    )
    for res in (free, ruled):
        assert set(np.unique(res.labels).tolist()) <= {0, 1, 2}  # one pixel, one class
    line = (slice(None), slice(mid - 8, mid + 8))
    assert np.count_nonzero(ruled.labels[line] == 2) > np.count_nonzero(free.labels[line] == 2)
    assert np.count_nonzero(ruled.labels[line] == 1) < np.count_nonzero(free.labels[line] == 1)
    # away from the line the rule changes nothing
    far = (slice(None), slice(0, mid - 20))
    assert np.array_equal(free.labels[far], ruled.labels[far])


def test_ai_assist_false_is_copied_and_never_taken(pets):
    img, inst, _ = pets[1]
    coarse, _ = coarse_polygons(inst, inst)
    tax = Taxonomy("pet", (LabelClass(1, "pet", (255, 0, 0), ai_assist=False),))
    res = snap_labels(img, coarse, taxonomy=tax)
    assert np.array_equal(res.labels, coarse)
    assert [o.status for o in res.objects] == ["copied"]


def test_bad_input_is_one_clear_error():
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="do not match the image"):
        snap_labels(img, np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="must be integers"):
        snap_labels(img, np.zeros((8, 8), np.float32))
    with pytest.raises(ValueError, match="band widths"):
        SnapOptions(band_px=0)
    with pytest.raises(ValueError, match="colour_space"):
        SnapOptions(colour_space="hsv")


def test_a_frozen_neighbour_keeps_every_pixel(pets):
    img, inst, _ = pets[2]
    coarse, _ = coarse_polygons(inst, inst)
    rows, cols = np.nonzero(coarse)
    # a region of a class the AI may not touch, across the pet's outline
    r, c = rows.min() + (rows.max() - rows.min()) // 2, cols.min()
    coarse[r - 30 : r + 30, max(c - 30, 0) : c + 30] = 2
    classes = (
        LabelClass(1, "pet", (255, 0, 0)),
        LabelClass(2, "sign", (0, 0, 255), ai_assist=False),
    )
    res = snap_labels(img, coarse, taxonomy=Taxonomy("t", classes))
    assert np.array_equal(res.labels == 2, coarse == 2)
    assert any(o.status == "refined" and o.changed > 0 for o in res.objects)
    assert [o.status for o in res.objects if o.class_id == 2] == ["copied"]
