"""Class adjacency, conflict sites and uncovered pairs on label maps worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segflow.core.io.nifti import read_nifti
from napari_segflow.core.taxonomy import taxonomy_from_dict
from napari_segflow.core.taxonomy.rules import (
    class_adjacency,
    conflict_sites,
    contact_sites,
    neighbour_offsets,
    touching_pairs,
    uncovered_pairs,
)

# 0 is unlabelled; rules are written for a/b and b/c, none for a/c, a/d, b/d, c/d
TAX = taxonomy_from_dict(
    {
        "name": "abcd",
        "classes": [
            {"id": 1, "name": "a", "color": "#ff0000"},
            {"id": 2, "name": "b", "color": "#00ff00"},
            {"id": 3, "name": "c", "color": "#0000ff"},
            {"id": 4, "name": "d", "color": "#ffff00"},
        ],
        "rules": [
            {"classes": ["b", "a"], "text": "a/b edge goes to b", "resolve_to": "b"},
            {"classes": ["b", "c"], "text": "b over c"},
        ],
    }
)

SCENE = np.array(
    [
        [0, 0, 0, 0, 0, 0],
        [0, 1, 1, 2, 2, 0],
        [0, 1, 1, 2, 2, 0],
        [0, 0, 3, 3, 3, 0],
    ],
    dtype=np.uint8,
)


def brute_force(labels: np.ndarray, connectivity: int, ignore=()) -> dict:
    """Reference: visit every pixel and every neighbour in Python."""
    out: dict = {}
    shape = labels.shape
    offsets = [
        o for o in np.ndindex(*(3,) * labels.ndim) if 0 < sum(v != 1 for v in o) <= connectivity
    ]
    for p in np.ndindex(*shape):
        for o in offsets:
            q = tuple(pi + oi - 1 for pi, oi in zip(p, o, strict=True))
            if all(0 <= qi < s for qi, s in zip(q, shape, strict=True)):
                a, b = int(labels[p]), int(labels[q])
                if a != b and a not in ignore and b not in ignore:
                    key = (min(a, b), max(a, b))
                    out[key] = out.get(key, 0) + 1
    # every unordered pair was visited from both ends
    return {k: v // 2 for k, v in sorted(out.items())}


# ------------------------------------------------------------------- adjacency
def test_2d_face_and_diagonal_contacts():
    lab = np.array([[1, 1, 2], [1, 1, 2], [3, 3, 3]])
    assert class_adjacency(lab) == {(1, 2): 2, (1, 3): 2, (2, 3): 1}
    # diagonals add (0,1)-(1,2), (0,2)-(1,1) for 1/2; three 1/3 corners; (1,2)-(2,1) for 2/3
    assert class_adjacency(lab, connectivity=2) == {(1, 2): 4, (1, 3): 5, (2, 3): 2}


def test_pure_diagonal_contact_only_counts_at_connectivity_2():
    lab = np.array([[1, 0], [0, 2]])
    assert class_adjacency(lab, ignore=[0]) == {}
    assert class_adjacency(lab, connectivity=2, ignore=[0]) == {(1, 2): 1}
    # without ignoring 0 the background touches both classes
    assert class_adjacency(lab) == {(0, 1): 2, (0, 2): 2}


def test_3d_face_edge_corner():
    vol = np.zeros((2, 2, 2), dtype=np.uint8)
    vol[0, 0, 0] = 1  # corner neighbour of (1,1,1), edge neighbour of (0,1,1)
    vol[1, 1, 1] = 2
    vol[0, 1, 1] = 3  # face neighbour of (1,1,1)
    assert class_adjacency(vol, ignore=[0]) == {(2, 3): 1}
    assert class_adjacency(vol, connectivity=2, ignore=[0]) == {(1, 3): 1, (2, 3): 1}
    assert class_adjacency(vol, connectivity=3, ignore=[0]) == {(1, 2): 1, (1, 3): 1, (2, 3): 1}


def test_3d_slabs_contact_counts():
    z, y, x = 4, 5, 6
    vol = np.ones((z, y, x), dtype=np.uint16)
    vol[2:] = 2
    face = y * x
    edge = 2 * (y - 1) * x + 2 * y * (x - 1)
    corner = 4 * (y - 1) * (x - 1)
    assert class_adjacency(vol) == {(1, 2): face}
    assert class_adjacency(vol, connectivity=2) == {(1, 2): face + edge}
    assert class_adjacency(vol, connectivity=3) == {(1, 2): face + edge + corner}


@pytest.mark.parametrize(
    "dtype, scale", [(np.uint8, 1), (np.uint16, 5000), (np.int32, -7), (np.int64, 10**9)]
)
@pytest.mark.parametrize("connectivity", [1, 2])
def test_matches_brute_force_for_any_integer_dtype(dtype, scale, connectivity):
    rng = np.random.default_rng(3)
    lab = (rng.integers(0, 5, (23, 17)) * scale).astype(dtype)
    assert class_adjacency(lab, connectivity=connectivity) == brute_force(lab, connectivity)


def test_many_distinct_ids_use_sparse_counting():
    rng = np.random.default_rng(4)
    lab = rng.integers(0, 60000, (70, 80)).astype(np.uint16)
    assert class_adjacency(lab, connectivity=2) == brute_force(lab, 2)


def test_bool_and_uniform_maps():
    assert class_adjacency(np.zeros((5, 5), dtype=np.uint8)) == {}
    assert class_adjacency(np.array([[True, False, False]])) == {(0, 1): 1}


@pytest.mark.parametrize("connectivity", [1, 2, 3])
def test_real_mr_label_volume_matches_brute_force(shared_data, connectivity):
    vol = read_nifti(shared_data / "abdomen_mr" / "example_seg_mr.nii.gz").data
    crop = vol[40:70, 30:60, 5:15]
    assert len(np.unique(crop)) >= 4  # several organs meet in this crop
    expected = brute_force(crop, connectivity, ignore=(0,))
    assert len(expected) >= 3
    assert class_adjacency(crop, connectivity=connectivity, ignore=[0]) == expected


def test_bad_connectivity_and_dtype():
    with pytest.raises(ValueError, match="connectivity must be an integer in 1..2"):
        class_adjacency(np.zeros((3, 3), int), connectivity=3)
    with pytest.raises(ValueError, match="integers"):
        class_adjacency(np.zeros((3, 3), float))
    assert len(neighbour_offsets(3, 1)) == 3


# ----------------------------------------------------------------------- sites
def test_conflict_sites_only_pairs_with_rules():
    sites = conflict_sites(SCENE, TAX)
    by_pair = {s.classes: s for s in sites}
    assert set(by_pair) == {("a", "b"), ("b", "c")}
    ab = by_pair[("a", "b")]
    assert ab.ids == (1, 2)
    assert ab.rule is TAX.rule_between("a", "b")
    assert ab.contact_length == 2
    assert ab.bbox == ((1, 3), (2, 4))
    assert ab.centroid == pytest.approx((1.5, 2.5))
    bc = by_pair[("b", "c")]
    assert bc.contact_length == 2
    assert bc.bbox == ((2, 4), (3, 5))
    # the a/c contact (2,2)-(3,2) has no rule: listed only by contact_sites
    ac = {s.classes: s for s in contact_sites(SCENE, TAX)}[("a", "c")]
    assert ac.rule is None and ac.contact_length == 1 and ac.bbox == ((2, 4), (2, 3))


def test_anchor_lies_on_the_contact():
    lab = np.zeros((40, 40), dtype=np.uint8)
    lab[5:10, 5:10] = 1
    lab[5:10, 10:15] = 2  # contact at the top left
    lab[30:35, 25:30] = 1
    lab[30:35, 30:35] = 2  # and far away at the bottom right
    (site,) = conflict_sites(lab, TAX)
    assert site.contact_length == 10
    # the centroid falls between the two parts, on unlabelled ground
    assert lab[tuple(round(c) for c in site.centroid)] == 0
    assert lab[site.anchor] in (1, 2)
    assert all(lo <= a < hi for a, (lo, hi) in zip(site.anchor, site.bbox, strict=True))
    assert site.slices == (slice(5, 35), slice(9, 31))


@pytest.mark.parametrize("form", ["slices", "mask", "box+mask"])
def test_region_limits_search_to_changed_pixels(form):
    box = (slice(1, 3), slice(1, 3))  # the 'a' block
    if form == "slices":
        region = box
    elif form == "mask":
        region = np.zeros(SCENE.shape, bool)
        region[box] = True
    else:
        region = (box, np.ones((2, 2), bool))
    sites = contact_sites(SCENE, TAX, region=region)
    assert {s.classes: s.contact_length for s in sites} == {("a", "b"): 2, ("a", "c"): 1}
    assert [s.classes for s in conflict_sites(SCENE, TAX, region=region)] == [("a", "b")]


def test_region_finds_new_pixel_touching_old_ones():
    before = SCENE.copy()
    after = before.copy()
    after[3, 1] = 4  # new 'd' pixel: touches a above it and c to its right
    changed = after != before
    sites = contact_sites(after, TAX, region=changed)
    assert {s.classes: s.contact_length for s in sites} == {("a", "d"): 1, ("c", "d"): 1}
    assert conflict_sites(after, TAX, region=changed) == []
    # a new 'c' pixel under 'b' meets a written rule
    after2 = before.copy()
    after2[1:3, 5] = 3
    sites = conflict_sites(after2, TAX, region=after2 != before)
    assert [(s.classes, s.contact_length) for s in sites] == [(("b", "c"), 2)]
    assert sites[0].bbox == ((1, 3), (4, 6))


def test_region_edits_touching_nothing_new():
    lab = SCENE.copy()
    lab[3, 5] = 3  # extend c into unlabelled space: it touches only c and unlabelled
    region = (slice(3, 4), slice(5, 6))
    assert conflict_sites(lab, TAX, region=region) == []
    assert contact_sites(lab, TAX, region=(slice(0, 0),)) == []
    assert contact_sites(lab, TAX, region=np.zeros(lab.shape, bool)) == []


def test_region_in_3d_with_diagonal_connectivity():
    vol = np.zeros((3, 4, 4), dtype=np.uint8)
    vol[0, 0, 0] = 2
    vol[1, 1, 1] = 3  # corner contact with b
    assert conflict_sites(vol, TAX, region=(slice(1, 2),)) == []
    (site,) = conflict_sites(vol, TAX, region=(slice(1, 2),), connectivity=3)
    assert site.classes == ("b", "c") and site.contact_length == 1
    assert site.bbox == ((0, 2), (0, 2), (0, 2))
    assert site.centroid == pytest.approx((0.5, 0.5, 0.5))


def test_region_reads_only_its_box_from_lazy_arrays():
    class Recording:
        """An array-like that records which boxes are read from it."""

        def __init__(self, data):
            self.data, self.shape, self.dtype, self.reads = data, data.shape, data.dtype, []

        def __getitem__(self, key):
            self.reads.append(key)
            return self.data[key]

    lazy = Recording(SCENE)
    sites = conflict_sites(lazy, TAX, region=(slice(1, 3), slice(1, 3)))
    assert [s.classes for s in sites] == [("a", "b")]
    assert lazy.reads == [(slice(0, 4), slice(0, 4))]  # the box grown by one pixel
    da = pytest.importorskip("dask.array")
    lazy_dask = da.from_array(SCENE, chunks=2)
    assert conflict_sites(lazy_dask, TAX) == conflict_sites(SCENE, TAX)


def test_bad_regions():
    with pytest.raises(ValueError, match="shape"):
        conflict_sites(SCENE, TAX, region=np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="region must be"):
        conflict_sites(SCENE, TAX, region=[1, 2])


def test_unlabelled_ignore_and_unknown_ids_make_no_pairs():
    tax = taxonomy_from_dict(
        {
            "name": "t",
            "ignore_id": 255,
            "classes": [
                {"id": 0, "name": "road", "color": "#808080"},
                {"id": 1, "name": "kerb", "color": "#ffffff"},
            ],
            "rules": [{"classes": ["road", "kerb"], "text": "kerb wins"}],
        }
    )
    lab = np.array([[0, 255, 1], [0, 255, 1], [7, 7, 1]], dtype=np.uint8)
    assert touching_pairs(lab, tax) == []
    assert conflict_sites(lab, tax) == []
    lab[0, 1] = 1
    assert [(p.classes, p.contact_length) for p in touching_pairs(lab, tax)] == [
        (("road", "kerb"), 1)
    ]
    # with no ignore_id and no class 0, the value 0 is the unlabelled id: a next to 0 is no pair
    assert TAX.unlabeled_id == 0
    assert contact_sites(np.array([[1, 0, 2]], dtype=np.uint8), TAX) == []


# -------------------------------------------------------------------- coverage
def test_uncovered_pairs_ranked_across_maps():
    m1 = SCENE  # a/c 1 px (no rule)
    m2 = np.array([[1, 4, 4], [1, 4, 4], [1, 4, 4]], dtype=np.uint8)  # a/d 3
    m3 = np.array([[3, 4], [3, 4], [2, 2]], dtype=np.uint8)  # c/d 2, b/c 1, b/d 1
    maps = [m1, m2, m3]
    ranked = uncovered_pairs(maps, TAX)
    assert [(p.classes, p.contact_length, p.n_maps) for p in ranked] == [
        (("a", "d"), 3, 1),
        (("c", "d"), 2, 1),
        (("a", "c"), 1, 1),
        (("b", "d"), 1, 1),
    ]
    assert all(p.rule is None for p in ranked)
    # covered pairs sum over maps: b/c 2 in SCENE + 1 in m3
    covered = {p.classes: p for p in touching_pairs(maps, TAX) if p.rule is not None}
    assert covered[("b", "c")].contact_length == 3 and covered[("b", "c")].n_maps == 2
    # a generator (maps read one at a time) gives the same answer
    assert uncovered_pairs((m for m in maps), TAX) == ranked
    # the same pair in several maps adds up
    twice = uncovered_pairs([m2, m2, m1], TAX)
    assert (twice[0].classes, twice[0].contact_length, twice[0].n_maps) == (("a", "d"), 6, 2)


def test_sites_on_real_mr_volume_match_brute_force(shared_data):
    vol = read_nifti(shared_data / "abdomen_mr" / "example_seg_mr.nii.gz").data
    crop = np.ascontiguousarray(vol[40:70, 30:60, 5:15])
    ids = sorted(int(v) for v in np.unique(crop) if v != 0)
    tax = taxonomy_from_dict(
        {
            "name": "organs",
            "classes": [{"id": i, "name": f"organ{i}", "color": "#808080"} for i in ids],
        }
    )
    contacts: dict = {}
    for p in np.ndindex(*crop.shape):
        for off in neighbour_offsets(3, 2):
            q = tuple(a + b for a, b in zip(p, off, strict=True))
            if not all(0 <= x < n for x, n in zip(q, crop.shape, strict=True)):
                continue
            a, b = int(crop[p]), int(crop[q])
            if a != b and a and b:
                contacts.setdefault((min(a, b), max(a, b)), []).append((p, q))
    sites = {s.ids: s for s in contact_sites(crop, tax, connectivity=2)}
    assert set(sites) == set(contacts)
    for key, pq in contacts.items():
        pts = np.array([x for pair in pq for x in pair])
        mids = np.array([(np.add(p, q)) / 2 for p, q in pq])
        site = sites[key]
        assert site.contact_length == len(pq)
        assert site.bbox == tuple(
            (int(lo), int(hi) + 1) for lo, hi in zip(pts.min(0), pts.max(0), strict=True)
        )
        assert site.centroid == pytest.approx(tuple(mids.mean(0)))
        best = ((pts - mids.mean(0)) ** 2).sum(1).min()
        assert ((np.array(site.anchor) - mids.mean(0)) ** 2).sum() == pytest.approx(best)
        assert crop[site.anchor] in key
