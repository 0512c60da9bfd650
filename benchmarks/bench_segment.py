"""Segmentation engine speed on the CPU: embedding, per-click prediction, cache hits.

Baseline: a click without the cache costs a full embedding plus the prediction. Targets (issue 3):
predict <= 50 ms per click, memory cache hit >= 100x faster than embedding, disk hit <= 0.2 s.

    python benchmarks/bench_segment.py            # both backends, 512 and 1024 pixels
    python benchmarks/bench_segment.py --quick    # fewer repeats
    python benchmarks/bench_segment.py --models medsam-lite --sizes 512 --threads 2

SAM 2 runs with random weights when no checkpoint is in the cache folder: the speed is the same.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch

from napari_segflow.core.segment import EmbeddingCache, load_model
from napari_segflow.core.segment.checkpoints import CheckpointError


def _image(size: int) -> np.ndarray:
    rng = np.random.default_rng(size)
    rr, cc = np.mgrid[:size, :size]
    blobs = np.sin(rr / 23.0) * np.cos(cc / 31.0) * 800 + rng.normal(0, 50, (size, size))
    return blobs.astype(np.int16)  # CT-like signed intensities


def _timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _model(name: str):
    if name == "medsam-lite":
        return load_model(name, device="cpu"), "bundled"
    try:
        return load_model(name, device="cpu"), "checkpoint"
    except CheckpointError:
        return load_model(name, device="cpu", pretrained=False), "random weights"


def bench(name: str, size: int, repeats: int, clicks: int) -> dict:
    base, weights = _model(name)
    img = _image(size)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        cold = base.with_cache(EmbeddingCache(max_bytes=0))
        embed_s = _timed(lambda: cold.embed(img), repeats)

        mem = base.with_cache(EmbeddingCache())
        emb = mem.embed(img)
        mem_s = _timed(lambda: mem.embed(img), max(5, repeats))
        assert mem.last_cache_hit == "memory"

        disk_writer = base.with_cache(EmbeddingCache(max_bytes=0, directory=tmp))
        disk_writer.embed(img)
        disk_s = _timed(lambda: disk_writer.embed(img), repeats)
        assert disk_writer.last_cache_hit == "disk"

        pred_times = []
        logits = None
        for _ in range(clicks):
            r0, c0 = rng.integers(0, size // 2, 2)
            box = (r0, c0, r0 + size // 4, c0 + size // 4)
            point = [[r0 + size // 8, c0 + size // 8]]
            t = time.perf_counter()
            res = mem.predict(emb, box=box, points=point, point_labels=[1], mask_input=logits)
            pred_times.append(time.perf_counter() - t)
            logits = res.logits
        pred_s = statistics.median(pred_times)
    return {
        "model": name,
        "weights": weights,
        "size": size,
        "embed_s": embed_s,
        "uncached_click_s": embed_s + pred_s,
        "predict_ms": pred_s * 1000,
        "mem_hit_ms": mem_s * 1000,
        "speedup": embed_s / mem_s,
        "disk_hit_s": disk_s,
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    ap.add_argument("--models", nargs="+", default=["medsam-lite", "sam2.1-tiny"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[512, 1024])
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--quick", action="store_true", help="1 embedding repeat, 10 clicks")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats, clicks = (1, 10) if args.quick else (3, 30)
    print(f"torch threads: {torch.get_num_threads()}")
    head = (
        f"{'model':<13} {'weights':<15} {'size':>5} {'embed s':>8} {'no-cache click s':>17} "
        f"{'predict ms':>11} {'mem hit ms':>11} {'hit/embed':>10} {'disk hit s':>11}  targets"
    )
    print(head)
    print("-" * len(head))
    for name in args.models:
        for size in args.sizes:
            r = bench(name, size, repeats, clicks)
            met = [
                f"predict<=50ms:{'yes' if r['predict_ms'] <= 50 else 'NO'}",
                f"hit>=100x:{'yes' if r['speedup'] >= 100 else 'NO'}",
                f"disk<=0.2s:{'yes' if r['disk_hit_s'] <= 0.2 else 'NO'}",
            ]
            print(
                f"{r['model']:<13} {r['weights']:<15} {r['size']:>5} {r['embed_s']:>8.2f} "
                f"{r['uncached_click_s']:>17.2f} {r['predict_ms']:>11.1f} {r['mem_hit_ms']:>11.2f} "
                f"{r['speedup']:>9.0f}x {r['disk_hit_s']:>11.3f}  {' '.join(met)}",
                flush=True,
            )


if __name__ == "__main__":
    main()
