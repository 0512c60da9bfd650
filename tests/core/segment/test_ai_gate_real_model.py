"""The AI pre-label gate fed by the real LiteMedSAM, box prompts from each gold region."""

import numpy as np
import tifffile

from napari_segflow.core.io.nifti import read_nifti
from napari_segflow.core.quality.calibration import ai_prelabel_gate, prelabels_from_gold_boxes
from napari_segflow.core.taxonomy import taxonomy_from_dict


def _iou(a, b):
    union = np.logical_or(a, b).sum()
    return np.logical_and(a, b).sum() / union if union else np.nan


def test_gate_on_real_prelabels(medsam, shared_data):
    # MR slices: liver (big, easy) and kidneys; nuclei crop: many small objects
    mr = read_nifti(shared_data / "abdomen_mr" / "example_mr_sm.nii.gz").data
    seg = read_nifti(shared_data / "abdomen_mr" / "example_seg_mr.nii.gz").data
    z = 10
    image = mr[:, :, z].T.astype(np.float32)
    gold_mr = seg[:, :, z].T.astype(np.uint8)
    keep = {5: 1, 2: 2, 3: 3}  # liver, kidney right, kidney left -> taxonomy ids
    gold = np.zeros_like(gold_mr)
    for src, dst in keep.items():
        gold[gold_mr == src] = dst
    tax = taxonomy_from_dict(
        {
            "name": "mr-organs",
            "classes": [
                {"id": 1, "name": "liver", "color": "#aa5500"},
                {"id": 2, "name": "kidney right", "color": "#00aa00"},
                {"id": 3, "name": "kidney left", "color": "#0000aa"},
                {"id": 4, "name": "spleen", "color": "#aa00aa"},
            ],
        }
    )
    pre = prelabels_from_gold_boxes({"mr": image}, {"mr": gold}, medsam, taxonomy=tax)
    assert pre["mr"].shape == gold.shape
    gate = ai_prelabel_gate({"mr": gold}, pre, taxonomy=tax)

    # the gate's IoUs are the pre-labels' IoUs, recomputed independently
    for cid, name in ((1, "liver"), (2, "kidney right"), (3, "kidney left")):
        expected = _iou(gold == cid, pre["mr"] == cid)
        assert abs(gate.per_class_iou[name] - expected) < 1e-9
        assert (name in gate.disabled) == (expected < 0.70)
        assert gate.taxonomy.by_name(name).ai_assist == (expected >= 0.70)
    # the real model finds the organs from their boxes (not a box fill, not nothing)
    liver_iou = gate.per_class_iou["liver"]
    assert liver_iou > 0.6
    box_fill_iou = (gold == 1).sum() / np.prod(np.ptp(np.argwhere(gold == 1), axis=0) + 1)
    assert liver_iou > box_fill_iou
    # spleen is absent from gold and pre-labels: no evidence, unchanged
    assert np.isnan(gate.per_class_iou["spleen"]) and gate.taxonomy.by_name("spleen").ai_assist


def test_gate_on_real_nuclei(medsam, shared_data):
    img = tifffile.imread(shared_data / "nuclei_dsb2018" / "img2d.tif")[:192, :192]
    inst = tifffile.imread(shared_data / "nuclei_dsb2018" / "mask2d.tif")[:192, :192]
    tax = taxonomy_from_dict(
        {"name": "n", "classes": [{"id": 1, "name": "nucleus", "color": "#ff00ff"}]}
    )
    gold = (inst > 0).astype(np.uint8)
    pre = prelabels_from_gold_boxes({"a": img}, {"a": gold}, medsam, taxonomy=tax, min_pixels=20)
    gate = ai_prelabel_gate({"a": gold}, pre, taxonomy=tax)
    iou = _iou(gold == 1, pre["a"] == 1)
    assert abs(gate.per_class_iou["nucleus"] - iou) < 1e-9
    assert iou > 0.5
    assert ("nucleus" in gate.disabled) == (iou < 0.70)
