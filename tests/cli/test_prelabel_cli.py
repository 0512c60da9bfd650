"""``segflow prelabel`` end to end, and ``calibrate``/``qa-report`` on a local dask cluster."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from napari_segflow.cli import main
from napari_segflow.core.io.labels import match_label_files
from napari_segflow.core.io.png import read_png, write_png
from napari_segflow.core.prelabel.evaluate import polygon_mask, simplify_polygon
from napari_segflow.core.provenance import read_provenance
from napari_segflow.core.quality.batch_metrics import calibrate_files
from napari_segflow.core.quality.calibration import calibrate
from napari_segflow.core.taxonomy import load_preset


@pytest.fixture
def nuclei_tiles(shared_data, tmp_path):
    img = tifffile.imread(shared_data / "nuclei_dsb2018" / "img2d.tif")
    inst = tifffile.imread(shared_data / "nuclei_dsb2018" / "mask2d.tif")
    tax = load_preset("nuclei")
    for d in ("images", "coarse", "gold", "ann"):
        (tmp_path / d).mkdir()
    for stem, (r, c) in {"a": (0, 0), "b": (256, 64), "c": (200, 380)}.items():
        tile, ins = img[r : r + 72, c : c + 72], inst[r : r + 72, c : c + 72]
        coarse = np.zeros(ins.shape, np.uint8)
        for i in np.unique(ins)[1:]:
            if (ins == i).sum() >= 16:
                coarse[polygon_mask(simplify_polygon(ins == i, 15), ins.shape)] = 1
        tifffile.imwrite(tmp_path / "images" / f"{stem}.tif", tile)
        write_png(coarse, tmp_path / "coarse" / f"{stem}.png", taxonomy=tax)
        write_png((ins > 0).astype(np.uint8), tmp_path / "gold" / f"{stem}.png", taxonomy=tax)
        tifffile.imwrite(
            tmp_path / "ann" / f"{stem}.tif", ndimage.binary_erosion(ins > 0).astype(np.uint8)
        )
    return tmp_path


def test_prelabel_cli_writes_outputs_and_resumes(nuclei_tiles, capsys):
    root = nuclei_tiles
    out = root / "out"
    argv = ["prelabel", str(root / "images"), "--coarse", str(root / "coarse")]
    argv += ["--taxonomy", "nuclei", "--out", str(out), "--workers", "0", "--no-progress"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "done 3, skipped 0, failed 0" in text
    for stem in "abc":
        labels = read_png(out / f"{stem}.png")
        assert labels.shape == (72, 72)
        assert read_provenance(out / f"{stem}.png").shape == (72, 72)
        assert json.loads((out / f"{stem}.prelabel.json").read_text())["stem"] == stem
    assert main(argv) == 0
    assert "done 0, skipped 3, failed 0" in capsys.readouterr().out


def test_prelabel_cli_user_errors(nuclei_tiles, capsys):
    root = nuclei_tiles
    base = ["prelabel", str(root / "images"), "--taxonomy", "nuclei", "--out", str(root / "o")]
    assert main([*base, "--coarse", str(root / "coarse"), "--model", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a prompt source is required
        main(base)


def test_calibrate_on_two_workers_equals_serial(nuclei_tiles):
    root = nuclei_tiles
    tax = load_preset("nuclei")
    tifffile.imwrite(root / "ann" / "c.tif", np.zeros((10, 10), np.uint8))  # wrong shape
    par = calibrate_files(
        root / "gold", {"ann": root / "ann", "coarse": root / "coarse"}, taxonomy=tax, workers=2
    )
    m = match_label_files(root / "gold", {"ann": root / "ann", "coarse": root / "coarse"})
    ser = calibrate(m.reference, m.others, taxonomy=tax)
    for f in ("iou", "boundary_iou", "mean_iou", "pairwise_mean_iou"):
        np.testing.assert_array_equal(getattr(par, f), getattr(ser, f))
    assert par.per_image_mean_iou == ser.per_image_mean_iou and par.images == ser.images
    assert par.flagged == ser.flagged
    assert par.disagreement.keys() == ser.disagreement.keys()
    for k in par.disagreement:
        assert np.array_equal(par.disagreement[k], ser.disagreement[k])
    assert any("c.tif: shape (10, 10) differs" in p for p in par.problems)


def test_calibrate_and_qa_report_cli_accept_workers(nuclei_tiles, capsys):
    root = nuclei_tiles
    common = ["--taxonomy", "nuclei", "--gold", str(root / "gold")]
    for name, extra in (("serial", []), ("parallel", ["--workers", "2"])):
        assert main(["calibrate", *common, "--annotator", f"ann={root / 'ann'}",
                     "--out", str(root / f"cal_{name}"), *extra]) == 0  # fmt: skip
        assert main(["qa-report", *common, "--annotated", str(root / "ann"),
                     "--out", str(root / f"qa_{name}"), *extra]) == 0  # fmt: skip
    capsys.readouterr()
    assert (root / "cal_serial" / "report.json").read_text() == (
        root / "cal_parallel" / "report.json"
    ).read_text()
    qa_s = json.loads((root / "qa_serial" / "qa_report.json").read_text())
    qa_p = json.loads((root / "qa_parallel" / "qa_report.json").read_text())
    assert qa_s == qa_p
