"""Batch pre-labelling throughput: a plain serial loop vs dask LocalCluster with 1 and 2 workers.

Builds N real nuclei tiles (DSB 2018 image, 15-vertex polygon labels of its true nuclei) in a
temporary folder, then pre-labels them three ways with the bundled LiteMedSAM weights:

- ``serial loop``: one process, model loaded once, ``process_image`` per tile (the baseline),
  with 1 torch thread (as each dask worker) and with 2 (all cores of this machine);
- ``dask, 1 worker`` and ``dask, 2 workers``: ``run_prelabel`` on a LocalCluster of
  single-threaded worker processes, each loading the model once.

Every run writes the same files (label PNG, provenance sidecar, report) and starts from an empty
output folder. ``images/s`` counts the processing only; start-up (cluster start and loading the
model in each worker, or in the serial process) is shown separately. Peak memory is the maximum
resident set size of each process (the serial one, or each worker).

Usage: ``python benchmarks/bench_prelabel.py [--tiles 8] [--size 96]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

from napari_segflow.core.io.png import write_png
from napari_segflow.core.prelabel.batch import (
    PrelabelJob,
    _model_for,
    image_files,
    make_tasks,
    preload_model,
    process_image,
    run_prelabel,
)
from napari_segflow.core.prelabel.evaluate import polygon_mask, simplify_polygon
from napari_segflow.core.taxonomy import load_preset

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(root: Path, n: int, size: int) -> list:
    data = Path(os.environ.get("SEGFLOW_SHARED_DATA", DATA))
    img = tifffile.imread(data / "nuclei_dsb2018" / "img2d.tif")
    inst = tifffile.imread(data / "nuclei_dsb2018" / "mask2d.tif")
    tax = load_preset("nuclei")
    (root / "images").mkdir()
    (root / "coarse").mkdir()
    step = (img.shape[0] - size) // max(int(np.ceil(np.sqrt(n))) - 1, 1)
    k = 0
    for r in range(0, img.shape[0] - size + 1, step):
        for c in range(0, img.shape[1] - size + 1, step):
            if k == n:
                break
            tile, ins = img[r : r + size, c : c + size], inst[r : r + size, c : c + size]
            coarse = np.zeros(ins.shape, np.uint8)
            for i in np.unique(ins)[1:]:
                if (ins == i).sum() >= 16:
                    coarse[polygon_mask(simplify_polygon(ins == i, 15), ins.shape)] = 1
            tifffile.imwrite(root / "images" / f"tile{k:03d}.tif", tile)
            write_png(coarse, root / "coarse" / f"tile{k:03d}.png", taxonomy=tax)
            k += 1
    tasks, problems = make_tasks(image_files(root / "images"), coarse_dir=root / "coarse")
    assert not problems
    return tasks


def serial_loop(root: Path, tasks: list, tax, threads: int = 1) -> dict:
    job = PrelabelJob(
        out_dir=str(root / f"out_serial{threads}"), taxonomy=tax.to_dict(), torch_threads=threads
    )
    t0 = time.perf_counter()
    model, _ = _model_for(job)
    t1 = time.perf_counter()
    outcomes = [process_image(job, t, model) for t in tasks]
    wall = time.perf_counter() - t1
    assert all(o.status == "done" for o in outcomes), [o.reason for o in outcomes]
    objects = sum(sum(o.counts.values()) for o in outcomes)
    return {"wall": wall, "startup": t1 - t0, "mem": [_maxrss_mb()], "objects": objects}


def cluster_run(root: Path, tasks: list, tax, workers: int) -> dict:
    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = Client(cluster)
    try:
        job = PrelabelJob(out_dir=str(root / f"out_{workers}w"), taxonomy=tax.to_dict())
        client.run(preload_model, job)  # one model per worker, loaded before the clock starts
        startup = time.perf_counter() - t0
        t1 = time.perf_counter()
        summary = run_prelabel(job, tasks, client=client)
        wall = time.perf_counter() - t1
        assert len(summary.done) == len(tasks), summary.failed
        mem = client.run(_maxrss_mb)
    finally:
        client.close()
        cluster.close()
    return {
        "wall": wall,
        "startup": startup,
        "mem": list(mem.values()),
        "objects": sum(summary.object_counts.values()),
    }


def serial_in_subprocess(root: Path, threads: int) -> dict:
    """Run the serial loop in a fresh process whose OpenMP pool has ``threads`` threads.

    torch's oneDNN kernels keep the thread count of the first inference, so the loop must not
    share a process with anything that ran torch before (and dask workers start with
    ``OMP_NUM_THREADS=1``).
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, __file__, "--serial", str(root), "--threads", str(threads)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=16)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--serial", type=Path, help=argparse.SUPPRESS)  # internal: one serial run
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    tax = load_preset("nuclei")
    if args.serial is not None:
        tasks, _ = make_tasks(
            image_files(args.serial / "images"), coarse_dir=args.serial / "coarse"
        )
        print(json.dumps(serial_loop(args.serial, tasks, tax, args.threads)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tasks = build(root, args.tiles, args.size)
        rows = [
            ("serial loop, 1 thread (baseline)", serial_in_subprocess(root, 1)),
            ("serial loop, 2 torch threads", serial_in_subprocess(root, 2)),
        ]
        for w in (1, 2):
            rows.append(
                (f"dask LocalCluster, {w} worker{'s' * (w > 1)}", cluster_run(root, tasks, tax, w))
            )
    n = len(tasks)
    print(
        f"{n} tiles {args.size}x{args.size}, {rows[0][1]['objects']} objects, "
        f"medsam-lite on CPU, {os.cpu_count()} cores (shared with other jobs), "
        f"python {sys.version.split()[0]}"
    )
    base = n / rows[0][1]["wall"]
    print(
        f"{'run':34s} {'images/s':>9s} {'vs serial':>9s} {'wall s':>7s} {'startup s':>9s}  peak MB per process"
    )
    for name, r in rows:
        ips = n / r["wall"]
        mem = ", ".join(f"{m:.0f}" for m in r["mem"])
        print(
            f"{name:34s} {ips:9.3f} {ips / base:8.2f}x {r['wall']:7.1f} {r['startup']:9.1f}  {mem}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
