"""GeoTIFF reading and class-raster export, checked against rasterio and the SpaceNet reference."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import rasterio
import tifffile
from rasterio.transform import Affine

from napari_segflow.core.io import geotiff as gt
from napari_segflow.core.io.geotiff import (
    geotiff_info,
    open_pyramid,
    read_geotiff,
    read_geotiff_labels,
    read_geotiff_taxonomy,
    stretch_to_uint8,
    write_geotiff,
)
from napari_segflow.core.io.validate import ExportError
from napari_segflow.core.taxonomy import taxonomy_from_dict

BUILDINGS = taxonomy_from_dict(
    {
        "name": "buildings",
        "ignore_id": 254,
        "classes": [
            {"id": 0, "name": "ground", "color": "#202020"},
            {"id": 255, "name": "building", "color": "#ff0000"},
        ],
    }
)


@pytest.fixture(scope="module")
def atlanta(shared_data):
    folder = shared_data / "spacenet_atlanta"
    mask = tifffile.imread(folder / "sample_fp_mask_from_geojson.tif")
    return folder, mask


def test_spacenet_export_matches_reference(atlanta, tmp_path):
    folder, mask = atlanta
    out = write_geotiff(
        mask, tmp_path / "m.tif", like=folder / "sample_geotiff.tif", taxonomy=BUILDINGS
    )
    with (
        rasterio.open(out) as got,
        rasterio.open(folder / "sample_geotiff.tif") as src,
        rasterio.open(folder / "DERIVED_sample_fp_mask_from_geojson_georef.tif") as ref,
    ):
        assert np.array_equal(got.read(1), mask)
        assert np.array_equal(got.read(1), ref.read(1))
        assert got.crs == src.crs == ref.crs
        assert got.transform == src.transform == ref.transform
        assert got.dtypes == ("uint8",)
        assert got.profile["tiled"] and got.profile["compress"] == "deflate"
        assert got.nodata == 254
        cmap = got.colormap(1)
        assert cmap[255] == (255, 0, 0, 255) and cmap[0] == (32, 32, 32, 255)
        assert got.tags(1)["CLASS_255"] == "building"
    assert read_geotiff_taxonomy(out) == BUILDINGS
    assert np.array_equal(read_geotiff_labels(out), mask)


def test_refuses_labels_without_georeference(atlanta, tmp_path):
    folder, mask = atlanta
    with pytest.raises(ExportError, match="no georeference.*crs= and transform="):
        write_geotiff(mask, tmp_path / "a.tif", taxonomy=BUILDINGS)
    # the footprint mask file has a pixel grid only: it cannot serve as reference
    with pytest.raises(ExportError, match="sample_fp_mask_from_geojson.tif has none"):
        write_geotiff(
            mask,
            tmp_path / "a.tif",
            like=folder / "sample_fp_mask_from_geojson.tif",
            taxonomy=BUILDINGS,
        )
    with pytest.raises(ExportError, match="900x900 but .* is 718x791"):
        write_geotiff(
            mask,
            tmp_path / "a.tif",
            like=folder.parent / "landsat_rgb" / "RGB.byte.tif",
            taxonomy=BUILDINGS,
        )
    assert list(tmp_path.iterdir()) == []


def test_explicit_crs_and_transform(atlanta, tmp_path):
    _, mask = atlanta
    t = (0.5, 0.0, 733601.0, 0.0, -0.5, 3725139.0)
    out = write_geotiff(
        mask[:100, :80], tmp_path / "e.tif", crs="EPSG:32616", transform=t, taxonomy=BUILDINGS
    )
    with rasterio.open(out) as got:
        assert got.crs.to_epsg() == 32616
        assert got.transform == Affine(*t)
        assert got.shape == (100, 80)


def test_unknown_ids_listed_across_strips_and_nothing_written(monkeypatch, tmp_path):
    monkeypatch.setattr(gt, "STRIP_BYTES", 16 * 200)  # one 16-row strip at a time
    lab = np.zeros((100, 200), np.uint8)
    lab[3, 3], lab[90, 7] = 9, 17
    with pytest.raises(ExportError, match="absent from taxonomy 'buildings': 9, 17"):
        write_geotiff(
            lab,
            tmp_path / "x.tif",
            crs="EPSG:32616",
            transform=(0.5, 0, 733601.0, 0, -0.5, 3725139.0),
            taxonomy=BUILDINGS,
            block_size=16,
        )
    assert list(tmp_path.iterdir()) == []


def test_streams_dask_and_memmap_exactly(monkeypatch, atlanta, tmp_path):
    folder, mask = atlanta
    monkeypatch.setattr(gt, "STRIP_BYTES", 64 * 900)  # many strips
    strips = []
    lazy = da.from_array(mask, chunks=(128, 300))
    write_geotiff(
        lazy,
        tmp_path / "d.tif",
        like=folder / "sample_geotiff.tif",
        taxonomy=BUILDINGS,
        block_size=64,
        progress=lambda d, n: strips.append(d),
    )
    assert len(strips) == 15 and strips[-1] == 900
    mm = np.lib.format.open_memmap(tmp_path / "m.npy", mode="w+", dtype=np.uint8, shape=mask.shape)
    mm[:] = mask
    mm.flush()
    ro = np.load(tmp_path / "m.npy", mmap_mode="r")
    write_geotiff(
        ro,
        tmp_path / "m.tif",
        like=folder / "sample_geotiff.tif",
        taxonomy=BUILDINGS,
        block_size=64,
    )
    for name in ("d.tif", "m.tif"):
        with rasterio.open(tmp_path / name) as got:
            assert np.array_equal(got.read(1), mask)
            assert got.block_shapes == [(64, 64)]


def _boom(done, total):
    if done >= total // 2:
        raise RuntimeError("disk full")


def test_interrupted_export_leaves_no_file(monkeypatch, atlanta, tmp_path):
    folder, mask = atlanta
    monkeypatch.setattr(gt, "STRIP_BYTES", 64 * 900)
    dest = tmp_path / "out.tif"
    with pytest.raises(RuntimeError, match="disk full"):
        write_geotiff(
            mask,
            dest,
            like=folder / "sample_geotiff.tif",
            taxonomy=BUILDINGS,
            block_size=64,
            progress=_boom,
        )
    assert list(tmp_path.iterdir()) == []

    # a source that fails half-way (a dask chunk raising) behaves the same, and an older export
    # under the final name stays intact
    write_geotiff(mask, dest, like=folder / "sample_geotiff.tif", taxonomy=BUILDINGS)
    before = dest.read_bytes()

    def chunk(block, block_info=None):
        if block_info[0]["array-location"][0][0] >= 512:
            raise OSError("source tile unreadable")
        return block

    failing = da.from_array(mask, chunks=(128, 900)).map_blocks(chunk, dtype=mask.dtype)
    with pytest.raises(OSError, match="unreadable"):
        write_geotiff(
            failing, dest, like=folder / "sample_geotiff.tif", taxonomy=BUILDINGS, block_size=64
        )
    assert dest.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]


def test_landsat_rgb_read_with_georeference(shared_data):
    path = shared_data / "landsat_rgb" / "RGB.byte.tif"
    img = read_geotiff(path)
    with rasterio.open(path) as src:
        expected = np.moveaxis(src.read(), 0, -1)
        transform = list(src.transform)[:6]
    assert img.rgb and not img.multiscale and img.contrast_limits is None
    assert np.array_equal(img.data, expected)
    assert img.info["epsg"] == 32618
    assert img.info["nodata"] == 0
    assert img.info["transform"] == transform
    assert img.info["colorinterp"] == ["red", "green", "blue"]

    levels = open_pyramid(path, chunk=256)
    assert [lvl.shape for lvl in levels] == [(718, 791, 3), (359, 396, 3), (180, 198, 3)]
    assert np.array_equal(levels[0][100:300, 500:700].compute(), expected[100:300, 500:700])
    assert read_geotiff(path, lazy=True).multiscale


def test_16bit_single_band_is_stretched(atlanta):
    folder, _ = atlanta
    img = read_geotiff(folder / "sample_geotiff.tif")
    assert img.data.dtype == np.uint16 and not img.rgb
    lo, hi = img.contrast_limits
    valid = img.data[img.data != 0]
    assert valid.min() <= lo < hi <= valid.max()
    assert np.mean((valid >= lo) & (valid <= hi)) == pytest.approx(0.96, abs=0.02)
    u8 = stretch_to_uint8(img.data, limits=img.contrast_limits)
    assert u8.dtype == np.uint8 and u8.min() == 0 and u8.max() == 255
    assert np.all(
        np.diff(u8.ravel()[np.argsort(img.data.ravel(), kind="stable")].astype(int)) >= 0
    )


def test_info_of_plain_tiff_is_not_georeferenced(atlanta):
    folder, _ = atlanta
    assert not gt.is_georeferenced(geotiff_info(folder / "sample_fp_mask_from_geojson.tif"))
    assert gt.is_georeferenced(geotiff_info(folder / "sample_geotiff.tif"))


def test_dask_source_is_read_once_strip_by_strip(monkeypatch, atlanta, tmp_path):
    folder, mask = atlanta
    monkeypatch.setattr(gt, "STRIP_BYTES", 128 * 900)  # strips of 128 rows = one chunk row
    calls = []

    def chunk(block, block_info=None):
        calls.append(block_info[0]["array-location"][0][0])
        return block

    lazy = da.from_array(mask, chunks=(128, 450)).map_blocks(chunk, dtype=mask.dtype)
    write_geotiff(
        lazy,
        tmp_path / "o.tif",
        like=folder / "sample_geotiff.tif",
        taxonomy=BUILDINGS,
        block_size=64,
    )
    # each chunk computed exactly once, in row order: never the whole array at once
    assert sorted(calls) == sorted(r for r in range(0, 900, 128) for _ in range(2))
    assert calls == sorted(calls)
    with rasterio.open(tmp_path / "o.tif") as got:
        assert np.array_equal(got.read(1), mask)
