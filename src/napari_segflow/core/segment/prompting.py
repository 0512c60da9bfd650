"""State of one click-to-segment session, free of any GUI.

A :class:`PromptSession` knows which image (slice) it wants an embedding for, accepts an
embedding only for that image (a late result for a slice the user has left is stale and dropped),
re-predicts from prompts with the cached embedding and the previous answer's logits, and keeps
the model's candidate masks for cycling. The prompt widget drives it; scripts and tests can too.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PredictionRequest", "PromptSession"]


@dataclass(frozen=True, eq=False)
class PredictionRequest:
    """One prediction asked of a :class:`PromptSession`, with everything the model call needs.

    Made by :meth:`PromptSession.request` (on the GUI thread), computed by :meth:`run` (in any
    thread: it reads the request and the model, never the session) and handed back with
    :meth:`PromptSession.take`, which keeps the result only while the request is current.
    """

    seq: int
    key: Hashable
    generation: int
    model: Any
    embedding: Any
    points: np.ndarray | None
    point_labels: np.ndarray | None
    box: tuple | None
    mask_input: np.ndarray | None
    multimask: bool
    refine: bool | None = None

    def run(self):
        """Call the model: the :class:`SegmentationResult` for these prompts."""
        if self.refine is not None and hasattr(self.model, "refine"):
            self.model.refine = bool(self.refine)
        return self.model.predict(
            self.embedding,
            points=self.points,
            point_labels=self.point_labels,
            box=self.box,
            mask_input=self.mask_input,
            multimask=self.multimask,
        )


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
        self._seq = 0  # requests made
        self._taken = 0  # the latest request whose result was kept
        self._generation = 0  # bumped by clear(): results asked for before are stale

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
        """Predict from prompts in ``(row, col)`` of the embedded image, here and now.

        The previous answer's logits go back to the model as ``mask_input`` unless a new box
        was drawn: clicks with the same box, or clicks alone, refine the previous answer; a new
        box starts afresh.
        Returns the model's result, or None without prompts. The same as :meth:`request`,
        ``run`` and :meth:`take` in a row (the GUI runs the middle step in a worker thread).
        """
        req = self.request(points, point_labels, box, multimask=multimask)
        if req is None:
            return None
        res = req.run()
        self.take(req, res)
        return res

    def request(
        self,
        points: Sequence[Sequence[float]] | np.ndarray | None,
        point_labels: Sequence[int] | np.ndarray | None,
        box: tuple | None,
        *,
        multimask: bool = False,
        refine: bool | None = None,
    ) -> PredictionRequest | None:
        """Take a snapshot of a prediction to compute, or None (and clear) without prompts.

        ``refine`` sets the model's ``refine`` before its call when given.
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
        self._seq += 1
        return PredictionRequest(
            seq=self._seq,
            key=self.key,
            generation=self._generation,
            model=self.model,
            embedding=self.embedding,
            points=pts,
            point_labels=labels,
            box=box,
            mask_input=mask_input,
            multimask=bool(multimask),
            refine=refine,
        )

    def take(self, request: PredictionRequest, result) -> bool:
        """Keep ``result`` of ``request`` as the current answer, unless it is stale.

        Stale: the image changed, or the answer was cleared (accept, reject, no prompts) since
        the request was made, or a later request's result was taken already.

        Examples
        --------
        >>> s = PromptSession(model=None)
        >>> s.key, s.embedding = "slice 0", object()
        >>> first = s.request([[4, 5]], [1], None)
        >>> second = s.request([[4, 5], [6, 7]], [1, 1], None)
        >>> answer_1, answer_2 = object(), object()
        >>> s.take(second, answer_2), s.take(first, answer_1)  # the first came back late
        (True, False)
        >>> s.result is answer_2
        True
        """
        if (
            request.key != self.key
            or request.generation != self._generation
            or request.seq <= self._taken
        ):
            return False
        self._taken = request.seq
        self.result, self.box = result, request.box
        self.candidate = int(getattr(result, "index", 0))
        return True

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
        self._generation += 1
