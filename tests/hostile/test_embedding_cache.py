"""Embedding cache files that lie: flipped bytes, NaN features, wrong shapes are recomputed.

Real LiteMedSAM weights on a small real image.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from napari_segflow.core.segment import EmbeddingCache, load_model
from napari_segflow.core.segment.cache import features_digest


@pytest.fixture(scope="module")
def medsam():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_model("medsam-lite", device="cpu", cache_bytes=0)
    torch.set_num_threads(before)


@pytest.fixture
def image(shared_data):
    return tifffile.imread(shared_data / "nuclei_dsb2018" / "img2d.tif")[:48, :48]


def _fresh(model, folder):
    """The same network with an empty memory level over ``folder``."""
    return model.with_cache(EmbeddingCache(0, folder))


def _rewrite(path, change):
    blob = torch.load(path, weights_only=True)
    change(blob)
    torch.save(blob, path)


def test_a_good_file_is_used(medsam, image, tmp_path):
    ref = _fresh(medsam, tmp_path).embed(image)
    again = _fresh(medsam, tmp_path)
    emb = again.embed(image)
    assert again.last_cache_hit == "disk"
    assert torch.equal(emb.features["image_embed"], ref.features["image_embed"])


def test_flipped_bytes_are_caught_and_recomputed(medsam, image, tmp_path):
    m = _fresh(medsam, tmp_path)
    ref = m.embed(image)
    (path,) = tmp_path.glob("*.pt")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10  # a flipped bit in the middle of the tensor data
    path.write_bytes(bytes(data))
    again = _fresh(medsam, tmp_path)
    emb = again.embed(image)
    assert again.last_cache_hit == "miss"
    assert torch.equal(emb.features["image_embed"], ref.features["image_embed"])
    third = _fresh(medsam, tmp_path)
    third.embed(image)
    assert third.last_cache_hit == "disk"  # the bad file was replaced


def test_nan_features_with_a_valid_checksum_are_recomputed(medsam, image, tmp_path):
    ref = _fresh(medsam, tmp_path).embed(image)
    (path,) = tmp_path.glob("*.pt")

    def poison(blob):
        blob["features"]["image_embed"][0, 0, 0, 0] = float("nan")
        blob["checksum"] = features_digest(blob["features"])

    _rewrite(path, poison)
    again = _fresh(medsam, tmp_path)
    emb = again.embed(image)
    assert again.last_cache_hit == "miss"
    assert torch.isfinite(emb.features["image_embed"]).all()
    assert torch.equal(emb.features["image_embed"], ref.features["image_embed"])


def test_wrong_tensor_shapes_are_replaced_not_reused(medsam, image, tmp_path):
    _fresh(medsam, tmp_path).embed(image)
    (path,) = tmp_path.glob("*.pt")

    def reshape(blob):
        blob["features"] = {"image_embed": torch.zeros(1, 256, 32, 32)}
        blob["checksum"] = features_digest(blob["features"])

    _rewrite(path, reshape)
    again = _fresh(medsam, tmp_path)
    emb = again.embed(image)
    assert again.last_cache_hit == "miss"
    assert tuple(emb.features["image_embed"].shape) == (1, 256, 64, 64)
    # and the model predicts from it: a real mask around a real nucleus, not an empty one
    res = again.predict(emb, box=np.array([8, 8, 40, 40]))
    assert res.mask.any()
    third = _fresh(medsam, tmp_path)
    third.embed(image)
    assert third.last_cache_hit == "disk"
