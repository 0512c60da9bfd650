"""Speed of ``class_adjacency`` against two baselines, on 2D maps of 4096x4096 and a 3D volume.

Baselines:

- ``python loop``: every pixel and every neighbour offset visited in Python (what a first
  implementation looks like). Timed on a crop and scaled by pixel count, since a full 4096x4096
  run takes minutes.
- ``np.unique pairs``: vectorised shifted comparisons like ours, but pairs counted by sorting
  (``np.unique(..., return_counts=True)``) instead of a bincount on compact codes.

Run from the repository root: ``PYTHONPATH=src python benchmarks/bench_rules.py`` (``--quick``
for 1024x1024 maps).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from napari_segflow.core.taxonomy import load_preset
from napari_segflow.core.taxonomy.rules import (
    _shifted,
    class_adjacency,
    conflict_sites,
    contact_sites,
    neighbour_offsets,
)


def blob_map(shape: tuple[int, ...], n_classes: int, cell: int, seed: int = 0) -> np.ndarray:
    """Regions of ``n_classes`` classes, about ``cell`` pixels across, with ragged borders."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, n_classes, size=tuple(-(-s // cell) + 1 for s in shape))
    idx = np.ix_(
        *[
            np.clip((np.arange(s) + rng.integers(-cell // 4, cell // 4 + 1, s)) // cell, 0, None)
            for s in shape
        ]
    )
    return coarse[idx].astype(np.uint8)


def python_loop(labels: np.ndarray, connectivity: int) -> dict[tuple[int, int], int]:
    out: dict[tuple[int, int], int] = {}
    offsets = neighbour_offsets(labels.ndim, connectivity)
    shape = labels.shape
    flat = labels.tolist() if labels.ndim == 2 else None
    if flat is None:
        raise ValueError("python baseline only for 2D")
    h, w = shape
    for r in range(h):
        row = flat[r]
        for c in range(w):
            a = row[c]
            for dr, dc in offsets:
                rr, cc = r + dr, c + dc
                if 0 <= rr < h and 0 <= cc < w:
                    b = flat[rr][cc]
                    if a != b:
                        key = (a, b) if a < b else (b, a)
                        out[key] = out.get(key, 0) + 1
    return out


def unique_pairs(labels: np.ndarray, connectivity: int) -> dict[tuple[int, int], int]:
    out: dict[tuple[int, int], int] = {}
    for off in neighbour_offsets(labels.ndim, connectivity):
        src, dst = _shifted(labels.shape, off)
        a, b = labels[src].astype(np.int64), labels[dst].astype(np.int64)
        diff = a != b
        lo, hi = np.minimum(a[diff], b[diff]), np.maximum(a[diff], b[diff])
        keys, counts = np.unique(np.stack([lo, hi], axis=1), axis=0, return_counts=True)
        for (x, y), n in zip(keys.tolist(), counts.tolist(), strict=True):
            out[(x, y)] = out.get((x, y), 0) + n
    return out


def best_of(fn, repeat: int = 3) -> tuple[float, object]:
    best, result = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="1024x1024 maps instead of 4096")
    args = parser.parse_args()
    side = 1024 if args.quick else 4096
    crop = 256
    cases = [
        (f"blobs {side}x{side} uint8, 20 classes", blob_map((side, side), 20, 64), 1),
        (f"blobs {side}x{side} uint8, 20 classes", blob_map((side, side), 20, 64), 2),
        (
            f"blobs {side}x{side} uint16 ids up to 60000",
            (blob_map((side, side), 20, 64).astype(np.uint16) * 3000),
            1,
        ),
        (
            f"noise {side}x{side} uint8, 20 classes (worst case)",
            np.random.default_rng(1).integers(0, 20, (side, side), dtype=np.uint8),
            1,
        ),
        ("blobs 3D 64x256x256 uint8", blob_map((64, 256, 256), 20, 32), 1),
        ("blobs 3D 64x256x256 uint8", blob_map((64, 256, 256), 20, 32), 3),
    ]
    header = (
        f"{'case':48s} {'conn':>4s} {'ours s':>8s} {'np.unique s':>12s} {'python loop s':>14s}"
    )
    print(header)
    print("-" * len(header))
    for name, labels, conn in cases:
        t_ours, ours = best_of(
            lambda labels=labels, conn=conn: class_adjacency(labels, connectivity=conn)
        )
        t_uniq, uniq = best_of(
            lambda labels=labels, conn=conn: unique_pairs(labels, conn), repeat=1
        )
        assert ours == uniq, f"{name}: results differ"
        if labels.ndim == 2:
            sub = labels[:crop, :crop]
            t_loop, loop = best_of(lambda sub=sub, conn=conn: python_loop(sub, conn), repeat=1)
            assert loop == class_adjacency(sub, connectivity=conn), f"{name}: loop differs"
            loop_txt = f"{t_loop * labels.size / sub.size:13.1f}*"
        else:
            loop_txt = f"{'-':>14s}"
        print(f"{name:48s} {conn:4d} {t_ours:8.3f} {t_uniq:12.3f} {loop_txt}")
    print(f"* python loop timed on a {crop}x{crop} crop and scaled by pixel count")

    # what the Rules dock does after a stroke: sites in the edited box only, vs the whole map
    tax = load_preset("cityscapes")
    labels = blob_map((side, side), 19, 64)
    stroke = np.zeros((side, side), dtype=bool)
    yy, xx = np.ogrid[:side, :side]
    stroke[(yy - side // 2) ** 2 + (xx - side // 2) ** 2 <= 12**2] = True
    box = (slice(side // 2 - 12, side // 2 + 13), slice(side // 2 - 12, side // 2 + 13))
    region = (box, stroke[box])
    print()
    header = f"{'sites (cityscapes, 19 classes)':48s} {'ours s':>8s} {'whole map s':>12s}"
    print(header)
    print("-" * len(header))
    t_full, _ = best_of(lambda: contact_sites(labels, tax))
    t_region, _ = best_of(lambda: contact_sites(labels, tax, region=region))
    print(f"{'contact_sites, brush stroke r=12 (box+mask)':48s} {t_region:8.4f} {t_full:12.3f}")
    t_conf, _ = best_of(lambda: conflict_sites(labels, tax))
    print(f"{f'conflict_sites, whole {side}x{side} map':48s} {t_conf:8.3f} {'-':>12s}")


if __name__ == "__main__":
    main()
