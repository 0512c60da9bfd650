"""Class-index PNGs and TIFFs that segflow did not write open as Labels with segflow's reader
(napari's default shows them as a black image); colour images are left to napari."""

from __future__ import annotations

import numpy as np
import tifffile
from PIL import Image

from napari_segflow._reader import get_labels_tiff_reader, get_png_labels_reader


def test_foreign_class_index_png_opens_as_labels(make_napari_viewer, shared_data):
    path = shared_data / "pets_oxford" / "trimaps" / "Abyssinian_1.png"  # values 1, 2, 3
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-segflow")
    assert layer._type_string == "labels"
    expected = np.array(Image.open(path))
    np.testing.assert_array_equal(layer.data, expected)
    assert set(np.unique(layer.data)) == {1, 2, 3}


def test_foreign_integer_tiff_opens_as_labels(make_napari_viewer, shared_data):
    path = shared_data / "nuclei_dsb2018" / "mask2d.tif"  # uint16 instance ids
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-segflow")
    assert layer._type_string == "labels"
    np.testing.assert_array_equal(layer.data, tifffile.imread(path))


def test_colour_and_float_images_are_left_to_napari(shared_data, tmp_path):
    rgb = tmp_path / "photo.png"
    Image.open(shared_data / "pets_oxford" / "images" / "Abyssinian_1.jpg").save(rgb)
    assert get_png_labels_reader(str(rgb)) is None
    flt = tmp_path / "float.tif"
    tifffile.imwrite(flt, np.zeros((8, 8), np.float32))
    assert get_labels_tiff_reader(str(flt)) is None
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((3, 8, 8), np.uint8))
    assert get_labels_tiff_reader(str(stack)) is None
