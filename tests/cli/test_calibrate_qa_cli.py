from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from napari_segflow.cli import main
from napari_segflow.core.io.nifti import write_nifti
from napari_segflow.core.io.png import write_png
from napari_segflow.core.taxonomy import load_preset, load_taxonomy


@pytest.fixture
def folders(shared_data, tmp_path):
    mask = (tifffile.imread(shared_data / "nuclei_dsb2018" / "mask2d.tif") > 0).astype(np.uint8)
    tiles = {"a": mask[:256, :256], "b": mask[:256, 256:], "c": mask[256:, :256]}
    tax = load_preset("nuclei")
    gold, good, poor = (tmp_path / n for n in ("gold", "good", "poor"))
    for d in (gold, good, poor):
        d.mkdir()
    for k, m in tiles.items():
        write_png(m, gold / f"{k}.png", taxonomy=tax)
        tifffile.imwrite(good / f"{k}.tif", ndimage.binary_erosion(m).astype(np.uint8))
    # poor: a shifted copy as NIfTI, one file missing, one of the wrong shape
    write_nifti(np.roll(tiles["a"], 4, axis=1), poor / "a.nii.gz", affine=None)
    tifffile.imwrite(poor / "b.tif", tiles["b"][:100])
    return tmp_path, tiles


def test_calibrate_reports_problems_by_name_and_continues(folders, capsys):
    root, tiles = folders
    out = root / "report"
    rc = main(
        [
            "calibrate",
            "--taxonomy",
            "nuclei",
            "--gold",
            str(root / "gold"),
            "--annotator",
            f"good={root / 'good'}",
            "--annotator",
            f"poor={root / 'poor'}",
            "--prelabels",
            str(root / "poor"),
            "--out",
            str(out),
        ]
    )
    cap = capsys.readouterr()
    assert rc == 1  # some files were left out
    assert "poor: b.tif: shape (100, 256) differs from reference (256, 256)" in cap.err
    assert "poor: c: missing" in cap.err
    doc = json.loads((out / "report.json").read_text())
    shifted = np.roll(tiles["a"], 4, axis=1)
    expected = np.sum((tiles["a"] == 1) & (shifted == 1)) / np.sum(
        (tiles["a"] == 1) | (shifted == 1)
    )
    assert doc["annotators"]["poor"]["per_class_iou"]["nucleus"] == pytest.approx(
        expected, abs=1e-6
    )
    assert doc["annotators"]["poor"]["flagged"] == ["nucleus"]
    assert doc["annotators"]["good"]["flagged"] == []
    assert (out / "report.csv").is_file() and (out / "report.html").is_file()
    gated = load_taxonomy(out / "taxonomy_ai_gated.yaml")
    assert gated.by_name("nucleus").ai_assist is False
    assert "retrain on: nucleus" in cap.out


def test_calibrate_user_error_is_one_line(tmp_path, capsys):
    rc = main(
        [
            "calibrate",
            "--taxonomy",
            "nuclei",
            "--gold",
            str(tmp_path / "nope"),
            "--annotator",
            "x=y",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 2
    assert "not a folder" in capsys.readouterr().err


def test_qa_sample_and_report(folders, capsys):
    root, _ = folders
    rc = main(
        [
            "qa-sample",
            str(root / "gold"),
            "--taxonomy",
            "nuclei",
            "--rate",
            "common=0.5",
            "--seed",
            "3",
            "--out",
            str(root / "qa"),
        ]
    )
    assert rc == 0
    doc = json.loads((root / "qa" / "qa_sample.json").read_text())
    assert doc["rates"] == {"nucleus": 0.5}
    assert len(doc["images"]) == 2  # ceil(0.5 * 3)
    assert all(im["reasons"] for im in doc["images"])
    rc = main(
        [
            "qa-report",
            "--taxonomy",
            "nuclei",
            "--gold",
            str(root / "gold"),
            "--annotated",
            str(root / "good"),
            "--out",
            str(root / "qa"),
        ]
    )
    assert rc == 0
    rep = json.loads((root / "qa" / "qa_report.json").read_text())
    assert 0.75 < rep["per_class_iou"]["nucleus"] < 1.0
    assert rep["images"] == ["a", "b", "c"]
    assert "mean IoU" in capsys.readouterr().out
