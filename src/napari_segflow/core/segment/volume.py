"""Prompt one slice of a CT/MRI volume, propagate the segmentation through the others.

Two paths share one entry point, :func:`segment_volume` (and :func:`segment_volume_multi` for
several classes at once):

* **2D models** (LiteMedSAM, SAM 2 used image by image): slice by slice. Each next slice is
  prompted with the previous slice's prediction: its bounding box grown by a margin and,
  optionally, its low-resolution logits. ``method="simple"`` is the original chain (10 % box
  growth, stop when the mask jumps). ``method="refined"`` (the default) is never below a plain
  box chain on the organs measured in docs/volume.md: the box grows by 2 pixels, or by 10 %
  where the voxels that adds look like the object; a chain stops
  when its mask stops looking like the object's intensities on the annotated slice (object vs
  surroundings histograms); several objects walk the slices together and never keep the same
  voxel; the 3D component holding the annotation is kept, holes filled. More annotated slices
  act as anchors: slices between two anchors are reached from both ends and take the nearer
  anchor's chain.
* **SAM 2 video predictor** (see :mod:`napari_segflow.core.segment.sam2_volume`): the slices are
  frames of a video; its memory carries the object forward and backward.

The intensity window is resolved once for the whole volume (:func:`volume_window`), so every
slice is mapped to 8 bits the same way and slices stay comparable. Embeddings go through the
model's own cache; only the slices visited are embedded, each once per sweep, and only the
current slice's embedding is held by this module (memory stays bounded for long volumes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from napari_segflow.core.segment.propagation import Prompt, PropagationCancelled

__all__ = [
    "Prompt",
    "PropagationCancelled",
    "mask_box",
    "mask_iou",
    "segment_volume",
    "segment_volume_multi",
    "volume_window",
]

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], object]
CancelFn = Callable[[], bool]


# --------------------------------------------------------------------------- small helpers
def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Inclusive ``(row_min, col_min, row_max, col_max)`` of a mask, ``None`` when empty.

    Examples
    --------
    >>> m = np.zeros((5, 6), bool); m[1:3, 2:5] = True
    >>> mask_box(m)
    (1, 2, 2, 4)
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1])


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty).

    Examples
    --------
    >>> a = np.zeros((4, 4), bool); a[:2] = True
    >>> b = np.zeros((4, 4), bool); b[:1] = True
    >>> mask_iou(a, b)
    0.5
    """
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else float(np.count_nonzero(a & b) / union)


def _grow_box(
    box, margin: float, shape: tuple[int, int], margin_px: int = 1
) -> tuple[int, int, int, int]:
    """Grow an inclusive box by ``margin`` of its size per side, at least ``margin_px`` pixels."""
    r0, c0, r1, c1 = box
    dr = max(margin_px, round(margin * (r1 - r0 + 1)))
    dc = max(margin_px, round(margin * (c1 - c0 + 1)))
    return (
        max(0, r0 - dr),
        max(0, c0 - dc),
        min(shape[0] - 1, r1 + dr),
        min(shape[1] - 1, c1 + dc),
    )


def volume_window(volume: np.ndarray, window="auto"):
    """One intensity window for the whole volume (so all slices map to 8 bits the same way).

    ``"auto"``: the CT soft-tissue window for Hounsfield data, else the volume's own 0.5-99.5
    percentiles as a fixed level/width. Other values (preset names, ``(level, width)``,
    ``Window``) are resolved by the engine and returned; a ``Percentile`` is turned into the
    fixed window of the *volume's* percentiles.

    Examples
    --------
    >>> v = np.full((3, 8, 8), -1000, np.int16); v[:, 2:6, 2:6] = 60
    >>> volume_window(v)
    Window(level=40, width=400)
    >>> volume_window(np.arange(1000, dtype=np.float32).reshape(10, 10, 10), (0.0, 100.0)).bounds
    (-50.0, 50.0)
    """
    from napari_segflow.core.segment.preprocess import (
        WINDOW_PRESETS,
        Percentile,
        Window,
        looks_like_hounsfield,
        resolve_window,
    )

    win = resolve_window(window)
    arr = np.asarray(volume)
    if win == "auto":
        if looks_like_hounsfield(arr):
            return WINDOW_PRESETS["ct-soft-tissue"]
        win = Percentile(0.5, 99.5)
    if isinstance(win, Percentile):
        # a strided sample keeps this cheap for 512x512x300 volumes
        step = max(1, arr.size // 2_000_000)
        sample = arr.reshape(-1)[::step].astype(np.float32)
        lo, hi = (float(v) for v in np.percentile(sample, (win.low, win.high)))
        if hi <= lo:
            hi = lo + 1.0
        return Window((lo + hi) / 2, hi - lo)
    if win is None:
        lo, hi = float(arr.min()), float(arr.max())
        return Window((lo + hi) / 2, max(hi - lo, 1.0))
    return win


def _check_volume(volume: np.ndarray, axis: int) -> tuple[np.ndarray, int]:
    arr = np.asarray(volume)
    if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] not in (3, 4)):
        raise ValueError(
            f"volume must be 3D (Z, Y, X) or 4D (Z, Y, X, C) with 3 or 4 channels, got shape {arr.shape}"
        )
    n_spatial = 3
    if not -n_spatial <= axis < n_spatial:
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    axis %= n_spatial
    if arr.shape[axis] < 1:
        raise ValueError("volume has no slices along the chosen axis")
    return np.moveaxis(arr, axis, 0), axis


def _check_range(slice_range, n: int) -> tuple[int, int]:
    if slice_range is None:
        return 0, n - 1
    lo, hi = (int(v) for v in slice_range)
    lo, hi = max(0, min(lo, hi)), min(n - 1, max(lo, hi))
    return lo, hi


# ------------------------------------------------------------------------ the 2D propagation
class _IntensityModel:
    """What the object's intensities look like next to its surroundings, on an annotated slice.

    Two histograms over the volume's window: the object's voxels and a ring of 5 pixels around
    it. A voxel's *object probability* is the object histogram's share at its intensity;
    :meth:`score` is its mean over a mask. A chain that slid onto a neighbouring structure keeps
    a plausible shape but loses that score.
    """

    BINS = 32
    RING = 5

    def __init__(self, values: np.ndarray, mask: np.ndarray, bounds: tuple[float, float]) -> None:
        from scipy import ndimage

        self.lo, hi = bounds
        self.scale = self.BINS / max(hi - self.lo, 1e-6)
        ring = ndimage.binary_dilation(mask, iterations=self.RING) & ~mask
        obj = self._hist(values[mask])
        bg = self._hist(values[ring])
        eps = 1e-4
        self.prob = (obj + eps) / (obj + bg + 2 * eps)
        self.reference = self.score(values, mask)

    def _bin(self, v: np.ndarray) -> np.ndarray:
        b = ((v.astype(np.float64) - self.lo) * self.scale).astype(np.int64)
        return np.clip(b, 0, self.BINS - 1)

    def _hist(self, v: np.ndarray) -> np.ndarray:
        from scipy import ndimage

        h = np.bincount(self._bin(v), minlength=self.BINS).astype(np.float64)
        return ndimage.gaussian_filter1d(h / max(h.sum(), 1.0), 1.0)

    def score(self, values: np.ndarray, mask: np.ndarray) -> float:
        """Mean object probability of the voxels in ``mask`` (0 when it is empty)."""
        if not mask.any():
            return 0.0
        return float(self.prob[self._bin(values[mask])].mean())


@dataclass
class _Track:
    """Propagation state of one object in one sweep."""

    class_id: int
    prev_mask: np.ndarray | None = None
    prev_logits: np.ndarray | None = None
    active: bool = False
    #: the object's intensities on the slice its chain (re)started from (``refined`` only)
    ref: _IntensityModel | None = None


def _prompt_kwargs(prompt: Prompt) -> dict:
    return {
        "box": prompt.box,
        "points": None if prompt.points is None else np.asarray(prompt.points, dtype=float),
        "point_labels": prompt.point_labels,
    }


def _depth(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.distance_transform_edt(mask)


def _resolve_overlaps(
    masks: Mapping[int, np.ndarray], fixed: Mapping[int, np.ndarray] | None = None
) -> dict[int, np.ndarray]:
    """Give each voxel to one object: a fixed (annotated) mask keeps its voxels, and a voxel
    two predictions claim goes to the one it lies deeper inside (farther from its border)."""
    out = {cid: m.copy() for cid, m in masks.items()}
    if fixed:
        for cid, m in out.items():
            for other, f in fixed.items():
                if other != cid:
                    m &= ~f
    if len(out) < 2:
        return out
    stack = np.stack(list(out.values()))
    clash = stack.sum(axis=0) > 1
    if not clash.any():
        return out
    depth = np.stack([_depth(m) for m in stack])
    winner = np.argmax(depth, axis=0)
    for i, cid in enumerate(out):
        out[cid] &= ~clash | (winner == i)
    return out


class _Sweeper:
    """Runs the slice-by-slice chains; one embedding per visited slice per sweep."""

    GROW = 0.1

    def __init__(
        self,
        model,
        stack: np.ndarray,
        window,
        *,
        margin: float,
        margin_px: int,
        iou_threshold: float,
        min_area: int,
        use_logits: bool,
        progress: ProgressFn | None,
        cancel: CancelFn | None,
        total_steps: int,
        intensity_check: float = 0.0,
        exclusive: bool = False,
        grow_check: float = 0.0,
    ) -> None:
        self.grow_check = grow_check
        self.model = model
        self.stack = stack
        self.window = window
        self.margin = margin
        self.margin_px = margin_px
        self.iou_threshold = iou_threshold
        self.min_area = min_area
        self.use_logits = use_logits
        self.intensity_check = intensity_check
        self.exclusive = exclusive
        self.progress = progress
        self.cancel = cancel
        self.total = max(1, total_steps)
        self.done = 0
        self.shape2d = stack.shape[1:3]
        bounds = getattr(window, "bounds", None)
        if bounds is None:
            bounds = (float(np.min(stack)), float(np.max(stack)))
        self.bounds = (float(bounds[0]), float(bounds[1]))

    def embed(self, z: int):
        if self.cancel is not None and self.cancel():
            raise PropagationCancelled("propagation cancelled")
        return self.model.embed(self.stack[z], window=self.window)

    def tick(self, final: bool = False) -> None:
        """One more slice handled (chains that stop early end with ``final``)."""
        self.done = self.total if final else self.done + 1
        if self.progress is not None:
            self.progress(min(self.done, self.total - (0 if final else 1)), self.total)

    def predict_prompt(self, emb, prompt: Prompt):
        if prompt.mask is not None:
            return np.asarray(prompt.mask, dtype=bool), None
        res = self.model.predict(emb, **_prompt_kwargs(prompt))
        return res.mask, res.logits

    def predict_from(self, emb, track: _Track):
        box = mask_box(track.prev_mask)
        if box is None:
            return None
        grown = _grow_box(box, self.margin, self.shape2d, self.margin_px)
        logits = track.prev_logits if self.use_logits else None
        return self.model.predict(emb, box=grown, mask_input=logits)

    def maybe_grow(self, emb, track: _Track, res, z: int):
        """Try a box grown by ``GROW`` of its size; keep it when what it adds looks like the object."""
        box = mask_box(track.prev_mask)
        wide = self.model.predict(emb, box=_grow_box(box, self.GROW, self.shape2d, self.margin_px))
        extra = wide.mask & ~res.mask
        if not extra.any() or mask_iou(wide.mask, res.mask) < 0.5:
            return res
        vals = self.intensities(z)
        if track.ref.score(vals, extra) >= self.grow_check * track.ref.reference:
            return wide
        return res

    def intensities(self, z: int) -> np.ndarray:
        sl = self.stack[z]
        return sl.mean(axis=-1) if sl.ndim == 3 else sl

    def intensity_model(self, z: int, mask: np.ndarray) -> _IntensityModel | None:
        if not self.intensity_check or not mask.any():
            return None
        return _IntensityModel(self.intensities(z), mask, self.bounds)

    def accept(self, track: _Track, mask: np.ndarray, z: int) -> bool:
        """Whether ``mask`` continues the object (else the chain stops)."""
        area = int(np.count_nonzero(mask))
        if area < self.min_area:
            return False
        if (
            self.iou_threshold
            and track.prev_mask is not None
            and mask_iou(mask, track.prev_mask) < self.iou_threshold
        ):
            return False
        if track.ref is not None:
            score = track.ref.score(self.intensities(z), mask)
            if score < self.intensity_check * track.ref.reference:
                return False
        return True

    def sweep(
        self,
        start: int,
        stop: int,
        step: int,
        tracks: list[_Track],
        out: dict[int, np.ndarray],
        anchors: Mapping[int, Mapping[int, np.ndarray]],
        anchor_logits: Mapping[int, Mapping[int, np.ndarray | None]],
    ) -> None:
        """Walk ``start`` (exclusive) to ``stop`` (inclusive) by ``step``; write masks to ``out``.

        ``out[class_id]`` is a (Z, H, W) bool array; ``anchors[class_id][z]`` are masks fixed by
        the annotator: a chain starts (and restarts) from them, so a track waits inactive until
        the sweep reaches its first anchor. All tracks walk together, so with ``exclusive`` no
        two objects keep the same voxel on a slice.
        """
        z = start
        while True:
            z += step
            if (step > 0 and z > stop) or (step < 0 and z < stop):
                return
            ahead = any(
                (k > z if step > 0 else k < z) for t in tracks for k in anchors.get(t.class_id, {})
            )
            fixed = {
                t.class_id: anchors[t.class_id][z]
                for t in tracks
                if z in anchors.get(t.class_id, {})
            }
            if not any(t.active for t in tracks) and not ahead and not fixed:
                return
            self.tick()
            emb = None
            new: dict[int, object] = {}
            for t in tracks:
                if t.class_id in fixed:
                    continue
                if not t.active:
                    continue
                if emb is None:
                    emb = self.embed(z)
                res = self.predict_from(emb, t)
                if res is None:
                    t.active = False
                    continue
                if self.grow_check and t.ref is not None:
                    res = self.maybe_grow(emb, t, res, z)
                new[t.class_id] = res
            masks = {cid: r.mask for cid, r in new.items()}
            if self.exclusive:
                masks = _resolve_overlaps(masks, fixed)
            for t in tracks:
                if t.class_id in fixed:  # an annotated slice: take it, restart the chain there
                    m = fixed[t.class_id]
                    out[t.class_id][z] = m
                    t.prev_mask = m
                    t.prev_logits = anchor_logits.get(t.class_id, {}).get(z)
                    t.active = bool(m.any())
                    t.ref = self.intensity_model(z, m)
                    continue
                if t.class_id not in masks:
                    continue
                m = masks[t.class_id]
                if not self.accept(t, m, z):
                    t.active = False
                    continue
                out[t.class_id][z] = m
                t.prev_mask, t.prev_logits = m, new[t.class_id].logits


def _keep_connected(masks: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Keep the 3D connected components of ``masks`` that touch ``seeds``; fill 2D holes."""
    from scipy import ndimage

    lab, n = ndimage.label(masks)
    if n > 1:
        keep = np.unique(lab[seeds & masks])
        keep = keep[keep > 0]
        if keep.size:
            masks = np.isin(lab, keep)
    for z in np.flatnonzero(masks.any(axis=(1, 2))):
        masks[z] = ndimage.binary_fill_holes(masks[z])
    return masks


def _normalise_prompts(
    prompts: Mapping[int, Prompt | Sequence[Prompt]], slice_index: int, n: int
) -> dict[int, dict[int, Prompt]]:
    out: dict[int, dict[int, Prompt]] = {}
    if not prompts:
        raise ValueError("prompts is empty: give at least one {class_id: Prompt(...)}")
    for cid, given in prompts.items():
        if int(cid) <= 0:
            raise ValueError(f"class ids must be positive (0 is background), got {cid}")
        items = [given] if isinstance(given, Prompt) else list(given)
        if not items:
            raise ValueError(f"class {cid} has no prompt")
        per_slice: dict[int, Prompt] = {}
        for p in items:
            if not isinstance(p, Prompt):
                raise ValueError(
                    f"prompts for class {cid} must be Prompt objects, got {type(p).__name__}"
                )
            z = slice_index if p.slice_index is None else int(p.slice_index)
            if not 0 <= z < n:
                raise ValueError(f"slice_index {z} is outside the volume's {n} slices")
            per_slice[z] = p
        out[int(cid)] = per_slice
    return out


def _propagate_2d(
    model,
    stack: np.ndarray,
    prompts: dict[int, dict[int, Prompt]],
    *,
    window,
    direction: str,
    slice_range: tuple[int, int],
    method: str,
    margin: float,
    margin_px: int,
    iou_threshold: float,
    min_area: int,
    use_logits: bool,
    progress: ProgressFn | None,
    cancel: CancelFn | None,
    intensity_check: float,
    grow_check: float = 0.0,
) -> dict[int, np.ndarray]:
    n, h, w = stack.shape[:3]
    lo, hi = slice_range
    refined = method == "refined"
    span = hi - lo + 1
    sweeper = _Sweeper(
        model,
        stack,
        window,
        margin=margin,
        margin_px=margin_px,
        iou_threshold=iou_threshold,
        min_area=min_area,
        use_logits=use_logits,
        progress=progress,
        cancel=cancel,
        total_steps=span,
        intensity_check=intensity_check if refined else 0.0,
        exclusive=refined,
        grow_check=grow_check if refined else 0.0,
    )
    out = {cid: np.zeros((n, h, w), dtype=bool) for cid in prompts}
    anchors: dict[int, dict[int, np.ndarray]] = {cid: {} for cid in prompts}
    first_logits: dict[int, dict[int, np.ndarray | None]] = {cid: {} for cid in prompts}

    # 1. the annotated slices themselves
    for z in sorted({z for per in prompts.values() for z in per}):
        sweeper.tick()
        emb = None
        here: dict[int, np.ndarray] = {}
        for cid, per in prompts.items():
            if z not in per:
                continue
            p = per[z]
            if p.mask is None and emb is None:
                emb = sweeper.embed(z)
            mask, logits = sweeper.predict_prompt(emb, p)
            if mask.shape != (h, w):
                raise ValueError(
                    f"the mask for class {cid} has shape {mask.shape}, slices are {(h, w)}"
                )
            here[cid] = mask
            first_logits[cid][z] = logits
        if refined:  # two boxes on one slice may overlap: the deeper object keeps a voxel
            given = {
                c: np.asarray(prompts[c][z].mask, bool)
                for c in here
                if prompts[c][z].mask is not None
            }
            predicted = {c: m for c, m in here.items() if c not in given}
            here = {**_resolve_overlaps(predicted, given), **given}
        for cid, mask in here.items():
            out[cid][z] = mask
            anchors[cid][z] = mask

    def _tracks() -> list[_Track]:
        return [_Track(cid) for cid in prompts]

    # 2. one forward sweep from the lowest anchor, one backward sweep from the highest, all
    # objects together; anchors in between restart a chain, so slices between two anchors are
    # reached from both ends and the nearer anchor's chain wins (below)
    first = min(min(a) for a in anchors.values())
    last = max(max(a) for a in anchors.values())
    if direction in ("both", "forward"):
        sweeper.sweep(first - 1, hi, +1, _tracks(), out, anchors, first_logits)
    if direction in ("both", "backward"):
        back = {cid: np.zeros_like(m) for cid, m in out.items()}
        sweeper.sweep(last + 1, lo, -1, _tracks(), back, anchors, first_logits)
        for cid in out:
            a = sorted(anchors[cid])
            for z in range(lo, hi + 1):
                if not back[cid][z].any() or z in anchors[cid]:
                    continue
                if z < a[0] or direction == "backward":
                    out[cid][z] = back[cid][z]
                    continue
                if z > a[-1]:
                    continue
                # between two anchors: the nearer anchor's chain wins
                below = max(k for k in a if k < z)
                above = min(k for k in a if k > z)
                if above - z < z - below or not out[cid][z].any():
                    out[cid][z] = back[cid][z]

    if refined:
        if len(out) > 1:  # chains of different directions may still meet on a slice
            for z in range(lo, hi + 1):
                claim = {cid: m[z] for cid, m in out.items() if m[z].any()}
                if len(claim) > 1:
                    fixed = {c: anchors[c][z] for c in claim if z in anchors[c]}
                    free = {c: m for c, m in claim.items() if c not in fixed}
                    for cid, m in _resolve_overlaps(free, fixed).items():
                        out[cid][z] = m
        for cid in out:
            seeds = np.zeros_like(out[cid])
            for z, m in anchors[cid].items():
                seeds[z] = m
            out[cid] = _keep_connected(out[cid], seeds)
            for z, m in anchors[cid].items():
                out[cid][z] = m
    sweeper.tick(final=True)
    return out


# ------------------------------------------------------------------------------ public API
#: what ``margin``, ``margin_px`` and ``iou_threshold`` mean when left at ``None``
METHOD_DEFAULTS: dict[str, dict[str, float]] = {
    # the original chain: box grown by 10 % of its size, stop when the mask jumps
    "simple": {"margin": 0.1, "margin_px": 1, "iou_threshold": 0.3},
    # measured in docs/volume.md: a 2-pixel growth never leaks into neighbours the way 10 %
    # does on CT-like contrast; the intensity check is what stops a chain
    "refined": {"margin": 0.0, "margin_px": 2, "iou_threshold": 0.0},
}


def _sam2_network(model):
    """The SAM 2 network behind ``model`` when it is a SAM 2 model, else ``None``."""
    name = str(getattr(model, "name", ""))
    module = type(model).__module__
    if not (name.startswith("sam2") or module.startswith("sam2") or "sam2" in module):
        return None
    from napari_segflow.core.segment.sam2_volume import find_sam2_base

    return find_sam2_base(model)


def segment_volume_multi(
    model,
    volume: np.ndarray,
    prompts: Mapping[int, Prompt | Sequence[Prompt]],
    slice_index: int,
    *,
    axis: int = 0,
    direction: str = "both",
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    slice_range: tuple[int, int] | None = None,
    window="auto",
    method: str = "refined",
    margin: float | None = None,
    iou_threshold: float | None = None,
    min_area: int = 4,
    use_logits: bool = False,
    intensity_check: float = 0.6,
    backend: str = "auto",
    margin_px: int | None = None,
    grow_check: float = 0.8,
) -> np.ndarray:
    """Segment several objects through a volume from prompts on one (or a few) slices.

    Parameters
    ----------
    model : PromptableModel
        From :func:`napari_segflow.core.segment.load_model`. A SAM 2 model propagates with its
        video predictor's memory; other models slice by slice.
    volume : (Z, Y, X) or (Z, Y, X, C) array
        Any numeric dtype (CT in Hounsfield units, MR, microscopy).
    prompts : {class_id: Prompt or [Prompt, ...]}
        Per class, the prompt(s) drawn by the annotator. A prompt without ``slice_index`` lies
        on ``slice_index``; several prompts for one class on different slices are anchors.
    slice_index : int
        The slice (along ``axis``) the prompts were drawn on.
    axis : int
        The axis to propagate along (the slice axis; 0 for napari volumes read by segflow).
    direction : {"both", "forward", "backward"}
        Forward is increasing slice index.
    progress : callable(done, total), optional
    cancel : callable() -> bool, optional
        Polled before every slice; when it returns True, :class:`PropagationCancelled` is raised.
    slice_range : (first, last), optional
        Inclusive range of slices to cover; nothing outside it is segmented.
    window : "auto", preset name, (level, width), Window or Percentile
        Resolved once for the whole volume by :func:`volume_window`.
    method : {"refined", "simple"}
        ``"simple"``: the original chain, each slice prompted from the previous one's box grown
        by 10 %, stopping when the mask jumps. ``"refined"`` (2D models only; measured in
        docs/volume.md): the box grows by 2 pixels, a chain stops when its mask stops looking
        like the annotated object's intensities, several objects propagate together without
        sharing voxels, and the 3D component holding the annotation is kept, holes filled.
    margin : float, optional
        Each propagated box grows by this fraction of its size on every side (``None``: 0.1
        for ``"simple"``, 0 for ``"refined"``).
    iou_threshold : float, optional
        A chain stops when a slice's mask overlaps the previous one less than this (``None``:
        0.3 for ``"simple"``, off for ``"refined"``).
    min_area : int
        A chain stops when the mask has fewer pixels (the object vanished).
    use_logits : bool
        Also pass the previous slice's low-resolution logits as ``mask_input`` (2D models).
    intensity_check : float
        ``"refined"`` only. On each annotated slice the object's intensity histogram is
        compared with that of a 5-pixel ring around it; a chain stops when its new mask's mean object probability falls below this share of
        the annotated mask's own (0 turns the check off).
    backend : {"auto", "slices"}
        ``"auto"`` tracks with SAM 2's video memory when ``model`` is a SAM 2 model (an engine
        model, a built ``SAM2Base`` or a ``SAM2VideoPredictor``); ``"slices"`` forces the
        slice-by-slice chain (any model with ``embed``/``predict``).
    margin_px : int, optional
        The least growth of a propagated box, in pixels per side (``None``: 1 for
        ``"simple"``, 2 for ``"refined"``).
    grow_check : float
        ``"refined"`` only: on every slice a box grown by 10 % is tried as well; its mask is
        taken when the voxels it adds reach this share of the annotated mask's mean object
        probability (and it overlaps the 2-pixel mask by IoU >= 0.5), so a growing organ is
        followed without leaking into a neighbour of other intensities (0 turns it off).

    Returns
    -------
    (Z, Y, X) ndarray of the smallest unsigned dtype for the class ids
        0 where no object is. ``"refined"``: a voxel two objects' chains claim goes to the one
        it lies deeper inside, and an annotated mask keeps its voxels; ``"simple"``: the later
        class in ``prompts`` wins.

    Examples
    --------
    >>> # model = load_model("medsam-lite")
    >>> # labels = segment_volume_multi(model, ct, {5: Prompt(box=(40, 30, 90, 80))}, 60)
    """
    if direction not in ("both", "forward", "backward"):
        raise ValueError(f"direction must be 'both', 'forward' or 'backward', got {direction!r}")
    if method not in ("refined", "simple"):
        raise ValueError(f"method must be 'refined' or 'simple', got {method!r}")
    defaults = METHOD_DEFAULTS[method]
    stack, axis = _check_volume(volume, axis)
    n = stack.shape[0]
    if not 0 <= int(slice_index) < n:
        raise ValueError(
            f"slice_index {slice_index} is outside the volume's {n} slices along axis {axis}"
        )
    lo, hi = _check_range(slice_range, n)
    norm = _normalise_prompts(prompts, int(slice_index), n)
    for cid, per in norm.items():
        outside = [z for z in per if not lo <= z <= hi]
        if outside:
            raise ValueError(
                f"class {cid} is prompted on slice {outside[0]}, outside slice_range {lo}-{hi}"
            )
    win = volume_window(stack, window)
    net = _sam2_network(model) if backend == "auto" else None
    if backend not in ("auto", "slices"):
        raise ValueError(f"backend must be 'auto' or 'slices', got {backend!r}")
    if net is not None:
        from napari_segflow.core.segment.sam2_volume import propagate_video

        masks = propagate_video(
            net,
            stack,
            norm,
            window=win,
            direction=direction,
            slice_range=(lo, hi),
            progress=progress,
            cancel=cancel,
        )
    else:
        masks = _propagate_2d(
            model,
            stack,
            norm,
            window=win,
            direction=direction,
            slice_range=(lo, hi),
            method=method,
            margin=defaults["margin"] if margin is None else float(margin),
            margin_px=defaults["margin_px"] if margin_px is None else int(margin_px),
            iou_threshold=defaults["iou_threshold"] if iou_threshold is None else iou_threshold,
            min_area=min_area,
            use_logits=use_logits,
            progress=progress,
            cancel=cancel,
            intensity_check=intensity_check,
            grow_check=grow_check,
        )
    top = max(masks)
    labels = np.zeros(stack.shape[:3], dtype=np.uint8 if top <= 255 else np.uint16)
    for cid, m in masks.items():
        labels[m] = cid
    return np.moveaxis(labels, 0, axis)


def segment_volume(
    model,
    volume: np.ndarray,
    slice_index: int,
    box: tuple[float, float, float, float] | None = None,
    points: Sequence[Sequence[float]] | np.ndarray | None = None,
    point_labels: Sequence[int] | np.ndarray | None = None,
    axis: int = 0,
    direction: str = "both",
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    *,
    more_prompts: Sequence[Prompt] = (),
    mask: np.ndarray | None = None,
    **options,
) -> np.ndarray:
    """Segment one object through a volume from a prompt on one slice.

    Parameters
    ----------
    model, volume, slice_index, axis, direction, progress, cancel
        As in :func:`segment_volume_multi`.
    box : (row_min, col_min, row_max, col_max), inclusive, optional
        In the coordinates of the slice ``volume.take(slice_index, axis)``.
    points, point_labels : optional
        Clicks ``(row, col)`` on that slice, 1 positive / 0 negative.
    more_prompts : sequence of Prompt
        Further annotated slices of the same object (each with its ``slice_index``): they
        anchor the propagation, slices between two anchors are prompted from both ends.
    mask : (H, W) bool array, optional
        An accepted mask on ``slice_index`` to start from instead of a prediction.
    **options
        ``slice_range``, ``window``, ``method``, ``margin``, ``margin_px``, ``iou_threshold``,
        ``min_area``, ``use_logits``, ``intensity_check``, ``grow_check``, ``backend`` as in
        :func:`segment_volume_multi`.

    Returns
    -------
    bool ndarray with the volume's (spatial) shape

    Examples
    --------
    >>> # mask = segment_volume(load_model("medsam-lite"), mr, 10, box=(40, 30, 70, 60))
    """
    first = Prompt(box=box, points=points, point_labels=point_labels, mask=mask)
    labels = segment_volume_multi(
        model,
        volume,
        {1: [first, *more_prompts]},
        slice_index,
        axis=axis,
        direction=direction,
        progress=progress,
        cancel=cancel,
        **options,
    )
    return labels.astype(bool)
