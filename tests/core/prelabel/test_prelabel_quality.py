"""Refinement never makes good coarse input worse: 15-vertex polygons vs refined, real masks.

Real LiteMedSAM weights on small crops of the three labelled datasets (kept small for CPU time;
``benchmarks/bench_prelabel_quality.py`` runs more objects and prints the table).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from napari_segflow.core.prelabel.evaluate import evaluate_refinement, simplify_polygon
from napari_segflow.core.prelabel.refine import RefineOptions

NAIVE = RefineOptions(
    band=100, max_band_px=10_000, min_iou=0.0, confidence=0.0, min_width=1, edge_check=False
)


@pytest.fixture(scope="module")
def model():
    from napari_segflow.core.segment import load_model

    return load_model("medsam-lite", device="cpu")


def _nuclei(data):
    img = tifffile.imread(data / "nuclei_dsb2018" / "img2d.tif")
    inst = tifffile.imread(data / "nuclei_dsb2018" / "mask2d.tif")
    return img[:112, :112], inst[:112, :112], None


def _buildings(data):
    pan = tifffile.imread(data / "spacenet_atlanta" / "sample_geotiff.tif")
    fp = tifffile.imread(data / "spacenet_atlanta" / "sample_fp_mask_from_geojson.tif") > 0
    lab, _ = ndi.label(fp)
    return pan[:220, :220], lab[:220, :220], None


def _organs(data):
    mr = np.asarray(nib.load(data / "abdomen_mr" / "example_mr_sm.nii.gz").dataobj)
    seg = np.asarray(nib.load(data / "abdomen_mr" / "example_seg_mr.nii.gz").dataobj)
    organs = seg[:, :, 19].astype(np.int32)
    return mr[:, :, 19], organs, organs


def test_simplified_polygons_have_the_vertex_budget(shared_data):
    _, inst, _ = _organs(shared_data)
    for organ in np.unique(inst)[1:]:
        m = inst == organ
        if m.sum() >= 16:
            poly = simplify_polygon(m, 15)
            assert 3 <= len(poly) <= 15


@pytest.mark.parametrize("load", [_nuclei, _buildings, _organs], ids=["nuclei", "buildings", "mr"])
def test_refined_is_not_worse_than_the_polygons_on_average(model, shared_data, load):
    img, inst, classes = load(shared_data)
    gated = evaluate_refinement(img, inst, model, classes=classes)
    assert gated.polygon_iou.size >= 3
    assert gated.mean_refined >= gated.mean_polygon, (gated.mean_refined, gated.mean_polygon)
    # the same model, unfenced, is worse than the polygons: the fences are what keeps them
    naive = evaluate_refinement(img, inst, model, classes=classes, options=NAIVE)
    assert naive.mean_refined < gated.mean_refined
