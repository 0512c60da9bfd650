"""Volume pre-labelling: a real abdominal MR crop (NIfTI) and a TIFF stack, through the batch job."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from napari_segflow.cli import main
from napari_segflow.core.io.nifti import read_nifti, write_nifti
from napari_segflow.core.prelabel.batch import (
    PrelabelJob,
    image_files,
    make_tasks,
    output_paths,
    output_valid,
    run_prelabel,
)
from napari_segflow.core.prelabel.evaluate import polygon_mask, simplify_polygon
from napari_segflow.core.prelabel.refine import RefineOptions
from napari_segflow.core.prelabel.volume import prelabel_volume, volume_kind
from napari_segflow.core.provenance import AI_PENDING, HUMAN, read_provenance
from napari_segflow.core.segment import load_model
from napari_segflow.core.segment.volume import volume_window
from napari_segflow.core.taxonomy import taxonomy_from_dict

# total_mr ids of the organs present in the crop
ORGANS = {1: "spleen", 2: "kidney_right", 3: "kidney_left", 5: "liver"}
K0, K1 = 8, 12  # four slices along k, where all four organs appear


def _coarse(ref: np.ndarray, axis: int) -> np.ndarray:
    """Each organ region of each slice simplified to an 8-vertex polygon."""
    out = np.zeros_like(ref)
    for k in range(ref.shape[axis]):
        sl = (slice(None),) * axis + (k,)
        for c in ORGANS:
            comp, n = ndi.label(ref[sl] == c)
            for i in range(1, n + 1):
                m = comp == i
                if m.sum() >= 16:
                    out[sl][polygon_mask(simplify_polygon(m, 8), m.shape)] = c
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(
        np.mean([((a == c) & (b == c)).sum() / ((a == c) | (b == c)).sum() for c in ORGANS])
    )


@pytest.fixture(scope="module")
def abdomen(shared_data, tmp_path_factory):
    d = shared_data / "abdomen_mr"
    img, seg = read_nifti(d / "example_mr_sm.nii.gz"), read_nifti(d / "example_seg_mr.nii.gz")
    tax = taxonomy_from_dict(
        {
            "name": "abdomen",
            "classes": [
                {"id": i, "name": n, "color": f"#{40 * i:02x}8040"} for i, n in ORGANS.items()
            ],
        }
    )
    ref = np.where(np.isin(seg.data, list(ORGANS)), seg.data, 0).astype(np.uint8)[..., K0:K1]
    vol = img.data[..., K0:K1]
    aff = img.affine.copy()
    aff[:3, 3] = img.affine[:3, :3] @ [0, 0, K0] + img.affine[:3, 3]
    root = tmp_path_factory.mktemp("abdomen")
    (root / "img").mkdir()
    (root / "coarse").mkdir()
    coarse = _coarse(ref, 2)
    nib.save(nib.Nifti1Image(vol, aff), str(root / "img" / "case.nii.gz"))  # int16 MR
    write_nifti(coarse, root / "coarse" / "case.nii.gz", affine=aff, taxonomy=tax)
    return root, vol, ref, coarse, tax


def test_nifti_volume_batch(abdomen):
    root, vol, ref, coarse, tax = abdomen
    tasks, problems = make_tasks(image_files(root / "img"), coarse_dir=root / "coarse")
    assert not problems and [t.stem for t in tasks] == ["case"]
    assert volume_kind(tasks[0].image) == "nifti"
    job = PrelabelJob(out_dir=str(root / "out"), taxonomy=tax.to_dict())
    summary = run_prelabel(job, tasks, workers=0)
    assert summary.done == ["case"] and not summary.failed
    labels_path, prov_path, report_path = output_paths(root / "out", "case", ".nii.gz")
    src = nib.load(str(root / "img" / "case.nii.gz"))
    out = nib.load(str(labels_path))
    assert np.array_equal(out.affine, src.affine)  # exactly the source affine
    assert out.shape == vol.shape
    labels = np.asarray(out.dataobj)
    prov = read_provenance(labels_path)
    assert prov.shape == vol.shape and prov_path.is_file()
    assert np.array_equal(prov == AI_PENDING, labels != coarse)
    # the safety fences: never worse than the coarse polygons
    assert _iou(labels, ref) >= _iou(coarse, ref)
    report = json.loads(report_path.read_text())
    assert report["axis"] == 2 and sorted(report["slices"]) == ["0", "1", "2", "3"]
    win = volume_window(vol)
    assert report["window"] == [win.level, win.width]
    # rerun: skipped, outputs untouched
    mtime = labels_path.stat().st_mtime_ns
    again = run_prelabel(job, tasks, workers=0)
    assert again.skipped == ["case"] and not again.done
    assert labels_path.stat().st_mtime_ns == mtime
    # a damaged output is redone
    prov_path.write_bytes(b"broken")
    assert not output_valid(root / "out", "case", vol.shape, ".nii.gz")
    assert run_prelabel(job, tasks, workers=0).done == ["case"]
    assert np.array_equal(read_provenance(labels_path), prov)


def test_volume_changes_are_marked_pending(abdomen):
    """With a lower agreement threshold the model changes voxels; each one is AI-pending."""
    _, vol, _, coarse, tax = abdomen
    model = load_model("medsam-lite", device="cpu")
    res = prelabel_volume(
        vol,
        model,
        coarse=coarse,
        axis=2,
        taxonomy=tax,
        options=RefineOptions(min_iou=0.9, min_width=1),
    )
    changed = res.labels != coarse
    assert changed.any()
    assert np.array_equal(res.provenance == AI_PENDING, changed)
    assert np.all(res.provenance[~changed] == HUMAN)
    assert res.window == volume_window(vol)
    with pytest.raises(ValueError, match="do not match"):
        prelabel_volume(vol, model, coarse=coarse[..., :2])


def test_tiff_stack_cli(abdomen, tmp_path):
    """A (Z, Y, X) TIFF stack via ``segflow prelabel``; sliced along Z, written as a TIFF stack."""
    _, vol, ref, _, tax = abdomen
    stack = np.ascontiguousarray(np.moveaxis(vol[..., 1:3], 2, 0)).astype(np.uint16)
    ref_z = np.moveaxis(ref[..., 1:3], 2, 0)
    coarse = _coarse(np.ascontiguousarray(ref_z), 0)
    (tmp_path / "img").mkdir()
    (tmp_path / "coarse").mkdir()
    tifffile.imwrite(tmp_path / "img" / "stack.tif", stack)
    tifffile.imwrite(tmp_path / "coarse" / "stack.tif", coarse)
    (tmp_path / "tax.json").write_text(json.dumps(tax.to_dict()))
    args = ["prelabel", str(tmp_path / "img"), "--coarse", str(tmp_path / "coarse")]
    args += ["--taxonomy", str(tmp_path / "tax.json"), "--out", str(tmp_path / "out")]
    args += ["--workers", "0", "--no-progress", "--min-iou", "0.9", "--min-width", "1"]
    assert main(args) == 0
    labels_path = tmp_path / "out" / "stack.tif"
    labels = tifffile.imread(labels_path)
    prov = read_provenance(labels_path)
    assert labels.shape == stack.shape == prov.shape
    assert np.array_equal(prov == AI_PENDING, labels != coarse)
    assert json.loads((tmp_path / "out" / "stack.prelabel.json").read_text())["axis"] == 0
    assert main(args) == 0
    assert json.loads((tmp_path / "out" / "prelabel_summary.json").read_text())["skipped"] == [
        "stack"
    ]
