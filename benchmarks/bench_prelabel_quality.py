"""Quality of pre-labelling from 15-vertex polygons, on real masks of three datasets.

Every true object is simplified to a polygon of at most 15 vertices (Douglas-Peucker), the
polygons are rasterised into a coarse label image and refined with the bundled LiteMedSAM. Per
dataset the table gives the mean per-object IoU against the true mask of

- ``polygon``: the coarse input itself (the baseline to beat, or at least to keep);
- ``naive``: the model's mask used as is (no band, no confidence/width limits, no gate);
- ``gated``: the default :class:`RefineOptions` (what ``segflow prelabel`` does);

and how many objects the gated refinement improved / worsened (by more than 0.005 IoU) and
flagged for review.

Usage: ``python benchmarks/bench_prelabel_quality.py [--full]`` (``--full``: whole images,
slow on CPU; default: the crops used by the test suite plus more objects).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import tifffile
from scipy import ndimage as ndi

from napari_segflow.core.prelabel.evaluate import evaluate_refinement
from napari_segflow.core.prelabel.refine import RefineOptions
from napari_segflow.core.segment import load_model

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"

#: the model's own mask, unfenced: what naive re-prediction from the box + mask does
NAIVE = RefineOptions(
    band=100, max_band_px=10_000, min_iou=0.0, confidence=0.0, min_width=1, edge_check=False
)


def datasets(data: Path, full: bool) -> dict:
    """``{name: (image, instances, classes or None)}`` from the shared real data."""
    img = tifffile.imread(data / "nuclei_dsb2018" / "img2d.tif")
    inst = tifffile.imread(data / "nuclei_dsb2018" / "mask2d.tif")
    pan = tifffile.imread(data / "spacenet_atlanta" / "sample_geotiff.tif")
    fp = tifffile.imread(data / "spacenet_atlanta" / "sample_fp_mask_from_geojson.tif") > 0
    buildings, _ = ndi.label(fp)
    mr = np.asarray(nib.load(data / "abdomen_mr" / "example_mr_sm.nii.gz").dataobj)
    seg = np.asarray(nib.load(data / "abdomen_mr" / "example_seg_mr.nii.gz").dataobj)
    n, s = (512, 900) if full else (192, 360)
    out = {
        "nuclei (DSB 2018)": (img[:n, :n], inst[:n, :n], None),
        "buildings (SpaceNet)": (pan[:s, :s], buildings[:s, :s], None),
    }
    slices = range(seg.shape[2]) if full else (10, 19)
    for z in slices:
        organs = seg[:, :, z].astype(np.int32)
        if organs.any():
            out[f"abdomen MR z={z}"] = (mr[:, :, z], organs, organs)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true")
    args = ap.parse_args(argv)
    data = Path(os.environ.get("SEGFLOW_SHARED_DATA", DATA))
    model = load_model("medsam-lite", device="cpu")
    print(
        f"{'dataset':24s} {'objects':>7s} {'polygon':>8s} {'naive':>8s} {'gated':>8s}  better/worse/flagged  s"
    )
    for name, (img, inst, cls) in datasets(data, args.full).items():
        t0 = time.perf_counter()
        gated = evaluate_refinement(img, inst, model, classes=cls)
        naive = evaluate_refinement(img, inst, model, classes=cls, options=NAIVE)
        flagged = len(gated.result.flagged)
        print(
            f"{name:24s} {gated.polygon_iou.size:7d} {gated.mean_polygon:8.4f} "
            f"{naive.mean_refined:8.4f} {gated.mean_refined:8.4f}  "
            f"{gated.improved}/{gated.worsened}/{flagged}  {time.perf_counter() - t0:.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
