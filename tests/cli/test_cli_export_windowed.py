"""``segflow export`` from a georeferenced ``.tif``: read in windows, memory bounded, exact."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import rasterio
import yaml

from napari_segflow.cli import main
from napari_segflow.core.io import geotiff as gt
from napari_segflow.core.io.png import read_png


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
def big_georef(shared_data, tmp_path):
    """The SpaceNet Atlanta footprint mask (900²) tiled 5 x 5 into a 4500² georeferenced raster."""
    ref = shared_data / "spacenet_atlanta" / "DERIVED_sample_fp_mask_from_geojson_georef.tif"
    with rasterio.open(ref) as src:
        mask = src.read(1)
        crs, transform = src.crs, src.transform
    big = np.tile(mask, (5, 5))
    big[:5, :7] = 255  # a mark, so that a transposed or shifted read would show
    path = tmp_path / "labels_georef.tif"
    profile = dict(
        driver="GTiff",
        width=big.shape[1],
        height=big.shape[0],
        count=1,
        dtype="uint8",
        crs=crs,
        transform=transform,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(big, 1)
    return path, big, crs, transform, ref


def test_geotiff_source_exports_in_windows_with_bounded_memory(
    big_georef, buildings, tmp_path, monkeypatch, capsys
):
    src, big, crs, transform, ref = big_georef
    monkeypatch.setattr(gt, "STRIP_BYTES", 1 << 20)  # 1 MiB strips of a 19.3 MiB raster
    # a first small export imports what the command needs, so the peak below is the data's
    warm = ["export", "--format", "geotiff", "--taxonomy", buildings, "--out"]
    assert main([*warm, str(tmp_path / "warm.tif"), str(ref)]) == 0
    out = tmp_path / "out.tif"
    tracemalloc.start()
    try:
        rc = main(
            ["export", "--format", "geotiff", "--taxonomy", buildings, "--out", str(out), str(src)]
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rc == 0, capsys.readouterr()
    # reading the source whole would hold all of it (plus the strip being written)
    assert peak < big.nbytes / 3, (
        f"peak {peak / 2**20:.1f} MiB for a {big.nbytes / 2**20:.1f} MiB raster"
    )
    with rasterio.open(out) as got:
        assert np.array_equal(got.read(1), big)
        assert (got.crs, got.transform) == (crs, transform)


def test_georeferenced_tif_still_exports_to_png_whole(big_georef, buildings, tmp_path):
    src, big, *_ = big_georef
    out = tmp_path / "png"
    assert (
        main(["export", "--format", "png", "--taxonomy", buildings, "--out", str(out), str(src)])
        == 0
    )
    (png,) = sorted(out.glob("*.png"))
    assert np.array_equal(read_png(png), big)
