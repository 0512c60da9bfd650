"""Snap coarse regions (polygons, rough paint) to the boundary the picture shows.

Each object of a coarse label map (one connected component of one class) gets a colour/edge
graph cut (GrabCut, Rother et al. 2004, the same cut as
:func:`napari_segflow.core.segment.refine.refine_mask`, its colour models fitted in CIE L*a*b*)
limited to a band around its coarse boundary: deep inside stays object, farther out stays
background, and the colour models learnt from the two decide the band. The other objects' interiors are background to the cut, so
neighbouring classes compete for the band pixels they share (one pixel, one class); where two
objects of different classes both claim a pixel, a written conflict rule of the taxonomy that
names the pair decides (``resolve_to``), otherwise the stronger colour evidence wins.

An object whose drawn outline already lies on the picture's edges over more than
``max_on_edge`` of its length (its corners left out: a coarse polygon's vertices sit on the
boundary anyway) is not cut at all: it is taken as exact (a polygon drawn along the object),
kept and flagged. Otherwise a snapped outline replaces the coarse one only when it passes a
check validated on real data (docs/prelabel.md): each changed piece needs colour evidence or a
much stronger edge than the drawn outline's, the snapped region must keep most of the coarse one
(``min_iou``: a cut that leaked into similar background or lost the object is refused), and the
image gradient along the new outline must be stronger than along the drawn one by ``edge_gain``
(moving a drawn boundary needs evidence in the picture). Otherwise the coarse region stays and
the object is flagged for review.

Everything runs on crops around the objects, one cut per object, all objects of an image in one
pass over a shared gradient image; no model is needed, so the time per image is milliseconds per
object.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from napari_segflow.core.prelabel.refine import (
    COPIED,
    KEPT,
    REFINED,
    ObjectResult,
    PrelabelResult,
    band_mask,
    grey_gradient,
    mask_iou,
    objects_from_labels,
    ring_gradients,
)
from napari_segflow.core.provenance import AI_PENDING, new_provenance

# the cut's pieces are shared with the interactive refiner (same colour models, same GrabCut)
from napari_segflow.core.segment.refine import _as_rgb8, _gmm_loglik
from napari_segflow.core.taxonomy import Taxonomy

__all__ = ["SnapOptions", "snap_labels"]

_BGD, _FGD, _PR_BGD, _PR_FGD = 0, 1, 2, 3


@dataclass(frozen=True)
class SnapOptions:
    """Settings of :func:`snap_labels` (defaults measured on the shared data, docs/prelabel.md).

    Attributes
    ----------
    band_px : int
        Largest distance in pixels the boundary may move (half-width of the band).
    band_frac : float
        The band is also at most this fraction of the square root of the object's area (small
        objects get a narrow band).
    min_band_px : int
        Smallest band half-width.
    context_px : int
        Background beyond the band that the colour model learns from.
    iterations : int
        GrabCut iterations.
    colour_space : str
        ``"lab"`` (CIE L*a*b*, 8-bit) or ``"rgb"``: where the cut's colour models (Gaussian
        mixtures) are fitted. On the 17 trainval pets L*a*b* gave 0.9401 against 0.9386 in RGB
        (band ignored 0.9965 against 0.9958) with the same thresholds.
    work_size : int
        Crops whose longest side exceeds this are cut at that size, and the band is then decided
        at full resolution by the cut's colour models (time). 200 instead of 400 cost the
        photographs with crisp outlines 0.003 (docs/prelabel.md).
    min_width : int
        Changed pieces thinner than this are dropped (morphological opening; 1: none). On the
        pets, 1 / 2 / 3 gave crisp outlines 0.9510 / 0.9506 / 0.9482 and pets drawn as 25-gons
        (polygon truths) 0.9458 / 0.9469 / 0.9481: thin slivers are where a drawn polygon and
        the picture disagree by convention.
    min_piece : int
        A changed piece (connected pixels moved to or from the object) smaller than this is
        dropped.
    min_evidence : float
        ... and so is a piece whose mean absolute log-likelihood ratio under the cut's colour
        models (object vs background) is below this: the colours do not clearly say which side
        it is on (unless its edge is strong, ``strong_edge_gain``).
    min_agree : float
        ... and so is a piece unless at least this fraction of its pixels have colours on the
        side it moves to (positive ratio for added pixels, negative for removed ones).
    piece_edge_gain : float
        ... and so is a piece unless the mean gradient along the outline it makes is at least
        this times that along the drawn outline next to it.
    strong_edge_gain : float
        A piece whose new outline's gradient is at least this times the drawn one's needs no
        colour evidence: a sharp step in the picture says where the object ends even where the
        colours on either side look alike (2 took slivers of polygon truths, 1.5 fur).
    min_iou : float
        The snapped region must have at least this IoU with the coarse one.
    edge_gain : float
        ... and the mean gradient along its outline must be at least this times that along the
        coarse outline (measured where the two differ).
    max_iou : float
        A snapped region whose IoU with the coarse one is above this is not applied: the object
        is reported unchanged (changes under about 1 % of an object gained 0.001 on
        photographs and cost exact polygons 0.004: texture, not a corner the drawing cut).
    max_on_edge : float
        An object is not snapped at all when more than this fraction of its drawn outline,
        away from its corners, lies on the picture's edge (the gradient there is stronger than
        anywhere 2-4 px inside or outside it nearby): the outline is already exact (a polygon
        drawn along the object), and a cut would only move it onto texture. Corners do not
        count: a coarse polygon's vertices sit on the object's boundary, so its outline meets
        the edge there whether or not its sides follow the object. Away from the corners,
        15-vertex polygons of the 40 pets have 2-18 % of their outline on an edge (the same
        pets with crisp outlines 2-30 %), the pets reshaped to be their polygons 9.6-66 %.
    corner_px : float
        Outline pixels nearer than this to a corner (or than a fifth of the mean side) are left
        out of the on-edge fraction.
    min_area : int
        Objects smaller than this (pixels) are not snapped: kept as drawn and flagged. On the
        pets photographs shrunk to a half, a third, a quarter and an eighth of their size,
        objects under about 45 x 45 px lost IoU from the snap on every set (their edges are a
        pixel or two wide, as wide as any correction), larger ones gained on photographs.
    connectivity : int
        1 (4-connected) or 2 (8-connected) objects.
    grey : bool
        Also snap on pictures without colour (one channel, or equal channels). Off by default:
        on the MR slices and nuclei the intensity-only cut lowered IoU, so there every object
        keeps its drawn outline and is flagged.
    """

    band_px: int = 8
    band_frac: float = 0.3
    min_band_px: int = 2
    context_px: int = 16
    iterations: int = 3
    colour_space: str = "lab"
    work_size: int = 400
    min_width: int = 2
    min_piece: int = 20
    min_evidence: float = 3.0
    piece_edge_gain: float = 1.2
    strong_edge_gain: float = 3.0
    min_agree: float = 0.7
    min_iou: float = 0.8
    edge_gain: float = 1.0
    max_iou: float = 0.99
    max_on_edge: float = 0.09
    corner_px: float = 6.0
    min_area: int = 2000
    connectivity: int = 2
    grey: bool = False

    def __post_init__(self) -> None:
        if self.band_px < 1 or self.min_band_px < 1 or self.min_band_px > self.band_px:
            raise ValueError("band widths must be >= 1 and min_band_px <= band_px")
        if not 0 <= self.min_iou <= self.max_iou <= 1:
            raise ValueError(
                f"0 <= min_iou <= max_iou <= 1 is required, got {self.min_iou}, {self.max_iou}"
            )
        if self.iterations < 1 or self.work_size < 32 or self.min_width < 1:
            raise ValueError("iterations >= 1, work_size >= 32 and min_width >= 1 are required")
        if self.colour_space not in ("lab", "rgb"):
            raise ValueError(f"colour_space must be 'lab' or 'rgb', got {self.colour_space!r}")
        if self.connectivity not in (1, 2):
            raise ValueError(f"connectivity must be 1 or 2, got {self.connectivity}")

    def to_dict(self) -> dict:
        """Plain values (for job files and reports)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True, eq=False)
class _Snap:
    """One object's proposal: its snapped mask and colour evidence on its crop."""

    rs: slice
    cs: slice
    mask: np.ndarray
    llr: np.ndarray
    band: np.ndarray
    iou: float
    gain: float
    on_edge: float = 0.0
    exact: bool = False  # the drawn outline follows the picture's edges: not cut at all

    def refusal(self, opts: SnapOptions) -> str | None:
        """Why the object keeps its drawn outline instead of this proposal, or None."""
        if self.exact:
            return (f"the drawn outline already follows the picture's edges "
                    f"({self.on_edge:.0%} of it > {opts.max_on_edge:.0%})")  # fmt: skip
        if self.iou < opts.min_iou:
            return (f"snapped region too far from the drawn one "
                    f"(IoU {self.iou:.2f} < {opts.min_iou:.2f})")  # fmt: skip
        if self.gain < opts.edge_gain:
            return (f"no stronger edge along the snapped outline "
                    f"(gain {self.gain:.2f} < {opts.edge_gain:.2f})")  # fmt: skip
        return None


def _cut_colours(rgb: np.ndarray, space: str) -> np.ndarray:
    """The picture in the colour space the cut's colour models work in (8 bits a channel)."""
    if space == "rgb":
        return rgb
    import cv2

    return np.ascontiguousarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB))


def _outline(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndi.binary_erosion(mask, border_value=1)


def _on_edge(grad: np.ndarray, mask: np.ndarray, outline: np.ndarray) -> np.ndarray:
    """Outline pixels where the gradient is stronger than anywhere 2-4 px inside or outside
    the region within a 9 x 9 window: the drawn line lies on the picture's edge there."""
    din = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    dout = ndi.distance_transform_edt(np.pad(~mask, 1, constant_values=True))[1:-1, 1:-1]
    ring = ((din >= 2) & (din <= 4)) | ((dout >= 2) & (dout <= 4))
    near = ndi.maximum_filter(np.where(ring, grad, 0), size=9)
    return outline & (grad > near)


def _corners(mask: np.ndarray, tol: float = 1.5) -> np.ndarray:
    """The drawn outline's corners: vertices of its contours simplified within ``tol`` px
    (Douglas-Peucker; a rasterised polygon gives back its own vertices)."""
    import cv2

    out = np.zeros(mask.shape, bool)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    for c in contours:
        v = cv2.approxPolyDP(c, tol, True)[:, 0, :]
        out[v[:, 1], v[:, 0]] = True
    return out


def _on_edge_fraction(grad: np.ndarray, mask: np.ndarray, line: np.ndarray, near: float) -> float:
    """Fraction of the drawn outline on the picture's edge, away from its corners.

    Only outline pixels farther than ``near`` px (and than a fifth of the mean side) from the
    outline's corners count: a coarse polygon's vertices are put on the object's boundary, so
    its outline touches the edge near every corner whether or not its sides follow the object;
    an exact polygon lies on the edge along its sides too. Falls back to the whole outline when
    no pixel is that far from a corner (rough paint: many short sides)."""
    corners = _corners(mask)
    n = int(np.count_nonzero(corners))
    far = line
    if n >= 3:
        d = ndi.distance_transform_edt(~corners)
        side = float(np.count_nonzero(line)) / n  # mean side length, in outline pixels
        mid = line & (d > max(near, 0.2 * side))
        if mid.any():
            far = mid
    on = _on_edge(grad, mask, line) & far
    return float(np.count_nonzero(on) / max(np.count_nonzero(far), 1))


def _cut(crop: np.ndarray, gc: np.ndarray, iterations: int, work_size: int):
    """GrabCut on ``crop`` from the trimap ``gc``; returns (object mask, llr on the crop)."""
    import cv2

    h, w = gc.shape
    scale = min(1.0, work_size / max(h, w))
    if scale < 1:
        size = (max(int(round(w * scale)), 2), max(int(round(h * scale)), 2))
        small = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        sgc = cv2.resize(gc, size, interpolation=cv2.INTER_NEAREST)
    else:
        small, sgc = crop, gc.copy()
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut seeds its colour models with k-means: same input, same output
    try:
        cv2.grabCut(small, sgc, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return None
    out = np.isin(sgc, (_FGD, _PR_FGD))
    undecided = np.isin(gc, (_PR_FGD, _PR_BGD))
    llr = np.zeros((h, w), np.float32)
    pix = crop[undecided].reshape(-1, 3)
    if pix.size and np.any(fgd) and np.any(bgd):
        llr[undecided] = np.clip(_gmm_loglik(pix, fgd) - _gmm_loglik(pix, bgd), -20, 20)
    if scale < 1:
        soft = cv2.resize(out.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        full = soft > 0.5
        edge = (soft > 0.02) & (soft < 0.98) & undecided
        if edge.any():
            s = np.clip(soft[edge], 1e-3, 1 - 1e-3)
            full[edge] = 2.0 * np.log(s / (1 - s)) + 0.5 * np.clip(llr[edge], -10, 10) > 0
        out = full
    out = np.where(gc == _FGD, True, np.where(gc == _BGD, False, out))
    return out, llr


def _snap_object(colours, grad, coarse_full, others_full, box, area, opts: SnapOptions, log=None):
    """One object's proposal (``log``: a list that receives every changed piece the cut
    proposed, for the benchmark's accounting)."""
    shape = coarse_full.shape
    width = int(np.clip(round(opts.band_frac * math.sqrt(max(area, 1))), opts.min_band_px,
                        opts.band_px))  # fmt: skip
    pad = width + opts.context_px
    r0, c0, r1, c1 = box
    rs = slice(max(r0 - pad, 0), min(r1 + pad + 1, shape[0]))
    cs = slice(max(c0 - pad, 0), min(c1 + pad + 1, shape[1]))
    coarse = coarse_full[rs, cs]
    # a sure interior must remain (thin objects get a narrower band)
    depth = float(ndi.distance_transform_edt(np.pad(coarse, 1))[1:-1, 1:-1].max())
    width = max(1, min(width, int(depth // 2)))
    band = band_mask(coarse, width)
    g = grad[rs, cs]
    line = _outline(coarse)
    on_edge = _on_edge_fraction(g, coarse, line, opts.corner_px)
    if on_edge > opts.max_on_edge:
        # the drawn outline already follows the picture's edges: an exact polygon, no cut
        none = np.zeros(coarse.shape, np.float32)
        return _Snap(rs, cs, coarse, none, band, 1.0, 1.0, on_edge, exact=True)
    gc = np.where(coarse, _FGD, _BGD).astype(np.uint8)
    gc[band & coarse] = _PR_FGD
    gc[band & ~coarse] = _PR_BGD
    # another object's interior is background to this one; its band is contested
    others = others_full[rs, cs]
    gc[others & ~band] = _BGD
    if not (gc == _BGD).any() or not (gc == _FGD).any() and not (gc == _PR_FGD).any():
        return None
    res = _cut(colours[rs, cs], gc, opts.iterations, opts.work_size)
    if res is None:
        return None
    snapped, llr = res
    add = snapped & ~coarse & band
    drop = coarse & ~snapped & band
    if opts.min_width > 1:
        st = np.ones((opts.min_width, opts.min_width), bool)
        add = ndi.binary_opening(add, st)
        drop = ndi.binary_opening(drop, st)
    if log is not None:
        log = (log, rs, cs)
    add, drop = (
        _supported(add, coarse, llr, grad[rs, cs], True, opts, log),
        _supported(drop, coarse, llr, grad[rs, cs], False, opts, log),
    )
    mask = (coarse | add) & ~drop
    # keep the object in one piece: the component(s) holding its sure interior
    lab, n = ndi.label(mask)
    if n > 1:
        anchor = gc == _FGD
        keep = np.unique(lab[anchor & mask]) if (anchor & mask).any() else []
        keep = [k for k in keep if k > 0] or [int(np.argmax(np.bincount(lab.ravel())[1:])) + 1]
        mask = np.isin(lab, keep)
    iou = mask_iou(mask, coarse)
    gain = 1.0
    changed = mask ^ coarse
    if changed.any():
        near = ndi.binary_dilation(changed, np.ones((3, 3), bool), iterations=2)
        old = line & near
        new = _outline(mask) & near
        if old.any() and new.any():
            gain = float(g[new].mean() / max(g[old].mean(), 1e-6))
    return _Snap(rs, cs, mask, llr, band, iou, gain, on_edge)


def _supported(change, coarse, llr, grad, grows: bool, opts: SnapOptions, log=None) -> np.ndarray:
    """The changed pieces that the picture supports: large enough, with confident colour
    evidence (mean |log-likelihood ratio| of the cut's colour models) mostly on the side they
    move to, and a stronger edge along the outline they make than along the drawn one next to
    them (chosen on pets_oxford: docs/prelabel.md)."""
    st = np.ones((3, 3), bool)
    lab, _ = ndi.label(change, structure=st)
    out = np.zeros_like(change)
    for k, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None:
            continue
        sl = tuple(slice(max(s.start - 3, 0), s.stop + 3) for s in sl)
        piece = lab[sl] == k
        n = int(np.count_nonzero(piece))
        ev = llr[sl][piece]
        ok = n >= opts.min_piece
        ok = ok and (opts.min_agree <= 0 or float(np.mean((ev > 0) == grows)) >= opts.min_agree)
        if ok:
            rings = ring_gradients(grad[sl], coarse[sl], piece, grows)
            ok = rings is not None and rings[0] >= opts.piece_edge_gain * rings[1]
            strong = ok and rings[0] >= opts.strong_edge_gain * rings[1]
            ok = ok and (strong or float(np.abs(ev).mean()) >= opts.min_evidence)
        if ok:
            out[sl] |= piece
        if log is not None:
            rows, cols = log[1], log[2]
            r, c = rows.start + sl[0].start, cols.start + sl[1].start
            at = (slice(r, r + piece.shape[0]), slice(c, c + piece.shape[1]))
            log[0].append((at, piece, grows, ok))
    return out


def snap_labels(
    image: np.ndarray,
    coarse: np.ndarray,
    *,
    taxonomy: Taxonomy | None = None,
    options: SnapOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> PrelabelResult:
    """Snap every region of a coarse label map to the image's boundaries, where that is safe.

    Parameters
    ----------
    image : (H, W) or (H, W, C) array
        The picture (uint8 RGB best; other dtypes are min-max scaled to 8 bits).
    coarse : (H, W) integer array
        Coarse class-index labels (rasterised polygons, rough paint). Never modified.
    taxonomy : Taxonomy, optional
        Unlabelled id (0 without one), classes with ``ai_assist: false`` (copied untouched,
        never taken by a neighbour) and the conflict rules that settle contested pixels.
    options : SnapOptions, optional
    progress : callable, optional
        ``progress(done, total)`` after each object.
    cancel : callable, optional
        Returning True raises ``InterruptedError``.

    Returns
    -------
    PrelabelResult
        ``labels``; ``provenance`` with every changed pixel AI-pending; one
        :class:`~napari_segflow.core.prelabel.refine.ObjectResult` per object: ``"refined"``
        (snapped; ``changed`` pixels), ``"kept"`` (coarse kept, flagged; ``reason``) or
        ``"copied"``; ``score`` holds the edge gain, ``iou_coarse`` the IoU of the snapped
        region with the coarse one.

    Examples
    --------
    A red square on grey noise, drawn 3 pixels too small on every side, snaps to its edges:

    >>> rng = np.random.default_rng(0)
    >>> img = rng.integers(90, 130, (96, 96, 3)).astype(np.uint8)
    >>> img[16:80, 16:80] = rng.integers(0, 30, (64, 64, 3)) + np.array([200, 0, 0], np.uint8)
    >>> rough = np.zeros((96, 96), np.uint8); rough[19:77, 19:77] = 1
    >>> out = snap_labels(img, rough)
    >>> int(np.count_nonzero(out.labels[16:80, 16:80] == 1)), int(out.labels.sum())
    (4096, 4096)
    >>> out.counts()
    {'refined': 1}

    Drawn along two of its edges, the outline counts as exact and stays (flagged):

    >>> rough = np.zeros((96, 96), np.uint8); rough[19:80, 19:80] = 1
    >>> out = snap_labels(img, rough)
    >>> out.counts(), out.objects[0].reason
    ({'kept': 1}, "the drawn outline already follows the picture's edges (50% of it > 9%)")
    """
    opts = options or SnapOptions()
    img = np.asarray(image)
    lab = np.asarray(coarse)
    if img.ndim not in (2, 3):
        raise ValueError(f"image must be 2D (optionally with channels), got shape {img.shape}")
    if lab.shape != img.shape[:2]:
        raise ValueError(f"coarse labels {lab.shape} do not match the image {img.shape[:2]}")
    if lab.dtype.kind not in "iu":
        raise ValueError(f"coarse labels must be integers, got dtype {lab.dtype}")
    unl = 0 if taxonomy is None or taxonomy.unlabeled_id is None else int(taxonomy.unlabeled_id)
    no_ai = set() if taxonomy is None else {c.id for c in taxonomy.classes if not c.ai_assist}
    rgb = _as_rgb8(img)
    grey = not opts.grey and bool(
        np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
    )
    grad = grey_gradient(rgb)
    colours = _cut_colours(rgb, opts.colour_space)
    objs = objects_from_labels(lab, taxonomy=taxonomy, connectivity=opts.connectivity)
    labelled = lab != unl
    results: list[ObjectResult | None] = [None] * len(objs)
    snaps: dict[int, _Snap] = {}
    for i, obj in enumerate(objs):
        if cancel is not None and cancel():
            raise InterruptedError("snapping cancelled")
        box = obj.bbox()
        area = int(np.count_nonzero(obj.mask))
        if obj.class_id in no_ai:
            results[i] = ObjectResult(obj.class_id, box, area, COPIED)
        elif grey:
            why = "picture without colour: the drawn outline is kept (grey=False)"
            results[i] = ObjectResult(obj.class_id, box, area, KEPT, reason=why)
        elif area < opts.min_area:
            why = f"too small to snap ({area} < {opts.min_area} px): the drawn outline is kept"
            results[i] = ObjectResult(obj.class_id, box, area, KEPT, reason=why)
        else:
            s = _snap_object(colours, grad, obj.mask, labelled & ~obj.mask, box, area, opts)
            if s is None:
                results[i] = ObjectResult(
                    obj.class_id, box, area, KEPT, reason="nothing to cut (no background near)"
                )
            elif (why := s.refusal(opts)) is not None:
                results[i] = ObjectResult(obj.class_id, box, area, KEPT, s.gain, s.iou, reason=why)
            elif s.iou > opts.max_iou:
                why = f"the snapped outline is within IoU {s.iou:.3f} of the drawn one: not moved"
                results[i] = ObjectResult(obj.class_id, box, area, REFINED, s.gain, s.iou, 0, why)
            else:
                snaps[i] = s
        if progress is not None:
            progress(i + 1, len(objs))
    labels, prov, changed = _compose(lab, objs, snaps, taxonomy, unl)
    for i, s in snaps.items():
        o = objs[i]
        results[i] = ObjectResult(
            o.class_id, o.bbox(), int(np.count_nonzero(o.mask)), REFINED, s.gain, s.iou,
            changed[i],
        )  # fmt: skip
    copied = sorted({r.class_id for r in results if r is not None and r.status == COPIED})
    return PrelabelResult(labels, prov, tuple(results), tuple(copied))


def _compose(lab, objs, snaps, taxonomy, unl):
    """Write the accepted snaps into a copy of ``lab``: one pixel, one class.

    A pixel may change only inside the band of an accepted object and only if it belongs to
    nobody, to that object, or to another accepted object within that object's own band (a kept
    or copied object's pixels are frozen). Where several
    accepted objects claim it, a conflict rule naming the pair decides, else the largest
    colour evidence (log-likelihood ratio); where none claims a pixel that an accepted object
    gave up, it becomes unlabelled.
    """
    shape = lab.shape
    labels = lab.copy()
    prov = new_provenance(shape)
    owner = np.full(shape, -1, np.int32)  # index of the object holding each labelled pixel
    for i, o in enumerate(objs):
        owner[o.mask] = i
    best = np.full(shape, -np.inf, np.float32)
    claim = np.full(shape, -1, np.int32)
    names = {}
    if taxonomy is not None:
        names = {c.id: c.name for c in taxonomy.classes}
    # an accepted object's pixels are open to its neighbours only inside its own band
    open_ = np.zeros(shape, bool)
    for k, s in snaps.items():
        open_[s.rs, s.cs] |= s.band & (owner[s.rs, s.cs] == k)
    for i, s in snaps.items():
        sub = (s.rs, s.cs)
        own = owner[sub]
        free = (own == -1) | (own == i) | open_[sub]
        want = s.mask & s.band & free
        score = np.where(s.mask & ~s.band, np.inf, s.llr)
        cur = claim[sub]
        b = best[sub]
        hit = want & (cur >= 0) & (cur != i)
        if hit.any():
            for j in np.unique(cur[hit]).tolist():
                here = hit & (cur == j)
                winner = _rule_winner(objs[i].class_id, objs[j].class_id, names, taxonomy)
                if winner == objs[i].class_id:
                    take = here
                elif winner == objs[j].class_id:
                    take = np.zeros_like(here)
                else:
                    take = here & (score > b)
                cur[take] = i
                b[take] = score[take]
        fresh = want & (cur < 0)
        cur[fresh] = i
        b[fresh] = score[fresh]
    out_changed = {i: 0 for i in snaps}
    for i, s in snaps.items():
        sub = (s.rs, s.cs)
        own, cur, out, pv = owner[sub], claim[sub], labels[sub], prov[sub]
        # pixels this object gave up and nobody claimed go to nobody
        gave_up = s.band & (own == i) & (cur < 0)
        grow = s.band & (cur == i) & (out != objs[i].class_id)
        out[grow] = objs[i].class_id
        out[gave_up] = unl
        pv[grow | gave_up] = AI_PENDING
        out_changed[i] += int(np.count_nonzero(grow) + np.count_nonzero(gave_up))
    return labels, prov, out_changed


def _rule_winner(a: int, b: int, names: dict, taxonomy: Taxonomy | None) -> int | None:
    """The class a written conflict rule gives a pixel contested by classes ``a`` and ``b``."""
    if taxonomy is None or a == b or a not in names or b not in names:
        return None
    rule = taxonomy.rule_between(names[a], names[b])
    if rule is None or rule.resolve_to is None:
        return None
    return taxonomy.by_name(rule.resolve_to).id
