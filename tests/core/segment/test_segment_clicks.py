"""A lone first click judged in the decoder's small frame, and later-click edits (clicks.py).

By hand with fake decoders, then the real bundled model on real photographs: how many decoder
runs a first click costs (not how long: timings belong to benchmarks/bench_quality_2d.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_segflow.core.segment import clicks
from napari_segflow.core.segment.clicks import (
    FIRST_CLICK,
    ClickBox,
    box_for_click,
    frame_strength,
    keep_local,
    pick_click_box,
)


def _square(shape, r0, r1, c0, c1, inside=4.0):
    out = np.full(shape, -4.0)
    out[r0:r1, c0:c1] = inside
    return out


# ------------------------------------------------------------------ by hand, no model
def test_pick_click_box_judges_candidates_in_a_quarter_size_frame():
    # the object: rows 40..79, cols 80..119 of a 200x200 image; the decoder answers at 50x50
    frame = _square((50, 50), 10, 20, 20, 30)
    tried = []

    def decode(box):
        tried.append(box)
        side = box[2] - box[0]
        return (frame if side >= 60 else np.full((50, 50), -4.0)), 0.9

    c = pick_click_box(decode, (100, 60), (200, 200), frame_scale=0.25, fractions=(0.1, 0.5))
    assert isinstance(c, ClickBox)
    assert c.index == 1 and len(tried) == 2 and c.tried.shape == (2, 4)
    # the frame's square back in image pixels (each frame pixel covers 4), padded by 5 %
    x0, y0, x1, y1 = (float(v) for v in c.box)
    assert 77 <= x0 <= 80 and 119 <= x1 <= 122 and 37 <= y0 <= 40 and 79 <= y1 <= 82


def test_pick_click_box_prefers_a_mask_that_holds_the_click():
    small = _square((50, 50), 0, 5, 0, 5)  # far from the click
    held = _square((50, 50), 20, 30, 20, 30)

    def decode(box):
        return (small, 0.99) if box[2] - box[0] < 50 else (held, 0.5)

    c = pick_click_box(decode, (100, 100), (200, 200), frame_scale=0.25, fractions=(0.2, 0.9))
    assert c.index == 1


def test_pick_click_box_stops_once_an_object_fits_its_box():
    fits = _square((50, 50), 15, 35, 15, 35)  # well inside the largest box, a confident answer
    runs = []

    def decode(box):
        runs.append(box)
        return fits, 0.95

    rule = clicks.FirstClickRule(fractions=(1.0, 0.5, 0.15))
    c = pick_click_box(decode, (100, 100), (200, 200), frame_scale=0.25, rule=rule, colour=True)
    assert len(runs) == 1 and c.index == 0
    runs.clear()
    every = clicks.FirstClickRule(fractions=(1.0, 0.5, 0.15), stop_edge=None)
    pick_click_box(decode, (100, 100), (200, 200), frame_scale=0.25, rule=every, colour=True)
    assert len(runs) == 3


def test_on_grey_pictures_the_boxes_go_smallest_first_until_one_holds_the_object_whole():
    fits = _square((50, 50), 15, 35, 15, 35)  # a 20 px object in the 50 px frame
    runs = []

    def decode(box):
        runs.append(float(box[2] - box[0]))
        return fits, 0.9

    rule = clicks.FirstClickRule(fractions=(1.0, 0.5, 0.15))
    c = pick_click_box(decode, (100, 100), (200, 200), frame_scale=0.25, rule=rule)
    # the 30 px box sees a piece (the answer fills its edges), the 100 px box holds it whole
    assert runs == [30.0, 100.0] and c.index == 1
    runs.clear()
    largest = clicks.FirstClickRule(fractions=(1.0, 0.5, 0.15), grey_smallest_first=False)
    pick_click_box(decode, (100, 100), (200, 200), frame_scale=0.25, rule=largest)
    assert runs == [199.0]  # the largest box first, then the stop (as on colour pictures)


def test_pick_click_box_at_full_size_is_box_for_click():
    rr, cc = np.mgrid[:64, :64]
    disk = np.where((rr - 20) ** 2 + (cc - 30) ** 2 <= 100, 4.0, -4.0)

    def decode(box):
        return (disk if box[2] - box[0] >= 20 else np.full((64, 64), -4.0)), 0.9

    a = box_for_click(decode, (30, 20), (64, 64), fractions=(0.1, 0.5))
    b = pick_click_box(decode, (30, 20), (64, 64), fractions=(0.1, 0.5)).box
    np.testing.assert_array_equal(a, b)


def test_frame_strength_finds_the_edge_at_the_frame_size():
    img = np.zeros((128, 96, 3), np.uint8)
    img[:, 48:] = 200
    g = frame_strength(img, (32, 24))
    assert g.shape == (32, 24)
    assert g[:, 11:13].min() > 1.0 and g[:, :8].max() == 0.0


@pytest.mark.parametrize("label", [0, 1])
def test_keep_local_matches_labelling_the_whole_image(label):
    # the edit works on the extent of what changed; the answer is that of the whole image
    rng = np.random.default_rng(label)
    for _ in range(40):
        h, w = rng.integers(30, 120, 2)
        prev = ndi.gaussian_filter(rng.normal(size=(h, w)), 3) > 0
        new = ndi.gaussian_filter(rng.normal(size=(h, w)), 3) > 0
        pt = (rng.uniform(0, w - 1), rng.uniform(0, h - 1))
        box = (0, 0, w - 1, h - 1)
        reach = clicks.edit_reach(prev if prev.any() else new, box)
        change = (new & ~prev) if label == 1 else (prev & ~new)
        lab, _ = ndi.label(change)
        yy, xx = np.ogrid[0:h, 0:w]
        near = (yy - pt[1]) ** 2 + (xx - pt[0]) ** 2 <= reach**2
        keep = np.unique(lab[near & change])
        part = np.isin(lab, keep[keep > 0])
        want = prev | part if label == 1 else prev & ~part
        np.testing.assert_array_equal(keep_local(prev, new, pt, label, box), want)


# ------------------------------------------------------------------ real weights, real data
@pytest.fixture(scope="module")
def pet(pet_photos):
    _, img, tri = pet_photos(1)[0]
    return img, tri == 1


class _Counter:
    def __init__(self, model):
        self.model, self.n, self._orig = model, 0, model._decode_boxes

    def __enter__(self):
        def counted(image_embed, boxes, multimask):
            self.n += int(np.asarray(boxes).reshape(-1, 4).shape[0])
            return self._orig(image_embed, boxes, multimask)

        self.model._decode_boxes = counted
        return self

    def __exit__(self, *exc):
        del self.model._decode_boxes


def test_lone_first_click_decodes_each_tried_box_once(medsam, pet):
    img, gt = pet
    emb = medsam.embed(img)
    r, c = np.unravel_index(np.argmax(ndi.distance_transform_edt(gt)), gt.shape)
    with _Counter(medsam) as count:
        res = medsam.predict(emb, points=[[int(r), int(c)]], point_labels=[1])
    assert res.mask[r, c] and res.mask.shape == gt.shape
    iou = (res.mask & gt).sum() / (res.mask | gt).sum()
    assert iou > 0.5, iou
    # no decode of the chosen box again: one run per tried box, and this cat fits one of the
    # largest boxes, so the smaller ones are skipped
    h, w = gt.shape
    with _Counter(medsam) as tried:
        box, (full, low, _) = medsam._box_for_click(emb, (float(c), float(r)))
    assert count.n == tried.n and 1 <= tried.n < len(FIRST_CLICK.fractions), count.n
    assert full.shape == (1, h, w) and low.shape == (1, 256, 256)
    again = medsam._full_size(low, (h, w))
    assert ((again > 0) == (full > 0)).mean() > 0.999
    x0, y0, x1, y1 = box
    assert x0 <= c <= x1 and y0 <= r <= y1
    # the picture's edge strength is computed once per embedding
    assert medsam._frame_strength(emb) is medsam._frame_strength(emb)


def test_lone_first_click_with_multimask_decodes_the_box_once_more(medsam, pet):
    img, gt = pet
    emb = medsam.embed(img)
    r, c = np.unravel_index(np.argmax(ndi.distance_transform_edt(gt)), gt.shape)
    with _Counter(medsam) as count:
        res = medsam.predict(emb, points=[[int(r), int(c)]], point_labels=[1], multimask=True)
    with _Counter(medsam) as tried:
        medsam._box_for_click(emb, (float(c), float(r)))
    assert count.n == tried.n + 1
    assert res.masks.shape == (3, *gt.shape)
