"""Embedding cache: LRU bounded in bytes, atomic disk files, corrupt files recomputed."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from napari_segflow.core.segment import Embedding, EmbeddingCache, load_model
from napari_segflow.core.segment.cache import embedding_key


def _emb(key: str, n_floats: int, fill: float = 1.0) -> Embedding:
    t = torch.full((n_floats,), fill)
    return Embedding(
        model="m", image_shape=(4, 5), key=key, features={"f": t}, nbytes=4 * n_floats
    )


def test_lru_is_bounded_in_bytes_and_evicts_least_recent():
    cache = EmbeddingCache(max_bytes=1000)
    for k in "abc":
        cache.put(_emb(k, 100))  # 400 bytes each
    assert len(cache) == 2 and cache.nbytes == 800
    assert "a" not in cache and "b" in cache and "c" in cache
    assert cache.get("b")[1] == "memory"  # b is now the most recent
    cache.put(_emb("d", 100))
    assert "c" not in cache and "b" in cache and "d" in cache
    assert cache.get("c") == (None, "miss")


def test_entry_larger_than_budget_is_not_kept():
    cache = EmbeddingCache(max_bytes=100)
    cache.put(_emb("big", 100))
    assert len(cache) == 0 and cache.nbytes == 0


def test_key_depends_on_pixels_dtype_shape_model_and_preprocessing():
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    base = embedding_key(a, model="medsam-lite", preprocessing="minmax")
    variants = [
        embedding_key(a + 1, model="medsam-lite", preprocessing="minmax"),
        embedding_key(a.astype(np.uint16), model="medsam-lite", preprocessing="minmax"),
        embedding_key(a.reshape(4, 3), model="medsam-lite", preprocessing="minmax"),
        embedding_key(a, model="sam2.1-tiny", preprocessing="minmax"),
        embedding_key(a, model="medsam-lite", preprocessing="window:40:400"),
    ]
    assert len({base, *variants}) == 6
    assert embedding_key(a.copy(), model="medsam-lite", preprocessing="minmax") == base


def test_disk_round_trip_and_corrupt_file_is_a_miss(tmp_path):
    cache = EmbeddingCache(max_bytes=0, directory=tmp_path)
    cache.put(_emb("k1", 10, fill=2.5))
    path = cache.path_for("k1")
    assert path.is_file() and list(tmp_path.iterdir()) == [path]  # no temporary left behind
    got, where = cache.get("k1")
    assert where == "disk" and got.image_shape == (4, 5) and got.model == "m"
    assert torch.equal(got.features["f"], torch.full((10,), 2.5))
    path.write_bytes(path.read_bytes()[:50])  # truncated, as after a crash elsewhere
    assert cache.get("k1") == (None, "miss")
    assert not path.exists()  # removed, so the next put rewrites it


def test_file_under_another_key_is_rejected(tmp_path):
    cache = EmbeddingCache(max_bytes=0, directory=tmp_path)
    cache.put(_emb("k1", 10))
    cache.path_for("k1").rename(cache.path_for("k2"))
    assert cache.get("k2") == (None, "miss")


def test_concurrent_writers_leave_a_complete_file(tmp_path):
    caches = [EmbeddingCache(max_bytes=0, directory=tmp_path) for _ in range(4)]
    threads = [
        threading.Thread(target=c.put, args=(_emb("same", 200_000, fill=float(i)),))
        for i, c in enumerate(caches)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got, where = EmbeddingCache(max_bytes=0, directory=tmp_path).get("same")
    assert where == "disk"
    vals = got.features["f"]
    assert vals.shape == (200_000,) and bool((vals == vals[0]).all())  # one writer's whole file
    assert [p.name for p in tmp_path.iterdir()] == ["same.pt"]


def test_model_uses_memory_then_disk_and_recomputes_corrupt(medsam, tmp_path):
    img = (np.arange(64 * 48).reshape(64, 48) % 251).astype(np.uint8)
    box = (10, 5, 40, 30)
    disk_model = medsam.with_cache(EmbeddingCache(directory=tmp_path))
    assert disk_model.net is medsam.net
    first = disk_model.embed(img)
    assert disk_model.last_cache_hit == "miss"
    ref = disk_model.predict(first, box=box)
    assert disk_model.embed(img) is first and disk_model.last_cache_hit == "memory"

    # a fresh cache (empty memory) on the same folder finds the file
    other = medsam.with_cache(EmbeddingCache(directory=tmp_path))
    again = other.embed(img)
    assert other.last_cache_hit == "disk"
    np.testing.assert_array_equal(other.predict(again, box=box).logits, ref.logits)

    # damage the file: recomputed, same answer, no crash
    path = other.cache.path_for(first.key)
    path.write_bytes(b"garbage")
    fresh = medsam.with_cache(EmbeddingCache(directory=tmp_path))
    redone = fresh.embed(img)
    assert fresh.last_cache_hit == "miss" and path.is_file()
    np.testing.assert_allclose(fresh.predict(redone, box=box).logits, ref.logits, atol=1e-5)


def test_load_model_cache_dir_writes_files(tmp_path):
    model = load_model("medsam-lite", cache_dir=tmp_path, device="cpu")
    assert model.cache.directory == tmp_path


def test_negative_budget_refused():
    with pytest.raises(ValueError, match="max_bytes must be >= 0"):
        EmbeddingCache(max_bytes=-1)
