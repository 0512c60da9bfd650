import json
from fractions import Fraction

import numpy as np
import pytest
import tifffile
from skimage.measure import points_in_poly

from napari_segflow.core.io.nifti import read_nifti
from napari_segflow.core.quality.polygons import (
    DEFAULT_BUDGETS,
    object_map,
    polygon_sufficiency,
    rasterize_rings,
    simplify_mask,
    trace_objects,
)


def _disc(size=64, radius=25.0, inner=0.0):
    yy, xx = np.mgrid[:size, :size]
    r2 = (yy - (size - 1) / 2) ** 2 + (xx - (size - 1) / 2) ** 2
    return ((r2 < radius**2) & (r2 >= inner**2)).astype(np.uint8)


def _roundtrip_exact(objects):
    traced = trace_objects(objects)
    rasters = traced.rasterize(None)
    for o in range(1, traced.n_objects + 1):
        r0, c0, r1, c1 = traced.bbox[o]
        np.testing.assert_array_equal(rasters[o], objects[r0:r1, c0:c1] == o)
    return traced


# ---------------------------------------------------------------- hand-made shapes
def test_rectangle_needs_four_vertices_and_round_trips():
    mask = np.zeros((12, 15), bool)
    mask[3:9, 2:13] = True
    rings = simplify_mask(mask, None)
    assert len(rings) == 1 and len(rings[0]) == 4
    # corners sit on pixel corners, napari (row, col) coordinates
    assert sorted(map(tuple, rings[0].tolist())) == [
        (2.5, 1.5),
        (2.5, 12.5),
        (8.5, 1.5),
        (8.5, 12.5),
    ]
    np.testing.assert_array_equal(rasterize_rings(rings, mask.shape), mask)
    rep = polygon_sufficiency([mask.astype(np.uint8)], [1], budgets=(4, 10))
    (obj,) = rep.objects
    assert obj.exact_vertices == 4 and obj.vertices == (4, 4)
    assert obj.iou == (1.0, 1.0) and obj.max_deviation == (0.0, 0.0)
    assert rep.classes[0].sufficient_budget == 4


def test_circle_iou_rises_with_budget():
    disc = _disc()
    rep = polygon_sufficiency([disc], [1], budgets=(4, 6, 10, 15, 30, 50))
    (obj,) = rep.objects
    iou = np.array(obj.iou)
    assert np.all(np.diff(iou) >= 0)
    assert iou[0] < 0.85 < 0.97 < iou[-1] < 1.0  # a square is far off, 50 vertices nearly exact
    assert obj.vertices[-1] <= 50 < obj.exact_vertices
    assert obj.max_deviation[0] > obj.max_deviation[-1] >= 1.0
    assert all(v <= k for v, k in zip(obj.vertices, rep.budgets, strict=True))
    # simplified vertices are a subset of the exact outline's corners
    exact = {tuple(p) for p in simplify_mask(disc, None)[0].tolist()}
    assert {tuple(p) for p in simplify_mask(disc, 15)[0].tolist()} <= exact


def test_ring_needs_two_contours_and_keeps_its_hole():
    ann = _disc(radius=25, inner=12)
    traced = _roundtrip_exact(ann.astype(np.int32))
    assert traced.ring_is_hole.tolist().count(True) == 1 and len(traced.ring_is_hole) == 2
    rings = simplify_mask(ann, 30)
    assert len(rings) == 2 and sum(len(r) for r in rings) <= 30
    raster = rasterize_rings(rings, ann.shape)
    assert not raster[32, 32]  # the hole survives simplification
    assert (raster & ann.astype(bool)).sum() / (raster | ann.astype(bool)).sum() > 0.93
    rep = polygon_sufficiency([ann], [1])
    assert rep.objects[0].holes == 1 and rep.objects[0].parts == 1
    # hole vertices count: the exact outline is the sum of both rings
    assert rep.objects[0].exact_vertices == sum(len(r) for r in simplify_mask(ann, None))


def test_hole_is_dropped_when_the_budget_is_too_small():
    mask = np.zeros((20, 20), bool)
    mask[2:18, 2:18] = True
    mask[8:12, 8:12] = False
    assert [len(r) for r in simplify_mask(mask, 8)] == [4, 4]
    assert [len(r) for r in simplify_mask(mask, 7)] == [4, 3]  # the hole as a triangle
    small = simplify_mask(mask, 6)
    assert [len(r) for r in small] == [4]
    np.testing.assert_array_equal(rasterize_rings(small, mask.shape), np.pad(np.ones((16, 16)), 2))


def test_two_part_instance_is_one_object_with_two_parts():
    inst = np.zeros((20, 30), np.uint16)
    inst[2:10, 2:10] = 7  # 64 px
    inst[12:16, 20:24] = 7  # 16 px, same instance
    inst[12:18, 2:8] = 9
    rep = polygon_sufficiency([inst], [1], budgets=(6, 8), instance_class=1)
    two = next(o for o in rep.objects if o.area == 80)
    assert two.parts == 2 and two.exact_vertices == 8 and two.class_id == 1
    # 6 vertices: only the larger square fits, the small part is lost honestly
    assert two.vertices == (4, 8)
    assert two.iou[0] == pytest.approx(64 / 80) and two.iou[1] == 1.0
    # read semantically, the parts would be two objects
    objects, cls = object_map((inst == 7).astype(np.uint8), [1])
    assert objects.max() == 2 and cls.tolist() == [-1, 1, 1]


def test_diagonal_pixels_are_one_eight_connected_object():
    mask = np.zeros((6, 6), np.int32)
    mask[1, 1] = mask[2, 2] = mask[3, 3] = 1
    traced = _roundtrip_exact(mask)
    # one ring through the shared corners; the staircase is a 45-degree strip of 4 vertices
    assert len(traced.ring_object) == 1 and traced.exact_vertices[1] == 4


def test_irregular_shape_needs_pixel_masks():
    comb = np.zeros((40, 130), np.uint8)
    comb[5:15, 5:125] = 1
    for c in range(5, 125, 4):
        comb[15:35, c : c + 2] = 1
    rep = polygon_sufficiency([comb], [1], class_names=["comb"])
    (cls,) = rep.classes
    assert cls.verdict == "needs pixel masks" and cls.sufficient_budget is None
    assert max(cls.median_iou) < 0.95
    assert cls.polygon_cost == cls.mask_cost == rep.objects[0].exact_vertices
    assert rep.cost_ratio == 1.0


def test_cost_ratio_counts_vertices():
    lab = np.zeros((80, 80), np.uint8)
    lab[5:20, 5:40] = 1  # box: 4 vertices at any budget
    lab[30:78, 30:78] = 2 * _disc(48, 20)  # disc: polygons at its sufficient budget
    rep = polygon_sufficiency([lab], [1, 2], budgets=(10, 20, 50), iou_target=0.97)
    box, disc = rep.classes
    assert box.mask_cost == box.polygon_cost == 4
    k = disc.sufficient_budget
    assert k is not None
    assert disc.polygon_cost == rep.objects[1].vertices[rep.budgets.index(k)] <= k
    assert rep.cost_ratio == pytest.approx((4 + disc.polygon_cost) / (4 + disc.mask_cost))
    assert "ratio" in rep.table() and json.dumps(rep.to_dict())


def test_top_left_rule_on_edges_through_pixel_centres():
    # vertices on pixel centres: centres on the top and left edges count, on the slanted
    # right-bottom edge they do not
    tri = np.array([[0.0, 0.0], [0.0, 4.0], [4.0, 0.0]])
    yy, xx = np.mgrid[:6, :6]
    np.testing.assert_array_equal(rasterize_rings([tri], (6, 6)), yy + xx < 4)


def test_rasterizer_matches_point_in_polygon_off_the_grid():
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(3, 12))
        ring = rng.uniform(-3, 23, size=(n, 2))
        got = rasterize_rings([ring], (20, 20))
        pts = np.stack(np.mgrid[:20, :20], -1).reshape(-1, 2)
        want = points_in_poly(pts, ring).reshape(20, 20)
        # even-odd agrees with the crossing test except where a centre lies on an edge
        # (probability zero for random float vertices)
        np.testing.assert_array_equal(got, want)


def test_rasterize_is_exact_for_slanted_grid_edges():
    # integer arithmetic check of one slanted pixel-corner edge against fractions
    ring = np.array([[-0.5, -0.5], [2.5, 8.5], [9.5, -0.5]])
    got = rasterize_rings([ring], (10, 10))
    want = np.zeros((10, 10), bool)
    for i in range(10):
        for j in range(10):
            inside = _even_odd_fraction(ring, i, j)
            want[i, j] = inside
    np.testing.assert_array_equal(got, want)


def _even_odd_fraction(ring, i, j):
    """Crossings of the half-line to the left of centre (i, j), exact, top-left rule."""
    count = 0
    pts = [(Fraction(y), Fraction(x)) for y, x in ring.tolist()]
    for (y0, x0), (y1, x1) in zip(pts, pts[1:] + pts[:1], strict=True):
        if y0 > y1:
            y0, x0, y1, x1 = y1, x1, y0, x0
        if y0 <= i < y1:
            x = x0 + (i - y0) * (x1 - x0) / (y1 - y0)
            count += x <= j
    return count % 2 == 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least 3|>= 3"):
        polygon_sufficiency([np.zeros((4, 4), np.uint8)], [1], budgets=(2, 10))
    with pytest.raises(ValueError, match="2D"):
        object_map(np.zeros((2, 3, 4), np.uint8), [1])
    with pytest.raises(RuntimeError, match="cancelled"):
        polygon_sufficiency([np.zeros((4, 4), np.uint8)], [1], cancel=lambda: True)


# ---------------------------------------------------------------- real masks
def _check_report(rep, name):
    (cls,) = [c for c in rep.classes if c.name == name]
    k = cls.sufficient_budget
    i = rep.budgets.index(k)
    assert cls.fraction_reaching[i] >= rep.object_fraction
    assert cls.iou_reached[i] >= rep.iou_target
    assert i == 0 or cls.iou_reached[i - 1] < rep.iou_target
    assert i == 0 or cls.fraction_reaching[i - 1] < rep.object_fraction
    assert all(np.diff(cls.median_iou) >= 0)
    return cls


def test_nuclei_instances(shared_data):
    inst = tifffile.imread(shared_data / "nuclei_dsb2018" / "mask2d.tif")
    objects, _ = object_map(inst, [1], instance_class=1)
    _roundtrip_exact(objects)  # all 125 nuclei trace and rasterise back exactly
    rep = polygon_sufficiency([inst], [1], class_names=["nucleus"], instance_class=1)
    assert len(rep.objects) == 125
    cls = _check_report(rep, "nucleus")
    assert cls.verdict == f"polygons suffice at {cls.sufficient_budget} vertices"
    assert rep.cost_ratio < 0.5  # staircase outlines cost far more clicks than 10-30 vertices


def test_spacenet_buildings(shared_data):
    fp = tifffile.imread(shared_data / "spacenet_atlanta" / "sample_fp_mask_from_geojson.tif")
    objects, cls = object_map(fp, [255])
    _roundtrip_exact(objects)
    rep = polygon_sufficiency([fp], [255], class_names=["building"])
    assert rep.classes[0].n_objects == int(objects.max())
    _check_report(rep, "building")


def test_mr_organ_slices(shared_data):
    vol = read_nifti(shared_data / "abdomen_mr" / "example_seg_mr.nii.gz").data
    names = json.loads(
        (shared_data / "abdomen_mr" / "class_map_total_and_total_mr.json").read_text()
    )
    ids = [int(i) for i in np.unique(vol) if i]
    slices = [vol[:, :, k] for k in range(0, vol.shape[2], 2)]
    for s in slices:
        objects, _ = object_map(s, ids)
        _roundtrip_exact(objects)
    rep = polygon_sufficiency(
        slices, ids, class_names=[names["total_mr"][str(i)] for i in ids], budgets=DEFAULT_BUDGETS
    )
    liver = _check_report(rep, "liver")
    assert liver.n_objects >= 5
    assert {c.name for c in rep.classes} <= set(names["total_mr"].values())


@pytest.mark.parametrize("dtype", [np.uint8, np.int64])
def test_instance_ids_are_renumbered(dtype):
    big = 70000 if dtype == np.int64 else 200
    inst = np.array([[0, big, big], [5, 0, big]], dtype=dtype)
    objects, cls = object_map(inst, [3], instance_class=3)
    np.testing.assert_array_equal(objects, [[0, 2, 2], [1, 0, 2]])
    assert cls.tolist() == [-1, 3, 3]
