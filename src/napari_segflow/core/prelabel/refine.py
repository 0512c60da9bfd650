"""Pre-labelling: refine coarse regions into pixel-accurate masks with a promptable model.

A coarse label image (old polygon annotations rasterised, a COCO file, rough paint strokes) is
split into objects, one connected component per class. Each object is refined by the model
from three prompts: the box of the region, the coarse mask itself as low-resolution mask logits
(for backends that take a mask prompt), and, for backends trained with clicks, points inside and
outside. The model is then only allowed to move the boundary inside a thin band around the
coarse boundary, and its version is kept only where it agrees with the coarse shape; otherwise
the coarse region stays as it was and the object is flagged for a person. Good coarse input is
therefore never replaced by a worse guess.

Every pixel the model changed is marked :data:`~napari_segflow.core.provenance.AI_PENDING` in
the provenance array, so the napari widgets ask a person to confirm it. Classes with
``ai_assist: false`` are copied untouched.

Nothing here imports dask or torch at module level; the model is any
:class:`~napari_segflow.core.segment.PromptableModel`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_segflow.core.provenance import AI_PENDING, new_provenance
from napari_segflow.core.taxonomy import Taxonomy

__all__ = [
    "ObjectPrompt",
    "ObjectResult",
    "PrelabelResult",
    "RefineOptions",
    "band_mask",
    "coarse_mask_logits",
    "grey_gradient",
    "mask_iou",
    "objects_from_labels",
    "prelabel_image",
    "ring_gradients",
]

#: Status of an object in :class:`ObjectResult`.
REFINED = "refined"  # the model's boundary was kept (changed pixels are AI-pending)
UNCHANGED = "unchanged"  # counted apart: the model agreed with the coarse shape exactly
KEPT = "kept"  # the model disagreed with the coarse shape: coarse kept, flagged for review
COPIED = "copied"  # class has ai_assist false: copied untouched
ADDED = "added"  # box/points-only prompt: the model's mask was painted
REJECTED = "rejected"  # box/points-only prompt whose prediction was not trusted: flagged


@dataclass(frozen=True)
class RefineOptions:
    """Knobs of the refinement; the defaults were chosen on the datasets in docs/prelabel.md.

    Attributes
    ----------
    band : float
        Half-width of the band where the model may move the boundary, as a fraction of the
        square root of the object's area (its typical radius scale).
    min_band_px, max_band_px : int
        Limits of that half-width in pixels.
    min_iou : float
        Keep the model's version only if its IoU with the coarse region is at least this.
    min_score : float
        ... and the model's own quality estimate is at least this.
    min_score_new : float
        Box/point-only prompts (no coarse mask to compare with) paint the model's mask only when
        its quality estimate is at least this.
    mask_logit : float
        Magnitude of the logits built from the coarse mask (inside +, outside -).
    use_points : bool or None
        Add a positive point at the region's deepest pixel and negative points just outside its
        box. ``None``: only for backends trained with clicks (``model.supports_points``).
    context : float
        The model sees a window around the object's box enlarged by this fraction of the box
        size on every side (small objects would otherwise be a few pixels in the model's frame).
    min_window : int
        Smallest side of that window in pixels.
    embed_tile : int
        Images whose longest side is at most this are embedded once, whole, and that one
        embedding serves all their objects (their decoder calls are batched where the model
        allows). Larger images are covered by overlapping square tiles of this side, each
        embedded once when an object needs it; an object no tile holds gets its own window.
    zoom_below : float
        An object whose box spans fewer than this many of the model's input pixels in the shared
        embedding (LiteMedSAM sees 256, SAM 2 1024 per side) gets its own zoomed embedding of the
        window around it (``context``, ``min_window``), where the model sees it larger. 0: never.
    connectivity : int
        1 (4-connected) or 2 (8-connected) components.
    confidence : float
        Inside the band, a pixel changes side only where the model's logit says so with at
        least this magnitude (4.0 is a probability of 0.98): boundary jitter, where the model
        hesitates, never overrides a drawn boundary.
    min_width : int
        Changes are kept only where they are at least this many pixels wide (a morphological
        opening of the added and of the removed pixels): a cut corner or a missed lobe is
        corrected, a one-pixel strip along the boundary is not.
    edge_check : bool
        Keep a changed piece only if the image's gradient is stronger along the boundary the
        model proposes than along the drawn one, next to that piece: moving a drawn boundary
        needs evidence in the picture, not only the model's word.
    """

    band: float = 0.2
    min_band_px: int = 2
    max_band_px: int = 12
    min_iou: float = 0.95
    min_score: float = 0.0
    min_score_new: float = 0.5
    mask_logit: float = 8.0
    use_points: bool | None = None
    context: float = 1.0
    min_window: int = 64
    embed_tile: int = 1024
    zoom_below: float = 0.0
    connectivity: int = 2
    confidence: float = 4.0
    min_width: int = 5
    edge_check: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.min_iou <= 1:
            raise ValueError(f"min_iou must be in 0..1, got {self.min_iou}")
        if self.band < 0 or self.min_band_px < 0 or self.max_band_px < self.min_band_px:
            raise ValueError("band widths must be >= 0 and max_band_px >= min_band_px")
        if self.connectivity not in (1, 2):
            raise ValueError(f"connectivity must be 1 or 2, got {self.connectivity}")
        if self.context < 0 or self.min_window < 8:
            raise ValueError("context must be >= 0 and min_window >= 8")
        if self.embed_tile < 64 or self.zoom_below < 0:
            raise ValueError("embed_tile must be >= 64 and zoom_below >= 0")

    def to_dict(self) -> dict:
        """Plain values (for job files and reports)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True, eq=False)
class ObjectPrompt:
    """What is known about one object before the model runs.

    Attributes
    ----------
    class_id : int
        Class id written for the object.
    mask : (H, W) bool ndarray or None
        Coarse region (full image size). None for a box/points-only prompt.
    box : (row_min, col_min, row_max, col_max) or None
        Inclusive box; derived from ``mask`` when not given.
    points : (N, 2) array of (row, col) or None
    point_labels : (N,) array of 1/0 or None
    """

    class_id: int
    mask: np.ndarray | None = field(default=None, repr=False)
    box: tuple[int, int, int, int] | None = None
    points: np.ndarray | None = field(default=None, repr=False)
    point_labels: np.ndarray | None = field(default=None, repr=False)

    def bbox(self) -> tuple[int, int, int, int]:
        """The inclusive box, from ``box``, else from ``mask``, else from ``points``."""
        if self.box is not None:
            return tuple(int(round(v)) for v in self.box)  # type: ignore[return-value]
        if self.mask is not None and self.mask.any():
            rows = np.flatnonzero(self.mask.any(axis=1))
            cols = np.flatnonzero(self.mask.any(axis=0))
            return (int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1]))
        if self.points is not None and len(self.points):
            p = np.asarray(self.points)
            lo, hi = np.floor(p.min(axis=0)), np.ceil(p.max(axis=0))
            return (int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1]))
        raise ValueError(f"object of class {self.class_id} has no mask, box or points")


@dataclass(frozen=True)
class ObjectResult:
    """What happened to one object.

    Attributes
    ----------
    class_id : int
    box : (row_min, col_min, row_max, col_max)
    area : int
        Pixels of the coarse region (0 for box/points-only prompts).
    status : str
        ``"refined"``, ``"kept"`` (flagged), ``"copied"`` (ai_assist false), ``"added"`` or
        ``"rejected"`` (flagged).
    score : float
        The model's quality estimate (NaN when the model did not run).
    iou_coarse : float
        IoU of the band-limited model version with the coarse region (NaN without one).
    changed : int
        Pixels the model changed in the output.
    reason : str
        Why an object was kept or rejected.
    """

    class_id: int
    box: tuple[int, int, int, int]
    area: int
    status: str
    score: float = math.nan
    iou_coarse: float = math.nan
    changed: int = 0
    reason: str = ""

    @property
    def flagged(self) -> bool:
        """Whether a person should look at this object."""
        return self.status in (KEPT, REJECTED)


@dataclass(frozen=True, eq=False)
class PrelabelResult:
    """Output of :func:`prelabel_image`.

    Attributes
    ----------
    labels : (H, W) ndarray
        Class-index label image.
    provenance : (H, W) uint8 ndarray
        ``AI_PENDING`` on every pixel the model changed, ``HUMAN`` elsewhere.
    objects : tuple of ObjectResult
    copied_classes : tuple of int
        Classes with ``ai_assist: false`` that were present and copied untouched.
    """

    labels: np.ndarray = field(repr=False)
    provenance: np.ndarray = field(repr=False)
    objects: tuple[ObjectResult, ...] = ()
    copied_classes: tuple[int, ...] = ()

    @property
    def flagged(self) -> list[ObjectResult]:
        """Objects a person must look at (model disagreed or was not trusted)."""
        return [o for o in self.objects if o.flagged]

    def counts(self) -> dict[str, int]:
        """``{status: number of objects}``.

        ``"refined"`` counts only objects whose pixels the model changed; an object the model
        agreed with exactly (status ``"refined"``, ``changed == 0``) counts as ``"unchanged"``,
        so a summary's "refined N" is what a reviewer will find changed.
        """
        out: dict[str, int] = {}
        for o in self.objects:
            key = UNCHANGED if o.status == REFINED and o.changed == 0 else o.status
            out[key] = out.get(key, 0) + 1
        return out

    def to_dict(self) -> dict:
        """JSON-ready summary (no arrays)."""

        def num(v: float) -> float | None:
            return None if math.isnan(v) else round(float(v), 6)

        return {
            "counts": self.counts(),
            "pending_pixels": int(np.count_nonzero(self.provenance == AI_PENDING)),
            "copied_classes": list(self.copied_classes),
            "objects": [
                {
                    "class_id": o.class_id,
                    "box": list(o.box),
                    "area": o.area,
                    "status": o.status,
                    "score": num(o.score),
                    "iou_coarse": num(o.iou_coarse),
                    "changed": o.changed,
                    "reason": o.reason,
                }
                for o in self.objects
            ],
        }


# ------------------------------------------------------------------------------- helpers
def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks; 1.0 when both are empty.

    Examples
    --------
    >>> a = np.zeros((4, 4), bool); a[:2] = True
    >>> b = np.zeros((4, 4), bool); b[:, :2] = True
    >>> mask_iou(a, b)
    0.3333333333333333
    """
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else float(np.count_nonzero(a & b) / union)


def band_mask(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` pixels (chessboard distance) of the boundary of ``mask``.

    Examples
    --------
    >>> m = np.zeros((7, 7), bool); m[2:5, 2:5] = True
    >>> band_mask(m, 1).astype(int)[3].tolist()
    [0, 1, 1, 0, 1, 1, 0]
    """
    m = np.asarray(mask, dtype=bool)
    if width <= 0:
        return np.zeros_like(m)
    st = np.ones((3, 3), bool)
    grown = ndi.binary_dilation(m, st, iterations=width)
    shrunk = ndi.binary_erosion(m, st, iterations=width, border_value=1)
    return grown & ~shrunk


def _mask_frame(model, h: int, w: int) -> tuple[int, int, int] | None:
    """How the backend maps an ``h x w`` image onto its square low-res mask grid.

    Returns ``(size, rows, cols)``: the image occupies the top-left ``rows x cols`` of a
    ``size x size`` grid, or ``None`` when the backend takes no mask prompt we know how to build.
    """
    size = int(getattr(model, "mask_input_size", 256))
    name = str(getattr(model, "name", ""))
    if name == "medsam-lite":
        # longest side resized to the grid, aspect kept, zero padding bottom/right
        scale = size / max(h, w)
        return size, max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))
    if name.startswith("sam2"):
        # SAM 2 resizes the whole image to a square without padding
        return size, size, size
    return None


def coarse_mask_logits(mask: np.ndarray, model, *, magnitude: float = 8.0) -> np.ndarray | None:
    """Low-resolution mask logits that say "this region" to ``model``, built from a coarse mask.

    The mask goes through the same geometry as the image in the backend's preprocessing
    (resize, then padding), area-averaged so a partly covered low-res cell gets a logit between
    ``-magnitude`` and ``+magnitude``; padding is "outside".

    Parameters
    ----------
    mask : (H, W) bool array
        Coarse region, at the size of the image given to ``model.embed``.
    model : PromptableModel
    magnitude : float

    Returns
    -------
    (1, S, S) float32 array, or None when the backend takes no mask prompt.
    """
    m = np.asarray(mask, dtype=np.float32)
    frame = _mask_frame(model, *m.shape)
    if frame is None:
        return None
    size, rows, cols = frame
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(m))[None, None]
    frac = F.interpolate(t, size=(rows, cols), mode="area")[0, 0].numpy()
    out = np.full((size, size), -magnitude, dtype=np.float32)
    out[:rows, :cols] = (2.0 * frac - 1.0) * magnitude
    return out[None]


def objects_from_labels(
    labels: np.ndarray,
    *,
    taxonomy: Taxonomy | None = None,
    connectivity: int = 2,
) -> list[ObjectPrompt]:
    """One :class:`ObjectPrompt` per connected component of each class in a label image.

    The unlabelled id of ``taxonomy`` (0 without a taxonomy) is skipped. Objects come in class
    order, then in raster order of their first pixel.

    Examples
    --------
    >>> lab = np.array([[1, 1, 0, 2], [0, 0, 0, 2], [1, 0, 0, 0]])
    >>> [(o.class_id, o.bbox()) for o in objects_from_labels(lab, connectivity=1)]
    [(1, (0, 0, 0, 1)), (1, (2, 0, 2, 0)), (2, (0, 3, 1, 3))]
    """
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"label image must be 2D, got shape {lab.shape}")
    skip = 0 if taxonomy is None else taxonomy.unlabeled_id
    st = ndi.generate_binary_structure(2, connectivity)
    out: list[ObjectPrompt] = []
    for cid in np.unique(lab).tolist():
        if cid == skip or (taxonomy is not None and taxonomy.ignore_id == cid):
            continue
        comp, n = ndi.label(lab == cid, structure=st)
        for i, sl in enumerate(ndi.find_objects(comp), start=1):
            m = np.zeros(lab.shape, bool)
            m[sl] = comp[sl] == i
            box = (sl[0].start, sl[1].start, sl[0].stop - 1, sl[1].stop - 1)
            out.append(ObjectPrompt(int(cid), mask=m, box=box))
        del n
    return out


def _window(box, shape, opts: RefineOptions) -> tuple[slice, slice]:
    """The zoomed window of one object: its box grown by ``context``, at least ``min_window``."""
    r0, c0, r1, c1 = box
    out = []
    for lo, hi, n in ((r0, r1, shape[0]), (c0, c1, shape[1])):
        size = hi - lo + 1
        side = max(int(math.ceil(size * (1 + 2 * opts.context))), opts.min_window)
        side = min(side, n)
        start = int(round((lo + hi) / 2 - (side - 1) / 2))
        start = min(max(start, 0), n - side)
        out.append(slice(start, start + side))
    return out[0], out[1]


def _full_logits(model, low: np.ndarray, shape: tuple[int, int]) -> np.ndarray | None:
    """The low-resolution logits of a result brought back to the window, as the backend does."""
    frame = _mask_frame(model, *shape)
    if frame is None:
        return None
    _, rows, cols = frame
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(low, dtype=np.float32)).reshape(
        1, 1, *low.shape[-2:]
    )
    up = F.interpolate(t[..., :rows, :cols], size=shape, mode="bilinear", align_corners=False)
    return up[0, 0].numpy()


def grey_gradient(image: np.ndarray) -> np.ndarray:
    """Gradient magnitude (Gaussian, sigma 1) of a picture's grey level (channels averaged)."""
    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 3:
        a = a.mean(axis=2)
    return ndi.gaussian_gradient_magnitude(a, sigma=1.0)


def ring_gradients(
    grad: np.ndarray, before: np.ndarray, piece: np.ndarray, grows: bool, structure=None
) -> tuple[np.floating, np.floating] | None:
    """Mean gradient along the outline a changed piece makes and along the drawn one beside it.

    ``before`` is the drawn region and ``piece`` the pixels added (``grows``) or removed, both
    on ``grad``'s window; outlines are the region less its erosion by ``structure`` (SciPy's
    default cross when None), kept within two pixels of the piece. Returns ``(new, old)``, or
    None when either outline is empty there.
    """
    after = (before | piece) if grows else (before & ~piece)
    near = ndi.binary_dilation(piece, np.ones((3, 3), bool), iterations=2)
    old = near & (before & ~ndi.binary_erosion(before, structure, border_value=1))
    new = near & (after & ~ndi.binary_erosion(after, structure, border_value=1))
    if not (old.any() and new.any()):
        return None
    return grad[new].mean(), grad[old].mean()  # numpy scalars: the callers compare as before


def _edge_supported(image, coarse, add, drop):
    """Keep each changed piece only if the image shows a stronger edge where the model puts
    the boundary than where the person drew it (mean gradient magnitude on the two rings)."""
    grad = grey_gradient(image)
    st = np.ones((3, 3), bool)
    kept = []
    for change, grows in ((add, True), (drop, False)):
        comp, n = ndi.label(change, structure=st)
        out = np.zeros_like(change)
        for i, sl in enumerate(ndi.find_objects(comp), start=1):
            # a window around the piece, one pixel wider than the piece on every side
            sl = tuple(slice(max(s.start - 2, 0), s.stop + 2) for s in sl)
            piece = comp[sl] == i
            rings = ring_gradients(grad[sl], coarse[sl], piece, grows, st)
            if rings is not None and rings[0] > rings[1]:
                out[sl] |= piece
        kept.append(out)
    return kept[0], kept[1]


def _points(mask: np.ndarray, box) -> tuple[np.ndarray, np.ndarray]:
    """A positive point at the deepest pixel of ``mask``; negatives just outside the box corners."""
    dist = ndi.distance_transform_edt(mask)
    r, c = np.unravel_index(int(np.argmax(dist)), mask.shape)
    pts = [(r, c)]
    r0, c0, r1, c1 = box
    h, w = mask.shape
    for rr, cc in ((r0 - 2, (c0 + c1) // 2), (r1 + 2, (c0 + c1) // 2)):
        if 0 <= rr < h and not mask[rr, cc]:
            pts.append((rr, cc))
    for rr, cc in (((r0 + r1) // 2, c0 - 2), ((r0 + r1) // 2, c1 + 2)):
        if 0 <= cc < w and not mask[rr, cc]:
            pts.append((rr, cc))
    labels = [1] + [0] * (len(pts) - 1)
    return np.asarray(pts, dtype=np.float64), np.asarray(labels, dtype=np.int32)


def _input_side(model) -> int:
    """Side of the square picture the model's encoder sees."""
    return 1024 if str(getattr(model, "name", "")).startswith("sam2") else 256


def _tiles(shape, side: int) -> list[tuple[slice, slice]]:
    """Square windows of ``side`` covering ``shape``, overlapping by a quarter (one if it fits)."""
    axes = []
    for n in shape:
        if n <= side:
            axes.append([slice(0, n)])
            continue
        step = side - side // 4
        starts = list(range(0, n - side, step)) + [n - side]
        axes.append([slice(a, a + side) for a in starts])
    return [(rs, cs) for rs in axes[0] for cs in axes[1]]


def _grown(box, margin: int, shape) -> tuple[slice, slice]:
    r0, c0, r1, c1 = box
    return (
        slice(max(r0 - margin, 0), min(r1 + margin + 1, shape[0])),
        slice(max(c0 - margin, 0), min(c1 + margin + 1, shape[1])),
    )


def _plan(box, shape, tiles, model, opts: RefineOptions):
    """Where one object is seen: ``(source window embedded, local window judged in)``.

    The source is the tile (or the whole image) that holds the object's box with room for its
    band, the one whose centre is nearest the box; the local window is the box grown by the band
    and the width filter, inside that tile. Objects that span too few of the model's input pixels
    there (``zoom_below``), or that no tile holds, get their own zoomed window for both.
    """
    r0, c0, r1, c1 = box
    margin = opts.max_band_px + opts.min_width + 3
    need = _grown(box, margin, shape)
    best = None
    for rs, cs in tiles:
        if rs.start <= need[0].start and need[0].stop <= rs.stop:
            if cs.start <= need[1].start and need[1].stop <= cs.stop:
                d = abs((rs.start + rs.stop) - (r0 + r1)) + abs((cs.start + cs.stop) - (c0 + c1))
                if best is None or d < best[0]:
                    best = (d, (rs, cs))
    if best is not None:
        rs, cs = best[1]
        side = max(rs.stop - rs.start, cs.stop - cs.start)
        seen = max(r1 - r0 + 1, c1 - c0 + 1) * _input_side(model) / side
        if seen >= opts.zoom_below:
            # the local window: enough for the band, plus the object's context for the edge check
            local = _grown(box, margin, shape)
            return (rs, cs), local
    win = _window(box, shape, opts)
    return win, win


# ------------------------------------------------------------------------------- main
def prelabel_image(
    image: np.ndarray,
    model,
    *,
    coarse: np.ndarray | None = None,
    prompts: Iterable[ObjectPrompt] | None = None,
    taxonomy: Taxonomy | None = None,
    options: RefineOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    window: Any = ...,
) -> PrelabelResult:
    """Refine coarse regions of one 2D image into pixel-accurate masks.

    Parameters
    ----------
    image : (H, W) or (H, W, C) array
        The picture the model embeds (any dtype; the model's window applies).
    model : PromptableModel
        From :func:`napari_segflow.core.segment.load_model`.
    coarse : (H, W) integer array, optional
        Coarse class-index labels. Each connected component of each class becomes an object
        (:func:`objects_from_labels`) unless ``prompts`` is given; the output starts as a copy.
    prompts : iterable of ObjectPrompt, optional
        Objects given explicitly (COCO instances, boxes, points). Prompts with a mask are
        painted into the starting label image (over ``coarse`` when both are given) and refined;
        box/points-only prompts paint the model's mask on unlabelled pixels when trusted.
    taxonomy : Taxonomy, optional
        Classes with ``ai_assist: false`` are copied untouched; gives the unlabelled id
        (0 without a taxonomy).
    options : RefineOptions, optional
    progress : callable, optional
        ``progress(done, total)`` after each object.
    cancel : callable, optional
        Returning True raises ``InterruptedError``.
    window : optional
        Intensity window for the model's embeddings (overrides the model's own; a volume
        passes one window for all its slices, see :func:`prelabel_volume`).

    Returns
    -------
    PrelabelResult

    Notes
    -----
    The model may change a pixel only (a) inside the band around the object's coarse boundary
    and (b) when the pixel is the object's own or unlabelled in the input; it never takes
    pixels of another object. An object whose band-limited model version has an IoU with its
    coarse region below ``min_iou`` (or a score below ``min_score``) is kept as drawn and flagged.
    """
    opts = options or RefineOptions()
    img = np.asarray(image)
    if img.ndim not in (2, 3):
        raise ValueError(f"image must be 2D (optionally with channels), got shape {img.shape}")
    shape = img.shape[:2]
    unl = 0 if taxonomy is None else taxonomy.unlabeled_id
    unl = 0 if unl is None else int(unl)
    if coarse is not None:
        coarse = np.asarray(coarse)
        if coarse.shape != shape:
            raise ValueError(f"coarse labels {coarse.shape} do not match the image {shape}")
        if coarse.dtype.kind not in "iu":
            raise ValueError(f"coarse labels must be integers, got dtype {coarse.dtype}")
    objs = list(prompts) if prompts is not None else []
    if coarse is None and not objs:
        raise ValueError("prelabel_image needs coarse labels or prompts")

    top = max(
        [o.class_id for o in objs] + [int(coarse.max(initial=0)) if coarse is not None else 0]
    )
    dtype = np.uint8 if max(top, unl) <= 255 else np.uint16
    labels = (
        np.full(shape, unl, dtype=dtype) if coarse is None else coarse.astype(dtype, copy=True)
    )
    for o in objs:
        if o.mask is not None:
            if o.mask.shape != shape:
                raise ValueError(f"prompt mask {o.mask.shape} does not match the image {shape}")
            labels[o.mask] = o.class_id
    if prompts is None:
        objs = objects_from_labels(labels, taxonomy=taxonomy, connectivity=opts.connectivity)
    original = labels.copy()
    prov = new_provenance(shape)

    no_ai = set()
    if taxonomy is not None:
        no_ai = {c.id for c in taxonomy.classes if not c.ai_assist}
    copied = sorted({int(v) for v in np.unique(original).tolist()} & no_ai)
    # clicks only help a backend whose network was trained with them (LiteMedSAM turns clicks
    # into box edits, which add nothing to a box drawn around a known object)
    trained = getattr(model, "trained_with_clicks", model.supports_points)
    use_points = trained if opts.use_points is None else bool(opts.use_points)
    # LiteMedSAM decodes boxes only (a mask prompt is ignored with a box): all the boxes of one
    # embedding go through its decoder in one call
    batch = getattr(model, "predict_boxes", None) if not use_points else None

    # 1. where each object is seen; objects sharing a source window share one embedding
    tiles = _tiles(shape, opts.embed_tile)
    plans: dict[int, tuple] = {}
    groups: dict[tuple, list[int]] = {}
    boxes = [o.bbox() for o in objs]
    for i, obj in enumerate(objs):
        if obj.class_id in no_ai:
            continue
        src, local = _plan(boxes[i], shape, tiles, model, opts)
        if obj.mask is None:  # the model's mask may reach beyond a prompt box
            win = _window(boxes[i], shape, opts)
            local = tuple(
                slice(max(w.start, t.start), min(w.stop, t.stop))
                for w, t in zip(win, src, strict=True)
            )
        plans[i] = (src, local)
        key = (src[0].start, src[0].stop, src[1].start, src[1].stop)
        groups.setdefault(key, []).append(i)

    # 2. one embedding per source window; the model's view of each object, cut to its window
    views: dict[int, _View] = {}
    done = 0
    for members in groups.values():
        if cancel is not None and cancel():
            raise InterruptedError("pre-labelling cancelled")
        rs, cs = plans[members[0]][0]
        crop = img[rs, cs]
        emb = model.embed(crop) if window is ... else model.embed(crop, window=window)
        easy = [
            i
            for i in members
            if batch is not None
            and (objs[i].mask is not None or (objs[i].box is not None and objs[i].points is None))
        ]
        results = {}
        for start in range(0, len(easy), _BATCH):
            part = easy[start : start + _BATCH]
            local_boxes = [_shift(boxes[i], rs.start, cs.start) for i in part]
            results.update(zip(part, batch(emb, local_boxes), strict=True))
            if cancel is not None and cancel():
                raise InterruptedError("pre-labelling cancelled")
        for i in members:
            res = results.pop(i, None)
            if res is None:
                res = _predict_one(model, emb, objs[i], boxes[i], rs, cs, use_points, opts)
            views[i] = _view(model, res, crop.shape[:2], plans[i][1], rs, cs)
            done += 1
            if progress is not None:
                progress(done, len(objs) + 1)

    # 3. apply in object order (an earlier object's growth is never taken by a later one)
    results_out: list[ObjectResult] = []
    for i, obj in enumerate(objs):
        box = boxes[i]
        area = 0 if obj.mask is None else int(np.count_nonzero(obj.mask))
        if obj.class_id in no_ai:
            if obj.class_id not in copied:
                copied.append(obj.class_id)
            results_out.append(ObjectResult(obj.class_id, box, area, COPIED))
        elif obj.mask is None:
            results_out.append(_add_object(views[i], obj, box, labels, original, prov, unl, opts))
        else:
            results_out.append(
                _refine_object(img, views[i], obj, box, area, labels, original, prov, unl, opts)
            )
    if progress is not None:
        progress(len(objs) + 1, len(objs) + 1)
    return PrelabelResult(labels, prov, tuple(results_out), tuple(sorted(copied)))


#: boxes per decoder call: bounds the full-size masks held at once
_BATCH = 16


@dataclass(frozen=True, eq=False)
class _View:
    """The model's answer for one object, cut to its local window."""

    rs: slice
    cs: slice
    mask: np.ndarray
    sure: np.ndarray
    score: float


def _shift(box, r_off: int, c_off: int) -> tuple[int, int, int, int]:
    r0, c0, r1, c1 = box
    return (r0 - r_off, c0 - c_off, r1 - r_off, c1 - c_off)


def _predict_one(model, emb, obj, box, rs, cs, use_points, opts):
    """One object through ``model.predict`` (points, mask prompts, or models without batching)."""
    lbox = _shift(box, rs.start, cs.start)
    if obj.mask is None:
        pts = None
        if obj.points is not None and len(obj.points):
            pts = np.asarray(obj.points, dtype=np.float64) - (rs.start, cs.start)
        return model.predict(
            emb, box=None if obj.box is None else lbox, points=pts, point_labels=obj.point_labels
        )
    coarse = obj.mask[rs, cs]
    pts = plab = None
    if use_points:
        pts, plab = _points(coarse, lbox)
    logits = coarse_mask_logits(coarse, model, magnitude=opts.mask_logit)
    return model.predict(emb, box=lbox, mask_input=logits, points=pts, point_labels=plab)


def _view(model, res, src_shape, local, rs, cs) -> _View:
    """Cut a result on the source window down to the object's local window."""
    sub = (
        slice(local[0].start - rs.start, local[0].stop - rs.start),
        slice(local[1].start - cs.start, local[1].stop - cs.start),
    )
    sure = _full_logits(model, res.logits, src_shape)
    if sure is None:  # backend without known logit geometry: trust the thresholded mask
        sure = np.where(res.mask, np.inf, -np.inf)
    return _View(local[0], local[1], res.mask[sub].copy(), sure[sub].copy(), float(res.score))


def _refine_object(img, view, obj, box, area, labels, original, prov, unl, opts):
    rs, cs = view.rs, view.cs
    coarse = obj.mask[rs, cs]
    width = int(
        np.clip(round(opts.band * math.sqrt(max(area, 1))), opts.min_band_px, opts.max_band_px)
    )
    band = band_mask(coarse, width)
    # the model may only claim pixels that are this object's or nobody's
    allowed = band & (coarse | (original[rs, cs] == unl))
    sure = view.sure
    # inside the band, flip a pixel only where the model is confident it is on the other side
    add = allowed & ~coarse & (sure > opts.confidence)
    drop = band & coarse & (sure < -opts.confidence)
    if opts.min_width > 1:
        # thin strips along the whole boundary are a difference of drawing convention, not a
        # mistake of the drawing; only solid pieces (a cut corner, a missed lobe) are corrected
        st = np.ones((opts.min_width, opts.min_width), bool)
        add = ndi.binary_opening(add, st)
        drop = ndi.binary_opening(drop, st)
    if opts.edge_check and (add.any() or drop.any()):
        add, drop = _edge_supported(img[rs, cs], coarse, add, drop)
    version = (coarse | add) & ~drop
    iou = mask_iou(version, coarse)
    score = view.score
    if iou < opts.min_iou or score < opts.min_score:
        why = (
            f"model disagrees with the coarse shape (IoU {iou:.2f} < {opts.min_iou:.2f})"
            if iou < opts.min_iou
            else f"model score {score:.2f} < {opts.min_score:.2f}"
        )
        return ObjectResult(obj.class_id, box, area, KEPT, score, iou, 0, why)
    out = labels[rs, cs]
    pv = prov[rs, cs]
    # only pixels the model changed relative to the coarse region, and not yet taken by an
    # earlier object's growth
    grow = version & ~coarse & (out == unl)
    shrink = coarse & ~version & (out == obj.class_id)
    out[grow] = obj.class_id
    out[shrink] = unl
    pv[grow | shrink] = AI_PENDING
    changed = int(np.count_nonzero(grow) + np.count_nonzero(shrink))
    return ObjectResult(obj.class_id, box, area, REFINED, score, iou, changed)


def _add_object(view, obj, box, labels, original, prov, unl, opts):
    rs, cs = view.rs, view.cs
    score = view.score
    if score < opts.min_score_new:
        why = f"model score {score:.2f} < {opts.min_score_new:.2f} for a prompt without a mask"
        return ObjectResult(obj.class_id, box, 0, REJECTED, score, math.nan, 0, why)
    out = labels[rs, cs]
    pv = prov[rs, cs]
    paint = view.mask & (original[rs, cs] == unl) & (out == unl)
    out[paint] = obj.class_id
    pv[paint] = AI_PENDING
    return ObjectResult(obj.class_id, box, 0, ADDED, score, math.nan, int(np.count_nonzero(paint)))
