"""Objects per second for polygon tracing + simplification + rasterisation on real masks.

Run from the repository root: ``python benchmarks/bench_polygons.py`` (one thread; the real
masks come from ``shared/data`` beside the checkout, or SEGFLOW_SHARED_DATA).

Each object goes through: tracing, simplification to every default budget (10 ... 50 vertices)
and rasterisation of each of those polygons on the mask's grid. ``vectorised`` is
``napari_segflow.core.polygons`` (all objects of an image at once); ``naive`` is the obvious
per-object loop over scikit-image: ``find_contours`` on the object's crop, ``approximate_polygon``
with the tolerance bisected to each budget, ``draw.polygon`` per ring (XOR for holes). The last
columns give the mean IoU at 20 vertices and how many objects come back exactly from their
unsimplified outline.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import tifffile  # noqa: E402
from scipy import ndimage  # noqa: E402
from skimage import draw, measure  # noqa: E402

from napari_segflow.core.io.nifti import read_nifti  # noqa: E402
from napari_segflow.core.polygons import DEFAULT_BUDGETS, object_map, trace_objects  # noqa: E402

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


def naive(images, class_ids, instance_class):
    n = 0
    rasters = []
    for img in images:
        objects, _ = object_map(img, class_ids, instance_class=instance_class)
        per_image = []
        for o, sl in enumerate(ndimage.find_objects(objects), start=1):
            if sl is None:
                continue
            n += 1
            crop = np.pad(objects[sl] == o, 1)
            contours = [c[:-1] for c in measure.find_contours(crop.astype(float), 0.5)]
            exact = _naive_ring_raster(contours, crop.shape)
            per_image.append(
                [exact]
                + [
                    _naive_ring_raster(_naive_simplify(contours, k), crop.shape)
                    for k in DEFAULT_BUDGETS
                ]
            )
        rasters.append(per_image)
    return n, rasters


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def quality(kind, images, class_ids, instance_class, rasters):
    i20 = 1 + DEFAULT_BUDGETS.index(20)
    ious, exact = [], 0
    for img, per_image in zip(images, rasters, strict=True):
        objects, _ = object_map(img, class_ids, instance_class=instance_class)
        for o, sl in enumerate(ndimage.find_objects(objects), start=1):
            if sl is None:
                continue
            gt = objects[sl] == o
            if kind == "vectorised":
                full, k20 = per_image[0][o], per_image[i20][o]
            else:
                full, k20 = (r[1:-1, 1:-1] for r in (per_image[o - 1][0], per_image[o - 1][i20]))
            exact += bool(np.array_equal(full, gt))
            ious.append(_iou(k20, gt))
    return float(np.mean(ious)), exact


def main() -> int:
    rows = []
    for name, (images, class_ids, inst) in datasets().items():
        for kind, fn in (("vectorised", vectorised), ("naive", naive)):
            times = []
            for _ in range(3 if kind == "vectorised" else 1):
                t0 = time.perf_counter()
                n, rasters = fn(images, class_ids, inst)
                times.append(time.perf_counter() - t0)
            miou, exact = quality(kind, images, class_ids, inst, rasters)
            rows.append((name, kind, n, min(times), n / min(times), miou, exact))
    head = f"{'masks':<24}{'method':<12}{'objects':>8}{'seconds':>9}{'objects/s':>11}{'IoU@20':>8}{'exact':>9}"
    print(head)
    print("-" * len(head))
    for name, kind, n, t, rate, miou, exact in rows:
        print(f"{name:<24}{kind:<12}{n:>8}{t:>9.3f}{rate:>11,.0f}{miou:>8.3f}{exact:>5}/{n:<3}")
    print(
        f"(tracing + simplification to {len(DEFAULT_BUDGETS)} budgets + {len(DEFAULT_BUDGETS) + 1} rasterisations per object, one thread)"
    )
    if "--json" in sys.argv:
        print(
            json.dumps(
                [
                    dict(
                        zip(
                            (
                                "masks",
                                "method",
                                "objects",
                                "seconds",
                                "objects_per_s",
                                "iou20",
                                "exact",
                            ),
                            r,
                            strict=True,
                        )
                    )
                    for r in rows
                ]
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
