"""``segflow export`` in every format, with provenance checks and refusals."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import tifffile
import yaml

from napari_segflow.cli import main
from napari_segflow.core.io.coco import read_coco
from napari_segflow.core.io.nifti import read_nifti
from napari_segflow.core.provenance import AI_CONFIRMED, AI_PENDING, write_provenance


@pytest.fixture
def buildings(tmp_path):
    path = tmp_path / "buildings.yaml"
    path.write_text(
        yaml.safe_dump(
            {"name": "buildings", "classes": [{"id": 255, "name": "building", "color": "#ff0000"}]}
        )
    )
    return str(path)


@pytest.fixture
def atlanta(shared_data):
    return shared_data / "spacenet_atlanta"


def test_geotiff_with_like_matches_reference(atlanta, buildings, tmp_path, capsys):
    out = tmp_path / "mask.tif"
    rc = main(
        [
            "export",
            "--format",
            "geotiff",
            "--taxonomy",
            buildings,
            "--out",
            str(out),
            str(atlanta / "sample_fp_mask_from_geojson.tif"),
            "--like",
            str(atlanta / "sample_geotiff.tif"),
        ]
    )
    assert rc == 0, capsys.readouterr()
    with (
        rasterio.open(out) as got,
        rasterio.open(atlanta / "DERIVED_sample_fp_mask_from_geojson_georef.tif") as ref,
    ):
        assert np.array_equal(got.read(1), ref.read(1))
        assert (got.crs, got.transform) == (ref.crs, ref.transform)


def test_geotiff_without_like_is_refused(atlanta, buildings, tmp_path, capsys):
    rc = main(
        [
            "export",
            "--format",
            "geotiff",
            "--taxonomy",
            buildings,
            "--out",
            str(tmp_path / "m.tif"),
            str(atlanta / "sample_fp_mask_from_geojson.tif"),
        ]
    )
    assert rc == 1
    assert "has no georeference: pass --like" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == [tmp_path / "buildings.yaml"]


def test_coco_from_tiff_and_back_to_png(atlanta, buildings, tmp_path):
    src = atlanta / "sample_fp_mask_from_geojson.tif"
    out = tmp_path / "ann.json"
    assert (
        main(["export", "--format", "coco", "--taxonomy", buildings, "--out", str(out), str(src)])
        == 0
    )
    assert np.array_equal(read_coco(out)["sample_fp_mask_from_geojson.tif"], tifffile.imread(src))
    assert (
        main(
            [
                "export",
                "--format",
                "png",
                "--taxonomy",
                buildings,
                "--out",
                str(tmp_path / "png"),
                str(out),
            ]
        )
        == 0
    )
    assert (tmp_path / "png" / "sample_fp_mask_from_geojson.png").is_file()


def test_nifti_keeps_source_affine(shared_data, tmp_path):
    folder = shared_data / "abdomen_mr"
    seg = read_nifti(folder / "example_seg_mr.nii.gz")
    tax = tmp_path / "organs.yaml"
    tax.write_text(
        yaml.safe_dump(
            {
                "name": "organs",
                "classes": [
                    {"id": int(i), "name": f"organ{i}", "color": [int(i) * 5 % 256, 0, 0]}
                    for i in np.unique(seg.data)
                    if i
                ],
            }
        )
    )
    out = tmp_path / "seg.nii.gz"
    rc = main(
        [
            "export",
            "--format",
            "nifti",
            "--taxonomy",
            str(tax),
            "--out",
            str(out),
            str(folder / "example_seg_mr.nii.gz"),
            "--like",
            str(folder / "example_mr_sm.nii.gz"),
        ]
    )
    assert rc == 0
    back = read_nifti(out)
    assert np.array_equal(back.data, seg.data)
    assert np.allclose(back.affine, read_nifti(folder / "example_mr_sm.nii.gz").affine)


def test_unconfirmed_ai_pixels_warn_or_refuse(buildings, tmp_path, capsys):
    lab = np.zeros((20, 30), np.uint8)
    lab[5:10, 5:10] = 255
    src = tmp_path / "tile.npy"
    np.save(src, lab)
    prov = np.zeros(lab.shape, np.uint8)
    prov[5:10, 5:10] = AI_CONFIRMED
    prov[5, 5:8] = AI_PENDING
    write_provenance(src, prov)
    out = tmp_path / "c.json"

    assert (
        main(["export", "--format", "coco", "--taxonomy", buildings, "--out", str(out), str(src)])
        == 0
    )
    assert "3 AI-labelled pixels are not confirmed" in capsys.readouterr().err
    assert np.array_equal(read_coco(out)["tile.npy"], lab)
    out.unlink()

    rc = main(
        [
            "export",
            "--format",
            "coco",
            "--taxonomy",
            buildings,
            "--out",
            str(out),
            str(src),
            "--require-confirmed",
        ]
    )
    assert rc == 1
    assert "3 AI-labelled pixels are not confirmed; confirm them" in capsys.readouterr().out
    assert not out.exists()


def test_unknown_ids_listed(buildings, tmp_path, capsys):
    src = tmp_path / "bad.npy"
    np.save(src, np.array([[0, 3], [255, 8]], np.uint8))
    rc = main(
        [
            "export",
            "--format",
            "png",
            "--taxonomy",
            buildings,
            "--out",
            str(tmp_path / "o"),
            str(src),
        ]
    )
    assert rc == 1
    assert "absent from taxonomy 'buildings': 3, 8" in capsys.readouterr().out
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_unknown_format_is_a_usage_error(buildings, tmp_path):
    with pytest.raises(SystemExit) as err:
        main(
            [
                "export",
                "--format",
                "jpeg",
                "--taxonomy",
                buildings,
                "--out",
                str(tmp_path),
                "x.png",
            ]
        )
    assert err.value.code == 2


@pytest.mark.parametrize("fmt", ["png", "coco"])
def test_export_carries_the_provenance_sidecar(fmt, buildings, tmp_path):
    """AI-pending pixels stay pending after an export (as with napari's Save), never human-made."""
    from napari_segflow.core.provenance import read_provenance, sidecar_path

    lab = np.zeros((20, 30), np.uint8)
    lab[5:10, 5:10] = 255
    src = tmp_path / "tile.npy"
    np.save(src, lab)
    prov = np.zeros(lab.shape, np.uint8)
    prov[5:10, 5:10] = AI_CONFIRMED
    prov[5, 5:8] = AI_PENDING
    write_provenance(src, prov)
    out_dir = tmp_path / "out"
    out = out_dir / "c.json" if fmt == "coco" else out_dir
    args = ["export", "--format", fmt, "--taxonomy", buildings, "--out", str(out), str(src)]
    assert main(args) == 0
    written = out if fmt == "coco" else out_dir / "tile.png"
    assert np.array_equal(read_provenance(written), prov)

    # the same export from an input without a record leaves no stale sidecar behind
    sidecar_path(src).unlink()
    assert main(args) == 0
    assert not sidecar_path(written).exists()
