"""GeoTIFF class-raster export: time and peak memory of ``write_geotiff`` vs a plain rasterio loop.

Each case runs in its own subprocess so its peak RSS (VmHWM) is its own. Sources are
larger-than-comfortable label rasters that never sit in memory whole:

- ``dask``: a lazily generated dask array (blocky land-cover-like classes, 1024² chunks);
- ``memmap``: the same labels in a ``.npy`` file opened with ``mmap_mode="r"``;
- ``tif``: the same labels in a georeferenced, tiled GeoTIFF, read the way ``segflow export``
  reads a ``.tif`` input (windowed, :func:`open_band`). The row ``tif (read whole)`` is how the
  command read it before: the whole band in memory, then written.

The baseline is the plain windowed rasterio write (same tiling and deflate compression, one
512-row window at a time, no validation, colour map or tags).

    python benchmarks/bench_geotiff.py                  # 10k² (dask + memmap) and 40k² (dask)
    python benchmarks/bench_geotiff.py --sizes 10000    # quicker
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

# run against this checkout's sources, not whatever copy is installed
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

CELL = 48  # side of the constant-class cells of the synthetic labels, in pixels
CLASSES = 6
TRANSFORM = (0.5, 0.0, 733601.0, 0.0, -0.5, 3725139.0)


def _grid(size: int) -> np.ndarray:
    rng = np.random.default_rng(size)
    n = -(-size // CELL)
    return rng.integers(0, CLASSES, (n, n), dtype=np.uint8)


def _block(grid: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    rows = np.arange(r0, r1) // CELL
    cols = np.arange(c0, c1) // CELL
    out = grid[rows[:, None], cols[None, :]]
    # a thin diagonal road class so blocks are not all trivially constant
    rr, cc = np.meshgrid(np.arange(r0, r1), np.arange(c0, c1), indexing="ij")
    out[(rr + cc) % 997 < 3] = CLASSES
    return out


def dask_labels(size: int):
    import dask.array as da

    grid = _grid(size)

    def make(block_info=None):
        (r0, r1), (c0, c1) = block_info[None]["array-location"]
        return _block(grid, r0, r1, c0, c1)

    return da.map_blocks(make, dtype=np.uint8, chunks=(_chunks(size), _chunks(size)))


def _chunks(size: int, chunk: int = 1024) -> tuple[int, ...]:
    return (chunk,) * (size // chunk) + ((size % chunk,) if size % chunk else ())


def make_memmap(size: int, path: Path) -> None:
    grid = _grid(size)
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(size, size))
    for r0 in range(0, size, 128):
        r1 = min(r0 + 128, size)
        mm[r0:r1] = _block(grid, r0, r1, 0, size)
    mm.flush()
    del mm


def make_tif(size: int, npy: Path, path: Path) -> None:
    """The memmap's labels as a georeferenced, tiled, deflate GeoTIFF, written in strips."""
    import rasterio
    from rasterio.transform import Affine
    from rasterio.windows import Window

    src = np.load(npy, mmap_mode="r")
    profile = dict(
        driver="GTiff", width=size, height=size, count=1, dtype="uint8", crs="EPSG:32616",
        transform=Affine(*TRANSFORM), tiled=True, blockxsize=512, blockysize=512,
        compress="deflate", bigtiff="IF_SAFER",
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, size, 512):
            r1 = min(r0 + 512, size)
            dst.write(np.asarray(src[r0:r1]), 1, window=Window(0, r0, size, r1 - r0))


def _taxonomy():
    from napari_segflow.core.taxonomy import taxonomy_from_dict

    return taxonomy_from_dict(
        {
            "name": "bench",
            "ignore_id": 255,
            "classes": [
                {"id": i, "name": f"class{i}", "color": [40 * i, 255 - 30 * i, 90]}
                for i in range(CLASSES + 1)
            ],
        }
    )


def peak_rss_mb() -> float:
    """Peak resident size of this process's own memory (VmHWM).

    ``ru_maxrss`` is not used: Linux carries it over from the parent across fork+exec, so it
    would report the benchmark driver's peak, not the worker's.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(method: str, source: str, size: int, src_path: str, out: str) -> dict:
    if source == "dask":
        labels = dask_labels(size)
    elif source == "tif":
        from napari_segflow.cli.export import read_labels

        labels = read_labels(Path(src_path))[0].labels
    else:
        labels = np.load(src_path, mmap_mode="r")
    import rasterio
    from rasterio.transform import Affine
    from rasterio.windows import Window

    from napari_segflow.core.io.geotiff import write_geotiff

    taxonomy = _taxonomy()
    t0 = time.perf_counter()  # imports above stay out of the timing
    if method == "readall":
        labels = np.asarray(labels)  # the export's former read of a .tif input
        write_geotiff(labels, out, crs="EPSG:32616", transform=TRANSFORM, taxonomy=taxonomy)
    elif method == "segflow":
        write_geotiff(labels, out, crs="EPSG:32616", transform=TRANSFORM, taxonomy=taxonomy)
    else:
        profile = {
            "driver": "GTiff",
            "width": size,
            "height": size,
            "count": 1,
            "dtype": "uint8",
            "crs": "EPSG:32616",
            "transform": Affine(*TRANSFORM),
            "tiled": True,
            "blockxsize": 512,
            "blockysize": 512,
            "compress": "deflate",
            "bigtiff": "IF_SAFER",
        }
        with rasterio.open(out, "w", **profile) as dst:
            for r0 in range(0, size, 512):
                r1 = min(r0 + 512, size)
                strip = labels[r0:r1]
                strip = np.asarray(strip.compute() if hasattr(strip, "compute") else strip)
                dst.write(strip, 1, window=Window(0, r0, size, r1 - r0))
    seconds = time.perf_counter() - t0
    rss_mb = peak_rss_mb()
    return {"seconds": seconds, "rss_mb": rss_mb, "mb_out": os.path.getsize(out) / 2**20}


def run_case(method: str, source: str, size: int, src_path: str, tmp: Path) -> dict:
    out = tmp / f"{method}_{source}_{size}.tif"
    cmd = [sys.executable, __file__, "--worker", method, source, str(size), src_path, str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode:
        raise SystemExit(res.stderr)
    result = json.loads(res.stdout.strip().splitlines()[-1])
    out.unlink()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 40_000])
    ap.add_argument(
        "--memmap-max", type=int, default=10_000, help="largest size also run from a memmap"
    )
    ap.add_argument(
        "--tmp", default=None, help="scratch folder (needs ~1.7 GB free for 40k² memmap)"
    )
    ap.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        method, source, size, src_path, out = args.worker
        print(json.dumps(worker(method, source, int(size), src_path, out)))
        return

    rows = []
    with tempfile.TemporaryDirectory(dir=args.tmp) as d:
        tmp = Path(d)
        for size in args.sizes:
            sources = ["dask"] + (["memmap", "tif"] if size <= args.memmap_max else [])
            npy = tmp / f"labels_{size}.npy"
            for source in sources:
                src_path = ""
                if source == "memmap":
                    src_path = str(npy)
                    make_memmap(size, npy)
                if source == "tif":
                    src_path = str(tmp / f"labels_{size}.tif")
                    make_tif(size, npy, Path(src_path))
                    npy.unlink()
                base = run_case("baseline", source, size, src_path, tmp)
                ours = run_case("segflow", source, size, src_path, tmp)
                rows.append((size, source, base, ours))
                if source == "tif":
                    whole = run_case("readall", source, size, src_path, tmp)
                    rows.append((size, "tif (read whole)", base, whole))
                if src_path and source != "memmap":
                    os.unlink(src_path)
            if npy.exists():
                npy.unlink()
    print(
        f"{'raster':>12} {'source':>16} | {'baseline s':>10} {'RSS MB':>7} | "
        f"{'segflow s':>9} {'RSS MB':>7} {'out MB':>7} | {'time ratio':>10}"
    )
    for size, source, base, ours in rows:
        print(
            f"{size:>6}x{size:<5} {source:>16} | {base['seconds']:10.1f} {base['rss_mb']:7.0f} | "
            f"{ours['seconds']:9.1f} {ours['rss_mb']:7.0f} {ours['mb_out']:7.1f} | "
            f"{ours['seconds'] / base['seconds']:10.2f}"
        )
    print("targets: time ratio <= 1.5, segflow peak RSS < 1024 MB")


if __name__ == "__main__":
    main()
