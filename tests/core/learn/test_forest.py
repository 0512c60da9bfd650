"""The exported forest predicts exactly what scikit-learn's forest predicts, from plain arrays."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segflow.core.learn.features import filter_bank, normalise
from napari_segflow.core.learn.forest import ArrayForest, fit_forest
from napari_segflow.core.segment import Window


def _training(nuclei):
    img, gold, _ = nuclei
    f = filter_bank(normalise(img, Window(60, 120))[..., None], [1.0, 2.0])
    x = f.reshape(-1, f.shape[-1])
    y = gold.reshape(-1).astype(np.int64)
    rng = np.random.default_rng(0)
    pick = rng.choice(y.size, 3000, replace=False)
    return x, y, pick


def test_array_forest_matches_sklearn_on_real_features(nuclei):
    from sklearn.ensemble import RandomForestClassifier

    x, y, pick = _training(nuclei)
    forest = fit_forest(x[pick], y[pick], n_classes=2, n_trees=8, max_depth=10, random_state=3)
    ref = RandomForestClassifier(
        n_estimators=8,
        max_depth=10,
        min_samples_leaf=2,
        max_features="sqrt",
        n_jobs=1,
        random_state=3,
    ).fit(x[pick], y[pick])
    ours = forest.predict_proba(x, chunk=10000)
    np.testing.assert_allclose(ours, ref.predict_proba(x), atol=1e-6)
    assert forest.roots.size == 8 and forest.depth <= 10


def test_absent_class_gets_a_zero_column(nuclei):
    x, y, pick = _training(nuclei)
    forest = fit_forest(x[pick], y[pick] * 2, n_classes=3, n_trees=2)  # ids 0 and 2 only
    p = forest.predict_proba(x[:100])
    assert p.shape == (100, 3)
    assert np.all(p[:, 1] == 0) and np.allclose(p.sum(axis=1), 1)


def test_from_arrays_refuses_out_of_range_children(nuclei):
    x, y, pick = _training(nuclei)
    arrays = fit_forest(x[pick], y[pick], n_classes=2, n_trees=2).arrays()
    arrays["forest_left"] = arrays["forest_left"].copy()
    arrays["forest_left"][0] = 10**6
    with pytest.raises(ValueError, match="outside the tree"):
        ArrayForest.from_arrays(arrays)
