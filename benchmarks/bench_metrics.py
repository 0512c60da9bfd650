"""Confusion-matrix speed and peak memory: napari-segflow vs scikit-learn.

Cases from the calibration/QA issue: a 2048x1024 pair with 19 classes (a Cityscapes frame) and a
512x512x300 volume (a CT with a handful of organs). Each implementation runs in a fresh
subprocess; the table shows the best wall time of ``--repeat`` runs and the peak memory the
call allocates on top of the inputs (numpy and scipy report their buffers to ``tracemalloc``;
the memory run is separate from the timed runs).

    python benchmarks/bench_metrics.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

SRC = Path(__file__).resolve().parents[1] / "src"
CASES = {
    "2048x1024, 19 classes": ((1024, 2048), 19),
    "512x512x300, 8 classes": ((300, 512, 512), 8),
}


def make_pair(shape, n_classes, seed=0):
    """Piecewise-constant labels (blocks) with 10% of pixels changed, as uint8."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, n_classes, size=tuple(-(-s // 16) for s in shape), dtype=np.uint8)
    gt = coarse
    for axis in range(len(shape)):
        gt = np.repeat(gt, 16, axis=axis)
    gt = gt[tuple(slice(0, s) for s in shape)].copy()
    pred = gt.copy()
    flip = rng.random(shape, dtype=np.float32) < 0.1
    pred[flip] = rng.integers(0, n_classes, size=int(flip.sum()), dtype=np.uint8)
    return gt, pred


def worker(impl: str, case: str, repeat: int) -> dict:
    shape, n = CASES[case]
    gt, pred = make_pair(shape, n)
    if impl == "segflow":
        sys.path.insert(0, str(SRC))
        from napari_segflow.core.quality.metrics import confusion_matrix

        def run():
            return confusion_matrix(gt, pred, n_classes=n)
    else:
        from sklearn.metrics import confusion_matrix as sk_cm

        labels = np.arange(n)

        def run():
            return sk_cm(gt.ravel(), pred.ravel(), labels=labels)

    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "time": min(times),
        "peak_mb": peak / 2**20,
        "checksum": int(np.asarray(result, dtype=np.int64).sum()),
        "trace": int(np.trace(result)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--worker", nargs=2, metavar=("IMPL", "CASE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.repeat)))
        return
    rows = []
    for case in CASES:
        res = {}
        for impl in ("segflow", "sklearn"):
            out = subprocess.run(
                [sys.executable, __file__, "--repeat", str(args.repeat), "--worker", impl, case],
                capture_output=True,
                text=True,
                check=True,
            )
            res[impl] = json.loads(out.stdout.strip().splitlines()[-1])
        same = (res["segflow"]["checksum"], res["segflow"]["trace"]) == (
            res["sklearn"]["checksum"],
            res["sklearn"]["trace"],
        )
        rows.append((case, res, same))
    print(
        f"{'case':24s} {'segflow s':>10s} {'sklearn s':>10s} {'speed-up':>9s} "
        f"{'segflow MB':>11s} {'sklearn MB':>11s} {'same':>5s}"
    )
    for case, res, same in rows:
        s, k = res["segflow"], res["sklearn"]
        print(
            f"{case:24s} {s['time']:10.3f} {k['time']:10.3f} {k['time'] / s['time']:8.1f}x "
            f"{s['peak_mb']:11.1f} {k['peak_mb']:11.1f} {str(same):>5s}"
        )
    print("target: >= 5x faster than scikit-learn; peak MB is memory allocated by the call")


if __name__ == "__main__":
    main()
