"""Where classes touch in a label map, and which of those contacts have a written rule.

A *contact* is a pair of neighbouring pixels (voxels) holding two different classes. Its count,
the *contact length*, is the number of such neighbour pairs: in 2D with ``connectivity=1`` it is
the length of the shared boundary in pixel edges.

Connectivity follows :func:`scipy.ndimage.generate_binary_structure` (and scikit-image):
``connectivity=c`` makes two pixels neighbours when they differ by one step along at most ``c``
axes. In 2D, 1 = the 4 edge neighbours, 2 = also the 4 diagonals. In 3D, 1 = the 6 face
neighbours, 2 = also the 12 edge neighbours (18 in all), 3 = also the 8 corners (26 in all).

Values that are not classes of the taxonomy (its unlabelled id, its ``ignore_id``, ids it does
not know) never make a pair: painting next to unlabelled space is not a boundary conflict.

Everything here is vectorised: each neighbour offset is one comparison of two shifted views of
the array, and the pairs are counted with ``np.bincount`` on integer pair codes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_segflow.core.taxonomy import ConflictRule, Taxonomy

__all__ = [
    "ConflictSite",
    "PairContact",
    "class_adjacency",
    "conflict_sites",
    "contact_sites",
    "neighbour_offsets",
    "touching_pairs",
    "uncovered_pairs",
]

#: Largest number of distinct values for which pair codes are counted with a dense bincount.
_DENSE_LIMIT = 4096


@dataclass(frozen=True)
class ConflictSite:
    """Where two classes touch, with the rule written for them (if any).

    Attributes
    ----------
    classes : tuple of str
        The two class names, ordered by class id.
    ids : tuple of int
        The two class ids, ``(min, max)``.
    rule : ConflictRule or None
        The taxonomy's rule for the pair; ``None`` when no rule is written.
    contact_length : int
        Number of neighbouring pixel pairs across the boundary.
    bbox : tuple of (int, int)
        Half-open ``(start, stop)`` per array axis enclosing every pixel of the contact
        (both sides of the boundary).
    centroid : tuple of float
        Mean position of the contact (midpoints of the pixel pairs), in array coordinates.
    anchor : tuple of int
        A pixel on the contact, the one nearest to ``centroid``: the place to jump to (the
        centroid of a contact with several parts can lie away from all of them).
    """

    classes: tuple[str, str]
    ids: tuple[int, int]
    rule: ConflictRule | None
    contact_length: int
    bbox: tuple[tuple[int, int], ...]
    centroid: tuple[float, ...]
    anchor: tuple[int, ...]

    @property
    def slices(self) -> tuple[slice, ...]:
        """``bbox`` as a tuple of slices."""
        return tuple(slice(a, b) for a, b in self.bbox)


@dataclass(frozen=True)
class PairContact:
    """Total contact of a class pair over one or more label maps.

    Attributes
    ----------
    classes : tuple of str
        The two class names, ordered by class id.
    ids : tuple of int
        The two class ids, ``(min, max)``.
    contact_length : int
        Neighbouring pixel pairs across the boundary, summed over the maps.
    n_maps : int
        In how many of the maps the two classes touch.
    rule : ConflictRule or None
        The rule written for the pair, ``None`` when there is none.
    """

    classes: tuple[str, str]
    ids: tuple[int, int]
    contact_length: int
    n_maps: int
    rule: ConflictRule | None


# ---------------------------------------------------------------------- helpers
def neighbour_offsets(ndim: int, connectivity: int = 1) -> list[tuple[int, ...]]:
    """Half of the neighbourhood: one offset per unordered neighbour pair.

    Examples
    --------
    >>> neighbour_offsets(2, 1)
    [(0, 1), (1, 0)]
    >>> len(neighbour_offsets(2, 2)), len(neighbour_offsets(3, 2)), len(neighbour_offsets(3, 3))
    (4, 9, 13)
    """
    if ndim < 1:
        raise ValueError("labels need at least one dimension")
    if not isinstance(connectivity, int | np.integer) or not 1 <= connectivity <= ndim:
        raise ValueError(
            f"connectivity must be an integer in 1..{ndim} for {ndim}D labels, got {connectivity!r}"
        )
    out = []
    for off in itertools.product((-1, 0, 1), repeat=ndim):
        steps = [o for o in off if o]
        # keep offsets whose first non-zero step is positive: each pair is seen once
        if steps and len(steps) <= connectivity and steps[0] > 0:
            out.append(off)
    return out


def _shifted(shape: Sequence[int], off: Sequence[int]) -> tuple[tuple[slice, ...], ...]:
    """Slices ``(src, dst)`` so that ``a[dst]`` is the neighbour at ``off`` of ``a[src]``."""
    src, dst = [], []
    for n, o in zip(shape, off, strict=True):
        if o > 0:
            src.append(slice(0, n - o))
            dst.append(slice(o, n))
        elif o < 0:
            src.append(slice(-o, n))
            dst.append(slice(0, n + o))
        else:
            src.append(slice(0, n))
            dst.append(slice(0, n))
    return tuple(src), tuple(dst)


def _as_int_array(labels: Any) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.dtype.kind == "b":
        return arr.view(np.uint8)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"labels must hold integers, got dtype {arr.dtype}")
    return arr


def _compact(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, values)``: ``arr`` with each value replaced by its rank among present values.

    Small unsigned values are kept as they are (no copy): the pair codes stay small anyway.
    """
    if arr.size == 0:
        return arr, np.zeros(0, dtype=np.int64)
    if arr.dtype.kind == "u" and arr.dtype.itemsize <= 2:
        top = int(arr.max())
        if top < 256:
            return arr, np.arange(top + 1, dtype=np.int64)
        present = np.flatnonzero(np.bincount(arr.ravel(), minlength=top + 1))
        lut = np.zeros(top + 1, dtype=np.uint16)
        lut[present] = np.arange(present.size, dtype=np.uint16)
        return lut[arr], present.astype(np.int64)
    values, inverse = np.unique(arr, return_inverse=True)
    return inverse.reshape(arr.shape), values.astype(np.int64)


def _pair_matrix(
    codes: np.ndarray, n_values: int, offsets: Iterable[tuple[int, ...]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count neighbour pairs of compact codes: ``(lo, hi, count)`` arrays with ``lo < hi``."""
    n = max(n_values, 1)
    dense = n <= _DENSE_LIMIT
    total = np.zeros(n * n, dtype=np.int64) if dense else None
    sparse: dict[int, int] = {}
    for off in offsets:
        src, dst = _shifted(codes.shape, off)
        a, b = codes[src], codes[dst]
        diff = a != b
        av, bv = a[diff], b[diff]
        if av.size == 0:
            continue
        lo = np.minimum(av, bv).astype(np.int64)
        hi = np.maximum(av, bv).astype(np.int64)
        pair = lo * n + hi
        if dense:
            total += np.bincount(pair, minlength=n * n)
        else:
            keys, counts = np.unique(pair, return_counts=True)
            for k, c in zip(keys.tolist(), counts.tolist(), strict=True):
                sparse[k] = sparse.get(k, 0) + c
    if dense:
        keys = np.flatnonzero(total)
        counts = total[keys]
    else:
        keys = np.fromiter(sparse, dtype=np.int64, count=len(sparse))
        counts = np.fromiter(sparse.values(), dtype=np.int64, count=len(sparse))
    return keys // n, keys % n, counts


def _class_ids(taxonomy: Taxonomy) -> frozenset[int]:
    return frozenset(taxonomy.ids)


# ------------------------------------------------------------------- adjacency
def class_adjacency(
    labels: Any, *, connectivity: int = 1, ignore: Iterable[int] = ()
) -> dict[tuple[int, int], int]:
    """Count, for every pair of values that touch, the neighbouring pixel pairs between them.

    Parameters
    ----------
    labels : integer array, 2D or 3D (any number of dimensions works)
        A class-index label map.
    connectivity : int
        1 = neighbours share a face (4 in 2D, 6 in 3D); 2 = also diagonal neighbours (8 in 2D,
        18 in 3D: faces and edges); 3 (3D only) = also corners (26).
    ignore : iterable of int
        Values that are not classes (unlabelled, "don't care"): they never form pairs.

    Returns
    -------
    dict
        ``{(a, b): n}`` with ``a < b``, ``n`` the number of neighbour pairs holding ``a`` and
        ``b``. Pairs that do not touch are absent.

    Examples
    --------
    >>> lab = np.array([[1, 1, 2],
    ...                 [1, 3, 2],
    ...                 [0, 0, 2]])
    >>> class_adjacency(lab, ignore=[0])
    {(1, 2): 1, (1, 3): 2, (2, 3): 1}
    >>> class_adjacency(lab, connectivity=2, ignore=[0])
    {(1, 2): 2, (1, 3): 3, (2, 3): 3}
    """
    arr = _as_int_array(labels)
    offsets = neighbour_offsets(arr.ndim, connectivity)
    codes, values = _compact(arr)
    lo, hi, counts = _pair_matrix(codes, values.size, offsets)
    skip = {int(v) for v in ignore}
    out: dict[tuple[int, int], int] = {}
    for i, j, c in zip(lo.tolist(), hi.tolist(), counts.tolist(), strict=True):
        a, b = int(values[i]), int(values[j])
        if a in skip or b in skip:
            continue
        out[(a, b)] = int(c)
    return dict(sorted(out.items()))


def _taxonomy_adjacency(
    labels: Any, taxonomy: Taxonomy, connectivity: int
) -> dict[tuple[int, int], int]:
    arr = _as_int_array(labels)
    adj = class_adjacency(arr, connectivity=connectivity)
    ids = _class_ids(taxonomy)
    return {p: n for p, n in adj.items() if p[0] in ids and p[1] in ids}


def _names(taxonomy: Taxonomy, pair: tuple[int, int]) -> tuple[str, str]:
    return (taxonomy.by_id(pair[0]).name, taxonomy.by_id(pair[1]).name)


def touching_pairs(
    labels_or_dataset: Any, taxonomy: Taxonomy, *, connectivity: int = 1
) -> list[PairContact]:
    """Every pair of classes that touch in one label map or a dataset of them, with its rule.

    Parameters
    ----------
    labels_or_dataset : array, or iterable of arrays
        One label map, or several (a list, a generator reading files one at a time).
    taxonomy : Taxonomy
        Gives the classes (other values are ignored) and the rules.
    connectivity : int
        See :func:`class_adjacency`.

    Returns
    -------
    list of PairContact
        Sorted by total contact length, longest first.
    """
    maps = [labels_or_dataset] if isinstance(labels_or_dataset, np.ndarray) else labels_or_dataset
    total: dict[tuple[int, int], int] = {}
    seen: dict[tuple[int, int], int] = {}
    for labels in maps:
        for pair, n in _taxonomy_adjacency(labels, taxonomy, connectivity).items():
            total[pair] = total.get(pair, 0) + n
            seen[pair] = seen.get(pair, 0) + 1
    out = []
    for pair, n in total.items():
        names = _names(taxonomy, pair)
        out.append(PairContact(names, pair, n, seen[pair], taxonomy.rule_between(*names)))
    out.sort(key=lambda p: (-p.contact_length, p.ids))
    return out


def uncovered_pairs(
    labels_or_dataset: Any, taxonomy: Taxonomy, *, connectivity: int = 1
) -> list[PairContact]:
    """Touching class pairs for which the taxonomy has no rule, longest total contact first.

    These are the rules a project still has to write.

    Parameters
    ----------
    labels_or_dataset : array, or iterable of arrays
        One label map or several.
    taxonomy : Taxonomy
    connectivity : int
        See :func:`class_adjacency`.

    Examples
    --------
    >>> from napari_segflow.core.taxonomy import load_preset
    >>> tax = load_preset("cityscapes")          # road 0, sidewalk 1, car 13; 255 ignored
    >>> maps = [np.array([[0, 1], [13, 0]]), np.array([[13, 13, 0], [1, 13, 0]])]
    >>> [(p.classes, p.contact_length, p.n_maps) for p in uncovered_pairs(maps, tax)]
    [(('road', 'car'), 4, 2), (('sidewalk', 'car'), 2, 1)]
    """
    return [
        p
        for p in touching_pairs(labels_or_dataset, taxonomy, connectivity=connectivity)
        if p.rule is None
    ]


# ----------------------------------------------------------------------- sites
def _normalise_region(
    region: Any, shape: tuple[int, ...]
) -> tuple[tuple[slice, ...], np.ndarray | None] | None:
    """``(box, mask)``: the changed area as a box and, if not the whole box, a mask inside it.

    Returns ``None`` for an empty region.
    """
    ndim = len(shape)
    if isinstance(region, np.ndarray) and region.dtype == bool:
        if region.shape != shape:
            raise ValueError(f"region mask has shape {region.shape}, labels have {shape}")
        if not region.any():
            return None
        box = []
        for ax in range(ndim):
            hit = np.flatnonzero(region.any(axis=tuple(i for i in range(ndim) if i != ax)))
            box.append(slice(int(hit[0]), int(hit[-1]) + 1))
        box_t = tuple(box)
        return box_t, region[box_t]
    if (
        isinstance(region, tuple)
        and len(region) == 2
        and isinstance(region[0], tuple)
        and isinstance(region[1], np.ndarray)
    ):
        normal = _normalise_region(region[0], shape)
        if normal is None:
            return None
        box_t = normal[0]
        sub = np.asarray(region[1], dtype=bool)
        if sub.shape != tuple(s.stop - s.start for s in box_t):
            raise ValueError(
                f"region mask has shape {sub.shape}, its box {region[0]} has another shape"
            )
        if not sub.any():
            return None
        return box_t, sub
    if isinstance(region, slice):
        region = (region,)
    if isinstance(region, tuple) and all(isinstance(s, slice) for s in region):
        if len(region) > ndim:
            raise ValueError(f"region has {len(region)} slices for {ndim}D labels")
        box = []
        for ax, n in enumerate(shape):
            s = region[ax] if ax < len(region) else slice(None)
            start, stop, step = s.indices(n)
            if step != 1:
                raise ValueError("region slices must have step 1")
            if stop <= start:
                return None
            box.append(slice(start, stop))
        return tuple(box), None
    raise ValueError(
        "region must be a tuple of slices, a boolean mask of the labels' shape, "
        "or (tuple of slices, boolean mask of that box)"
    )


def contact_sites(
    labels: Any,
    taxonomy: Taxonomy,
    *,
    region: Any = None,
    connectivity: int = 1,
) -> list[ConflictSite]:
    """Every pair of classes that touch (in ``region``), with rule, contact length and location.

    Like :func:`conflict_sites` but also returns the pairs with no rule (``rule is None``).
    ``labels`` may be any sliceable array (numpy, dask, zarr): only the region's box is read.
    """
    if not hasattr(labels, "shape") or not hasattr(labels, "__getitem__"):
        labels = np.asarray(labels)
    shape = tuple(int(n) for n in labels.shape)
    offsets = neighbour_offsets(len(shape), connectivity)
    if region is None:
        crop = tuple(slice(0, n) for n in shape)
        inner = None
    else:
        normal = _normalise_region(region, shape)
        if normal is None:
            return []
        box, sub = normal
        # grow the box by one pixel so contacts across its edge are seen
        crop = tuple(
            slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(box, shape, strict=True)
        )
        inner = np.zeros(tuple(c.stop - c.start for c in crop), dtype=bool)
        inner_box = tuple(
            slice(s.start - c.start, s.stop - c.start) for s, c in zip(box, crop, strict=True)
        )
        inner[inner_box] = True if sub is None else sub
    origin = np.array([c.start for c in crop], dtype=np.int64)
    # slice before converting, so lazy arrays (dask, zarr) only read the crop
    view = _as_int_array(labels[crop])
    codes, values = _compact(view)
    n = max(values.size, 1)
    ids = _class_ids(taxonomy)
    is_class = np.array([int(v) in ids for v in values.tolist()], dtype=bool)

    # small dtypes keep the big per-contact arrays light
    pair_dtype = np.dtype(np.uint16 if n * n <= 1 << 16 else np.int64)
    coord_dtype = np.dtype(np.int32 if max(view.shape, default=0) < 1 << 30 else np.int64)
    pairs: list[np.ndarray] = []
    ps: list[np.ndarray] = []
    qs: list[np.ndarray] = []
    for off in offsets:
        src, dst = _shifted(view.shape, off)
        a, b = codes[src], codes[dst]
        hit = a != b
        if inner is not None:
            hit &= inner[src] | inner[dst]
        flat = np.flatnonzero(hit)
        if flat.size == 0:
            continue
        av, bv = a[hit], b[hit]  # same order as flat
        keep = is_class[av] & is_class[bv]
        if not keep.any():
            continue
        flat, av, bv = flat[keep], av[keep], bv[keep]
        lo = np.minimum(av, bv).astype(pair_dtype)
        pairs.append(lo * pair_dtype.type(n) + np.maximum(av, bv).astype(pair_dtype))
        start = np.array([s.start for s in src], dtype=coord_dtype)[:, None]
        p = np.array(np.unravel_index(flat, a.shape), dtype=coord_dtype) + start
        ps.append(p)
        qs.append(p + np.array(off, dtype=coord_dtype)[:, None])
    if not pairs:
        return []

    # group the neighbour pairs by class pair; per-group statistics with ufunc.reduceat
    pair = np.concatenate(pairs)
    order = np.argsort(pair, kind="stable")  # a radix sort for 16-bit codes
    pair = pair[order]
    P = np.concatenate(ps, axis=1)[:, order]  # (ndim, M) first pixel of each neighbour pair
    Q = np.concatenate(qs, axis=1)[:, order]  # and its neighbour
    starts = np.flatnonzero(np.concatenate(([True], pair[1:] != pair[:-1])))
    keys = pair[starts].astype(np.int64)
    counts = np.diff(np.append(starts, pair.size))
    lows = np.minimum.reduceat(np.minimum(P, Q), starts, axis=1)
    highs = np.maximum.reduceat(np.maximum(P, Q), starts, axis=1)
    centroids = np.add.reduceat((P + Q).astype(np.float64), starts, axis=1) / (2 * counts)
    group = np.repeat(np.arange(keys.size), counts)
    dist_p = ((P - centroids[:, group]) ** 2).sum(axis=0)
    dist_q = ((Q - centroids[:, group]) ** 2).sum(axis=0)
    use_q = dist_q < dist_p
    dist = np.where(use_q, dist_q, dist_p)
    nearest = np.where(use_q, Q, P)
    best = np.minimum.reduceat(dist, starts)
    candidates = np.flatnonzero(dist == best[group])
    _, first = np.unique(group[candidates], return_index=True)
    anchors = nearest[:, candidates[first]]

    sites = []
    for g, k in enumerate(keys.tolist()):
        pair_ids = (int(values[k // n]), int(values[k % n]))
        names = _names(taxonomy, pair_ids)
        sites.append(
            ConflictSite(
                classes=names,
                ids=pair_ids,
                rule=taxonomy.rule_between(*names),
                contact_length=int(counts[g]),
                bbox=tuple(
                    (int(lo + o), int(hi + o) + 1)
                    for lo, hi, o in zip(lows[:, g], highs[:, g], origin, strict=True)
                ),
                centroid=tuple(float(c + o) for c, o in zip(centroids[:, g], origin, strict=True)),
                anchor=tuple(int(c + o) for c, o in zip(anchors[:, g], origin, strict=True)),
            )
        )
    sites.sort(key=lambda s: (-s.contact_length, s.ids))
    return sites


def conflict_sites(
    labels: Any,
    taxonomy: Taxonomy,
    *,
    region: Any = None,
    connectivity: int = 1,
) -> list[ConflictSite]:
    """The touching class pairs that have a written rule, with where they touch.

    Parameters
    ----------
    labels : integer array (2D or 3D)
        Class-index label map.
    taxonomy : Taxonomy
        Gives the classes and the rules. Its unlabelled/ignore id and unknown ids form no pairs.
    region : optional
        Limit the search to a changed area. A contact counts when at least one of its two
        pixels lies in the area, so new pixels touching old ones outside it are found.
        Accepted forms:

        - a tuple of slices (a box; missing trailing axes mean "whole axis");
        - a boolean mask of the labels' shape;
        - ``(box, mask)``: a tuple of slices and a boolean mask of the box's shape (what an
          editor knows about a brush stroke, without allocating a full-size mask).

        ``None`` searches the whole map.
    connectivity : int
        See :func:`class_adjacency`.

    Returns
    -------
    list of ConflictSite
        One per pair with a rule, longest contact first. ``contact_length``, ``bbox`` and
        ``centroid`` describe the contact inside the region only.

    Examples
    --------
    >>> from napari_segflow.core.taxonomy import load_preset
    >>> tax = load_preset("cityscapes")          # road 0, sidewalk 1, car 13
    >>> lab = np.array([[0, 0, 1, 1],
    ...                 [0, 0, 1, 1],
    ...                 [13, 13, 13, 13]])
    >>> [(s.classes, s.contact_length, s.bbox) for s in conflict_sites(lab, tax)]
    [(('road', 'sidewalk'), 2, ((0, 2), (1, 3)))]
    >>> conflict_sites(lab, tax, region=(slice(2, 3),))   # only the car row changed
    []
    """
    return [
        s
        for s in contact_sites(labels, taxonomy, region=region, connectivity=connectivity)
        if s.rule is not None
    ]
