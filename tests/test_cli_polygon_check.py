import json
import re

import numpy as np
import pytest
import tifffile

from napari_segflow.cli import main
from napari_segflow.core.io import write_png
from napari_segflow.core.taxonomy import load_preset


def test_polygon_check_png_and_nifti_slices(tmp_path, capsys):
    import nibabel as nib

    tax = load_preset("nuclei")
    lab = np.zeros((40, 60), np.uint8)
    lab[4:14, 4:30] = 1  # a rectangle: 4 vertices
    yy, xx = np.mgrid[:40, :60]
    lab[(yy - 25) ** 2 + (xx - 44) ** 2 < 100] = 2  # a disc: needs more
    write_png(lab, tmp_path / "a.png", taxonomy=tax)
    vol = np.stack([lab, np.fliplr(lab)], axis=-1)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(tmp_path / "v.nii.gz"))
    out = tmp_path / "report"
    rc = main(
        ["polygon-check", "--taxonomy", "nuclei", "--iou", "0.9", "--out", str(out)]
        + [str(tmp_path / "a.png"), str(tmp_path / "v.nii.gz")]
    )
    assert rc == 0
    table = capsys.readouterr().out
    assert re.search(r"nucleus\s+3\s+1\.00.*polygons suffice at 10 vertices", table)
    data = json.loads((out / "polygon_check.json").read_text())
    assert data["n_images"] == 3 and data["iou_target"] == 0.9
    assert data["budgets"] == [10, 15, 20, 25, 30, 50]
    by_name = {c["name"]: c for c in data["classes"]}
    assert by_name["nucleus"]["mask_cost"] == 12  # three rectangles of 4 vertices
    assert by_name["debris"]["n_objects"] == 3
    assert len(data["objects"]) == 6
    page = (out / "polygon_check.html").read_text()
    assert page.count("data:image/png;base64,") == 1 and "debris" in page
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")


def test_polygon_check_instances_on_real_nuclei(tmp_path, capsys, shared_data):
    mask = shared_data / "nuclei_dsb2018" / "mask2d.tif"
    rc = main(
        ["polygon-check", "--taxonomy", "nuclei", "--instances", "nucleus"]
        + ["--budgets", "10,20", "--out", str(tmp_path), str(mask)]
    )
    assert rc == 0
    assert re.search(r"nucleus\s+125\s", capsys.readouterr().out)
    data = json.loads((tmp_path / "polygon_check.json").read_text())
    assert data["classes"][0]["n_objects"] == 125 and data["budgets"] == [10, 20]


def test_polygon_check_user_errors_are_one_line(tmp_path, capsys):
    inst = np.arange(12, dtype=np.uint16).reshape(3, 4)
    tifffile.imwrite(tmp_path / "i.tif", inst)
    rc = main(
        ["polygon-check", "--taxonomy", "nuclei", "--out", str(tmp_path), str(tmp_path / "i.tif")]
    )
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert "not classes of taxonomy 'nuclei'" in err and "--instances" in err and "\n" not in err
    rc = main(
        ["polygon-check", "--taxonomy", "nuclei", "--instances", "cell", str(tmp_path / "i.tif")]
    )
    assert rc == 2 and "no class 'cell'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(
            ["polygon-check", "--taxonomy", "nuclei", "--budgets", "2,10", str(tmp_path / "i.tif")]
        )


def test_polygon_check_without_objects(tmp_path, capsys):
    np.save(tmp_path / "empty.npy", np.zeros((8, 8), np.uint8))
    assert (
        main(
            [
                "polygon-check",
                "--taxonomy",
                "nuclei",
                "--out",
                str(tmp_path),
                str(tmp_path / "empty.npy"),
            ]
        )
        == 0
    )
    assert "no objects of the requested classes" in capsys.readouterr().out
    data = json.loads((tmp_path / "polygon_check.json").read_text())
    assert data["classes"] == [] and data["cost_ratio"] is None
    assert (tmp_path / "polygon_check.html").is_file()
