"""The Landsat sample is the real GeoTIFF: its labels save as a GeoTIFF on the map, and a
Labels layer without georeference gets a message a GUI user can act on."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from napari_segflow.core.io.geotiff import GEO_KEY


def _writer(ext: str):
    from npe2 import PluginManager

    manifest = PluginManager.instance().get_manifest("napari-segflow")
    return next(w for w in manifest.contributions.writers if ext in w.filename_extensions)


def test_landsat_sample_is_the_georeferenced_scene(shared_data):
    from napari_segflow._sample_data import landsat_land_use

    (image, image_kw, _), (labels, labels_kw, kind) = landsat_land_use()
    with rasterio.open(shared_data / "landsat_rgb" / "RGB.byte.tif") as src:
        np.testing.assert_array_equal(image, np.moveaxis(src.read(), 0, -1))
        crs, transform = src.crs, src.transform
    assert kind == "labels" and labels.shape == image.shape[:2]
    for meta in (image_kw["metadata"], labels_kw["metadata"]):
        assert meta[GEO_KEY]["epsg"] == crs.to_epsg() == 32618
        assert meta[GEO_KEY]["transform"] == list(transform)[:6]


def test_sample_labels_save_as_geotiff_from_the_viewer(make_napari_viewer, tmp_path, shared_data):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-segflow", "landsat")
    labels = viewer.layers["Landsat RGB labels"]
    labels.data_setitem((np.array([10, 11]), np.array([20, 20])), 3)
    viewer.layers.selection.active = labels
    out = tmp_path / "landuse.tif"
    # File > Save Selected Layers with segflow's GeoTIFF writer chosen
    viewer.layers.save(str(out), selected=True, _writer=_writer(".tif"))
    with (
        rasterio.open(out) as dst,
        rasterio.open(shared_data / "landsat_rgb" / "RGB.byte.tif") as src,
    ):
        assert dst.crs == src.crs and dst.transform == src.transform
        band = dst.read(1)
    assert band[10, 20] == band[11, 20] == 3 and int((band == 3).sum()) == 2


def test_geotiff_save_without_georeference_says_what_to_do(make_napari_viewer, tmp_path):
    from napari_segflow.core.taxonomy import load_preset
    from napari_segflow.layers import labels_layer_kwargs

    viewer = make_napari_viewer()
    viewer.add_labels(np.zeros((30, 40), np.uint8), **labels_layer_kwargs(load_preset("land-use")))
    with pytest.raises(ValueError) as err:
        viewer.layers.save(str(tmp_path / "x.tif"), selected=False, _writer=_writer(".tif"))
    msg = str(err.value)
    assert "no georeference" in msg and "Taxonomy dock" in msg
    assert "like=" not in msg and "crs=" not in msg
    assert list(tmp_path.iterdir()) == []
