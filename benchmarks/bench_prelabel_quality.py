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
nearer the pet than the background). Three more sets are made from the same photographs:
pets reshaped to be their polygons (exact polygons), pets with crisp outlines (sharp pictures)
and pets whose truth is a 25-vertex polygon drawn along them (the way COCO's masks were drawn).
A last line times one 1024 x 1024 picture of 30 pets
(a mosaic of the photographs) on one core.

Usage: ``python benchmarks/bench_prelabel_quality.py [--full] [--with-model] [--scale F]``
(default: 12 pets and crops; ``--full``: all 40 pets, whole images and every MR slice;
``--with-model``: also the model-gated refinement, slow on CPU; ``--scale``: the pets
photographs shrunk, for smaller objects).
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from dataclasses import replace
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import tifffile
from PIL import Image
from scipy import ndimage as ndi

from napari_segflow.core.prelabel.evaluate import polygon_mask, simplify_polygon
from napari_segflow.core.prelabel.refine import band_mask, mask_iou, objects_from_labels
from napari_segflow.core.prelabel.snap import SnapOptions, snap_labels

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def pet_truth(tri: np.ndarray) -> np.ndarray:
    fg, bg = tri == 1, tri == 2
    near = ndi.distance_transform_edt(~fg) < ndi.distance_transform_edt(~bg)
    lab, _ = ndi.label(fg | ((tri == 3) & near))
    return (lab == np.argmax(np.bincount(lab.ravel())[1:]) + 1).astype(np.int32)


def pets(data: Path, n: int, split: str = "all"):
    """``(image, instances, classes, valid)`` per pet; ``valid`` is False on the trimap's
    unknown band (and on pet pieces apart from the main one), for the band-ignored score."""
    root = data / "pets_oxford"
    rows = list(csv.DictReader(open(root / "manifest.csv")))
    rows = [r for r in rows if split == "all" or r["split"] == split]
    for row in rows[:n]:
        img = np.asarray(Image.open(root / "images" / f"{row['stem']}.jpg").convert("RGB"))
        tri = np.asarray(Image.open(root / "trimaps" / f"{row['stem']}.png"))
        t = pet_truth(tri)
        valid = (tri != 3) & ~((tri == 1) & (t == 0))
        yield img, t, t, valid


def datasets(data: Path, full: bool, split: str = "all") -> dict:
    """``{name: [(image, instances, classes, valid), ...]}`` from the shared real data
    (``valid``: None, or where the truth is known)."""
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
        "pets (Oxford-IIIT)": list(pets(data, 40 if full else 12, split)),
        "buildings (SpaceNet)": [
            (pan[:s, :s], buildings[:s, :s], (buildings[:s, :s] > 0) * 1, None)
        ],
        "nuclei (DSB 2018)": [(img[:n, :n], inst[:n, :n], (inst[:n, :n] > 0) * 1, None)],
        "abdomen MR slices": [
            (mr[:, :, z], seg[:, :, z].astype(np.int32), seg[:, :, z].astype(np.int32), None)
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


def score(inst, classes, labels, kept, valid=None):
    """Per-object IoU in the object's box grown by 3 px; only on ``valid`` pixels if given."""
    out = []
    for i, c in kept:
        rows, cols = np.nonzero(inst == i)
        sl = (slice(max(rows.min() - 3, 0), rows.max() + 4),
              slice(max(cols.min() - 3, 0), cols.max() + 4))  # fmt: skip
        v = np.ones(labels[sl].shape, bool) if valid is None else valid[sl]
        out.append(mask_iou((labels[sl] == c) & v, (classes[sl] == c) & v))
    return out


def mosaic(data: Path):
    """A 1024 x 1024 picture of 30 pets (6 x 5 cells) and their 15-vertex polygons."""
    canvas = np.zeros((1024, 1024, 3), np.uint8)
    coarse = np.zeros((1024, 1024), np.uint8)
    cells = list(pets(data, 30))
    h, w = 1024 // 6, 1024 // 5
    for k, (img, t, _, _) in enumerate(cells):
        r, c = divmod(k, 5)
        im = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        tm = cv2.resize(t.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        canvas[r * h : (r + 1) * h, c * w : (c + 1) * w] = im
        poly = polygon_mask(simplify_polygon(tm, 15), tm.shape)
        poly[:2] = poly[-2:] = False  # a gap between cells: 30 separate objects
        poly[:, :2] = poly[:, -2:] = False
        coarse[r * h : (r + 1) * h, c * w : (c + 1) * w][poly] = 1
    return canvas, coarse


def _recolour(img, pet, as_pet, as_background):
    """``img`` with ``as_pet`` pixels taken from the nearest pet pixel and ``as_background``
    pixels from the nearest background pixel, both sources 3 px from the pet's outline (its
    blended pixels would smear along the fill)."""
    inner = ndi.binary_erosion(pet, iterations=3)
    outer = ~ndi.binary_dilation(pet, iterations=3)
    _, near_pet = ndi.distance_transform_edt(~inner, return_indices=True)
    _, near_bg = ndi.distance_transform_edt(~outer, return_indices=True)
    out = img.copy()
    out[as_pet] = img[near_pet[0][as_pet], near_pet[1][as_pet]]
    out[as_background] = img[near_bg[0][as_background], near_bg[1][as_background]]
    return out


def reshaped(data: Path, n: int, split: str = "all"):
    """Photographs whose object IS its polygon (the COCO-MVal case, where the truth was drawn
    as a polygon): each pet photo with its pet reshaped to the pet's 15-vertex polygon. The
    background the polygon takes in is filled from the nearest pet pixel, the pet outside it
    from the nearest background pixel (real colours of the same photo on either side of the
    polygon). Truth: the polygon; coarse input: the polygon simplified once more (as for every
    set), so the polygon column is nearly 1 and a snap can only lose."""
    for img, t, _, _ in pets(data, n, split):
        pet = t > 0
        poly = polygon_mask(simplify_polygon(pet, 15), t.shape)
        out = _recolour(img, pet, poly & ~pet, pet & ~poly)
        yield out, poly.astype(np.int32), poly * 1, None


def drawn(data: Path, n: int, split: str = "all", vertices: int = 25):
    """Real photographs whose truth is a polygon drawn along the object (the way COCO's masks
    were made): each pet's truth is its outline simplified to ``vertices`` vertices, the
    picture untouched; coarse input: that polygon simplified to 15, as for every set."""
    for img, t, _, _ in pets(data, n, split):
        poly = polygon_mask(simplify_polygon(t > 0, vertices), t.shape).astype(np.int32)
        yield img, poly, poly, None


def crisp(data: Path, n: int, split: str = "all"):
    """Photographs whose object has a crisp outline (as in sets of sharp studio-like pictures):
    each pet photo with the pixels within 3 px of the true outline replaced by the nearest pixel
    3 px away on the same side, so the colours step at the outline with no blended or furry
    band. Truth: the pet's mask; coarse input: its 15-vertex polygon, as for the real pets. A
    plain band cut does well here (the independent GrabCut-set case), unlike on fur."""
    for img, t, _, _ in pets(data, n, split):
        pet = t > 0
        near = pet ^ ndi.binary_erosion(pet, iterations=3)
        far = ~pet & ndi.binary_dilation(pet, iterations=3)
        yield _recolour(img, pet, near, far), t, t, None


def shrink(items, scale: float):
    """The photographs at ``scale`` of their size (area-averaged) with their truths resampled
    the same way (a truth pixel is object where more than half of it was), so both stay in
    register: smaller objects, the same pictures."""
    if scale >= 1:
        yield from items
        return

    def area(mask, size):
        small = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA)
        return small > 0.5

    for img, inst, _, valid in items:
        h, w = inst.shape
        size = (max(int(round(w * scale)), 8), max(int(round(h * scale)), 8))
        t = area(inst > 0, size).astype(np.int32)
        v = None if valid is None else area(valid, size)
        yield cv2.resize(img, size, interpolation=cv2.INTER_AREA), t, t, v


def piece_accounting(data: Path, split: str, opts: SnapOptions, model=None) -> None:
    """Every piece the unchecked cut proposes on the pets, scored against both truths: pixels
    moved net to the right side by all pieces, by a perfect choice and by the snap's checks.

    With ``model`` (LiteMedSAM), also the checks with the model as evidence: its logits from
    the object's box and the coarse mask (one embedding per image), and a piece the colour
    evidence refused taken anyway when the model's mean logit on it is at least 4 on the side
    it moves to (and it passes the size, agreement and edge checks); the model's CPU time."""
    from napari_segflow.core.prelabel.refine import grey_gradient
    from napari_segflow.core.prelabel.snap import _cut_colours, _snap_object
    from napari_segflow.core.segment.refine import _as_rgb8

    opts = replace(opts, max_on_edge=1.0)  # the cut's pieces on every pet
    tot = {k: np.zeros(4, int) for k in ("outline", "band ignored")}
    n = good_refused = bad_taken = images = 0
    t_model = 0.0
    loose = replace(opts, min_evidence=0.0)
    for img, t, _, valid in pets(data, 40, split):
        images += 1
        logits = None
        if model is not None:
            from napari_segflow.core.prelabel.refine import _full_logits, coarse_mask_logits

            t0 = time.process_time()
            emb = model.embed(img)
            pet = t > 0
            rows, cols = np.nonzero(pet)
            box = (rows.min(), cols.min(), rows.max(), cols.max())
            res = model.predict(emb, box=box, mask_input=coarse_mask_logits(pet, model))
            logits = _full_logits(model, res.logits, pet.shape)
            t_model += time.process_time() - t0
        coarse, _ = coarse_polygons(t, t)
        rgb = _as_rgb8(img)
        grad, colours = grey_gradient(rgb), _cut_colours(rgb, opts.colour_space)
        log: list = []
        for obj in objects_from_labels(coarse):
            area = int(np.count_nonzero(obj.mask))
            others = (coarse > 0) & ~obj.mask
            _snap_object(colours, grad, obj.mask, others, obj.bbox(), area, opts, log)
        if logits is not None:  # the same cut once more, every check but the colour evidence
            free: list = []
            for obj in objects_from_labels(coarse):
                area = int(np.count_nonzero(obj.mask))
                others = (coarse > 0) & ~obj.mask
                _snap_object(colours, grad, obj.mask, others, obj.bbox(), area, loose, free)
            log = [
                (
                    at,
                    piece,
                    grows,
                    ok,
                    ok or (f and (logits[at][piece] * (1 if grows else -1)).mean() >= 4),
                )
                for (at, piece, grows, ok), (_, _, _, f) in zip(log, free, strict=True)
            ]
        else:
            log = [(at, piece, grows, ok, ok) for at, piece, grows, ok in log]
        for at, piece, grows, ok, ok_model in log:
            sign = 1 if grows else -1
            truth = t[at][piece] > 0
            o = sign * (int(truth.sum()) - int((~truth).sum()))
            v = valid[at][piece]
            i = sign * (int((truth & v).sum()) - int((~truth & v).sum()))
            for key, gain in (("outline", o), ("band ignored", i)):
                tot[key] += (gain, max(gain, 0), gain if ok else 0, gain if ok_model else 0)
            n += 1
            good_refused += (not ok) and o > 0
            bad_taken += ok and o <= 0
    print(f"pieces the cut proposes on {images} pets ({split}): {n}; "
          f"helpful but refused {good_refused}, harmful but taken {bad_taken}")  # fmt: skip
    for key, (all_, perfect, checked, with_model) in tot.items():
        line = (f"  net pixels to the right side, {key:12s}: all pieces {all_:7d}, "
                f"perfect choice {perfect:7d}, the snap's checks {checked:7d}")  # fmt: skip
        print(line + (f", with the model {with_model:7d}" if model is not None else ""))
    if model is not None:
        print(f"  the model: {t_model / max(images, 1):.2f} CPU s per image (embedding + decoder)")


def _parse_options(pairs) -> SnapOptions:
    kw = {}
    fields = SnapOptions.__dataclass_fields__
    for pair in pairs or ():
        key, _, val = pair.partition("=")
        if key not in fields:
            raise SystemExit(f"bench: error: unknown SnapOptions field {key!r}")
        kind = type(getattr(SnapOptions(), key))
        kw[key] = val.lower() in ("1", "true", "yes") if kind is bool else kind(val)
    return SnapOptions(**kw)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="all pets, whole images, every slice")
    ap.add_argument("--with-model", action="store_true", help="also the model-gated refiner")
    ap.add_argument(
        "--split", choices=("all", "trainval", "test"), default="all",
        help="which official split of the pets (tune on trainval, report on test)",
    )  # fmt: skip
    ap.add_argument(
        "--sets", nargs="*", default=None,
        help="only these datasets (words of their names, e.g. pets pasted)",
    )  # fmt: skip
    ap.add_argument(
        "--option", action="append", metavar="KEY=VALUE",
        help="a SnapOptions field for the snap (repeatable), e.g. --option band_px=12",
    )  # fmt: skip
    ap.add_argument("--no-mosaic", action="store_true", help="skip the 1024 x 1024 timing")
    ap.add_argument(
        "--scale", type=float, default=1.0,
        help="the pets photographs (every pets set) at this fraction of their size",
    )  # fmt: skip
    ap.add_argument(
        "--pieces", action="store_true",
        help="only the accounting of the cut's pieces on the pets (of --split)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    data = Path(os.environ.get("SEGFLOW_SHARED_DATA", DATA))
    cv2.setNumThreads(1)
    opts = _parse_options(args.option)
    model = None
    if args.with_model:
        from napari_segflow.core.prelabel.refine import prelabel_image
        from napari_segflow.core.segment import load_model

        # the piece accounting reads the model's own logits, without its colour refinement
        model = load_model("medsam-lite", device="cpu", refine=False if args.pieces else None)
    if args.pieces:
        piece_accounting(data, args.split, opts, model)
        return 0
    head = f"{'dataset':26s} {'images':>6s} {'objects':>7s} {'polygon':>8s} {'band cut':>8s} "
    head += f"{'snapped':>8s}  {'s/img cut':>9s} {'s/img snap':>10s}  changed/kept"
    print(head + ("   model-gated" if model is not None else ""))
    sets = datasets(data, args.full, args.split)
    sets["pets reshaped as polygons"] = list(reshaped(data, 40 if args.full else 12, args.split))
    sets["pets with crisp outlines"] = list(crisp(data, 40 if args.full else 12, args.split))
    sets["pets drawn as 25-gons"] = list(drawn(data, 40 if args.full else 12, args.split))
    pet_sets = [name for name in sets if name.startswith("pets")]
    for name in pet_sets:
        sets[name] = list(shrink(sets[name], args.scale))
    for name, items in sets.items():
        if args.sets and not any(w.lower() in name.lower() for w in args.sets):
            continue
        scored = {"": ([], [], [], [])}
        if items and items[0][3] is not None:
            scored["  band ignored"] = ([], [], [], [])
        t_cut = t_snap = 0.0
        changed = kept_n = 0
        for img, inst, classes, valid in items:
            coarse, kept = coarse_polygons(inst, classes)
            if not kept:
                continue
            t0 = time.process_time()
            bc = band_cut(img, coarse)
            t_cut += time.process_time() - t0
            t0 = time.process_time()
            res = snap_labels(img, coarse, options=opts)
            t_snap += time.process_time() - t0
            counts = res.counts()
            changed += counts.get("refined", 0)
            kept_n += counts.get("kept", 0)
            gated = None
            if model is not None:
                gated = prelabel_image(img, model, coarse=coarse).labels
            for suffix, (poly, cut, snap, gate) in scored.items():
                v = valid if suffix else None
                poly += score(inst, classes, coarse, kept, v)
                cut += score(inst, classes, bc, kept, v)
                snap += score(inst, classes, res.labels, kept, v)
                if gated is not None:
                    gate += score(inst, classes, gated, kept, v)
        n = max(len(items), 1)
        for suffix, (poly, cut, snap, gate) in scored.items():
            label = (name + suffix) if not suffix else suffix.strip()
            line = (
                f"{label:26s} {len(items):6d} {len(poly):7d} {np.mean(poly):8.4f} "
                f"{np.mean(cut):8.4f} {np.mean(snap):8.4f}  {t_cut / n:9.2f} {t_snap / n:10.2f}"
                f"  {changed}/{kept_n}"
            )
            print(line + (f"   {np.mean(gate):.4f}" if gate else ""), flush=True)
    if args.no_mosaic:
        return 0
    canvas, coarse = mosaic(data)
    t0 = time.process_time()
    band_cut(canvas, coarse)
    t_cut = time.process_time() - t0
    t0, w0 = time.process_time(), time.perf_counter()
    res = snap_labels(canvas, coarse, options=opts)
    t_snap, w_snap = time.process_time() - t0, time.perf_counter() - w0
    print(
        f"1024 x 1024, {len(res.objects)} objects, one thread: band cut {t_cut:.2f} CPU s, "
        f"snap {t_snap:.2f} CPU s ({w_snap:.2f} s wall) {res.counts()}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
