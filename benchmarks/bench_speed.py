"""Where users wait: medsam-lite on torch eager vs ONNX Runtime, threads, and pre-labelling.

Three tables, each measured side by side in this one run (medians; the machine's load average
is printed, since on a shared machine every figure moves with it):

1. ``embed`` and ``box decode`` of the bundled LiteMedSAM, torch eager vs ONNX Runtime, with 1
   and 2 threads, on nuclei images of 512² and 1024² (the model sees 256²; the larger image
   only adds preprocessing). ``--busy`` adds a CPU-bound process for the whole table, as when
   napari draws or another job runs. Targets: embedding >= 2x faster than torch at 1 thread, a
   box decode <= 50 ms at 1 thread.
2. Pre-labelling (``prelabel_image``, 15-vertex polygons of the true nuclei as coarse labels):
   seconds per image and per object and encoder passes, with one embedding per image
   (today's default) vs one zoomed embedding per object (the former path for images above
   128 px, ``zoom_below=inf``), both on ONNX Runtime; plus the one-embedding path on torch.
   Target: <= 4 encoder passes' worth of time per 256² tile with >= 25 objects.
3. ``--sizes 1024 4096``: larger tiles (the nuclei image mirrored to size) with ``--objects``
   objects kept (default 30 and 200).

Usage::

    python benchmarks/bench_speed.py                      # 256² pre-labelling, quick
    python benchmarks/bench_speed.py --busy --repeat 5    # threads under load
    python benchmarks/bench_speed.py --sizes 256 1024 4096 --objects 30 200
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

DATA = Path(
    os.environ.get("SEGFLOW_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


def _nuclei(size: int):
    import tifffile

    img = tifffile.imread(DATA / "nuclei_dsb2018" / "img2d.tif")
    inst = tifffile.imread(DATA / "nuclei_dsb2018" / "mask2d.tif")
    reps = math.ceil(size / img.shape[0])
    if reps > 1:  # mirror tiles so that objects stay whole across the seams
        img = np.pad(img, ((0, img.shape[0] * (reps - 1)),) * 2, mode="symmetric")
        big = np.pad(inst, ((0, inst.shape[0] * (reps - 1)),) * 2, mode="symmetric")
        # mirrored copies of one nucleus are different objects
        from scipy import ndimage as ndi

        inst, _ = ndi.label(big > 0)
    return img[:size, :size], inst[:size, :size]


def _coarse(inst: np.ndarray, max_objects: int | None) -> np.ndarray:
    from napari_segflow.core.prelabel.evaluate import polygon_mask, simplify_polygon

    out = np.zeros(inst.shape, np.uint8)
    ids = [i for i in np.unique(inst)[1:] if np.count_nonzero(inst == i) >= 16]
    if max_objects is not None:
        ids = ids[:max_objects]
    for i in ids:
        m = inst == i
        out[polygon_mask(simplify_polygon(m, 15), inst.shape)] = 1
    return out


def _median(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def table_models(models, repeat: int) -> None:
    from napari_segflow.core.segment.threads import using_threads

    print(f"\n1. medsam-lite, medians of {repeat} (load average {os.getloadavg()[0]:.1f})")
    print(f"{'image':>6} {'threads':>7} | {'embed torch':>11} {'embed onnx':>10} {'x':>5} | "
          f"{'decode torch':>12} {'decode onnx':>11} {'x':>5}")  # fmt: skip
    for size in (512, 1024):
        img, inst = _nuclei(size)
        rows, cols = np.nonzero(inst == np.unique(inst)[5])
        box = (rows.min(), cols.min(), rows.max(), cols.max())
        for threads in (1, 2):
            with using_threads(threads):
                res = {}
                for name, m in models.items():

                    def embed(m=m, img=img):
                        m.cache.clear()
                        return m.embed(img)

                    emb = embed()
                    res[name] = (
                        _median(embed, repeat),
                        _median(lambda m=m, e=emb, b=box: m.predict(e, box=b), 3 * repeat),
                    )
            (et, dt), (eo, do) = res["torch"], res["onnx"]
            print(f"{size:>5}² {threads:>7} | {et:10.2f}s {eo:9.2f}s {et / eo:5.2f} | "
                  f"{dt * 1e3:10.0f}ms {do * 1e3:9.0f}ms {dt / do:5.2f}")  # fmt: skip


def table_prelabel(models, sizes, objects) -> None:
    from napari_segflow.core.prelabel.refine import RefineOptions, prelabel_image
    from napari_segflow.core.segment.threads import using_threads

    print(f"\n2. pre-labelling, 1 thread (load average {os.getloadavg()[0]:.1f})")
    print(f"{'tile':>6} {'objects':>7} | {'path':<34} | {'s/image':>8} {'s/object':>8} "
          f"{'encodes':>7} {'in encodes':>10}")  # fmt: skip
    onnx = models["onnx"]
    img0, _ = _nuclei(256)
    for size in sizes:
        img, inst = _nuclei(size)
        counts = [None] if size <= 256 else objects
        for n in counts:
            coarse = _coarse(inst, n)
            paths = [
                ("one embedding per image, onnx", onnx, {}),
                ("one embedding per image, torch", models["torch"], {}),
            ]
            if size <= 1024:  # the former per-object path takes minutes beyond
                paths.insert(
                    0, ("per-object zoomed windows, onnx", onnx, {"zoom_below": math.inf})
                )
            for label, m, opts in paths:
                # one encoder pass of this runtime, just before: the unit of "in encodes"
                # (the load of a shared machine drifts between rows)
                with using_threads(1):
                    m.cache.clear()
                    t0 = time.perf_counter()
                    m.embed(img0)
                    one_pass = time.perf_counter() - t0
                m.cache.clear()
                calls = m.encoder_calls
                with using_threads(1):
                    t0 = time.perf_counter()
                    r = prelabel_image(img, m, coarse=coarse, options=RefineOptions(**opts))
                    dt = time.perf_counter() - t0
                k = len(r.objects)
                print(f"{size:>5}² {k:>7} | {label:<34} | {dt:8.1f} {dt / max(k, 1):8.3f} "
                      f"{m.encoder_calls - calls:>7} {dt / one_pass:10.1f}")  # fmt: skip
    print(
        "(in encodes: the row's time over one encoder pass of the same runtime, timed just before)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--busy", action="store_true", help="a CPU-bound process runs alongside")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256])
    ap.add_argument("--objects", type=int, nargs="+", default=[30, 200])
    ap.add_argument("--skip-models", action="store_true", help="only the pre-labelling table")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from napari_segflow.core.segment import load_model

    models = {
        "torch": load_model("medsam-lite", device="cpu", runtime="torch"),
        "onnx": load_model("medsam-lite", device="cpu", runtime="onnx"),
    }
    busy = None
    if args.busy:
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        if not args.skip_models:
            table_models(models, args.repeat)
        table_prelabel(models, args.sizes, args.objects)
    finally:
        if busy is not None:
            busy.kill()
    print(f"\ncores: {os.cpu_count()}, busy process: {args.busy}")
    print("targets: embed >= 2x torch at 1 thread; box decode <= 50 ms at 1 thread; "
          "<= 4 encoder passes' time per 256² tile with >= 25 objects")  # fmt: skip


if __name__ == "__main__":
    main()
