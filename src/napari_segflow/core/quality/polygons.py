"""Polygon sufficiency: would k-vertex polygons reproduce a set of pixel masks, class by class?

Pipeline, vectorised over every object of an image at once:

1. **Tracing** on the pixel-edge ("crack") grid. Every boundary between an object pixel and a
   non-object pixel is a unit edge between two pixel corners; edges are linked into closed rings
   by pointer jumping. Objects are 8-connected (two pixels touching at a corner belong to the
   same ring), so holes are 4-connected. Outer rings run with the object on their left (positive
   shoelace area in (row, col) order), holes the other way. A corner between two straight runs
   of 2 or more edges stays a pixel corner (a rectangle is exactly its 4 corners); a corner next
   to a one-pixel step is cut between the midpoints of its two edges, as marching squares does,
   so staircases become straight 45-degree lines. Neither moves any pixel centre across the
   outline: rasterising the traced rings gives the mask back exactly.
2. **Simplification** by Douglas-Peucker, run once to the end: every vertex gets an importance,
   the smallest split distance on its path in the DP tree, so that DP with tolerance ``eps``
   keeps exactly the vertices of importance ``> eps``. The first three vertices of a ring (the
   vertex farthest from the ring's centroid, the vertex farthest from it, and the vertex farthest
   from their chord) form a triangle that enters or leaves as one unit of 3 vertices. For a
   vertex budget ``k`` the polygon keeps the most important units whose total is at most ``k``:
   that is DP at the smallest tolerance whose polygon fits the budget (the bisection over the
   tolerance is exact here because the importances are sorted once). Holes and extra parts
   compete for the same budget: their vertices count, and a ring that does not fit is dropped
   (its area is then lost, which the IoU shows). DP is not monotone (a vertex more can fit
   worse), so the report's polygon for budget k is the best of the DP polygons at its budgets
   up to k.
3. **Rasterisation** on the same grid: a pixel belongs to the polygon when its centre is inside
   by the even-odd rule; a centre exactly on an edge follows the top-left rule (inside on a left
   or top edge, outside on a right or bottom edge), as in OpenGL/Direct3D. The exact outline
   never passes through a pixel centre (its axis-aligned edges run along pixel edges, its cuts
   between centres), so masks and pixel-aligned shapes round-trip exactly; the rule only
   decides for simplified edges that happen to cross a centre.

Coordinates of returned rings are napari data coordinates ``(row, col)``: pixel ``(i, j)`` has
its centre at ``(i, j)`` and its corners at ``(i +- 0.5, j +- 0.5)``.

Annotation cost is counted in vertices (clicks). An exact pixel mask costs the vertex count of
its traced outline, holes included: the fewest vertices with which these polygons reproduce the
mask pixel for pixel (IoU 1). A class that switches to polygons costs the vertices its objects
actually use at the class's sufficient budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from napari_segflow.core.quality.metrics import boundary_iou, per_class_iou

__all__ = [
    "DEFAULT_BUDGETS",
    "ClassSufficiency",
    "ObjectResult",
    "PolygonReport",
    "ReportRing",
    "TracedObjects",
    "object_map",
    "measure_objects",
    "polygon_sufficiency",
    "rasterize_rings",
    "report_rings",
    "simplify_mask",
    "summarize",
    "trace_objects",
]

#: Vertex budgets tried per object.
DEFAULT_BUDGETS: tuple[int, ...] = (10, 15, 20, 25, 30, 50)

# direction codes of unit edges, as (d_row, d_col): down, right, up, left
_DIRS = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=np.int64)


# ------------------------------------------------------------------------------ helpers
def _group_first_argmax(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Index of the first maximum of each contiguous group ``values[starts[g]:starts[g+1]]``."""
    gmax = np.maximum.reduceat(values, starts)
    group = np.repeat(np.arange(starts.size), np.diff(np.append(starts, values.size)))
    hits = np.flatnonzero(values == gmax[group])
    first = np.unique(group[hits], return_index=True)[1]
    return hits[first]


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance of points ``p`` to segments ``a``-``b`` (all (n, 2))."""
    ab = b - a
    ap = p - a
    length2 = np.einsum("ij,ij->i", ab, ab)
    safe = np.where(length2 > 0, length2, 1.0)
    t = np.clip(np.einsum("ij,ij->i", ap, ab) / safe, 0.0, 1.0)
    d = ap - t[:, None] * ab
    return np.sqrt(np.einsum("ij,ij->i", d, d))


def _pointer_jump_rings(nxt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ring label (smallest member) and position from that member, for a permutation of cycles."""
    n = nxt.size
    label = np.arange(n)
    jump = nxt.copy()
    for _ in range(max(1, math.ceil(math.log2(max(n, 2)))) + 1):
        label = np.minimum(label, label[jump])
        jump = jump[jump]
    # list ranking: break each cycle before its root, count steps to the tail
    is_root = label == np.arange(n)
    tail = is_root[nxt]
    link = np.where(tail, np.arange(n), nxt)
    steps = (~tail).astype(np.int64)
    for _ in range(max(1, math.ceil(math.log2(max(n, 2)))) + 1):
        steps = steps + steps[link]
        link = link[link]
    length = np.bincount(label, minlength=n)
    return label, length[label] - 1 - steps


# ------------------------------------------------------------------------------ objects
def object_map(
    labels: np.ndarray,
    class_ids: Iterable[int],
    *,
    instance_class: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split a 2D label image into numbered objects.

    Parameters
    ----------
    labels : (H, W) integer array
        Class ids (semantic mask), or instance ids when ``instance_class`` is given.
    class_ids : iterable of int
        The classes to analyse; other values (background, ignore) are not objects.
    instance_class : int, optional
        Read ``labels`` as an instance map: every non-zero value is one object of this class,
        whatever its number of parts.

    Returns
    -------
    objects : (H, W) int32 array
        0 where there is no object, else ``1..n``; semantic objects are 8-connected components
        of one class.
    object_class : (n + 1,) int64 array
        The class of each object number (entry 0 unused, -1).

    Examples
    --------
    >>> lab = np.array([[1, 0, 2], [0, 1, 2]])
    >>> objects, cls = object_map(lab, [1, 2])
    >>> objects
    array([[1, 0, 2],
           [0, 1, 2]], dtype=int32)
    >>> cls.tolist()
    [-1, 1, 2]
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"polygons need 2D label images, got shape {labels.shape}")
    if labels.dtype.kind not in "iub":
        raise ValueError(f"label images must hold integers, got dtype {labels.dtype}")
    if instance_class is not None:
        ids = np.unique(labels)
        ids = ids[ids != 0]
        if ids.size and labels.dtype.itemsize <= 2 and ids.min() >= 0:
            lut = np.zeros(int(ids.max()) + 1, dtype=np.int32)  # small ids: one lookup
            lut[ids] = np.arange(1, ids.size + 1, dtype=np.int32)
            objects = lut[labels]
        else:
            objects = np.searchsorted(ids, labels).astype(np.int32) + 1
            objects[labels == 0] = 0
        return objects, np.array([-1] + [int(instance_class)] * ids.size, dtype=np.int64)
    objects = np.zeros(labels.shape, dtype=np.int32)
    classes = [-1]
    eight = np.ones((3, 3), dtype=bool)
    for cid in class_ids:
        comp, n = ndimage.label(labels == cid, structure=eight)
        if n == 0:
            continue
        where = comp > 0
        objects[where] = comp[where] + (len(classes) - 1)
        classes += [int(cid)] * n
    return objects, np.array(classes, dtype=np.int64)


# ------------------------------------------------------------------------------ tracing
@dataclass(frozen=True)
class TracedObjects:
    """The exact outlines of every object of an image, ranked for simplification.

    Vertices of all rings are stored one after another; ring ``r`` is
    ``vertices[ring_start[r]:ring_start[r + 1]]`` and its last vertex repeats its first (the
    closing vertex, never counted). ``importance`` orders vertices for the DP simplification.

    Attributes
    ----------
    shape : tuple of int
        The image shape.
    n_objects : int
        Objects are numbered ``1..n_objects``.
    bbox : (n_objects + 1, 4) int64 array
        ``row0, col0, row1, col1`` (end exclusive) of each object; row 0 unused.
    vertices : (m, 2) float64 array
        Ring vertices in napari coordinates: pixel corners and pixel-edge midpoints.
    ring_start : (n_rings + 1,) int64 array
    ring_object : (n_rings,) int64 array
    ring_is_hole : (n_rings,) bool array
    unit : (m,) int64 array
        The selection unit of each vertex: a ring's triangle or a single vertex.
    unit_object, unit_cost : (n_units,) int64 arrays
    unit_order : (n_units,) int64 array
        Units sorted by object, then by decreasing importance.
    unit_cum : (n_units,) int64 array
        Vertices used by an object up to and including each unit, in ``unit_order``.
    """

    shape: tuple[int, int]
    n_objects: int
    bbox: np.ndarray
    vertices: np.ndarray
    ring_start: np.ndarray
    ring_object: np.ndarray
    ring_is_hole: np.ndarray
    unit: np.ndarray
    unit_object: np.ndarray
    unit_cost: np.ndarray
    unit_order: np.ndarray = field(repr=False)
    unit_cum: np.ndarray = field(repr=False)

    @property
    def exact_vertices(self) -> np.ndarray:
        """Vertex count of each object's exact pixel outline (index 0 unused)."""
        return np.bincount(self.unit_object, weights=self.unit_cost, minlength=self.n_objects + 1)

    def selected(self, budget: int | None) -> np.ndarray:
        """Boolean mask over vertices (closing vertices included) of the ``budget`` polygons.

        ``None`` selects every vertex: the exact outline.
        """
        if budget is None:
            return np.ones(len(self.vertices), dtype=bool)
        if budget < 3:
            raise ValueError(f"a vertex budget must be at least 3, got {budget}")
        keep_unit = np.zeros(self.unit_cost.size, dtype=bool)
        keep_unit[self.unit_order] = self.unit_cum <= budget
        return keep_unit[self.unit]

    def vertex_counts(self, budget: int | None) -> np.ndarray:
        """Vertices each object uses at ``budget`` (index 0 unused)."""
        if budget is None:
            return self.exact_vertices.astype(np.int64)
        keep = self.unit_cum <= budget
        obj = self.unit_object[self.unit_order]
        cost = self.unit_cost[self.unit_order]
        return np.bincount(obj[keep], weights=cost[keep], minlength=self.n_objects + 1).astype(
            np.int64
        )

    def rings(self, budget: int | None, obj: int) -> list[np.ndarray]:
        """The rings of object ``obj`` at ``budget`` as ``(n, 2)`` arrays (not closed)."""
        return [ring for ring, _ in self.rings_and_holes(budget, obj)]

    def rings_and_holes(self, budget: int | None, obj: int) -> list[tuple[np.ndarray, bool]]:
        """Like :meth:`rings`, each ring with whether it is a hole."""
        sel = self.selected(budget)
        out = []
        for r in np.flatnonzero(self.ring_object == obj):
            s, e = self.ring_start[r], self.ring_start[r + 1]
            ring = self.vertices[s:e][sel[s:e]]
            if len(ring) >= 4:  # three corners plus the closing vertex
                out.append((ring[:-1], bool(self.ring_is_hole[r])))
        return out

    def rasterize(self, budget: int | None) -> list[np.ndarray]:
        """Each object's ``budget`` polygon rasterised in its bounding box (index 0: empty)."""
        sel = self.selected(budget)
        pos = np.flatnonzero(sel)
        vring = np.repeat(np.arange(self.ring_object.size), np.diff(self.ring_start))
        same = vring[pos[:-1]] == vring[pos[1:]]
        a, b = pos[:-1][same], pos[1:][same]
        eobj = self.ring_object[vring[a]]
        origin = self.bbox[eobj, :2].astype(np.float64)
        return _rasterize_edges(
            self.vertices[a] - origin,
            self.vertices[b] - origin,
            eobj,
            self.bbox[:, 2:] - self.bbox[:, :2],
        )


def _trace_edges(objects: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Directed unit boundary edges (start corner, direction, object) with the object on the left."""
    padded = np.pad(objects, 1)
    h, w = padded.shape
    nc = w + 1  # corners per row of the padded corner grid
    starts, dirs, objs = [], [], []
    # vertical cracks between padded[i, j-1] (left) and padded[i, j] (right)
    left, right = padded[:, :-1], padded[:, 1:]
    i, j = np.nonzero(left != right)
    j = j + 1
    r = right[i, j - 1]
    m = r != 0
    starts.append(i[m] * nc + j[m])  # down along column j, the right pixel on the left hand
    dirs.append(np.zeros(m.sum(), np.int64))
    objs.append(r[m])
    lft = left[i, j - 1]
    m = lft != 0
    starts.append((i[m] + 1) * nc + j[m])  # up
    dirs.append(np.full(m.sum(), 2, np.int64))
    objs.append(lft[m])
    # horizontal cracks between padded[i-1, j] (above) and padded[i, j] (below)
    above, below = padded[:-1, :], padded[1:, :]
    i, j = np.nonzero(above != below)
    i = i + 1
    a = above[i - 1, j]
    m = a != 0
    starts.append(i[m] * nc + j[m])  # right
    dirs.append(np.ones(m.sum(), np.int64))
    objs.append(a[m])
    bl = below[i - 1, j]
    m = bl != 0
    starts.append(i[m] * nc + j[m] + 1)  # left
    dirs.append(np.full(m.sum(), 3, np.int64))
    objs.append(bl[m])
    return (
        np.concatenate(starts).astype(np.int64),
        np.concatenate(dirs),
        np.concatenate(objs).astype(np.int64),
        nc,
    )


def trace_objects(objects: np.ndarray) -> TracedObjects:
    """Trace and rank the exact pixel-edge outlines of every object of an object map.

    Parameters
    ----------
    objects : (H, W) integer array
        0 where there is no object, objects numbered ``1..n`` (see :func:`object_map`).

    Returns
    -------
    TracedObjects

    Examples
    --------
    >>> objects = np.zeros((6, 8), np.int32); objects[1:4, 2:7] = 1
    >>> traced = trace_objects(objects)
    >>> traced.rings(None, 1)[0].tolist()  # the four corners, in napari coordinates
    [[0.5, 1.5], [3.5, 1.5], [3.5, 6.5], [0.5, 6.5]]
    """
    objects = np.asarray(objects)
    if objects.ndim != 2:
        raise ValueError(f"objects must be 2D, got shape {objects.shape}")
    if objects.dtype.kind not in "iu":
        raise ValueError(f"objects must hold integers, got dtype {objects.dtype}")
    n_obj = int(objects.max(initial=0))
    bbox = np.zeros((n_obj + 1, 4), dtype=np.int64)
    start, dirs, obj, nc = _trace_edges(objects)
    n_edges = start.size
    if n_edges == 0:
        return _empty(objects.shape, n_obj, bbox)
    end = start + _DIRS[dirs, 0] * nc + _DIRS[dirs, 1]

    # link each edge to the edge leaving its end corner for the same object
    key = obj * (nc * (objects.shape[0] + 3)) + start
    order = np.lexsort((dirs, key))
    skey = key[order]
    # bounding boxes from the corners: every corner of an outline starts one of its edges
    sobj = obj[order]
    grp = np.flatnonzero(np.r_[True, sobj[1:] != sobj[:-1]])
    ys, xs = start[order] // nc - 1, start[order] % nc - 1
    bbox[sobj[grp]] = np.stack(
        [
            np.minimum.reduceat(ys, grp),
            np.minimum.reduceat(xs, grp),
            np.maximum.reduceat(ys, grp),
            np.maximum.reduceat(xs, grp),
        ],
        axis=1,
    )
    want = obj * (nc * (objects.shape[0] + 3)) + end
    lo = np.searchsorted(skey, want, side="left")
    hi = np.searchsorted(skey, want, side="right")
    # a saddle corner has two outgoing edges; turning right joins the diagonal pixels (8-conn.)
    two = (hi - lo) == 2
    pick = lo.copy()
    right_turn = (dirs + 3) % 4
    pick[two] = np.where(dirs[order[lo[two]]] == right_turn[two], lo[two], lo[two] + 1)
    nxt = order[pick]

    ring_label, pos = _pointer_jump_rings(nxt)
    seq = np.lexsort((pos, ring_label))  # edges in ring order, rings by smallest edge index
    lab_s, dir_s = ring_label[seq], dirs[seq]
    ring_first = np.r_[True, lab_s[1:] != lab_s[:-1]]
    ring_id = np.cumsum(ring_first) - 1
    first_idx = np.flatnonzero(ring_first)
    last_idx = np.r_[first_idx[1:] - 1, seq.size - 1]
    prev_dir = np.r_[0, dir_s[:-1]]
    prev_dir[first_idx] = dir_s[last_idx]
    corner = dir_s != prev_dir  # the edge starts a new straight run
    yx, v_ring = _outline_points(start[seq], dir_s, ring_id, corner, first_idx, last_idx, nc)
    n_rings = int(ring_id[-1]) + 1
    counts = np.bincount(v_ring, minlength=n_rings)
    rstart = np.r_[0, np.cumsum(counts)]
    r_obj = obj[seq[first_idx]]
    # shoelace area in (row, col) order: outer rings positive
    nxt_v = np.arange(yx.shape[0]) + 1
    nxt_v[rstart[1:] - 1] = rstart[:-1]
    cross = yx[:, 0] * yx[nxt_v, 1] - yx[nxt_v, 0] * yx[:, 1]
    area = np.bincount(v_ring, weights=cross, minlength=n_rings) / 2
    return _rank(objects.shape, n_obj, bbox, yx, rstart, r_obj, area < 0)


def _outline_points(
    start: np.ndarray,
    dirs: np.ndarray,
    ring_id: np.ndarray,
    run_first: np.ndarray,
    first_idx: np.ndarray,
    last_idx: np.ndarray,
    nc: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Outline vertices from unit edges in ring order: sharp corners and cut staircase steps.

    A corner between two straight runs of at least 2 edges is kept as the pixel corner; a corner
    next to a one-edge step is cut between the midpoints of its two edges (as marching squares
    does). Both leave every pixel centre on its side, so the outline still rasterises exactly,
    while staircases become straight 45-degree lines that simplify far better.
    """
    n = dirs.size
    run = np.cumsum(run_first) - 1
    run_len = np.bincount(run)[run]
    prev = np.arange(n) - 1
    prev[first_idx] = last_idx
    nxt = np.arange(n) + 1
    nxt[last_idx] = first_idx
    run_last = run_first[nxt]
    # a corner sits at the start of each run's first edge
    sharp = run_first & (run_len >= 2) & (run_len[prev] >= 2)
    soft_start = run_first & ~sharp
    soft_end = run_last & ~sharp[nxt]
    corner_yx = np.stack([start // nc, start % nc], axis=1).astype(np.float64) - 1.5
    mid_yx = corner_yx + _DIRS[dirs] / 2
    pts = np.empty((2 * n, 2))
    pts[0::2] = corner_yx
    pts[1::2] = mid_yx
    use = np.empty(2 * n, dtype=bool)
    use[0::2] = sharp
    use[1::2] = soft_start | soft_end
    pts, ring = pts[use], np.repeat(ring_id, 2)[use]
    # drop points on the straight line through their neighbours (45-degree staircases)
    first = np.flatnonzero(np.r_[True, ring[1:] != ring[:-1]])
    last = np.r_[first[1:] - 1, ring.size - 1]
    before = np.arange(ring.size) - 1
    before[first] = last
    after = np.arange(ring.size) + 1
    after[last] = first
    d1 = pts - pts[before]
    d2 = pts[after] - pts
    cross = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    dot = np.einsum("ij,ij->i", d1, d2)
    keep = (cross != 0) | (dot <= 0)
    return pts[keep], ring[keep]


def _empty(shape, n_obj, bbox) -> TracedObjects:
    e = np.zeros(0, np.int64)
    return TracedObjects(
        tuple(shape), n_obj, bbox, np.zeros((0, 2)), np.zeros(1, np.int64), e,
        np.zeros(0, bool), e, e, e, e, e,
    )  # fmt: skip


def _rank(shape, n_obj, bbox, yx, rstart, r_obj, r_hole) -> TracedObjects:
    """Douglas-Peucker importance of every vertex, all rings at once, level by level."""
    n_rings = r_obj.size
    counts = np.diff(rstart)
    v_ring = np.repeat(np.arange(n_rings), counts)
    # anchor a: farthest from the ring's centroid; rotate each ring to start there
    centroid = (
        np.stack(
            [np.bincount(v_ring, weights=yx[:, k], minlength=n_rings) for k in (0, 1)], axis=1
        )
        / counts[:, None]
    )
    d0 = np.hypot(*(yx - centroid[v_ring]).T)
    a_idx = _group_first_argmax(d0, rstart[:-1])
    local = np.arange(yx.shape[0]) - rstart[v_ring]
    rot = rstart[v_ring] + (local + (a_idx - rstart[:-1])[v_ring]) % counts[v_ring]
    # ring r occupies [rs[r], rs[r+1]) in the ranked arrays, its last entry closes the ring
    rs = rstart + np.arange(n_rings + 1)
    src = np.empty(yx.shape[0] + n_rings, dtype=np.int64)
    body = np.ones(src.size, dtype=bool)
    body[rs[1:] - 1] = False
    src[body] = rot
    src[~body] = rot[rstart[:-1]]
    pts = yx[src]
    n = pts.shape[0]
    ring_of = np.repeat(np.arange(n_rings), counts + 1)
    first = rs[:-1]
    closer = rs[1:] - 1
    # anchor b: farthest from a; c: farthest from the chord a-b. a, b, c: the ring's triangle
    d_a = np.hypot(*(pts - pts[first][ring_of]).T)
    b_idx = _group_first_argmax(d_a, first)
    d_ab = _segment_distance(pts, pts[first][ring_of], pts[b_idx][ring_of])
    c_idx = _group_first_argmax(d_ab, first)
    tri = d_ab[c_idx]

    kept = np.zeros(n, dtype=bool)
    importance = np.zeros(n)
    seg_imp = np.zeros(n)  # importance of the segment that starts at a kept vertex
    for idx in (first, b_idx, c_idx, closer):
        kept[idx] = True
        importance[idx] = tri
        seg_imp[idx] = tri
    positions = np.arange(n)
    while not kept.all():
        prev = np.maximum.accumulate(np.where(kept, positions, 0))
        nxt = np.minimum.accumulate(np.where(kept, positions, n)[::-1])[::-1]
        free = np.flatnonzero(~kept)
        p0, p1 = prev[free], nxt[free]
        d = _segment_distance(pts[free], pts[p0], pts[p1])
        run = np.flatnonzero(np.r_[True, p0[1:] != p0[:-1]])
        run_max = np.maximum.reduceat(d, run)
        # a segment whose points all lie on its chord is finished: they matter least of all
        flat_run = np.repeat(run_max == 0, np.diff(np.r_[run, free.size]))
        kept[free[flat_run]] = True
        split = _group_first_argmax(d, run)
        split = split[run_max > 0]
        v = free[split]
        imp = np.minimum(d[split], seg_imp[p0[split]])
        kept[v] = True
        importance[v] = imp
        seg_imp[v] = imp
        seg_imp[p0[split]] = imp

    # selection units: one triangle per ring (cost 3), then one unit per further vertex
    is_tri = np.zeros(n, dtype=bool)
    is_tri[first] = is_tri[b_idx] = is_tri[c_idx] = is_tri[closer] = True
    single = np.flatnonzero(~is_tri)
    unit = np.empty(n, dtype=np.int64)
    unit[is_tri] = ring_of[is_tri]
    unit[single] = n_rings + np.arange(single.size)
    unit_object = np.r_[r_obj, r_obj[ring_of[single]]].astype(np.int64)
    unit_cost = np.r_[np.full(n_rings, 3), np.ones(single.size)].astype(np.int64)
    unit_imp = np.r_[tri, importance[single]]
    unit_tier = np.r_[np.zeros(n_rings), np.ones(single.size)]
    unit_order = np.lexsort((unit_tier, -unit_imp, unit_object))
    cum = np.cumsum(unit_cost[unit_order])
    obj_sorted = unit_object[unit_order]
    new_obj = np.flatnonzero(np.r_[True, obj_sorted[1:] != obj_sorted[:-1]])
    before = np.repeat(np.r_[0, cum[new_obj[1:] - 1]], np.diff(np.r_[new_obj, cum.size]))
    return TracedObjects(
        shape=tuple(shape),
        n_objects=n_obj,
        bbox=bbox,
        vertices=pts,
        ring_start=rs.astype(np.int64),
        ring_object=r_obj.astype(np.int64),
        ring_is_hole=np.asarray(r_hole, dtype=bool),
        unit=unit,
        unit_object=unit_object,
        unit_cost=unit_cost,
        unit_order=unit_order,
        unit_cum=cum - before,
    )


# ------------------------------------------------------------------------------ raster
def _rasterize_edges(
    p: np.ndarray, q: np.ndarray, group: np.ndarray, sizes: np.ndarray
) -> list[np.ndarray]:
    """Even-odd, top-left rasterisation of edge soups, one canvas per group.

    ``p``, ``q``: (e, 2) edge end points in each canvas's napari coordinates; ``group``: canvas of
    each edge; ``sizes``: (g, 2) canvas shapes. Every row of a canvas gets one spare column so that
    crossings right of the canvas stay in their row; a closed ring crosses each row an even
    number of times, so one running parity over all canvases is exact.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    stride = sizes[:, 1] + 1
    cells = sizes[:, 0] * stride
    offset = np.r_[0, np.cumsum(cells)]
    total = int(offset[-1])
    toggles = np.zeros(total + 1, dtype=np.int64)
    if p.size:
        flip = p[:, 0] > q[:, 0]
        y0 = np.where(flip, q[:, 0], p[:, 0])
        x0 = np.where(flip, q[:, 1], p[:, 1])
        y1 = np.where(flip, p[:, 0], q[:, 0])
        x1 = np.where(flip, p[:, 1], q[:, 1])
        r0 = np.ceil(y0).astype(np.int64)
        r1 = np.ceil(y1).astype(np.int64)  # rows r0 .. r1 - 1: centres in [y0, y1)
        r0 = np.clip(r0, 0, sizes[group, 0])
        r1 = np.clip(r1, 0, sizes[group, 0])
        n_rows = np.maximum(r1 - r0, 0)
        e = np.repeat(np.arange(y0.size), n_rows)
        row = r0[e] + (np.arange(e.size) - np.repeat(np.cumsum(n_rows) - n_rows, n_rows))
        x = x0[e] + (row - y0[e]) * (x1[e] - x0[e]) / (y1[e] - y0[e])
        col = np.clip(np.ceil(x), 0, sizes[group[e], 1]).astype(np.int64)
        g = group[e]
        toggles[:total] = np.bincount(offset[g] + row * stride[g] + col, minlength=total)
    inside = (np.cumsum(toggles[:total]) & 1).astype(bool)
    return [
        inside[offset[k] : offset[k + 1]].reshape(sizes[k, 0], stride[k])[:, : sizes[k, 1]]
        for k in range(sizes.shape[0])
    ]


def rasterize_rings(rings: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Rasterise polygon rings (napari ``(row, col)`` coordinates) into a boolean mask.

    A pixel is inside when its centre is inside by the even-odd rule, so holes are rings of
    their own; a centre exactly on an edge is inside on a top or left edge only. Vertices on
    pixel corners (``x.5``) are exact: a pixel-aligned rectangle gives back its pixels.

    Examples
    --------
    >>> rect = np.array([[0.5, 1.5], [3.5, 1.5], [3.5, 6.5], [0.5, 6.5]])
    >>> rasterize_rings([rect], (5, 8)).astype(int)
    array([[0, 0, 0, 0, 0, 0, 0, 0],
           [0, 0, 1, 1, 1, 1, 1, 0],
           [0, 0, 1, 1, 1, 1, 1, 0],
           [0, 0, 1, 1, 1, 1, 1, 0],
           [0, 0, 0, 0, 0, 0, 0, 0]])
    """
    ps, qs = [], []
    for ring in rings:
        ring = np.asarray(ring, dtype=np.float64).reshape(-1, 2)
        if len(ring) < 3:
            continue
        ps.append(ring)
        qs.append(np.roll(ring, -1, axis=0))
    p = np.concatenate(ps) if ps else np.zeros((0, 2))
    q = np.concatenate(qs) if qs else np.zeros((0, 2))
    return _rasterize_edges(p, q, np.zeros(len(p), np.int64), np.array([shape]))[0]


def simplify_mask(mask: np.ndarray, budget: int | None) -> list[np.ndarray]:
    """The best polygon rings with at most ``budget`` vertices in all for one binary mask.

    All pixels of ``mask`` form one object (several parts and holes allowed). ``None`` gives
    the exact pixel outline.

    Examples
    --------
    >>> mask = np.zeros((20, 20), bool); mask[2:18, 2:18] = True; mask[8:12, 8:12] = False
    >>> [len(r) for r in simplify_mask(mask, 8)]  # outer square, square hole
    [4, 4]
    >>> [len(r) for r in simplify_mask(mask, 6)]  # no room for the hole
    [4]
    """
    traced = trace_objects(np.asarray(mask).astype(bool).astype(np.int32))
    if traced.n_objects == 0:
        return []
    return traced.rings(budget, 1)


# ------------------------------------------------------------------------------ report
@dataclass(frozen=True)
class ObjectResult:
    """One object's polygon versions, one entry per budget of the report.

    The polygon for budget ``k`` is the best (highest IoU) of the ranked Douglas-Peucker
    polygons at the report's budgets ``<= k``; ``simplified_at`` names that budget, so
    ``TracedObjects.rings(simplified_at[i], object_id)`` gives the polygon back.

    ``max_deviation`` is the symmetric Hausdorff distance in pixels between the boundary
    pixels of the mask and of the rasterised polygon (the polygon's whole extent counts when it
    covers no pixel at all).
    """

    image: int
    object_id: int
    class_id: int
    area: int
    parts: int
    holes: int
    exact_vertices: int
    vertices: tuple[int, ...]
    iou: tuple[float, ...]
    boundary_iou: tuple[float, ...]
    max_deviation: tuple[float, ...]
    simplified_at: tuple[int, ...]


@dataclass(frozen=True)
class ClassSufficiency:
    """Verdict for one class; sequences have one entry per budget of the report.

    ``iou_reached[i]`` is the IoU that at least ``object_fraction`` of the objects reach at
    budget ``i``: the class suffices at the first budget where it is at least ``iou_target``.
    ``mask_cost`` counts the vertices of the exact pixel outlines; ``polygon_cost`` the vertices
    used at ``sufficient_budget`` (equal to ``mask_cost`` when the class needs pixel masks).
    """

    class_id: int
    name: str
    n_objects: int
    fraction_reaching: tuple[float, ...]
    median_iou: tuple[float, ...]
    iou_reached: tuple[float, ...]
    mean_boundary_iou: tuple[float, ...]
    median_max_deviation: tuple[float, ...]
    mean_vertices: tuple[float, ...]
    median_exact_vertices: float
    sufficient_budget: int | None
    verdict: str
    mask_cost: int
    polygon_cost: int


@dataclass(frozen=True)
class PolygonReport:
    """Polygon sufficiency of a set of label images.

    ``cost_ratio`` = annotation cost (vertices) when the sufficient classes switch to polygons,
    divided by the cost of exact pixel masks for every class (see the module docstring).
    """

    budgets: tuple[int, ...]
    iou_target: float
    object_fraction: float
    dilation_ratio: float
    n_images: int
    classes: tuple[ClassSufficiency, ...]
    objects: tuple[ObjectResult, ...]
    mask_cost: int
    polygon_cost: int
    cost_ratio: float

    def to_dict(self, *, objects: bool = True) -> dict[str, Any]:
        """A JSON-ready dictionary (NaN becomes ``None``)."""

        def clean(v):
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, tuple | list):
                return [clean(x) for x in v]
            return v

        out: dict[str, Any] = {
            "budgets": list(self.budgets),
            "iou_target": self.iou_target,
            "object_fraction": self.object_fraction,
            "dilation_ratio": self.dilation_ratio,
            "n_images": self.n_images,
            "cost_unit": "vertex",
            "mask_cost": self.mask_cost,
            "polygon_cost": self.polygon_cost,
            "cost_ratio": clean(self.cost_ratio),
            "classes": [{k: clean(v) for k, v in vars(c).items()} for c in self.classes],
        }
        if objects:
            out["objects"] = [{k: clean(v) for k, v in vars(o).items()} for o in self.objects]
        return out

    def table(self) -> str:
        """A plain-text table: one row per class, the fraction of objects reaching the target."""
        head = f"{'class':<22}{'objects':>8}" + "".join(
            f"{'k=' + str(k):>7}" for k in self.budgets
        )
        lines = [f"fraction of objects with IoU >= {self.iou_target:g}", head, "-" * len(head)]
        for c in self.classes:
            cells = "".join(f"{f:>7.2f}" for f in c.fraction_reaching)
            lines.append(f"{c.name[:21]:<22}{c.n_objects:>8}{cells}  {c.verdict}")
        if not self.classes:
            lines.append("no objects of the requested classes in these images")
            return "\n".join(lines)
        lines.append(
            f"annotation cost with polygons where they suffice: {self.polygon_cost:,} vertices "
            f"vs {self.mask_cost:,} for exact masks (ratio {self.cost_ratio:.2f})"
        )
        return "\n".join(lines)


def _boundary_pixels(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def _hausdorff(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric Hausdorff distance between the boundary pixels of two masks of one shape."""
    ba, bb = _boundary_pixels(a), _boundary_pixels(b)
    if not ba.any() or not bb.any():
        return float(math.hypot(*a.shape))
    da = ndimage.distance_transform_edt(np.pad(~ba, 1, constant_values=True))[1:-1, 1:-1]
    db = ndimage.distance_transform_edt(np.pad(~bb, 1, constant_values=True))[1:-1, 1:-1]
    return float(max(da[bb].max(), db[ba].max()))


def _verdict(k: int | None) -> str:
    if k is None:
        return "needs pixel masks"
    return f"polygons suffice at {k} vertices"


def polygon_sufficiency(
    label_images: Iterable[np.ndarray],
    class_ids: Sequence[int],
    *,
    class_names: Sequence[str] | None = None,
    budgets: Sequence[int] = DEFAULT_BUDGETS,
    iou_target: float = 0.95,
    object_fraction: float = 0.9,
    dilation_ratio: float = 0.02,
    instance_class: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> PolygonReport:
    """Would polygons with at most k vertices reproduce these masks, class by class?

    Parameters
    ----------
    label_images : iterable of (H, W) integer arrays
        The pilot set of full masks (2D; cut volumes into slices first).
    class_ids : sequence of int
        Classes to analyse (background and ignore ids left out).
    class_names : sequence of str, optional
        Names for the report, parallel to ``class_ids``.
    budgets : sequence of int
        Vertex budgets per object (each at least 3), tried in increasing order.
    iou_target : float
        An object is reproduced when its polygon reaches this mask IoU.
    object_fraction : float
        A class suffices at budget k when at least this fraction of its objects is reproduced.
    dilation_ratio : float
        Boundary-IoU band width as a fraction of the image diagonal (as in
        :func:`napari_segflow.core.quality.metrics.boundary_iou`).
    instance_class : int, optional
        Read the images as instance maps of this one class (see :func:`object_map`).
    progress : callable, optional
        Called as ``progress(done, total)`` after each image.
    cancel : callable, optional
        Checked before each image; when it returns True a ``RuntimeError`` ends the run.

    Returns
    -------
    PolygonReport

    Examples
    --------
    >>> lab = np.zeros((40, 40), np.uint8); lab[5:15, 5:30] = 1   # a rectangle: 4 vertices
    >>> yy, xx = np.mgrid[:40, :40]; lab[(yy - 28) ** 2 + (xx - 20) ** 2 < 64] = 2   # a disc
    >>> rep = polygon_sufficiency([lab], [1, 2], class_names=["box", "disc"], budgets=(4, 10, 30))
    >>> [c.verdict for c in rep.classes]
    ['polygons suffice at 4 vertices', 'polygons suffice at 10 vertices']
    >>> [round(v, 3) for v in rep.classes[1].median_iou]  # the disc's exact outline: 24 vertices
    [0.71, 0.969, 1.0]
    """
    budgets = tuple(sorted({int(k) for k in budgets}))
    if not budgets or budgets[0] < 3:
        raise ValueError(f"vertex budgets must be integers >= 3, got {budgets}")
    if not 0 < iou_target <= 1:
        raise ValueError(f"iou_target must be in (0, 1], got {iou_target}")
    if not 0 < object_fraction <= 1:
        raise ValueError(f"object_fraction must be in (0, 1], got {object_fraction}")
    class_ids = [int(c) for c in class_ids]
    names = list(class_names) if class_names is not None else [str(c) for c in class_ids]
    if len(names) != len(class_ids):
        raise ValueError("class_names must be parallel to class_ids")
    images = list(label_images)
    objects_out: list[ObjectResult] = []
    for n_done, labels in enumerate(images):
        if cancel is not None and cancel():
            raise RuntimeError("polygon check cancelled")
        objects_out.extend(
            measure_objects(
                labels,
                class_ids,
                image=n_done,
                budgets=budgets,
                dilation_ratio=dilation_ratio,
                instance_class=instance_class,
            )
        )
        if progress is not None:
            progress(n_done + 1, len(images))
    return summarize(
        objects_out,
        class_ids,
        class_names=names,
        budgets=budgets,
        iou_target=iou_target,
        object_fraction=object_fraction,
        dilation_ratio=dilation_ratio,
        n_images=len(images),
    )


def summarize(
    objects: Sequence[ObjectResult],
    class_ids: Sequence[int],
    *,
    class_names: Sequence[str] | None = None,
    budgets: Sequence[int] = DEFAULT_BUDGETS,
    iou_target: float = 0.95,
    object_fraction: float = 0.9,
    dilation_ratio: float = 0.02,
    n_images: int = 1,
) -> PolygonReport:
    """The per-class verdicts and costs from :func:`measure_objects` results.

    ``budgets`` and ``dilation_ratio`` must be those the objects were measured with.
    """
    budgets = tuple(sorted({int(k) for k in budgets}))
    objects_out = list(objects)
    names = list(class_names) if class_names is not None else [str(c) for c in class_ids]
    classes = []
    mask_total = poly_total = 0
    for cid, name in zip(class_ids, names, strict=True):
        objs = [o for o in objects_out if o.class_id == cid]
        if not objs:
            continue
        iou = np.array([o.iou for o in objs])
        biou = np.array([o.boundary_iou for o in objs])
        dev = np.array([o.max_deviation for o in objs])
        nv = np.array([o.vertices for o in objs])
        exact = np.array([o.exact_vertices for o in objs])
        frac = (iou >= iou_target).mean(axis=0)
        # the IoU that object_fraction of the objects reach: the class suffices where it >= target
        reached = -np.sort(-iou, axis=0)[max(math.ceil(object_fraction * len(objs)) - 1, 0)]
        ok = np.flatnonzero(frac >= object_fraction)
        k = budgets[ok[0]] if ok.size else None
        mask_cost = int(exact.sum())
        poly_cost = int(nv[:, ok[0]].sum()) if ok.size else mask_cost
        mask_total += mask_cost
        poly_total += poly_cost
        classes.append(
            ClassSufficiency(
                class_id=cid,
                name=name,
                n_objects=len(objs),
                fraction_reaching=tuple(float(f) for f in frac),
                median_iou=tuple(float(v) for v in np.median(iou, axis=0)),
                iou_reached=tuple(float(v) for v in reached),
                mean_boundary_iou=tuple(float(v) for v in np.nanmean(biou, axis=0)),
                median_max_deviation=tuple(float(v) for v in np.median(dev, axis=0)),
                mean_vertices=tuple(float(v) for v in nv.mean(axis=0)),
                median_exact_vertices=float(np.median(exact)),
                sufficient_budget=k,
                verdict=_verdict(k),
                mask_cost=mask_cost,
                polygon_cost=poly_cost,
            )
        )
    return PolygonReport(
        budgets=budgets,
        iou_target=float(iou_target),
        object_fraction=float(object_fraction),
        dilation_ratio=float(dilation_ratio),
        n_images=int(n_images),
        classes=tuple(classes),
        objects=tuple(objects_out),
        mask_cost=mask_total,
        polygon_cost=poly_total,
        cost_ratio=poly_total / mask_total if mask_total else math.nan,
    )


def measure_objects(
    labels: np.ndarray,
    class_ids: Sequence[int],
    *,
    image: int = 0,
    budgets: Sequence[int] = DEFAULT_BUDGETS,
    dilation_ratio: float = 0.02,
    instance_class: int | None = None,
) -> list[ObjectResult]:
    """Polygon versions of every object of one 2D label image, scored against the mask.

    See :func:`polygon_sufficiency` for the parameters; ``image`` is the number recorded in
    each result. Objects are numbered as :func:`object_map` numbers them.
    """
    budgets = tuple(sorted({int(k) for k in budgets}))
    if not budgets or budgets[0] < 3:
        raise ValueError(f"vertex budgets must be integers >= 3, got {budgets}")
    objects, object_class = object_map(labels, class_ids, instance_class=instance_class)
    traced = trace_objects(objects)
    n = traced.n_objects
    if n == 0:
        return []
    # the boundary band is as wide as boundary_iou would make it on the whole image
    band = max(1, int(round(dilation_ratio * math.hypot(*objects.shape))))
    rasters = [traced.rasterize(k) for k in budgets]
    counts = [traced.vertex_counts(k) for k in budgets]
    exact = traced.exact_vertices
    holes = np.bincount(traced.ring_object[traced.ring_is_hole], minlength=n + 1)
    parts = np.bincount(traced.ring_object[~traced.ring_is_hole], minlength=n + 1)
    out = []
    for o in range(1, n + 1):
        r0, c0, r1, c1 = traced.bbox[o]
        gt = (objects[r0:r1, c0:c1] == o).astype(np.uint8)
        ratio = band / math.hypot(*gt.shape)
        preds = [raster[o] for raster in rasters]
        ious = []
        for pred in preds:
            same = np.array_equal(gt, pred)  # the budget holds the exact outline
            ious.append(1.0 if same else float(per_class_iou(gt, pred, n_classes=2)[1]))
        # DP is not monotone: more vertices can fit worse. At budget k the polygon is the best
        # of those at budgets <= k (ties go to the fewer vertices): it has at most k vertices too.
        choice = [int(np.argmax(ious[: i + 1])) for i in range(len(budgets))]
        extra: dict[int, tuple[float, float]] = {}
        for j in set(choice):
            if ious[j] == 1.0:
                extra[j] = (1.0, 0.0)
            else:
                pred = preds[j].astype(np.uint8)
                biou = boundary_iou(gt, pred, dilation_ratio=ratio, n_classes=2)[1]
                extra[j] = (float(biou), _hausdorff(gt.astype(bool), preds[j]))
        out.append(
            ObjectResult(
                image=image,
                object_id=o,
                class_id=int(object_class[o]),
                area=int(gt.sum()),
                parts=int(parts[o]),
                holes=int(holes[o]),
                exact_vertices=int(exact[o]),
                vertices=tuple(int(counts[j][o]) for j in choice),
                iou=tuple(ious[j] for j in choice),
                boundary_iou=tuple(extra[j][0] for j in choice),
                max_deviation=tuple(extra[j][1] for j in choice),
                simplified_at=tuple(budgets[j] for j in choice),
            )
        )
    return out


@dataclass(frozen=True)
class ReportRing:
    """One ring of a report polygon, for display (napari ``(row, col)`` coordinates)."""

    vertices: np.ndarray
    object_id: int
    class_id: int
    hole: bool
    iou: float


def report_rings(
    labels: np.ndarray,
    results: Sequence[ObjectResult],
    budget: int,
    budgets: Sequence[int],
    *,
    class_ids: Sequence[int],
    instance_class: int | None = None,
) -> list[ReportRing]:
    """The rings of the report's ``budget`` polygons for the objects of one image.

    ``results`` are that image's :class:`ObjectResult` (from :func:`measure_objects` with the
    same ``budgets``, ``class_ids`` and ``instance_class``).
    """
    budgets = tuple(sorted({int(k) for k in budgets}))
    if budget not in budgets:
        raise ValueError(f"budget {budget} is not one of the report's budgets {budgets}")
    i = budgets.index(budget)
    objects, _ = object_map(labels, class_ids, instance_class=instance_class)
    traced = trace_objects(objects)
    out = []
    for res in results:
        for ring, hole in traced.rings_and_holes(res.simplified_at[i], res.object_id):
            out.append(ReportRing(ring, res.object_id, res.class_id, hole, res.iou[i]))
    return out
