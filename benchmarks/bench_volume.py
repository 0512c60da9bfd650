"""Volume propagation speed and memory: seconds per slice, peak RSS, share of time outside the model.

Cases (each in its own process, so peak RSS is that case's own):

* the shared abdominal MR (20 slices of 91x117), liver from one box on its middle slice:
  LiteMedSAM slice chain, ``simple`` (the baseline) and ``refined``; SAM 2.1-tiny video memory
* a synthetic 512x512 CT-like volume of 300 slices: the same backends over a sub-range of
  ``--slices`` slices (a full run takes too long on a small shared CPU), extrapolated to 300

SAM 2 runs with random weights (no checkpoint offline): its speed is that of the real network,
its masks are meaningless, so it follows a fixed number of frames instead of stopping.

"Outside the model" is the wall time not spent inside the model's own calls: LiteMedSAM's
``embed``/``predict`` (including the engine's 8-bit conversion and cache lookup) or SAM 2's
``propagate_in_video`` steps minus our frame building. Target: <= 10 %.

Run: ``python benchmarks/bench_volume.py [--slices 6] [--sam2-frames 4]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


class _Timed:
    """Delegates to a model and adds up the time spent in embed/predict."""

    def __init__(self, model) -> None:
        self._m = model
        self.name = model.name
        self.supports_points = model.supports_points
        self.supports_boxes = model.supports_boxes
        self.model_s = 0.0
        self.embeds = 0

    def embed(self, image, **kw):
        t = time.perf_counter()
        try:
            return self._m.embed(image, **kw)
        finally:
            self.model_s += time.perf_counter() - t
            self.embeds += 1

    def predict(self, emb, **kw):
        t = time.perf_counter()
        try:
            return self._m.predict(emb, **kw)
        finally:
            self.model_s += time.perf_counter() - t


def _mr():
    from napari_segflow._reader import get_nifti_reader

    data = REPO.parent / "shared" / "data" / "abdomen_mr"
    out = []
    for name in ("example_mr_sm.nii.gz", "example_seg_mr.nii.gz"):
        p = str(data / name)
        ((arr, _, _),) = get_nifti_reader(p)(p)
        out.append(arr)
    return out


def _synthetic(n: int = 300, size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """CT-like: air, a body ellipse of soft tissue and an organ ellipsoid, in Hounsfield units."""
    rng = np.random.default_rng(0)
    yy, xx = np.ogrid[:size, :size]
    body = ((yy - size / 2) / (size * 0.42)) ** 2 + ((xx - size / 2) / (size * 0.46)) ** 2 <= 1
    noise = rng.normal(0, 12, (size, size)).astype(np.int16)
    vol = np.full((n, size, size), -1000, dtype=np.int16)
    organ = np.zeros((n, size, size), dtype=bool)
    for z in range(n):  # slice by slice: no volume-sized float temporaries
        r = 1 - ((z - n / 2) / (n * 0.45)) ** 2
        if r > 0:
            organ[z] = ((yy - size * 0.45) / (size * 0.12)) ** 2 + (
                (xx - size * 0.6) / (size * 0.1)
            ) ** 2 <= r
        vol[z][body] = 30
        vol[z][organ[z]] = 140
        vol[z] += noise
    return vol, organ


def _case(kind: str, backend: str, method: str, n_slices: int, queue) -> None:
    import torch

    torch.set_num_threads(1)
    from napari_segflow.core.segment import load_model, segment_volume
    from napari_segflow.core.segment.volume import mask_box

    if kind == "mr":
        vol, seg = _mr()
        ref = seg == 5  # liver
    else:
        vol, ref = _synthetic()
    zs = np.flatnonzero(ref.any(axis=(1, 2)))
    z = int(zs[len(zs) // 2])
    box = mask_box(ref[z])
    rng = None if kind == "mr" and backend == "medsam-lite" else (z, z + n_slices - 1)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if backend == "medsam-lite":
        model = _Timed(load_model("medsam-lite", device="cpu"))
        t = time.perf_counter()
        pred = segment_volume(model, vol, z, box=box, method=method, slice_range=rng)
        wall = time.perf_counter() - t
        model_s, visited = model.model_s, model.embeds
    else:
        from napari_segflow.core.segment import sam2_volume

        torch.manual_seed(0)
        model = load_model("sam2.1-tiny", pretrained=False, device="cpu")
        frame_s = [0.0]
        orig_get = sam2_volume.SliceFrames.__getitem__

        def timed_get(self, i):
            t0 = time.perf_counter()
            try:
                return orig_get(self, i)
            finally:
                frame_s[0] += time.perf_counter() - t0

        sam2_volume.SliceFrames.__getitem__ = timed_get
        from sam2.sam2_video_predictor import SAM2VideoPredictor

        # time spent in the predictor's own calls, counted once however deeply they nest
        busy = {"depth": 0, "s": 0.0}

        def timed(fn):
            def wrapper(*a, **k):
                busy["depth"] += 1
                t0 = time.perf_counter()
                try:
                    return fn(*a, **k)
                finally:
                    busy["depth"] -= 1
                    if busy["depth"] == 0:
                        busy["s"] += time.perf_counter() - t0

            return wrapper

        for meth in ("_get_image_feature", "add_new_points_or_box", "add_new_mask"):
            setattr(SAM2VideoPredictor, meth, timed(getattr(SAM2VideoPredictor, meth)))
        orig_prop = SAM2VideoPredictor.propagate_in_video

        def timed_prop(self, *a, **k):
            gen = orig_prop(self, *a, **k)
            step = timed(lambda: next(gen, None))
            while (item := step()) is not None:
                yield item

        SAM2VideoPredictor.propagate_in_video = timed_prop
        gen_s = busy
        rng = (z, z + n_slices - 1)
        t = time.perf_counter()
        pred = segment_volume(model, vol, z, box=box, slice_range=rng, direction="forward")
        wall = time.perf_counter() - t
        model_s = gen_s["s"] - frame_s[0]  # our frame building runs inside those calls
        visited = n_slices
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    inter = np.count_nonzero(pred & ref)
    dice = 2 * inter / (np.count_nonzero(pred) + np.count_nonzero(ref))
    queue.put(
        {
            "case": f"{kind} {backend} {method}",
            "slices": int(visited),
            "s_per_slice": wall / max(visited, 1),
            "outside_pct": 100 * (wall - model_s) / wall,
            "peak_rss_mb": rss / 1024,
            "rss_before_mb": rss0 / 1024,
            "dice": dice if kind == "mr" and backend == "medsam-lite" else float("nan"),
        }
    )


def _run(*args) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_case, args=(*args, q))
    p.start()
    out = q.get()
    p.join()
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=6, help="synthetic slices per LiteMedSAM case")
    ap.add_argument("--sam2-frames", type=int, default=4, help="frames per SAM 2 case")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--only", default="", help="run only the cases whose name contains this")
    args = ap.parse_args(argv)
    cases = [
        ("mr", "medsam-lite", "simple", 0),
        ("mr", "medsam-lite", "refined", 0),
        ("mr", "sam2.1-tiny", "video", args.sam2_frames),
        ("synthetic", "medsam-lite", "simple", args.slices),
        ("synthetic", "medsam-lite", "refined", args.slices),
        ("synthetic", "sam2.1-tiny", "video", args.sam2_frames),
    ]
    rows = []
    for c in [c for c in cases if args.only in " ".join(map(str, c[:3]))]:
        rows.append(_run(*c))
        r = rows[-1]
        print(f"done {r['case']}: {r['s_per_slice']:.2f} s/slice", flush=True)
    print()
    head = f"{'case':36} {'slices':>6} {'s/slice':>8} {'300 slices':>11} {'outside %':>9} {'peak RSS MB':>11} {'Dice':>6}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['case']:36} {r['slices']:6d} {r['s_per_slice']:8.2f} "
            f"{r['s_per_slice'] * 300 / 60:9.1f} m {r['outside_pct']:9.1f} "
            f"{r['peak_rss_mb']:11.0f} {r['dice']:6.3f}"
        )
    print("\nbaseline: 'simple' (one chain per direction); target: outside <= 10 %")
    print("synthetic and SAM 2 rows cover a sub-range; '300 slices' extrapolates s/slice x 300")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
