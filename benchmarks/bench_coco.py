"""COCO RLE encoding throughput: 1,000 masks of 1024x1024 (250 label images x 4 classes).

Rows:
- ``pycocotools.encode only``: the C encoder on ready-made Fortran uint8 masks (the floor);
- ``baseline per-class loop``: the usual hand-written export (``np.asfortranarray(lab == c)``
  per class, encode, ``area``, ``toBbox``);
- ``segflow coco_annotations``: our per-image path (Fortran view once, bincount of present ids);
- ``segflow write_coco``: the same plus JSON and the atomic file write.

    python benchmarks/bench_coco.py [--images 250]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from napari_segflow.core.io.coco import coco_annotations, write_coco  # noqa: E402
from napari_segflow.core.taxonomy import load_preset  # noqa: E402

SIZE = 1024
DISTINCT = 20


def label_images(n: int) -> list[np.ndarray]:
    """Smooth random fields cut into 4 classes (ids 1..4): blob-shaped regions like real labels."""
    out = []
    for seed in range(n):
        rng = np.random.default_rng(seed)
        field = ndimage.zoom(rng.standard_normal((32, 32)), SIZE // 32, order=1)
        edges = np.quantile(field, [0.25, 0.5, 0.75])
        out.append((np.digitize(field, edges) + 1).astype(np.uint8))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=250, help="label images (4 masks each)")
    args = ap.parse_args()
    tax = load_preset("land-use")  # ids 1..5
    base = label_images(DISTINCT)
    images = [base[i % DISTINCT] for i in range(args.images)]
    n_masks = sum(len(np.unique(im)) for im in images)

    masks = [
        np.asfortranarray((base[i % DISTINCT] == 1 + i % 4).astype(np.uint8))
        for i in range(n_masks)
    ]
    rows = []

    t0 = time.perf_counter()
    for m in masks:
        mask_utils.encode(m)
    rows.append(("pycocotools.encode only", time.perf_counter() - t0))
    del masks

    t0 = time.perf_counter()
    for lab in images:
        for c in np.unique(lab):
            rle = mask_utils.encode(np.asfortranarray((lab == c).astype(np.uint8)))
            mask_utils.area(rle)
            mask_utils.toBbox(rle)
    rows.append(("baseline per-class loop", time.perf_counter() - t0))

    t0 = time.perf_counter()
    got = sum(len(coco_annotations(lab, taxonomy=tax)) for lab in images)
    rows.append(("segflow coco_annotations", time.perf_counter() - t0))
    assert got == n_masks

    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        out = write_coco(
            {f"img{i:04d}.png": lab for i, lab in enumerate(images)},
            Path(d) / "a.json",
            taxonomy=tax,
        )
        rows.append(("segflow write_coco (JSON)", time.perf_counter() - t0))
        mb = out.stat().st_size / 2**20

    print(f"{n_masks} masks of {SIZE}x{SIZE} from {args.images} label images; JSON {mb:.1f} MB")
    print(f"{'path':28s} {'seconds':>8s} {'masks/s':>8s} {'vs baseline':>11s}")
    baseline = rows[1][1]
    for name, sec in rows:
        print(f"{name:28s} {sec:8.2f} {n_masks / sec:8.0f} {sec / baseline:10.2f}x")


if __name__ == "__main__":
    main()
