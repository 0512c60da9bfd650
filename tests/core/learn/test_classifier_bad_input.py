"""Bad input to the pixel classifier: each a clear error naming the problem; nothing written."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from napari_segflow.core.learn import PixelClassifier
from napari_segflow.core.taxonomy import load_preset, taxonomy_from_dict


@pytest.fixture(scope="module")
def small(nuclei):
    img, gold, strokes = nuclei
    return img[:96, :96], strokes[:96, :96]


@pytest.fixture(scope="module")
def fitted(small):
    img, strokes = small
    return PixelClassifier(embeddings=False, n_trees=2, taxonomy=load_preset("nuclei")).fit(
        [img], [strokes]
    )


def test_label_ids_absent_from_the_taxonomy(small):
    img, strokes = small
    lab = strokes.copy()
    lab[5, 5:9] = 7
    clf = PixelClassifier(embeddings=False, taxonomy=load_preset("nuclei"))
    with pytest.raises(ValueError, match=r"absent from the taxonomy 'nuclei': 7"):
        clf.fit([img], [lab])


def test_unlabelled_value_that_is_a_class(small):
    img, strokes = small
    clf = PixelClassifier(embeddings=False, taxonomy=load_preset("nuclei"))
    with pytest.raises(ValueError, match="unlabelled=1 is the id of class 'nucleus'"):
        clf.fit([img], [strokes], unlabelled=1)


@pytest.mark.parametrize(
    "images, labels, match",
    [
        ([], [], "training set is empty: no images"),
        ([np.zeros((8, 8))], [np.full((8, 8), 255, np.uint8)], "training set is empty: every"),
        ([np.zeros((8, 8))], [np.zeros((8, 9), np.uint8)], r"labels 0 have shape \(8, 9\)"),
        ([np.zeros((8, 8))], [np.zeros((8, 8), np.float32)], "must hold integers"),
        ([np.zeros((8, 8))], [], "1 images but 0 label arrays"),
        ([np.full((8, 8), np.nan)], [np.zeros((8, 8), np.uint8)], "NaN"),
    ],
)
def test_bad_training_sets(images, labels, match):
    with pytest.raises(ValueError, match=match):
        PixelClassifier(embeddings=False).fit(images, labels)


def test_images_of_another_channel_count(fitted, small):
    img, _ = small
    rgb = np.stack([img] * 3, axis=-1)
    with pytest.raises(
        ValueError, match=r"image has 3 channel\(s\); the classifier was trained on 1"
    ):
        fitted.predict(rgb)
    with pytest.raises(ValueError, match="all training images need the same channels"):
        PixelClassifier(embeddings=False).fit([img, rgb], [small[1], small[1]])


def test_model_file_from_another_taxonomy(fitted, tmp_path):
    path = tmp_path / "nuclei.npz"
    fitted.save(path)
    other = taxonomy_from_dict(
        {"name": "cells", "classes": [{"id": 1, "name": "cell", "color": "#ff0000"}]}
    )
    with pytest.raises(ValueError, match="trained for taxonomy 'nuclei'.*not for 'cells'"):
        PixelClassifier.load(path, taxonomy=other)
    # colours and ai_assist flags are not part of the identity
    tweaked = load_preset("nuclei").with_ai_assist({"debris": False})
    assert PixelClassifier.load(path, taxonomy=tweaked).fitted


def _rewrite_meta(path, out, **changes):
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    meta = json.loads(data["meta"].tobytes().decode())
    meta.update(changes)
    data["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(out, **data)


def test_model_file_from_another_feature_set(fitted, tmp_path):
    path = tmp_path / "m.npz"
    fitted.save(path)
    _rewrite_meta(path, tmp_path / "old.npz", feature_set="segflow-bank/0")
    with pytest.raises(ValueError, match="feature set 'segflow-bank/0'.*retrain"):
        PixelClassifier.load(tmp_path / "old.npz")
    _rewrite_meta(path, tmp_path / "f.npz", features=["c0:raw"])
    with pytest.raises(ValueError, match="feature list differs"):
        PixelClassifier.load(tmp_path / "f.npz")


def test_a_pickle_in_the_file_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    buf = io.BytesIO()
    np.savez(buf, meta=np.array([{"format": "x"}], dtype=object))
    path.write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="not a segflow classifier file"):
        PixelClassifier.load(path)
    path.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a segflow classifier file"):
        PixelClassifier.load(path)


def test_failed_save_writes_nothing(fitted, tmp_path):
    with pytest.raises(ValueError, match="not fitted"):
        PixelClassifier(embeddings=False).save(tmp_path / "a.npz")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        fitted.save(blocker / "b.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_predict_before_fit():
    with pytest.raises(ValueError, match="not fitted"):
        PixelClassifier(embeddings=False).predict(np.zeros((8, 8)))


def test_window_objects_are_stored_as_plain_values(small, tmp_path):
    from napari_segflow.core.segment import Percentile, Window

    img, strokes = small
    clf = PixelClassifier(embeddings=False, n_trees=2, window=Window(60, 120))
    clf.fit([img], [strokes]).save(tmp_path / "w.npz")
    again = PixelClassifier.load(tmp_path / "w.npz")
    assert again.window == (60.0, 120.0)
    np.testing.assert_array_equal(again.predict(img).labels, clf.predict(img).labels)
    odd = PixelClassifier(embeddings=False, n_trees=2, window=Percentile(2, 98))
    with pytest.raises(ValueError, match="only the default Percentile"):
        odd.fit([img], [strokes]).save(tmp_path / "p.npz")
    assert not (tmp_path / "p.npz").exists()
