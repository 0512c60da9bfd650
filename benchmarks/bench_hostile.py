"""What the input checks cost, and what they save, each beside a baseline measured in this run.

Rows:
- ``qa report, K classes``: calibration over every class of the taxonomy (the baseline:
  dense (K+1)^2 confusion matrices) vs over the classes present (what segflow does above
  256 classes); wall time and peak traced memory;
- ``PNG mask with a big taxonomy``: file size with the taxonomy embedded as plain JSON text (the
  baseline) vs a hash plus a compressed compact copy (dropped when over 256 KiB compressed);
- ``rerun check per image``: ``output_valid`` by shape only (the baseline, which skipped stale
  images) vs with the content fingerprint of image, coarse labels, taxonomy and options;
- ``COCO read``: ``read_coco`` of a file of N RLE masks with every RLE checked, vs pycocotools
  decoding the same masks unchecked.

    python benchmarks/bench_hostile.py [--classes 2000] [--images 4] [--size 256]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from napari_segflow.core.quality import calibration  # noqa: E402
from napari_segflow.core.taxonomy import LabelClass, Taxonomy  # noqa: E402


def _timed(fn):
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, seconds, peak


def bench_qa(classes: int, images: int, size: int) -> None:
    tax = Taxonomy("big", tuple(LabelClass(i, f"c{i}", (1, 2, 3)) for i in range(1, classes + 1)))
    rng = np.random.default_rng(0)
    gold = {f"i{n}": rng.integers(1, 6, (size, size)).astype(np.uint16) for n in range(images)}
    ann = {k: np.where(rng.random(v.shape) < 0.1, 3, v).astype(np.uint16) for k, v in gold.items()}

    def run():
        return calibration.calibrate(gold, {"a": ann}, taxonomy=tax, dilation_ratio=None)

    limit = calibration.PRESENT_CLASSES_ABOVE
    calibration.PRESENT_CLASSES_ABOVE = 10**9  # the baseline: every class, dense matrices
    try:
        dense, t_dense, m_dense = _timed(run)
    finally:
        calibration.PRESENT_CLASSES_ABOVE = limit
    present, t_present, m_present = _timed(run)
    assert np.isclose(dense.mean_iou[0], present.mean_iou[0])
    print(f"qa report, {classes} classes, {images} images of {size}x{size}")
    print(f"  {'baseline dense':<28}{t_dense:8.2f} s {m_dense / 2**20:10.1f} MiB")
    print(f"  {'segflow present classes':<28}{t_present:8.2f} s {m_present / 2**20:10.1f} MiB")


def bench_png(classes: int) -> None:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from napari_segflow.core.io.png import TAXONOMY_CHUNK, write_png

    tax = Taxonomy(
        "big",
        tuple(
            LabelClass(i, f"class number {i}", (i % 256, 7, 9), f"description of class {i}")
            for i in range(1, classes + 1)
        ),
    )
    lab = np.zeros((64, 64), np.uint16)
    lab[10:20, 10:20] = 3
    with tempfile.TemporaryDirectory() as d:
        base = Path(d) / "baseline.png"
        info = PngInfo()
        info.add_text(TAXONOMY_CHUNK, json.dumps(tax.to_dict()))
        Image.fromarray(lab.astype(np.uint8)).save(base, format="PNG", pnginfo=info)
        ours = Path(d) / "segflow.png"
        write_png(lab, ours, taxonomy=tax)
        print(f"PNG mask 64x64 with a {classes}-class taxonomy")
        print(f"  {'baseline plain JSON':<28}{base.stat().st_size / 1024:10.1f} KiB")
        print(f"  {'segflow hash + compressed':<28}{ours.stat().st_size / 1024:10.1f} KiB")


def bench_rerun(size: int) -> None:
    import tifffile

    from napari_segflow.core.io.png import write_png
    from napari_segflow.core.prelabel.batch import (
        ImageTask,
        PrelabelJob,
        output_paths,
        output_valid,
        task_fingerprint,
    )
    from napari_segflow.core.provenance import write_provenance
    from napari_segflow.core.taxonomy import load_preset

    tax = load_preset("nuclei")
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        img = np.random.default_rng(0).integers(0, 255, (size, size), dtype=np.uint8)
        tifffile.imwrite(root / "t.tif", img)
        lab = (img > 128).astype(np.uint8)
        write_png(lab, root / "c.png", taxonomy=tax)
        job = PrelabelJob(out_dir=str(root / "out"), taxonomy=tax.to_dict())
        task = ImageTask("t", str(root / "t.tif"), coarse=str(root / "c.png"))
        labels, _, report = output_paths(root / "out", "t")
        fp = task_fingerprint(job, task)
        write_png(lab, labels, taxonomy=tax)
        write_provenance(labels, np.zeros_like(lab))
        report.write_text(json.dumps({"stem": "t", "produced_by": fp}))
        reps = 20
        t0 = time.perf_counter()
        for _ in range(reps):
            assert output_valid(root / "out", "t", (size, size))
        t_base = (time.perf_counter() - t0) / reps
        t0 = time.perf_counter()
        for _ in range(reps):
            f = task_fingerprint(job, task)
            assert output_valid(root / "out", "t", (size, size), fingerprint=f)
        t_ours = (time.perf_counter() - t0) / reps
    print(f"rerun check per {size}x{size} image")
    print(f"  {'baseline shape only':<28}{t_base * 1000:8.2f} ms")
    print(f"  {'segflow + fingerprint':<28}{t_ours * 1000:8.2f} ms")


def bench_coco(masks: int, size: int) -> None:
    from pycocotools import mask as mask_utils

    from napari_segflow.core.io.coco import read_coco

    rng = np.random.default_rng(0)
    anns, rles = [], []
    for k in range(masks):
        m = np.zeros((size, size), np.uint8, order="F")
        r, c = rng.integers(0, size - 32, 2)
        m[r : r + 32, c : c + 32] = 1
        rle = mask_utils.encode(m)
        rles.append(rle)
        anns.append(
            {
                "id": k + 1,
                "image_id": 1,
                "category_id": 1,
                "segmentation": {"size": [size, size], "counts": rle["counts"].decode()},
            }
        )
    doc = {
        "images": [{"id": 1, "file_name": "a.png", "height": size, "width": size}],
        "annotations": anns,
        "categories": [{"id": 1, "name": "x"}],
    }
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "a.json"
        p.write_text(json.dumps(doc))
        t0 = time.perf_counter()
        for rle in rles:
            mask_utils.decode(rle)
        t_base = time.perf_counter() - t0
        t0 = time.perf_counter()
        read_coco(p)
        t_ours = time.perf_counter() - t0
    print(f"COCO read, {masks} RLE masks of {size}x{size}")
    print(f"  {'baseline decode unchecked':<28}{t_base:8.3f} s")
    print(f"  {'segflow read_coco checked':<28}{t_ours:8.3f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=2000)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--masks", type=int, default=200)
    args = ap.parse_args()
    bench_qa(args.classes, args.images, args.size)
    bench_png(args.classes * 10)
    bench_rerun(args.size * 4)
    bench_coco(args.masks, args.size)


if __name__ == "__main__":
    main()
