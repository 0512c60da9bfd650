"""Pre-labelling embeds each image once (or once per tile) and decodes its boxes in batches."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_segflow.core.prelabel.evaluate import polygon_mask, simplify_polygon
from napari_segflow.core.prelabel.refine import RefineOptions, _tiles, prelabel_image


@pytest.fixture(scope="module")
def model():
    from napari_segflow.core.segment import load_model

    return load_model("medsam-lite", device="cpu")


@pytest.fixture(scope="module")
def tile(shared_data):
    """A 256² nuclei tile and 15-vertex polygons of its true nuclei as coarse labels."""
    img = tifffile.imread(shared_data / "nuclei_dsb2018" / "img2d.tif")[:256, :256]
    inst = tifffile.imread(shared_data / "nuclei_dsb2018" / "mask2d.tif")[:256, :256]
    coarse = np.zeros(inst.shape, np.uint8)
    for i in np.unique(inst)[1:]:
        m = inst == i
        if m.sum() >= 16:
            coarse[polygon_mask(simplify_polygon(m, 15), inst.shape)] = 1
    return img, coarse


class _OneByOne:
    """The same model without batched box decoding (every object through ``predict``)."""

    def __init__(self, model) -> None:
        self._m = model

    def __getattr__(self, name):
        if name == "predict_boxes":
            raise AttributeError(name)
        return getattr(self._m, name)


def _run(img, coarse, model, **opts):
    model.cache.clear()
    before = model.encoder_calls
    res = prelabel_image(img, model, coarse=coarse, options=RefineOptions(**opts))
    return res, model.encoder_calls - before


def test_one_encoder_pass_for_all_objects_of_a_tile(tile, model):
    img, coarse = tile
    res, calls = _run(img, coarse, model)
    assert len(res.objects) >= 25
    assert calls == 1
    # batching the decoder changes nothing: the same labels, provenance and verdicts
    one, calls_one = _run(img, coarse, _OneByOne(model))
    assert calls_one == 1
    assert np.array_equal(one.labels, res.labels)
    assert np.array_equal(one.provenance, res.provenance)
    assert [o.status for o in one.objects] == [o.status for o in res.objects]


def test_large_images_are_embedded_once_per_tile(tile, model):
    img, coarse = tile
    tiles = _tiles(img.shape, 192)
    assert len(tiles) == 4  # 192-px tiles overlapping by 48 over 256 px: 2 x 2
    res, calls = _run(img, coarse, model, embed_tile=192)
    assert 2 <= calls <= len(tiles) + sum(o.status != "copied" for o in res.objects)
    assert calls < len(res.objects)
    # every object was judged: refined or kept, none lost
    assert {o.status for o in res.objects} <= {"refined", "kept"}


def test_zoomed_windows_for_objects_too_small_in_the_shared_embedding(tile, model):
    img, coarse = tile
    res8, calls8 = _run(img, coarse, model, zoom_below=12)
    # LiteMedSAM sees a 256² tile at 1:1: boxes under 12 px get their own zoomed window
    small = sum(max(o.box[2] - o.box[0], o.box[3] - o.box[1]) + 1 < 12 for o in res8.objects)
    assert 0 < small < len(res8.objects)
    assert calls8 == 1 + small


def test_tiles_cover_the_image():
    for shape, side in (((100, 300), 128), ((1000, 1000), 512), ((64, 64), 1024)):
        cover = np.zeros(shape, bool)
        for rs, cs in _tiles(shape, side):
            assert rs.stop - rs.start <= side and cs.stop - cs.start <= side
            cover[rs, cs] = True
        assert cover.all()
