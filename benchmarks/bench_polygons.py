"""Objects per second for polygon tracing + simplification + rasterisation on real masks.

Run from the repository root: ``python benchmarks/bench_polygons.py`` (one thread; the real
masks come from ``shared/data`` beside the checkout, or SEGFLOW_SHARED_DATA).

Each object goes through: tracing, simplification to every default budget (10 ... 50 vertices)
and rasterisation of each of those polygons on the mask's grid. ``vectorised`` is
``napari_segflow.core.quality.polygons`` (all objects of an image at once); ``naive`` is the obvious
per-object loop over scikit-image: ``find_contours`` on the object's crop, ``approximate_polygon``
with the tolerance bisected to each budget, ``draw.polygon`` per ring (XOR for holes). The last
columns give the mean IoU at 20 vertices and how many objects come back exactly from their
unsimplified outline.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import tifffile  # noqa: E402
from scipy import ndimage  # noqa: E402
from skimage import draw, measure  # noqa: E402

from napari_segflow.core.io.nifti import read_nifti  # noqa: E402
from napari_segflow.core.quality.polygons import DEFAULT_BUDGETS, object_map, trace_objects  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SEGFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))


def datasets() -> dict[str, tuple[list[np.ndarray], list[int], int | None]]:
    nuclei = tifffile.imread(DATA / "nuclei_dsb2018" / "mask2d.tif")
    fp = tifffile.imread(DATA / "spacenet_atlanta" / "sample_fp_mask_from_geojson.tif")
    vol = read_nifti(DATA / "abdomen_mr" / "example_seg_mr.nii.gz").data
    organs = [int(i) for i in np.unique(vol) if i]
    return {
        "nuclei (DSB 2018)": ([nuclei], [1], 1),
        "buildings (SpaceNet)": ([fp], [255], None),
        "MR organs (20 slices)": ([vol[:, :, k] for k in range(vol.shape[2])], organs, None),
    }


def vectorised(images, class_ids, instance_class):
    """All objects of each image at once: trace, rank, rasterise the exact outline and each budget."""
    n = 0
    rasters = []
    for img in images:
        objects, _ = object_map(img, class_ids, instance_class=instance_class)
        traced = trace_objects(objects)
        n += traced.n_objects
        rasters.append([traced.rasterize(k) for k in (None, *DEFAULT_BUDGETS)])
    return n, rasters


def _naive_ring_raster(rings, shape):
    out = np.zeros(shape, bool)
    for ring in rings:
        if len(ring) < 3:
            continue
        rr, cc = draw.polygon(ring[:, 0], ring[:, 1], shape)
        out[rr, cc] ^= True
    return out


def _naive_simplify(contours, k):
    lo, hi = 0.0, 50.0
    best = contours
    for _ in range(20):  # bisection on the tolerance until the vertex count fits
        tol = (lo + hi) / 2
        simple = [measure.approximate_polygon(c, tol)[:-1] for c in contours]
        simple = [s for s in simple if len(s) >= 3]
        if sum(len(s) for s in simple) <= k:
            best, hi = simple, tol
        else:
            lo = tol
    return best


def naive(images, class_ids, instance_class, limit):
    """The per-object scikit-image pipeline on the first ``limit`` objects (it is slow)."""
    rasters = {}
    for i, img in enumerate(images):
        objects, _ = object_map(img, class_ids, instance_class=instance_class)
        for o, sl in enumerate(ndimage.find_objects(objects), start=1):
            if sl is None or len(rasters) >= limit:
                continue
            crop = np.pad(objects[sl] == o, 1)
            contours = [c[:-1] for c in measure.find_contours(crop.astype(float), 0.5)]
            out = [_naive_ring_raster(contours, crop.shape)]
            for k in DEFAULT_BUDGETS:
                out.append(_naive_ring_raster(_naive_simplify(contours, k), crop.shape))
            rasters[(i, o)] = [r[1:-1, 1:-1] for r in out]
    return len(rasters), rasters


def quality(images, class_ids, instance_class, rasters_by_key):
    """Mean IoU at 20 vertices and exact round trips, over the objects in ``rasters_by_key``."""
    i20 = 1 + DEFAULT_BUDGETS.index(20)
    ious, exact = [], 0
    for (i, o), rasters in rasters_by_key.items():
        objects, _ = object_map(images[i], class_ids, instance_class=instance_class)
        sl = ndimage.find_objects(objects)[o - 1]
        gt = objects[sl] == o
        exact += bool(np.array_equal(rasters[0], gt))
        ious.append(_iou(rasters[i20], gt))
    return float(np.mean(ious)), exact


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def main() -> int:
    limit = 40
    rows = []
    warm = np.zeros((8, 8), np.uint8)
    warm[2:5, 2:6] = 1
    naive([warm], [1], None, 1)  # scikit-image loads its submodules lazily: not part of the rate
    for name, (images, class_ids, inst) in datasets().items():
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            n, rasters = vectorised(images, class_ids, inst)
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        n_naive, naive_rasters = naive(images, class_ids, inst, limit)
        t_naive = time.perf_counter() - t0
        ours = {key: [r[key[1]] for r in rasters[key[0]]] for key in naive_rasters}
        rows.append((name, "vectorised", n, min(times), *quality(images, class_ids, inst, ours)))
        rows.append(
            (name, "naive", n_naive, t_naive, *quality(images, class_ids, inst, naive_rasters))
        )
    head = (
        f"{'masks':<24}{'method':<12}{'objects':>8}{'seconds':>9}{'objects/s':>11}"
        f"{'IoU@20':>8}{'exact':>8}"
    )
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(head)
    print("-" * len(head))
    for name, kind, n, t, miou, exact in rows:
        print(f"{name:<24}{kind:<12}{n:>8}{t:>9.3f}{n / t:>11,.0f}{miou:>8.3f}{exact:>5}/{limit}")
    print(
        f"per object: tracing, simplification to {len(DEFAULT_BUDGETS)} budgets and "
        f"{len(DEFAULT_BUDGETS) + 1} rasterisations, one thread. naive: first {limit} objects "
        f"only; IoU@20 and exact round trips on those {limit} objects for both methods."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
