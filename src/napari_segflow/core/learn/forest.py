"""A random forest held as plain arrays: fitted with scikit-learn, evaluated with numpy.

A model file must not be able to run code when it is loaded, so the forest is not pickled:
its trees are exported from scikit-learn's ``tree_`` attributes into a few flat arrays (all
trees concatenated) and evaluated here. scikit-learn is needed to fit, not to predict.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ArrayForest", "fit_forest"]


@dataclass(frozen=True, eq=False)
class ArrayForest:
    """The trees of a forest, concatenated.

    Attributes
    ----------
    left, right : (N,) int32
        Child node of every node (global indices); a leaf points at itself.
    feature : (N,) int32
        Feature tested at the node (0 at leaves).
    threshold : (N,) float32
        Go left when ``x[feature] <= threshold``.
    value : (N, K) float32
        Class probabilities at each node (used at leaves).
    roots : (T,) int32
        Root node of each tree.
    depth : int
        Largest tree depth (number of steps to reach any leaf).
    """

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    value: np.ndarray
    roots: np.ndarray
    depth: int

    @property
    def n_classes(self) -> int:
        return int(self.value.shape[1])

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays to store (``forest_*`` keys)."""
        return {
            "forest_left": self.left,
            "forest_right": self.right,
            "forest_feature": self.feature,
            "forest_threshold": self.threshold,
            "forest_value": self.value,
            "forest_roots": self.roots,
            "forest_depth": np.array([self.depth], dtype=np.int32),
        }

    @classmethod
    def from_arrays(cls, data) -> ArrayForest:
        """Rebuild from :meth:`arrays` and check that the trees are consistent."""
        f = cls(
            left=np.asarray(data["forest_left"], dtype=np.int32),
            right=np.asarray(data["forest_right"], dtype=np.int32),
            feature=np.asarray(data["forest_feature"], dtype=np.int32),
            threshold=np.asarray(data["forest_threshold"], dtype=np.float32),
            value=np.asarray(data["forest_value"], dtype=np.float32),
            roots=np.asarray(data["forest_roots"], dtype=np.int32),
            depth=int(np.asarray(data["forest_depth"]).reshape(-1)[0]),
        )
        n = f.left.shape[0]
        if not (
            f.right.shape == f.feature.shape == f.threshold.shape == (n,)
            and f.value.ndim == 2
            and f.value.shape[0] == n
            and n > 0
            and f.roots.size > 0
        ):
            raise ValueError("forest arrays have inconsistent shapes")
        for a in (f.left, f.right, f.roots):
            if a.min() < 0 or a.max() >= n:
                raise ValueError("forest arrays point outside the tree")
        return f

    def predict_proba(self, x: np.ndarray, *, chunk: int = 32768) -> np.ndarray:
        """Mean class probabilities of the trees for the rows of ``x`` (``(n, F)`` float32).

        Examples
        --------
        >>> f = ArrayForest(np.array([1, 1, 2]), np.array([2, 1, 2]), np.array([0, 0, 0]),
        ...                 np.array([0.5, 0, 0], np.float32),
        ...                 np.array([[.5, .5], [1, 0], [0, 1]], np.float32), np.array([0]), 1)
        >>> f.predict_proba(np.array([[0.2], [0.9]], np.float32)).tolist()
        [[1.0, 0.0], [0.0, 1.0]]
        """
        x = np.ascontiguousarray(x, dtype=np.float32)
        n, nf = x.shape
        out = np.empty((n, self.n_classes), dtype=np.float32)
        t = self.roots.size
        for a in range(0, n, chunk):
            xb = x[a : a + chunk]
            m = xb.shape[0]
            flat = xb.reshape(-1)
            base = (np.arange(m, dtype=np.int64) * nf)[:, None]
            node = np.broadcast_to(self.roots, (m, t)).copy()
            for _ in range(self.depth):
                go_left = flat[base + self.feature[node]] <= self.threshold[node]
                node = np.where(go_left, self.left[node], self.right[node])
            out[a : a + m] = self.value[node].mean(axis=1)
        return out


def fit_forest(
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_classes: int,
    n_trees: int = 32,
    max_depth: int | None = 16,
    min_samples_leaf: int = 2,
    random_state: int = 0,
) -> ArrayForest:
    """Fit a scikit-learn random forest on ``x`` (n, F) and class indices ``y`` and export it.

    Every class index ``0..n_classes-1`` gets a column of ``value`` even when absent from ``y``.
    """
    from sklearn.ensemble import RandomForestClassifier

    rf = RandomForestClassifier(
        n_estimators=n_trees,
        max_depth=max_depth,
        min_samples_leaf=min_samples_leaf,
        max_features="sqrt",
        n_jobs=1,
        random_state=random_state,
    )
    rf.fit(x, y)
    lefts, rights, feats, thrs, vals, roots = [], [], [], [], [], []
    offset = 0
    depth = 0
    cols = np.asarray(rf.classes_, dtype=np.int64)
    for est in rf.estimators_:
        tr = est.tree_
        nn = tr.node_count
        idx = np.arange(nn, dtype=np.int64)
        leaf = tr.children_left < 0
        lefts.append(np.where(leaf, idx, tr.children_left) + offset)
        rights.append(np.where(leaf, idx, tr.children_right) + offset)
        feats.append(np.where(leaf, 0, tr.feature))
        thrs.append(np.where(leaf, 0.0, tr.threshold))
        v = np.asarray(tr.value[:, 0, :], dtype=np.float64)
        v = v / np.maximum(v.sum(axis=1, keepdims=True), 1e-12)
        full = np.zeros((nn, n_classes), dtype=np.float32)
        full[:, cols] = v
        vals.append(full)
        roots.append(offset)
        depth = max(depth, int(tr.max_depth))
        offset += nn
    # sklearn compares float32 features with float64 thresholds; float32 rounding of the
    # threshold towards -inf keeps "x <= t" the same for every float32 x
    thr = np.concatenate(thrs)
    thr32 = thr.astype(np.float32)
    thr32 = np.where(
        thr32.astype(np.float64) > thr, np.nextafter(thr32, np.float32(-np.inf)), thr32
    )
    return ArrayForest(
        left=np.concatenate(lefts).astype(np.int32),
        right=np.concatenate(rights).astype(np.int32),
        feature=np.concatenate(feats).astype(np.int32),
        threshold=thr32.astype(np.float32),
        value=np.concatenate(vals),
        roots=np.asarray(roots, dtype=np.int32),
        depth=depth,
    )
