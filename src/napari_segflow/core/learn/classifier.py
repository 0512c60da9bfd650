"""The pixel classifier that learns a project's classes from a few annotated images or slices.

Training data are the labelled pixels of label images or volumes (pixels equal to
``unlabelled`` are not training data, so scribbles and a few fully labelled slices both work).
Features: :mod:`napari_segflow.core.learn.features`. Classifier: a random forest
(:mod:`napari_segflow.core.learn.forest`), chosen by measurement (docs/learn.md).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_segflow.core.atomic import atomic_write_with
from napari_segflow.core.learn.features import (
    FEATURE_SET,
    bank_names,
    filter_bank,
    normalise,
    slice_embedding,
    volume_features,
)
from napari_segflow.core.learn.forest import ArrayForest, fit_forest

__all__ = [
    "FILE_FORMAT",
    "CrossValidation",
    "LearnCancelled",
    "PixelClassifier",
    "Prediction",
    "taxonomy_fingerprint",
]

#: Format tag of a saved model file.
FILE_FORMAT = "segflow-pixel-classifier/1"

Progress = Callable[[int, int, str], None]


class LearnCancelled(Exception):
    """Raised inside fit/predict when the ``cancelled`` callback returns True."""


def taxonomy_fingerprint(taxonomy) -> str:
    """Hash of a taxonomy's classes (ids and names) and ignore id; colours and flags do not count.

    Examples
    --------
    >>> from napari_segflow.core.taxonomy import load_preset
    >>> len(taxonomy_fingerprint(load_preset("nuclei")))
    16
    """
    doc = {
        "classes": sorted([c.id, c.name] for c in taxonomy.classes),
        "ignore_id": taxonomy.ignore_id,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class Prediction:
    """Result of :meth:`PixelClassifier.predict`.

    Attributes
    ----------
    labels : ndarray
        Class ids, the image's shape without channels.
    confidence : float32 ndarray
        Probability of the chosen class, in [0, 1], same shape.
    """

    labels: np.ndarray
    confidence: np.ndarray

    def confident(self, threshold: float, *, fill: int = 0) -> np.ndarray:
        """``labels`` with pixels below ``threshold`` confidence set to ``fill``."""
        return np.where(self.confidence >= threshold, self.labels, fill).astype(self.labels.dtype)


@dataclass(frozen=True)
class CrossValidation:
    """Held-out quality of the classifier, per class.

    Attributes
    ----------
    per_class_iou : dict
        ``{class id: IoU}`` over the held-out annotated pixels (intersections and unions summed
        over all folds); NaN for a class absent from the held-out labels and predictions.
    names : dict
        ``{class id: name}`` (from the taxonomy; ``"background"``/``"class <id>"`` otherwise).
    mean_iou : float
        Mean of the non-NaN IoUs of the taxonomy's classes (all classes without a taxonomy).
    units : int
        Held-out images/slices.
    folds : int
    gate : AIGateResult or None
        The AI pre-label gate fed with these held-out pre-labels (with a taxonomy).
    """

    per_class_iou: dict[int, float]
    names: dict[int, str]
    mean_iou: float
    units: int
    folds: int
    gate: Any = None

    def rows(self) -> list[tuple[int, str, float, bool | None]]:
        """``(id, name, IoU, ai_assist)`` per class; ai_assist None without a gate."""
        out = []
        for cid, iou in sorted(self.per_class_iou.items()):
            assist = None
            if self.gate is not None and self.gate.taxonomy.has_id(cid):
                assist = self.gate.taxonomy.by_id(cid).ai_assist
            out.append((cid, self.names[cid], iou, assist))
        return out

    def to_dict(self) -> dict:
        return {
            "mean_iou": None if math.isnan(self.mean_iou) else round(self.mean_iou, 4),
            "units": self.units,
            "folds": self.folds,
            "classes": [
                {
                    "id": cid,
                    "name": name,
                    "iou": None if math.isnan(iou) else round(iou, 4),
                    "ai_assist": assist,
                }
                for cid, name, iou, assist in self.rows()
            ],
            "threshold": None if self.gate is None else self.gate.threshold,
        }

    def table(self) -> str:
        """A plain-text table for terminals and logs."""
        lines = [f"{'id':>4}  {'class':<24} {'IoU':>6}  AI"]
        for cid, name, iou, assist in self.rows():
            flag = "" if assist is None else ("on" if assist else "off")
            val = "   n/a" if math.isnan(iou) else f"{iou:6.3f}"
            lines.append(f"{cid:>4}  {name[:24]:<24} {val}  {flag}")
        lines.append(f"mean IoU {self.mean_iou:.3f} over {self.units} held-out images/slices")
        return "\n".join(lines)


@dataclass
class _Item:
    raw: np.ndarray  # (Z, H, W, C)
    volume: bool
    window: Any  # resolved Window for the filter bank
    embed_window: Any  # what the engine embeds with (its cache key)

    @property
    def spatial(self) -> tuple[int, ...]:
        return self.raw.shape[:3] if self.volume else self.raw.shape[1:3]


def _as_item(image: np.ndarray, window, *, name: str) -> _Item:
    from napari_segflow.core.segment.volume import volume_window

    a = np.asarray(image)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name}: image must hold numbers, got dtype {a.dtype}")
    if a.ndim == 2:
        raw, volume = a[None, :, :, None], False
    elif a.ndim == 3 and a.shape[-1] in (1, 3, 4):
        raw, volume = a[None], False
    elif a.ndim == 3:
        raw, volume = a[..., None], True
    elif a.ndim == 4:
        raw, volume = a, True
    else:
        raise ValueError(
            f"{name}: expected a 2D image (H, W[, C]) or a volume (Z, H, W[, C]), got shape {a.shape}"
        )
    if min(raw.shape[1:3]) < 2:
        raise ValueError(f"{name}: image is {raw.shape[1]}x{raw.shape[2]} pixels; 2x2 at least")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(f"{name}: image contains NaN or infinite values")
    win = volume_window(raw if raw.shape[-1] > 1 else raw[..., 0], window)
    return _Item(raw, volume, win, win if volume else window)


class PixelClassifier:
    """Learns the project's classes from labelled pixels and proposes them everywhere else.

    Parameters
    ----------
    sigmas : sequence of float
        Scales of the filter bank, in pixels.
    embeddings : bool
        Add the bundled image encoder's embeddings (LiteMedSAM) to the filter bank.
    components : int
        Principal components of the embeddings kept as features.
    n_trees, max_depth, min_samples_leaf : int
        Random forest size.
    samples_per_class : int
        At most this many training pixels per class (drawn at random; keeps fitting fast
        and balances the classes).
    window : optional
        Intensity window, resolved once per image or volume as the engine does
        (``"auto"``: CT soft tissue for Hounsfield data, else 0.5-99.5 percentiles).
    taxonomy : Taxonomy, optional
        The project's classes: label ids are checked against it, the model file records it,
        and :meth:`cross_validate` feeds the AI gate.
    model : engine model, optional
        ``load_model("medsam-lite")`` to share (and its embedding cache); loaded when needed.
    smooth : float
        Post-processing: Gaussian smoothing (sigma in pixels, 3D for volumes) of the class
        probabilities before the most likely class is chosen; 0 = none.
    random_state : int

    Examples
    --------
    >>> img = np.zeros((24, 24), np.float32); img[6:18, 6:18] = 1
    >>> lab = np.full((24, 24), 255, np.uint8); lab[0, :] = 0; lab[12, 8:16] = 1
    >>> clf = PixelClassifier(embeddings=False, sigmas=(1.0,)).fit([img], [lab])
    >>> res = clf.predict(img)
    >>> int(res.labels[10, 10]), int(res.labels[2, 2])
    (1, 0)
    """

    def __init__(
        self,
        *,
        sigmas: Sequence[float] = (1.0, 2.0, 4.0),
        embeddings: bool = True,
        components: int = 32,
        n_trees: int = 32,
        max_depth: int = 16,
        min_samples_leaf: int = 2,
        samples_per_class: int = 4000,
        window: Any = "auto",
        taxonomy=None,
        model=None,
        smooth: float = 1.0,
        random_state: int = 0,
    ) -> None:
        from napari_segflow.core.segment.preprocess import resolve_window

        sig = tuple(float(s) for s in sigmas)
        if not sig or any(not (s > 0 and math.isfinite(s)) for s in sig):
            raise ValueError(f"sigmas must be positive numbers, got {sigmas!r}")
        if components < 1 or n_trees < 1 or max_depth < 1 or samples_per_class < 1:
            raise ValueError("components, n_trees, max_depth and samples_per_class must be >= 1")
        self.sigmas = sig
        self.embeddings = bool(embeddings)
        self.components = int(components)
        self.n_trees = int(n_trees)
        self.max_depth = int(max_depth)
        self.min_samples_leaf = int(min_samples_leaf)
        self.samples_per_class = int(samples_per_class)
        resolve_window(window)  # a bad preset fails here, not at the first image
        self.window = window
        self.taxonomy = taxonomy
        self.model = model
        if not (smooth >= 0 and math.isfinite(smooth)):
            raise ValueError(f"smooth must be >= 0, got {smooth}")
        self.smooth = float(smooth)
        self.random_state = int(random_state)
        # learned state
        self.forest: ArrayForest | None = None
        self.classes: np.ndarray | None = None
        self.n_channels: int | None = None
        self.volumetric: bool | None = None
        self.pca_mean: np.ndarray | None = None
        self.pca_components: np.ndarray | None = None
        self.taxonomy_hash: str | None = None

    # ------------------------------------------------------------------ description
    def options(self) -> dict:
        """The constructor options as plain JSON values (stored in the model file)."""
        from napari_segflow.core.segment.preprocess import Percentile, Window

        window = self.window
        if isinstance(window, Window):
            window = [float(window.level), float(window.width)]
        elif isinstance(window, Percentile):
            if window != Percentile(0.5, 99.5):
                raise ValueError("only the default Percentile(0.5, 99.5) window can be stored")
            window = "percentile"
        return {
            "sigmas": list(self.sigmas),
            "embeddings": self.embeddings,
            "components": self.components,
            "n_trees": self.n_trees,
            "max_depth": self.max_depth,
            "min_samples_leaf": self.min_samples_leaf,
            "samples_per_class": self.samples_per_class,
            "window": list(window) if isinstance(window, tuple) else window,
            "smooth": self.smooth,
            "random_state": self.random_state,
        }

    def feature_names(self) -> list[str]:
        """Names of the features the fitted model uses, in order."""
        if self.n_channels is None:
            raise ValueError("the classifier is not fitted")
        names = bank_names(self.sigmas, ndim=3 if self.volumetric else 2, channels=self.n_channels)
        if self.embeddings:
            names += [f"medsam-lite:pc{i}" for i in range(self.components)]
        return names

    @property
    def fitted(self) -> bool:
        return self.forest is not None

    def clone(self) -> PixelClassifier:
        """An unfitted classifier with the same options, taxonomy and engine model."""
        opts = self.options()
        opts["window"] = self.window
        return PixelClassifier(**opts, taxonomy=self.taxonomy, model=self.model)

    def _engine(self):
        if self.model is None:
            from napari_segflow.core.segment import load_model

            self.model = load_model("medsam-lite")
        return self.model

    # ------------------------------------------------------------------ features
    def _features(self, item: _Item, slices: Sequence[int] | None = None):
        """Yield ``(start, stop, F)``: features of slices ``start:stop`` (``(n, H, W, F)``)."""
        norm = normalise(item.raw, item.window)
        embed = None
        if self.embeddings:
            model = self._engine()

            def embed(z: int) -> np.ndarray:
                sl = item.raw[z]
                return slice_embedding(
                    model,
                    sl[..., 0] if sl.shape[-1] == 1 else sl,
                    item.embed_window,
                    mean=self.pca_mean,
                    components=self.pca_components,
                )

        if self.volumetric:
            yield from volume_features(norm, self.sigmas, embed=embed, slices=slices)
            return
        for z in range(norm.shape[0]) if slices is None else sorted(set(slices)):
            bank = filter_bank(norm[z], self.sigmas)
            if embed is not None:
                bank = np.concatenate([bank, embed(z)], axis=-1)
            yield z, z + 1, bank[None]

    def _check_channels(self, item: _Item, name: str) -> None:
        if self.n_channels is not None and item.raw.shape[-1] != self.n_channels:
            raise ValueError(
                f"{name} has {item.raw.shape[-1]} channel(s); the classifier was trained on "
                f"{self.n_channels}"
            )
        if self.embeddings and item.raw.shape[-1] not in (1, 3, 4):
            raise ValueError(
                f"{name} has {item.raw.shape[-1]} channels; the encoder embeddings need 1, 3 or 4 "
                "(use embeddings=False)"
            )

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        images: Sequence[np.ndarray],
        labels: Sequence[np.ndarray],
        *,
        unlabelled: int = 255,
        progress: Progress | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> PixelClassifier:
        """Learn the classes from the labelled pixels of ``labels``.

        Parameters
        ----------
        images : sequence of arrays
            2D images ``(H, W)`` / ``(H, W, C)`` (C in 1, 3, 4) or volumes ``(Z, H, W)`` /
            ``(Z, H, W, C)``, slices first, raw values (CT in Hounsfield units).
        labels : sequence of integer arrays
            Class ids, each the shape of its image without channels; ``unlabelled`` pixels
            are not training data.
        unlabelled : int
            Value of pixels nobody labelled.
        progress : callable, optional
            ``progress(done, total, what)``.
        cancelled : callable, optional
            Returning True stops the work with :class:`LearnCancelled`.

        Returns
        -------
        PixelClassifier
            ``self``, fitted.
        """
        images, labels = list(images), list(labels)
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} label arrays")
        items, labs = self._prepare(images, labels, unlabelled=unlabelled)
        self.n_channels = int(items[0].raw.shape[-1])
        self.volumetric = any(it.volume for it in items)
        if self.volumetric:
            for it in items:
                it.volume = True
        annotated = [
            [z for z in range(lab.shape[0]) if np.any(lab[z] != unlabelled)] for lab in labs
        ]
        present = np.unique(np.concatenate([np.unique(lab[lab != unlabelled]) for lab in labs]))
        self.classes = present.astype(np.int64)
        total = sum(len(a) for a in annotated) * (2 if self.embeddings else 1) + 1
        done = 0

        def step(what: str) -> None:
            nonlocal done
            if cancelled is not None and cancelled():
                raise LearnCancelled("training cancelled")
            done += 1
            if progress is not None:
                progress(done, total, what)

        if self.embeddings:
            self.pca_mean = self.pca_components = None
            vecs = []
            for it, zs in zip(items, annotated, strict=True):
                for z in zs:
                    sl = it.raw[z]
                    low = slice_embedding(
                        self._engine(),
                        sl[..., 0] if sl.shape[-1] == 1 else sl,
                        it.embed_window,
                        mean=None,
                        components=None,
                    )
                    vecs.append(low.reshape(-1, low.shape[-1]))
                    step("embedding")
            self._fit_projection(np.concatenate(vecs))
        rng = np.random.default_rng(self.random_state)
        xs, ys = [], []
        for it, lab, zs in zip(items, labs, annotated, strict=True):
            for start, stop, feats in self._features(it, slices=zs):
                flat = lab[start:stop].reshape(-1)
                known = flat != unlabelled
                y = np.full(flat.shape, -1, dtype=np.int64)
                y[known] = np.searchsorted(self.classes, flat[known])
                keep = np.flatnonzero(y >= 0)
                keep = _balanced(keep, y[keep], self.samples_per_class, rng)
                xs.append(feats.reshape(-1, feats.shape[-1])[keep])
                ys.append(y[keep])
                step("features")
        x, y = np.concatenate(xs), np.concatenate(ys)
        keep = _balanced(np.arange(y.size), y, self.samples_per_class, rng)
        self.forest = fit_forest(
            x[keep],
            y[keep],
            n_classes=len(self.classes),
            n_trees=self.n_trees,
            max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf,
            random_state=self.random_state,
        )
        self.taxonomy_hash = (
            taxonomy_fingerprint(self.taxonomy) if self.taxonomy is not None else None
        )
        step("forest")
        return self

    def _fit_projection(self, vecs: np.ndarray) -> None:
        rng = np.random.default_rng(self.random_state)
        if vecs.shape[0] > 20000:
            vecs = vecs[rng.choice(vecs.shape[0], 20000, replace=False)]
        vecs = vecs.astype(np.float64)
        mean = vecs.mean(axis=0)
        _, _, vt = np.linalg.svd(vecs - mean, full_matrices=False)
        comps = np.zeros((self.components, vecs.shape[1]), dtype=np.float32)
        k = min(self.components, vt.shape[0])
        comps[:k] = vt[:k]
        self.pca_mean = mean.astype(np.float32)
        self.pca_components = comps

    def _prepare(self, images, labels, *, unlabelled: int):
        if not images:
            raise ValueError("the training set is empty: no images")
        items, labs = [], []
        for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
            name = f"image {i}"
            it = _as_item(img, self.window, name=name)
            lab = np.asarray(lab)
            if lab.dtype.kind not in "iub":
                raise ValueError(f"labels {i} must hold integers, got dtype {lab.dtype}")
            if tuple(lab.shape) != it.spatial:
                raise ValueError(
                    f"labels {i} have shape {lab.shape}, image {i} has {it.spatial} (without channels)"
                )
            if lab.size and lab.min() < 0:
                raise ValueError(f"labels {i} hold negative ids")
            if len(items) and it.raw.shape[-1] != items[0].raw.shape[-1]:
                raise ValueError(
                    f"image {i} has {it.raw.shape[-1]} channel(s), image 0 has "
                    f"{items[0].raw.shape[-1]}: all training images need the same channels"
                )
            self._check_channels(it, name)
            items.append(it)
            labs.append(lab.reshape((-1, *lab.shape[-2:])))
        ids = set()
        for lab in labs:
            ids.update(int(v) for v in np.unique(lab))
        ids.discard(int(unlabelled))
        if not ids:
            raise ValueError(
                f"the training set is empty: every label pixel is unlabelled ({unlabelled})"
            )
        if self.taxonomy is not None:
            if self.taxonomy.has_id(int(unlabelled)):
                raise ValueError(
                    f"unlabelled={unlabelled} is the id of class "
                    f"{self.taxonomy.by_id(int(unlabelled)).name!r}"
                )
            bad = sorted(ids - set(self.taxonomy.valid_ids))
            if bad:
                raise ValueError(
                    f"labels hold ids absent from the taxonomy {self.taxonomy.name!r}: "
                    f"{', '.join(map(str, bad[:10]))}"
                )
        return items, labs

    # ------------------------------------------------------------------ predict
    def predict(
        self,
        image: np.ndarray,
        *,
        slices: Sequence[int] | None = None,
        progress: Progress | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> Prediction:
        """Class ids and confidence for every pixel of ``image``.

        Parameters
        ----------
        image : array
            As for :meth:`fit`; the channel count must match the training images.
        slices : sequence of int, optional
            For a volume: only these slices (others get the first class and confidence 0).
        progress, cancelled : callable, optional
            As for :meth:`fit`.

        Returns
        -------
        Prediction
            ``labels`` (class ids) and ``confidence`` (float32 in [0, 1]), the image's shape
            without channels.
        """
        if not self.fitted:
            raise ValueError("the classifier is not fitted: call fit() or load a model file")
        it = _as_item(image, self.window, name="image")
        self._check_channels(it, "image")
        if self.volumetric:
            it.volume = True
        z_all = it.raw.shape[0]
        out_shape = it.raw.shape[:3]
        dtype = np.uint8 if self.classes.max() < 256 else np.int32
        labels = np.full(out_shape, self.classes[0], dtype=dtype)
        conf = np.zeros(out_shape, dtype=np.float32)
        zs = list(range(z_all)) if slices is None else sorted(set(int(z) for z in slices))
        if any(z < 0 or z >= z_all for z in zs):
            raise ValueError(f"slices must lie in 0..{z_all - 1}")
        done = 0
        smooth = self.smooth if slices is None else 0.0
        probs = np.zeros((*out_shape, self.classes.size), np.float32) if smooth > 0 else None
        for start, stop, feats in self._features(it, slices=None if slices is None else zs):
            if cancelled is not None and cancelled():
                raise LearnCancelled("prediction cancelled")
            p = self.forest.predict_proba(feats.reshape(-1, feats.shape[-1]))
            if probs is not None:
                probs[start:stop] = p.reshape((*feats.shape[:3], -1))
            else:
                k = p.argmax(axis=1)
                labels[start:stop] = self.classes[k].reshape(feats.shape[:3])
                conf[start:stop] = p[np.arange(k.size), k].reshape(feats.shape[:3])
            done += stop - start
            if progress is not None:
                progress(done, len(zs), "predict")
        if probs is not None:
            from scipy import ndimage as ndi

            # smoothing the class probabilities (in 3D for volumes) removes speckle
            sig = (smooth, smooth, smooth, 0) if self.volumetric else (0, smooth, smooth, 0)
            probs = ndi.gaussian_filter(probs, sig, mode="nearest")
            k = probs.argmax(axis=-1)
            labels[...] = self.classes[k]
            conf[...] = np.take_along_axis(probs, k[..., None], axis=-1)[..., 0]
        if not _is_volume(image):
            return Prediction(labels[0], conf[0])
        return Prediction(labels, conf)

    # ------------------------------------------------------------------ quality
    def cross_validate(
        self,
        images: Sequence[np.ndarray],
        labels: Sequence[np.ndarray],
        *,
        unlabelled: int = 255,
        folds: int = 3,
        threshold: float | None = None,
        progress: Progress | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> CrossValidation:
        """Per-class IoU on held-out annotated images/slices, and the AI gate fed with it.

        The annotated units (each 2D image, each annotated slice of a volume) are split into
        ``folds`` groups; each group is predicted by a classifier (same options) trained on
        the others. Only annotated pixels count. With a taxonomy the held-out pre-labels
        feed :func:`napari_segflow.core.quality.calibration.ai_prelabel_gate`: classes below
        ``threshold`` (default 0.70) get ``ai_assist: false``.
        """
        from napari_segflow.core.quality.calibration import AI_GATE_THRESHOLD, ai_prelabel_gate

        images, labels = list(images), list(labels)
        items, labs = self._prepare(images, labels, unlabelled=unlabelled)
        units = [
            (i, z)
            for i, lab in enumerate(labs)
            for z in range(lab.shape[0])
            if np.any(lab[z] != unlabelled)
        ]
        if len(units) < 2:
            raise ValueError(
                f"cross-validation needs at least 2 annotated images or slices, got {len(units)}"
            )
        if self.embeddings:
            self._engine()  # one engine (and embedding cache) for every fold
        k = max(2, min(int(folds), len(units)))
        groups = [units[f::k] for f in range(k)]
        inter: dict[int, int] = {}
        union: dict[int, int] = {}
        gold_parts: dict[str, np.ndarray] = {}
        pred_parts: dict[str, np.ndarray] = {}
        for f, held in enumerate(groups):
            train_labels = [lab.copy() for lab in labs]
            for i, z in held:
                train_labels[i][z] = unlabelled
            keep = [i for i, lab in enumerate(train_labels) if np.any(lab != unlabelled)]
            clf = self.clone()
            clf.fit(
                [images[i] for i in keep],
                [train_labels[i].reshape(np.asarray(labels[i]).shape) for i in keep],
                unlabelled=unlabelled,
                cancelled=cancelled,
            )
            by_item: dict[int, list[int]] = {}
            for i, z in held:
                by_item.setdefault(i, []).append(z)
            for i, zs in by_item.items():
                pred = clf.predict(images[i], slices=zs, cancelled=cancelled)
                plab = pred.labels.reshape(labs[i].shape)
                for z in zs:
                    g = labs[i][z].astype(np.int64)
                    p = plab[z].astype(np.int64)
                    m = g != unlabelled
                    for c in np.union1d(np.unique(g[m]), np.unique(p[m])):
                        gi, pi = g[m] == c, p[m] == c
                        inter[int(c)] = inter.get(int(c), 0) + int(np.count_nonzero(gi & pi))
                        union[int(c)] = union.get(int(c), 0) + int(np.count_nonzero(gi | pi))
                    # unannotated pixels are "no class" in both: they count for no class
                    gold_parts[f"{i}:{z}"] = np.where(m, g, -1)
                    pred_parts[f"{i}:{z}"] = np.where(m, p, -1)
            if progress is not None:
                progress(f + 1, k, "cross-validation")
        ious = {c: (inter[c] / union[c] if union[c] else math.nan) for c in sorted(union)}
        names, gate = {}, None
        tax = self.taxonomy
        for c in ious:
            if tax is not None and tax.has_id(c):
                names[c] = tax.by_id(c).name
            else:
                names[c] = "background" if c == 0 else f"class {c}"
        if tax is not None:
            for c in tax.ids:
                ious.setdefault(c, math.nan)
                names.setdefault(c, tax.by_id(c).name)
            gate = ai_prelabel_gate(
                gold_parts,
                pred_parts,
                taxonomy=tax,
                threshold=AI_GATE_THRESHOLD if threshold is None else float(threshold),
            )
            scored = [v for c, v in ious.items() if tax.has_id(c) and not math.isnan(v)]
        else:
            scored = [v for v in ious.values() if not math.isnan(v)]
        mean = float(np.mean(scored)) if scored else math.nan
        return CrossValidation(ious, names, mean, len(units), k, gate)

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model as an ``.npz`` of plain arrays and JSON text (no pickle), atomically."""
        if not self.fitted:
            raise ValueError("the classifier is not fitted: nothing to save")
        meta = {
            "format": FILE_FORMAT,
            "feature_set": FEATURE_SET,
            "features": self.feature_names(),
            "n_channels": self.n_channels,
            "volumetric": self.volumetric,
            "options": self.options(),
            "taxonomy_hash": self.taxonomy_hash,
            "taxonomy_name": None if self.taxonomy is None else self.taxonomy.name,
        }
        arrays = {
            "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
            "classes": self.classes,
            **self.forest.arrays(),
        }
        if self.embeddings:
            arrays["pca_mean"] = self.pca_mean
            arrays["pca_components"] = self.pca_components
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_with(path, lambda tmp: tmp.write_bytes(buf.getvalue()))

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, taxonomy=None, model=None) -> PixelClassifier:
        """Read a model file written by :meth:`save`.

        Parameters
        ----------
        path : path-like
        taxonomy : Taxonomy, optional
            The project's taxonomy: a model trained for another taxonomy is refused.
        model : engine model, optional
            Shared engine model for the embeddings.
        """
        name = os.fspath(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError) as exc:
            raise ValueError(f"{name}: not a segflow classifier file ({exc})") from None
        except Exception as exc:  # zipfile.BadZipFile and friends
            raise ValueError(f"{name}: not a segflow classifier file ({exc})") from None
        if "meta" not in data:
            raise ValueError(f"{name}: not a segflow classifier file (no metadata)")
        try:
            meta = json.loads(data["meta"].tobytes().decode())
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValueError(f"{name}: damaged classifier metadata") from None
        if meta.get("format") != FILE_FORMAT:
            raise ValueError(
                f"{name}: format {meta.get('format')!r}, this version reads {FILE_FORMAT!r}"
            )
        if meta.get("feature_set") != FEATURE_SET:
            raise ValueError(
                f"{name}: trained on feature set {meta.get('feature_set')!r}; this version "
                f"computes {FEATURE_SET!r}: retrain the classifier"
            )
        opts = dict(meta["options"])
        if isinstance(opts.get("window"), list):
            opts["window"] = tuple(opts["window"])
        clf = cls(**opts, taxonomy=taxonomy, model=model)
        clf.n_channels = int(meta["n_channels"])
        clf.volumetric = bool(meta["volumetric"])
        if clf.feature_names() != meta.get("features"):
            raise ValueError(
                f"{name}: its feature list differs from what this version computes for the same "
                "options: retrain the classifier"
            )
        if taxonomy is not None and meta.get("taxonomy_hash") != taxonomy_fingerprint(taxonomy):
            raise ValueError(
                f"{name}: trained for taxonomy {meta.get('taxonomy_name')!r} "
                f"({meta.get('taxonomy_hash')}), not for {taxonomy.name!r} "
                f"({taxonomy_fingerprint(taxonomy)})"
            )
        clf.taxonomy_hash = meta.get("taxonomy_hash")
        clf.classes = np.asarray(data["classes"], dtype=np.int64)
        clf.forest = ArrayForest.from_arrays(data)
        if clf.forest.n_classes != clf.classes.size:
            raise ValueError(
                f"{name}: {clf.classes.size} classes but the forest has {clf.forest.n_classes}"
            )
        if int(clf.forest.feature.max()) >= len(meta["features"]):
            raise ValueError(f"{name}: the forest tests features this model does not have")
        if clf.embeddings:
            clf.pca_mean = np.asarray(data["pca_mean"], dtype=np.float32)
            clf.pca_components = np.asarray(data["pca_components"], dtype=np.float32)
            if clf.pca_components.shape != (clf.components, clf.pca_mean.shape[0]):
                raise ValueError(f"{name}: the embedding projection has the wrong shape")
        if taxonomy is not None:
            bad = sorted(set(int(c) for c in clf.classes) - set(taxonomy.valid_ids))
            if bad:
                raise ValueError(f"{name}: predicts ids absent from the taxonomy: {bad}")
        return clf


def _is_volume(image) -> bool:
    a = np.asarray(image)
    return a.ndim == 4 or (a.ndim == 3 and a.shape[-1] not in (1, 3, 4))


def _balanced(index: np.ndarray, y: np.ndarray, cap: int, rng) -> np.ndarray:
    """At most ``cap`` entries of ``index`` per class value in ``y`` (random, sorted)."""
    out = []
    for c in np.unique(y):
        sel = index[y == c]
        if sel.size > cap:
            sel = rng.choice(sel, cap, replace=False)
        out.append(sel)
    return np.sort(np.concatenate(out)) if out else index[:0]
