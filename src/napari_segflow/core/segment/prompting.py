"""State of one click-to-segment session, free of any GUI.

A :class:`PromptSession` knows which image (slice) it wants an embedding for, accepts an
embedding only for that image (a late result for a slice the user has left is stale and dropped),
re-predicts from prompts with the cached embedding and the previous answer's logits, and keeps
the model's candidate masks for cycling. The prompt widget drives it; scripts and tests can too.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

__all__ = ["PromptSession"]


class PromptSession:
    """Embedding bookkeeping and iterative prediction for one model.

    Parameters
    ----------
    model : PromptableModel, optional
        A model from ``napari_segflow.core.segment.load_model`` (or given later to
        :meth:`offer` with the embedding it computed).

    Examples
    --------
    The bookkeeping works without any model call:

    >>> s = PromptSession(model=None)
    >>> s.want("slice 3")
    True
    >>> s.offer("slice 2", object())   # the user has moved on: dropped
    False
    >>> s.ready_for("slice 3")
    False
    """

    def __init__(self, model: Any = None) -> None:
        self.model = model
        self.key: Hashable | None = None  # the image the embedding belongs to
        self.embedding = None
        self.wanted: Hashable | None = None  # the image an embedding is being computed for
        self.result = None
        self.candidate = 0
        self.box: tuple | None = None

    # ------------------------------------------------------------------ embedding
    def ready_for(self, key: Hashable) -> bool:
        """Whether the embedding of image ``key`` is at hand."""
        return self.embedding is not None and self.key == key

    def want(self, key: Hashable) -> bool:
        """Ask for the embedding of ``key``; False when it is at hand or already on its way."""
        if self.ready_for(key) or self.wanted == key:
            return False
        self.wanted = key
        return True

    def offer(self, key: Hashable, embedding: Any, *, model: Any = None) -> bool:
        """Hand in a computed embedding; it is kept only when ``key`` is the image wanted.

        ``model`` (the one that computed it) replaces the session's model when given.
        """
        if key != self.wanted:
            return False
        self.wanted = None
        self.key, self.embedding = key, embedding
        if model is not None:
            self.model = model
        self.clear()
        return True

    def abandon(self, key: Hashable) -> None:
        """The computation for ``key`` failed: stop waiting for it."""
        if self.wanted == key:
            self.wanted = None

    # ------------------------------------------------------------------ prediction
    def predict(
        self,
        points: Sequence[Sequence[float]] | np.ndarray | None,
        point_labels: Sequence[int] | np.ndarray | None,
        box: tuple | None,
        *,
        multimask: bool = False,
    ):
        """Predict from prompts in ``(row, col)`` of the embedded image.

        The previous answer's logits go back to the model as ``mask_input`` unless a new box
        was drawn: clicks with the same box, or clicks alone, refine the previous answer; a new
        box starts afresh.
        Returns the model's result, or None without prompts.
        """
        if self.embedding is None:
            raise ValueError("no embedding yet: wait until the image is embedded")
        pts = None if points is None or len(points) == 0 else np.asarray(points, dtype=float)
        labels = None if pts is None else np.asarray(point_labels, dtype=int)
        if pts is None and box is None:
            self.clear()
            return None
        box = None if box is None else tuple(box)
        mask_input = None
        if self.result is not None and (box is None or box == self.box):
            mask_input = self.result.logits
        res = self.model.predict(
            self.embedding,
            points=pts,
            point_labels=labels,
            box=box,
            mask_input=mask_input,
            multimask=multimask,
        )
        self.result, self.box = res, box
        self.candidate = int(getattr(res, "index", 0))
        return res

    @property
    def candidates(self) -> np.ndarray | None:
        """All candidate masks ``(K, rows, cols)`` of the current answer."""
        if self.result is None:
            return None
        masks = getattr(self.result, "masks", None)
        return np.asarray(masks) if masks is not None else np.asarray(self.result.mask)[None]

    @property
    def proposal(self) -> np.ndarray | None:
        """The candidate on show, ``(rows, cols)`` bool, or None."""
        masks = self.candidates
        return None if masks is None else np.asarray(masks[self.candidate], dtype=bool)

    @property
    def score(self) -> float | None:
        """The model's quality estimate of the candidate on show."""
        if self.result is None:
            return None
        scores = getattr(self.result, "scores", None)
        return float(scores[self.candidate]) if scores is not None else float(self.result.score)

    def next_candidate(self) -> int:
        """Show the next candidate; returns its index."""
        masks = self.candidates
        if masks is not None and len(masks) > 1:
            self.candidate = (self.candidate + 1) % len(masks)
        return self.candidate

    def clear(self) -> None:
        """Forget the current answer (after accept or reject, or on a new image)."""
        self.result = None
        self.candidate = 0
        self.box = None
