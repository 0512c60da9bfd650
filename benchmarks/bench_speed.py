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
4. The box decoder at 1 thread: torch eager (the model's own decoder), the whole decoder as one
   ONNX graph (the baseline, exported here from the same weights) and today's graphs (the image
   part once per embedding, the box part with its image-side products folded): median wall ms
   and CPU ms (process time, which a busy machine does not inflate) for one box, and per box in
   a batch of ``--batch`` boxes, plus ``model.predict`` with a box (decode and
   post-processing). Target: a box decode <= 50 ms.
5. ``--workers-table``: ``run_prelabel`` (what ``segflow prelabel`` runs) over ``--images``
   copies of each tile, serially vs ``--workers 1`` and ``2``: seconds per image and per object,
   wall clock including the start of the cluster and the model loads (what a user waits for).

Usage::

    python benchmarks/bench_speed.py                      # 256² pre-labelling, quick
    python benchmarks/bench_speed.py --busy --repeat 5    # threads under load
    python benchmarks/bench_speed.py --sizes 256 1024 4096 --objects 30 200
    python benchmarks/bench_speed.py --skip-models --skip-prelabel --workers-table \
        --sizes 1024 4096 --objects 30 200 --images 2    # the workers, at size
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


def _whole_decoder(net, folder: Path):
    """The former ONNX box decoder (prompt encoder + whole mask decoder in one graph)."""
    import torch

    from napari_segflow.core.segment.onnx_runtime import _export

    class WholeDecoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pe, self.dec = net.prompt_encoder, net.mask_decoder

        def forward(self, image_embed, boxes):
            sparse, dense = self.pe(points=None, boxes=boxes.reshape(-1, 1, 4), masks=None)
            return self.dec.predict_masks(
                image_embeddings=image_embed,
                image_pe=self.pe.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
            )

    path = folder / "whole-decoder.onnx"
    _export(
        WholeDecoder().eval(),
        (torch.zeros(1, 256, 64, 64), torch.tensor([[10.0, 20.0, 200.0, 120.0]] * 2)),
        path,
        inputs=["image_embed", "boxes"],
        outputs=["low_res_masks", "iou_predictions"],
        dynamic={"boxes": {0: "n"}, "low_res_masks": {0: "n"}, "iou_predictions": {0: "n"}},
    )
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = 1, 1, 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def table_decoder(model, model_torch, repeat: int, batch: int) -> None:
    import tempfile

    from napari_segflow.core.segment.threads import using_threads

    img, inst = _nuclei(512)
    emb = model.embed(img)
    feat = emb.features["image_embed"].numpy()
    ids = [i for i in np.unique(inst)[1:] if np.count_nonzero(inst == i) >= 16][:batch]
    boxes = []
    for i in ids:
        rows, cols = np.nonzero(inst == i)
        boxes.append((rows.min(), cols.min(), rows.max(), cols.max()))
    xyxy = np.asarray([[c0, r0, c1, r1] for r0, c0, r1, c1 in boxes], np.float32) / 2  # 256 frame
    with tempfile.TemporaryDirectory() as tmp:
        whole = _whole_decoder(model.net, Path(tmp))
        ort = model._ort

        def old(b):
            return whole.run(None, {"image_embed": feat, "boxes": b})

        def new(b):  # all boxes in one call of the box graph
            feeds = dict(ort.image_part(feat, threads=1))
            feeds["boxes"] = b
            return ort._sessions_for(1)[2].run(None, feeds)

        def new_each(b):  # what predict_boxes does: one call per box (OnnxLiteMedSAM.decode)
            return ort.decode(feat, b, threads=1)

        def eager(b):  # the model's own decoder, torch eager (what CUDA and the fallback run)
            import torch

            with torch.inference_mode():
                return model_torch._decode_boxes(torch.from_numpy(feat), b, True)

        with using_threads(1):
            calls = (("old", old), ("torch", eager), ("new", new_each))
            for _, fn in calls:
                fn(xyxy[:1])  # sessions built, the image part of this embedding kept
            n = 3 * repeat
            one = {k: [] for k, _ in calls}
            cpu = {k: [] for k, _ in calls}
            for _ in range(n):  # interleaved, so that all see the same load
                for k, fn in calls:
                    t0, c0 = time.perf_counter(), time.process_time()
                    fn(xyxy[:1])
                    one[k].append(time.perf_counter() - t0)
                    cpu[k].append(time.process_time() - c0)
            many = {k: _median(lambda fn=fn: fn(xyxy), max(1, repeat // 2)) / len(xyxy)
                    for k, fn in (("old", old), ("new", new), ("each", new_each))}  # fmt: skip
            # the same box decoded n times in a row: no other graph between the calls, as when
            # the decoder runs alone (the interleaved rows above evict each other's weights)
            alone = _median(lambda: new_each(xyxy[:1]), n)
            part = _median(
                lambda: (setattr(ort, "_image_part", None), ort.image_part(feat, threads=1)), n
            )
            pred = _median(lambda: model.predict(emb, box=boxes[0]), n)
    med = {k: 1e3 * float(np.median(v)) for k, v in one.items()}
    mcpu = {k: 1e3 * float(np.median(v)) for k, v in cpu.items()}
    print(
        f"\n4. box decoder at 1 thread, medians of {n} interleaved calls "
        f"(load average {os.getloadavg()[0]:.1f}; CPU = process time of the call)"
    )
    k = len(xyxy)
    print(f"{'decoder':<38} | {'1 box':>8} | {'1 box CPU':>9} | "
          f"{f'per box, {k} in one call':>22} | {f'per box, {k} calls':>18}")  # fmt: skip
    rows = (
        ("torch eager, the model's decoder", "torch", None, None),
        ("ONNX, whole decoder (baseline)", "old", many["old"], None),
        ("ONNX, split + folded (now)", "new", many["new"], many["each"]),
    )
    for label, key, batched, each in rows:
        b_ = f"{batched * 1e3:20.1f}ms" if batched is not None else f"{'':>22}"
        e_ = f"{each * 1e3:16.1f}ms" if each is not None else f"{'':>18}"
        print(f"{label:<38} | {med[key]:6.1f}ms | {mcpu[key]:7.1f}ms | {b_} | {e_}")
    print(f"one box {med['old'] / med['new']:.2f}x faster than the whole ONNX decoder "
          f"({mcpu['old'] / mcpu['new']:.2f}x in CPU time), {med['torch'] / med['new']:.2f}x "
          f"than torch eager")  # fmt: skip
    print(f"split + folded, one box, {n} calls in a row (no other graph between them): "
          f"{alone * 1e3:.1f} ms")  # fmt: skip
    print(f"image part, once per embedding: {part * 1e3:.1f} ms; model.predict with a box "
          f"(decode + post-processing, refine={model.refine}): {pred * 1e3:.1f} ms")  # fmt: skip


def table_workers(sizes, objects, images: int, workers=(1, 2)) -> None:
    import tempfile

    import tifffile

    from napari_segflow.core.io.png import write_png
    from napari_segflow.core.prelabel.batch import (
        PrelabelJob,
        image_files,
        make_tasks,
        run_prelabel,
    )
    from napari_segflow.core.prelabel.workers import default_workers
    from napari_segflow.core.taxonomy import load_preset

    tax = load_preset("nuclei")
    print(f"\n5. segflow prelabel over {images} image(s) per row, 1 thread per image, wall clock "
          f"with start-up (load average {os.getloadavg()[0]:.1f}; default --workers here: "
          f"{default_workers(images)})")  # fmt: skip
    print(f"{'tile':>6} {'objects':>7} | {'run':<12} | {'s/image':>8} {'s/object':>8} "
          f"{'vs serial':>9}")  # fmt: skip
    for size in sizes:
        img, inst = _nuclei(size)
        for n in [None] if size <= 256 else objects:
            coarse = _coarse(inst, n)
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp)
                (root / "images").mkdir()
                (root / "coarse").mkdir()
                for k in range(images):
                    tifffile.imwrite(root / "images" / f"tile{k}.tif", img)
                    write_png(coarse, root / "coarse" / f"tile{k}.png", taxonomy=tax)
                tasks, problems = make_tasks(
                    image_files(root / "images"), coarse_dir=root / "coarse"
                )
                assert not problems, problems
                base = None
                for w in (0, *workers):
                    job = PrelabelJob(out_dir=str(root / f"out{w}"), taxonomy=tax.to_dict())
                    t0 = time.perf_counter()
                    summary = run_prelabel(job, tasks, workers=w or None)
                    dt = time.perf_counter() - t0
                    assert len(summary.done) == images, summary.failed
                    k = sum(summary.object_counts.values()) // images
                    base = base or dt
                    label = "serial" if w == 0 else f"--workers {w}"
                    print(f"{size:>5}² {k:>7} | {label:<12} | {dt / images:8.1f} "
                          f"{dt / (images * max(k, 1)):8.3f} {base / dt:8.2f}x")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--busy", action="store_true", help="a CPU-bound process runs alongside")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256])
    ap.add_argument("--objects", type=int, nargs="+", default=[30, 200])
    ap.add_argument("--skip-models", action="store_true", help="no runtime table (1)")
    ap.add_argument("--skip-prelabel", action="store_true", help="no pre-labelling tables (2, 3)")
    ap.add_argument("--skip-decoder", action="store_true", help="no decoder table (4)")
    ap.add_argument("--batch", type=int, default=16, help="boxes per decoder call in table 4")
    ap.add_argument("--workers-table", action="store_true", help="table 5: serial vs workers")
    ap.add_argument("--images", type=int, default=2, help="images per row of table 5")
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
        if not args.skip_decoder:
            table_decoder(models["onnx"], models["torch"], args.repeat, args.batch)
        if not args.skip_prelabel:
            table_prelabel(models, args.sizes, args.objects)
        if args.workers_table:
            table_workers(args.sizes, args.objects, args.images)
    finally:
        if busy is not None:
            busy.kill()
    print(f"\ncores: {os.cpu_count()}, busy process: {args.busy}")
    print("targets: embed >= 2x torch at 1 thread; box decode <= 50 ms at 1 thread; "
          "<= 4 encoder passes' time per 256² tile with >= 25 objects")  # fmt: skip


if __name__ == "__main__":
    main()
