"""Quality and speed of pre-labelling from 15-vertex polygons, on real masks of four datasets.

Every true object is simplified to a polygon of at most 15 vertices (Douglas-Peucker) and the
polygons are rasterised into a coarse label image. Per dataset the table gives the mean
per-object IoU against the true mask (in each object's box grown by 3 px) of

- ``polygon``: the coarse input itself (the baseline to beat, or at least to keep);
- ``band cut``: a plain colour graph cut (OpenCV GrabCut) limited to an 8 px band around each
  polygon, every change accepted: the method of the independent measurement in the issue,
  written here as the baseline;
- ``snapped``: :func:`napari_segflow.core.prelabel.snap.snap_labels` with its defaults (what
  ``segflow prelabel --coarse`` does);

with CPU seconds per image (process time, one thread: on a shared machine the wall time
counts the other processes too) for the band cut and the snap, and the objects the snap changed / kept
and flagged. pets_oxford: the truth is the trimap's outline (pet pixels plus the band pixels
nearer the pet than the background). A last line times one 1024 x 1024 picture of 30 pets
(a mosaic of the photographs) on one core.

Usage: ``python benchmarks/bench_prelabel_quality.py [--full] [--with-model]``
(default: 12 pets and crops; ``--full``: all 40 pets, whole images and every MR slice;
``--with-model``: also the model-gated refinement, slow on CPU).
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import tifffile
from PIL import Image
from scipy import ndimage as ndi

from napari_segflow.core.prelabel.evaluate import polygon_mask, simplify_polygon
from napari_segflow.core.prelabel.refine import band_mask, mask_iou, objects_from_labels
from napari_segflow.core.prelabel.snap import snap_labels

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def pet_truth(tri: np.ndarray) -> np.ndarray:
    fg, bg = tri == 1, tri == 2
    near = ndi.distance_transform_edt(~fg) < ndi.distance_transform_edt(~bg)
    lab, _ = ndi.label(fg | ((tri == 3) & near))
    return (lab == np.argmax(np.bincount(lab.ravel())[1:]) + 1).astype(np.int32)


def pets(data: Path, n: int):
    root = data / "pets_oxford"
    for row in list(csv.DictReader(open(root / "manifest.csv")))[:n]:
        img = np.asarray(Image.open(root / "images" / f"{row['stem']}.jpg").convert("RGB"))
        tri = np.asarray(Image.open(root / "trimaps" / f"{row['stem']}.png"))
        t = pet_truth(tri)
        yield img, t, t


def datasets(data: Path, full: bool) -> dict:
    """``{name: [(image, instances, classes), ...]}`` from the shared real data."""
    img = tifffile.imread(data / "nuclei_dsb2018" / "img2d.tif")
    inst = tifffile.imread(data / "nuclei_dsb2018" / "mask2d.tif")
    pan = tifffile.imread(data / "spacenet_atlanta" / "sample_geotiff.tif")
    fp = tifffile.imread(data / "spacenet_atlanta" / "sample_fp_mask_from_geojson.tif") > 0
    buildings, _ = ndi.label(fp)
    mr = np.asarray(nib.load(data / "abdomen_mr" / "example_mr_sm.nii.gz").dataobj)
    seg = np.asarray(nib.load(data / "abdomen_mr" / "example_seg_mr.nii.gz").dataobj)
    n, s = (512, 900) if full else (256, 450)
    slices = range(seg.shape[2]) if full else (10, 19)
    return {
        "pets (Oxford-IIIT)": list(pets(data, 40 if full else 12)),
        "buildings (SpaceNet)": [(pan[:s, :s], buildings[:s, :s], (buildings[:s, :s] > 0) * 1)],
        "nuclei (DSB 2018)": [(img[:n, :n], inst[:n, :n], (inst[:n, :n] > 0) * 1)],
        "abdomen MR slices": [
            (mr[:, :, z], seg[:, :, z].astype(np.int32), seg[:, :, z].astype(np.int32))
            for z in slices
            if seg[:, :, z].any()
        ],
    }


def coarse_polygons(inst, classes):
    coarse = np.zeros(inst.shape, np.uint8 if classes.max() < 256 else np.uint16)
    kept = []
    for i in np.unique(inst)[1:]:
        m = inst == i
        if m.sum() >= 16:
            c = int(np.bincount(classes[m].ravel()).argmax())
            coarse[polygon_mask(simplify_polygon(m, 15), inst.shape)] = c
            kept.append((i, c))
    return coarse, kept


def band_cut(image, coarse, *, band=8, margin=16):
    """The baseline: GrabCut in an 8 px band around each coarse object, every change accepted."""
    rgb = np.asarray(image)
    if rgb.dtype != np.uint8:
        f = rgb.astype(np.float32)
        rgb = ((f - f.min()) * 255 / max(float(np.ptp(f)), 1e-6)).astype(np.uint8)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    out = coarse.copy()
    for obj in objects_from_labels(coarse):
        r0, c0, r1, c1 = obj.bbox()
        sl = (slice(max(r0 - band - margin, 0), r1 + band + margin + 1),
              slice(max(c0 - band - margin, 0), c1 + band + margin + 1))  # fmt: skip
        m = obj.mask[sl]
        b = band_mask(m, band)
        gc = np.where(m, cv2.GC_FGD, cv2.GC_BGD).astype(np.uint8)
        gc[b & m] = cv2.GC_PR_FGD
        gc[b & ~m] = cv2.GC_PR_BGD
        try:
            cv2.setRNGSeed(0)
            cv2.grabCut(np.ascontiguousarray(rgb[sl]), gc, None, np.zeros((1, 65)),
                        np.zeros((1, 65)), 3, cv2.GC_INIT_WITH_MASK)  # fmt: skip
        except cv2.error:
            continue
        fg = np.isin(gc, (cv2.GC_FGD, cv2.GC_PR_FGD))
        o = out[sl]
        o[b & fg & (o == 0)] = obj.class_id
        o[b & ~fg & m] = 0
    return out


def score(inst, classes, labels, kept):
    out = []
    for i, c in kept:
        rows, cols = np.nonzero(inst == i)
        sl = (slice(max(rows.min() - 3, 0), rows.max() + 4),
              slice(max(cols.min() - 3, 0), cols.max() + 4))  # fmt: skip
        out.append(mask_iou(labels[sl] == c, classes[sl] == c))
    return out


def mosaic(data: Path):
    """A 1024 x 1024 picture of 30 pets (6 x 5 cells) and their 15-vertex polygons."""
    canvas = np.zeros((1024, 1024, 3), np.uint8)
    coarse = np.zeros((1024, 1024), np.uint8)
    cells = list(pets(data, 30))
    h, w = 1024 // 6, 1024 // 5
    for k, (img, t, _) in enumerate(cells):
        r, c = divmod(k, 5)
        im = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        tm = cv2.resize(t.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        canvas[r * h : (r + 1) * h, c * w : (c + 1) * w] = im
        poly = polygon_mask(simplify_polygon(tm, 15), tm.shape)
        poly[:2] = poly[-2:] = False  # a gap between cells: 30 separate objects
        poly[:, :2] = poly[:, -2:] = False
        coarse[r * h : (r + 1) * h, c * w : (c + 1) * w][poly] = 1
    return canvas, coarse


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="all pets, whole images, every slice")
    ap.add_argument("--with-model", action="store_true", help="also the model-gated refiner")
    args = ap.parse_args(argv)
    data = Path(os.environ.get("SEGFLOW_SHARED_DATA", DATA))
    cv2.setNumThreads(1)
    model = None
    if args.with_model:
        from napari_segflow.core.prelabel.refine import prelabel_image
        from napari_segflow.core.segment import load_model

        model = load_model("medsam-lite", device="cpu")
    head = f"{'dataset':22s} {'images':>6s} {'objects':>7s} {'polygon':>8s} {'band cut':>8s} "
    head += f"{'snapped':>8s}  {'s/img cut':>9s} {'s/img snap':>10s}  changed/kept"
    print(head + ("   model-gated" if model is not None else ""))
    for name, items in datasets(data, args.full).items():
        poly, cut, snap, t_cut, t_snap, gated = [], [], [], 0.0, 0.0, []
        changed = kept_n = 0
        for img, inst, classes in items:
            coarse, kept = coarse_polygons(inst, classes)
            if not kept:
                continue
            poly += score(inst, classes, coarse, kept)
            t0 = time.process_time()
            bc = band_cut(img, coarse)
            t_cut += time.process_time() - t0
            cut += score(inst, classes, bc, kept)
            t0 = time.process_time()
            res = snap_labels(img, coarse)
            t_snap += time.process_time() - t0
            snap += score(inst, classes, res.labels, kept)
            counts = res.counts()
            changed += counts.get("refined", 0)
            kept_n += counts.get("kept", 0)
            if model is not None:
                g = prelabel_image(img, model, coarse=coarse)
                gated += score(inst, classes, g.labels, kept)
        n = len(items)
        line = (
            f"{name:22s} {n:6d} {len(poly):7d} {np.mean(poly):8.4f} {np.mean(cut):8.4f} "
            f"{np.mean(snap):8.4f}  {t_cut / n:9.2f} {t_snap / n:10.2f}  {changed}/{kept_n}"
        )
        print(line + (f"   {np.mean(gated):.4f}" if model is not None else ""), flush=True)
    canvas, coarse = mosaic(data)
    t0 = time.process_time()
    band_cut(canvas, coarse)
    t_cut = time.process_time() - t0
    t0, w0 = time.process_time(), time.perf_counter()
    res = snap_labels(canvas, coarse)
    t_snap, w_snap = time.process_time() - t0, time.perf_counter() - w0
    print(
        f"1024 x 1024, {len(res.objects)} objects, one thread: band cut {t_cut:.2f} CPU s, "
        f"snap {t_snap:.2f} CPU s ({w_snap:.2f} s wall) {res.counts()}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
