"""Pixel classifier: quality, fit and predict time, peak memory, against a plain baseline.

Two real tasks from the shared data:

- ``mr``: the abdominal MR (20 slices of 91 x 117), 3 slices (3, 10, 16) fully labelled with 9
  organ groups, the other 17 slices predicted; per-group IoU on those 17.
- ``nuclei``: a 256 x 256 fluorescence crop, a few strokes (8 nuclei, 4 background lines);
  nucleus IoU on the whole crop.

Rows, each measured in a fresh process (so that time includes loading the encoder and
embedding every slice, and peak memory is the process's own):

- ``baseline``: a random forest on the filter bank alone (no embeddings, no smoothing);
- ``bank+smooth``: the same with the 3D probability smoothing;
- ``bank+emb``: filter bank + LiteMedSAM embeddings, no smoothing;
- ``default``: ``PixelClassifier()`` as shipped (filter bank + embeddings + smoothing).

Usage: ``python benchmarks/bench_learn.py [--task mr|nuclei|all] [--threads N]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(
    os.environ.get("SEGFLOW_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
GROUPS = {
    "liver": (5,),
    "spleen": (1,),
    "kidneys": (2, 3),
    "stomach": (6,),
    "bowel": (13, 14, 15),
    "spine": (19, 20, 21),
    "vessels": (23, 24, 25),
    "back muscles": (46, 47, 48, 49),
    "other organs": (4, 7, 8, 9),
}
TRAIN = (3, 10, 16)
ROWS = {
    "baseline": dict(embeddings=False, smooth=0.0),
    "bank+smooth": dict(embeddings=False),
    "bank+emb": dict(smooth=0.0),
    "default": dict(),
}


def load_task(task: str):
    if task == "mr":
        import nibabel as nib

        d = DATA / "abdomen_mr"
        image = np.asarray(nib.load(d / "example_mr_sm.nii.gz").dataobj).transpose(2, 1, 0)
        seg = np.asarray(nib.load(d / "example_seg_mr.nii.gz").dataobj).transpose(2, 1, 0)
        gold = np.zeros(seg.shape, np.uint8)
        for gid, ids in enumerate(GROUPS.values(), start=1):
            gold[np.isin(seg, ids)] = gid
        lab = np.full(gold.shape, 255, np.uint8)
        lab[list(TRAIN)] = gold[list(TRAIN)]
        test = [z for z in range(gold.shape[0]) if z not in TRAIN]
        return np.ascontiguousarray(image), gold, lab, test, list(GROUPS)
    import tifffile
    from scipy import ndimage as ndi

    d = DATA / "nuclei_dsb2018"
    img = tifffile.imread(d / "img2d.tif")[:256, :256]
    inst = tifffile.imread(d / "mask2d.tif")[:256, :256]
    lab = np.full(inst.shape, 255, np.uint8)
    ids = [i for i in np.unique(inst) if i]
    for i in ids[:: max(1, len(ids) // 8)][:8]:
        core = ndi.binary_erosion(inst == i, iterations=2)
        if core.any():
            r = int(np.round(np.argwhere(core)[:, 0].mean()))
            lab[r][core[r]] = 1
    far = ndi.distance_transform_edt(inst == 0) > 4
    for r in np.linspace(10, inst.shape[0] - 10, 4).astype(int):
        lab[r, np.flatnonzero(far[r])[:60]] = 0
    return img, (inst > 0).astype(np.uint8), lab, None, ["nucleus"]


def run_one(task: str, row: str, threads: int) -> dict:
    """Fit and predict once in this process; returns the figures as a dict."""
    import torch

    torch.set_num_threads(threads)
    from napari_segflow.core.learn import PixelClassifier

    image, gold, lab, test, names = load_task(task)
    t0 = time.perf_counter()
    clf = PixelClassifier(**ROWS[row]).fit([image], [lab])
    t1 = time.perf_counter()
    res = clf.predict(image)
    t2 = time.perf_counter()
    g = gold if test is None else gold[test]
    p = res.labels if test is None else res.labels[test]
    ious = []
    for c in range(1, len(names) + 1):
        union = np.count_nonzero((g == c) | (p == c))
        ious.append(np.count_nonzero((g == c) & (p == c)) / union if union else float("nan"))
    return {
        "fit_s": t1 - t0,
        "predict_s": t2 - t1,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "ious": ious,
        "names": names,
        "training_pixels": int(np.count_nonzero(lab != 255)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=["mr", "nuclei", "all"], default="all")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    ap.add_argument("--one", nargs=2, metavar=("TASK", "ROW"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(*args.one, args.threads)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    tasks = ["mr", "nuclei"] if args.task == "all" else [args.task]
    for task in tasks:
        results = {}
        for row in ROWS:
            out = subprocess.run(
                [sys.executable, __file__, "--one", task, row, "--threads", str(args.threads)],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            results[row] = json.loads(out.stdout.strip().splitlines()[-1])
        names = results["baseline"]["names"]
        print(
            f"\n== {task}: {results['baseline']['training_pixels']} labelled pixels, "
            f"{args.threads} torch thread(s)"
        )
        print(f"{'':14}" + "".join(f"{r:>13}" for r in ROWS))
        for i, name in enumerate(names):
            print(f"{name[:14]:14}" + "".join(f"{results[r]['ious'][i]:13.3f}" for r in ROWS))
        print(
            f"{'mean IoU':14}" + "".join(f"{np.nanmean(results[r]['ious']):13.3f}" for r in ROWS)
        )
        for key, fmt in (
            ("fit_s", "{:13.1f}"),
            ("predict_s", "{:13.1f}"),
            ("peak_mib", "{:13.0f}"),
        ):
            print(f"{key:14}" + "".join(fmt.format(results[r][key]) for r in ROWS))
        total = {r: results[r]["fit_s"] + results[r]["predict_s"] for r in ROWS}
        print(f"{'fit+predict s':14}" + "".join(f"{total[r]:13.1f}" for r in ROWS))


if __name__ == "__main__":
    main()
