"""What both backends share: validation, the embedding cache and prompt conversion."""

from __future__ import annotations

import copy
import os

import numpy as np

from napari_segflow.core.segment.cache import DEFAULT_MEMORY_BYTES, EmbeddingCache, embedding_key
from napari_segflow.core.segment.coords import ModelPrompts, to_model_prompts
from napari_segflow.core.segment.preprocess import (
    preprocess_token,
    resolve_window,
    to_rgb8,
    validate_image,
)
from napari_segflow.core.segment.protocol import Embedding, SegmentationResult

__all__ = ["CachedModel", "pick_device"]


def pick_device(device: str | None = None) -> str:
    """``device`` if given, else ``"cuda"`` when available, else ``"cpu"``."""
    if device is not None:
        return str(device)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class CachedModel:
    """Base for the adapters: subclasses implement ``_compute_features`` and ``_decode``."""

    name: str = ""
    supports_points: bool = False
    supports_boxes: bool = True
    #: side of the square low-resolution logits the decoder takes back as mask_input
    mask_input_size: int = 256
    #: whether masks are fitted to the image (core/segment/refine.py) unless told otherwise
    refine_default: bool = False

    def __init__(
        self,
        *,
        window=None,
        cache: EmbeddingCache | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_bytes: int = DEFAULT_MEMORY_BYTES,
        device: str | None = None,
        refine: bool | None = None,
    ) -> None:
        self.window = resolve_window(window)
        self.refine = self.refine_default if refine is None else bool(refine)
        self.device = pick_device(device)
        self.cache = cache if cache is not None else EmbeddingCache(cache_bytes, cache_dir)
        self.last_cache_hit = "miss"

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name!r} device={self.device!r} window={self.window!r}>"
        )

    def with_cache(self, cache: EmbeddingCache):
        """A twin of this model sharing its network (no reload) but using ``cache``."""
        twin = copy.copy(self)
        twin.cache = cache
        twin.last_cache_hit = "miss"
        return twin

    # embedding --------------------------------------------------------------------------
    def embed(self, image: np.ndarray, *, window=...) -> Embedding:
        """Compute (or fetch from the cache) the embedding of a 2D image.

        Parameters
        ----------
        image : (H, W) or (H, W, C) array, any numeric dtype
        window : optional
            Overrides the model's intensity window for this call (see
            :func:`~napari_segflow.core.segment.preprocess.to_rgb8`).
        """
        win = self.window if window is ... else resolve_window(window)
        arr = validate_image(image)
        key = embedding_key(arr, model=self.name, preprocessing=preprocess_token(win))
        emb, where = self.cache.get(key, device=self.device, validate=self._check_features)
        self.last_cache_hit = where
        if emb is not None:
            return emb
        rgb8 = to_rgb8(arr, win)
        feats = dict(self._compute_features(rgb8))
        # the picture the model saw, for fitting masks to it (refine.py)
        feats["rgb8"] = _torch_uint8(rgb8)
        emb = Embedding(
            model=self.name,
            image_shape=(int(arr.shape[0]), int(arr.shape[1])),
            key=key,
            features=feats,
            nbytes=int(sum(t.element_size() * t.nelement() for t in feats.values())),
        )
        self.cache.put(emb)
        return emb

    def _compute_features(self, rgb8: np.ndarray) -> dict:
        raise NotImplementedError

    #: ``{name: shape}`` of the features this model computes, when fixed; a cached file with
    #: other names or shapes is refused and recomputed.
    feature_shapes: dict[str, tuple[int, ...]] | None = None

    def _check_features(self, features: dict) -> str | None:
        if self.feature_shapes is None:
            return None
        got = {k: tuple(v.shape) for k, v in features.items() if k != "rgb8"}
        picture = features.get("rgb8")  # kept beside the features for refine.py
        if picture is not None and (picture.ndim != 3 or picture.shape[-1] != 3):
            return f"the kept picture has shape {tuple(picture.shape)}, not (H, W, 3)"
        if got != self.feature_shapes:
            return f"features {got} differ from the model's {self.feature_shapes}"
        return None

    # prediction -------------------------------------------------------------------------
    def predict(
        self,
        embedding: Embedding,
        *,
        points=None,
        point_labels=None,
        box=None,
        mask_input: np.ndarray | None = None,
        multimask: bool = False,
    ) -> SegmentationResult:
        """Segment with prompts in napari coordinates of the embedded image.

        Parameters
        ----------
        embedding : Embedding
            From :meth:`embed` of this model.
        points : (N, 2) array-like of (row, col), optional
        point_labels : (N,) array-like of 1 (positive) / 0 (negative), optional
        box : (row_min, col_min, row_max, col_max), inclusive, optional
        mask_input : (1, 256, 256) or (256, 256) logits, optional
            ``logits`` of an earlier result on the same image, to refine it.
        multimask : bool
            Ask for three candidates; ``mask`` is the best-scoring one.
        """
        if not isinstance(embedding, Embedding):
            raise ValueError(
                f"embedding must come from {self.name}.embed(), got {type(embedding).__name__}"
            )
        if embedding.model != self.name:
            raise ValueError(
                f"embedding was computed by {embedding.model!r}, not by this {self.name!r} model"
            )
        prompts = to_model_prompts(points, point_labels, box, image_shape=embedding.image_shape)
        if prompts.points is None and prompts.box is None:
            raise ValueError("predict needs a box or at least one point")
        mask_in = None
        if mask_input is not None:
            m = np.asarray(mask_input, dtype=np.float32)
            s = self.mask_input_size
            if m.shape == (s, s):
                m = m[None]
            if m.shape != (1, s, s):
                raise ValueError(
                    f"mask_input must be the (1, {s}, {s}) logits of an earlier result, got shape {m.shape}"
                )
            if not np.isfinite(m).all():
                raise ValueError("mask_input contains NaN or infinite values")
            mask_in = m
        return self._decode(embedding, prompts, mask_in, bool(multimask))

    def _decode(
        self, emb: Embedding, prompts: ModelPrompts, mask_input: np.ndarray | None, multimask: bool
    ) -> SegmentationResult:
        raise NotImplementedError


def _torch_uint8(rgb8: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(rgb8, dtype=np.uint8))


def image_of(emb: Embedding) -> np.ndarray | None:
    """The (H, W, 3) uint8 picture an embedding was computed from, if it was kept."""
    t = emb.features.get("rgb8")
    if t is None:
        return None
    arr = t.cpu().numpy()
    return arr if arr.shape[:2] == tuple(emb.image_shape) else None


def make_result(masks: np.ndarray, scores: np.ndarray, logits: np.ndarray) -> SegmentationResult:
    """Pick the best-scoring candidate and pack the frozen result."""
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    idx = int(np.argmax(scores)) if scores.size > 1 else 0
    masks = np.asarray(masks, dtype=bool)
    return SegmentationResult(
        mask=masks[idx],
        score=float(scores[idx]),
        logits=np.ascontiguousarray(logits[idx : idx + 1], dtype=np.float32),
        masks=masks,
        scores=scores,
        index=idx,
    )
