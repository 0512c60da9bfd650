"""One image pre-labelled by a classifier file: AI-pending, uncertain pixels and gated classes."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import tifffile

from napari_segflow.core.learn import PixelClassifier
from napari_segflow.core.prelabel import classifier as module
from napari_segflow.core.prelabel.classifier import prelabel_with_classifier
from napari_segflow.core.provenance import AI_PENDING, HUMAN
from napari_segflow.core.taxonomy import taxonomy_from_dict

TAX = taxonomy_from_dict(
    {
        "name": "cells",
        "classes": [
            {"id": 1, "name": "nucleus", "color": "#ff00ff"},
            {"id": 2, "name": "background", "color": "#303030"},
        ],
    }
)


def test_docstring_examples():
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


@pytest.fixture(scope="module")
def model_file(shared_data, tmp_path_factory):
    d = shared_data / "nuclei_dsb2018"
    img = tifffile.imread(d / "img2d.tif")[:128, :128]
    inst = tifffile.imread(d / "mask2d.tif")[:128, :128]
    lab = np.where(inst > 0, 1, 2).astype(np.uint8)  # one fully labelled crop
    path = tmp_path_factory.mktemp("clf") / "cells.npz"
    PixelClassifier(embeddings=False, n_trees=8, taxonomy=TAX).fit([img], [lab]).save(path)
    other = tifffile.imread(d / "img2d.tif")[256:384, 256:384]
    gold = tifffile.imread(d / "mask2d.tif")[256:384, 256:384] > 0
    return path, other, gold


def test_prelabels_are_pending_and_respect_confidence_and_gate(model_file):
    path, image, gold = model_file
    res = prelabel_with_classifier(image, None, classifier=path, taxonomy=TAX, min_confidence=0.5)
    assert res.labels.shape == image.shape == res.provenance.shape
    assert np.array_equal(res.provenance == AI_PENDING, res.labels != 0)
    assert np.all(res.provenance[res.labels == 0] == HUMAN)
    nuc = res.labels == 1
    # measured 0.58 on this other crop (dimmer nuclei are missed by a model from one crop)
    assert np.count_nonzero(nuc & gold) / np.count_nonzero(nuc | gold) > 0.5
    assert res.counts()["nucleus"] > 5 and res.to_dict()["method"] == "pixel-classifier"
    strict = prelabel_with_classifier(
        image, None, classifier=path, taxonomy=TAX, min_confidence=0.95
    )
    assert strict.uncertain > res.uncertain
    assert np.count_nonzero(strict.labels) < np.count_nonzero(res.labels)
    gated = TAX.with_ai_assist({"nucleus": False})
    off = prelabel_with_classifier(image, None, classifier=path, taxonomy=gated)
    assert not np.any(off.labels == 1) and off.skipped_classes == ["nucleus"]
