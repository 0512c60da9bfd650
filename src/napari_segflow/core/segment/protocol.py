"""The small contract every promptable model satisfies, and the frozen results it returns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Embedding", "PromptableModel", "SegmentationResult"]


@dataclass(frozen=True, eq=False)
class Embedding:
    """The expensive, prompt-independent part of a prediction for one image.

    Attributes
    ----------
    model : str
        Name of the model that computed it (``"medsam-lite"``, ``"sam2.1-tiny"``...).
    image_shape : (int, int)
        ``(rows, cols)`` of the original image; masks come back at this size.
    key : str
        Hash of the pixels, the model and the preprocessing (the cache key).
    features : mapping of str to tensor
        Backend tensors (on the model's device). Opaque to callers.
    nbytes : int
        Memory held by ``features``; the cache budget counts this.
    """

    model: str
    image_shape: tuple[int, int]
    key: str
    features: Mapping[str, Any] = field(repr=False)
    nbytes: int = 0


@dataclass(frozen=True, eq=False)
class SegmentationResult:
    """One prediction.

    Attributes
    ----------
    mask : (H, W) bool ndarray
        The chosen mask at the original image size.
    score : float
        The model's own quality estimate for ``mask`` (predicted IoU).
    logits : (1, 256, 256) float32 ndarray
        Low-resolution logits of ``mask``; pass them back as ``mask_input`` with the next click.
        (LiteMedSAM: the logits of the box prediction before clicks were applied, since its
        clicks are replayed on every call; pass all clicks so far each time.)
    masks : (K, H, W) bool ndarray
        All candidates (K = 3 with ``multimask=True``, else 1); ``mask`` is ``masks[index]``.
    scores : (K,) float ndarray
        Quality estimate of each candidate.
    index : int
        Which candidate ``mask`` is (the best-scoring one).
    """

    mask: np.ndarray
    score: float
    logits: np.ndarray = field(repr=False)
    masks: np.ndarray = field(repr=False)
    scores: np.ndarray = field(repr=False)
    index: int = 0


@runtime_checkable
class PromptableModel(Protocol):
    """What the widgets, 3D propagation and batch pre-labelling rely on."""

    name: str
    supports_points: bool
    supports_boxes: bool

    def embed(self, image: np.ndarray) -> Embedding: ...

    def predict(
        self,
        embedding: Embedding,
        *,
        points: Sequence[Sequence[float]] | np.ndarray | None = None,
        point_labels: Sequence[int] | np.ndarray | None = None,
        box: Sequence[float] | np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool = False,
    ) -> SegmentationResult: ...
