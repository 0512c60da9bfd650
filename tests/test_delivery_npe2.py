"""Reader and writer contributions for GeoTIFF, COCO and NIfTI."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import tifffile

from napari_segflow._reader import get_coco_reader, get_geotiff_reader
from napari_segflow._writer import write_labels_coco, write_labels_geotiff, write_labels_nifti
from napari_segflow.core.io.coco import read_coco
from napari_segflow.core.io.geotiff import GEO_KEY, geotiff_info
from napari_segflow.core.io.nifti import read_nifti
from napari_segflow.core.taxonomy import load_preset, taxonomy_from_dict
from napari_segflow.layers import TAXONOMY_KEY

BUILDINGS = taxonomy_from_dict(
    {"name": "buildings", "classes": [{"id": 255, "name": "building", "color": "#ff0000"}]}
)


def test_geotiff_reader_only_takes_georeferenced_files(shared_data):
    folder = shared_data / "spacenet_atlanta"
    assert get_geotiff_reader(str(folder / "sample_fp_mask_from_geojson.tif")) is None
    assert get_geotiff_reader(str(folder / "coco_sample_2.json")) is None
    [(data, kwargs, kind)] = get_geotiff_reader(str(folder / "sample_geotiff.tif"))(
        str(folder / "sample_geotiff.tif")
    )
    assert kind == "image" and data.shape == (900, 900) and not kwargs["rgb"]
    lo, hi = kwargs["contrast_limits"]
    assert 54 <= lo < hi <= 6615
    assert kwargs["metadata"][GEO_KEY]["epsg"] == 32616


def test_exported_class_raster_reopens_as_labels(shared_data, tmp_path):
    folder = shared_data / "spacenet_atlanta"
    mask = tifffile.imread(folder / "sample_fp_mask_from_geojson.tif")
    meta = {
        "name": "m",
        "metadata": {
            TAXONOMY_KEY: BUILDINGS.to_dict(),
            GEO_KEY: geotiff_info(folder / "sample_geotiff.tif"),
        },
    }
    [path] = write_labels_geotiff(str(tmp_path / "m.tif"), mask, meta)
    [(data, kwargs, kind)] = get_geotiff_reader(path)(path)
    assert kind == "labels" and np.array_equal(data, mask)
    assert kwargs["metadata"][TAXONOMY_KEY] == BUILDINGS.to_dict()
    assert kwargs["metadata"][GEO_KEY]["transform"] == [0.5, 0.0, 733601.0, 0.0, -0.5, 3725139.0]


def test_geotiff_writer_without_georeference_is_refused(tmp_path):
    meta = {"name": "m", "metadata": {TAXONOMY_KEY: BUILDINGS.to_dict()}}
    with pytest.raises(ValueError, match="no georeference"):
        write_labels_geotiff(str(tmp_path / "m.tif"), np.zeros((4, 4), np.uint8), meta)


def test_coco_writer_and_reader(shared_data, tmp_path):
    lab = np.zeros((8, 9), np.uint8)
    lab[2:5, 1:7] = 4
    meta = {"name": "field", "metadata": {TAXONOMY_KEY: load_preset("land-use").to_dict()}}
    [path] = write_labels_coco(str(tmp_path / "f.json"), lab, meta)
    assert np.array_equal(read_coco(path)["field"], lab)
    [(data, kwargs, kind)] = get_coco_reader(path)(path)
    assert kind == "labels" and np.array_equal(data, lab) and kwargs["name"] == "field"
    assert TAXONOMY_KEY in kwargs["metadata"]
    coco = str(shared_data / "spacenet_atlanta" / "coco_sample_2.json")
    [(data, kwargs, kind)] = get_coco_reader(coco)(coco)
    assert data.shape == (900, 900) and set(np.unique(data)) == {0, 1, 2}


def test_nifti_writer_uses_scale_and_translate(tmp_path):
    vol = np.zeros((3, 4, 5), np.uint8)
    vol[1, 2, 3] = 2
    meta = {
        "name": "v",
        "scale": [2.0, 0.5, 0.5],
        "translate": [10.0, 0, -3],
        "metadata": {TAXONOMY_KEY: load_preset("land-use").to_dict()},
    }
    [path] = write_labels_nifti(str(tmp_path / "v.nii.gz"), vol, meta)
    back = read_nifti(path)
    # layers hold NIfTI arrays with their axes reversed (slice axis first): the file is the
    # layer's array reversed, and its affine the layer's scale/translate reversed
    assert np.array_equal(back.data, vol.transpose(2, 1, 0))
    assert np.allclose(np.diag(back.affine), [0.5, 0.5, 2.0, 1.0])
    assert np.allclose(back.affine[:3, 3], [-3, 0, 10.0])


def test_viewer_opens_geotiff_and_saves_labels_with_its_georeference(
    make_napari_viewer, shared_data, tmp_path
):
    viewer = make_napari_viewer()
    path = shared_data / "landsat_rgb" / "RGB.byte.tif"
    [image] = viewer.open(str(path), plugin="napari-segflow")
    assert image.rgb and image.metadata[GEO_KEY]["epsg"] == 32618
    from napari_segflow.layers import labels_layer_kwargs

    tax = load_preset("land-use")
    labels = viewer.add_labels(np.zeros((718, 791), np.uint8), **labels_layer_kwargs(tax))
    labels.data[100:200, 300:400] = 4
    out = tmp_path / "landsat_labels.tif"
    viewer.layers.selection = {labels}
    # File > Save Selected Layers: the labels layer has no georeference of its own; the writer
    # takes the one georeferenced image of the same size in the viewer
    written = viewer.layers.save(str(out), selected=True, plugin="napari-segflow")
    assert written == [str(out)]
    with rasterio.open(out) as got, rasterio.open(path) as src:
        assert (got.crs, got.transform) == (src.crs, src.transform)
        assert np.array_equal(got.read(1), labels.data)


def test_large_tiles_open_lazily_as_a_pyramid(monkeypatch, shared_data):
    from napari_segflow.core.io import geotiff as gt

    monkeypatch.setattr(gt, "LAZY_PIXELS", 500 * 500)  # treat the 900x900 tile as large
    path = str(shared_data / "spacenet_atlanta" / "sample_geotiff.tif")
    [(data, kwargs, kind)] = get_geotiff_reader(path)(path)
    assert kind == "image" and kwargs["multiscale"]
    assert data[0].shape == (900, 900) and max(data[-1].shape) <= 1024
    assert type(data[0]).__module__.startswith("dask")
    with rasterio.open(path) as src:
        window = src.read(1, window=rasterio.windows.Window(700, 100, 50, 60))
    assert np.array_equal(data[0][100:160, 700:750].compute(), window)
