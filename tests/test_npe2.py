"""The npe2 contributions: manifest, PNG reader/writer, sample data, in a real viewer."""

import numpy as np
from npe2 import PluginManifest

from napari_segflow.core.io import read_png
from napari_segflow.core.taxonomy import load_preset
from napari_segflow.layers import get_taxonomy, labels_layer_kwargs


def test_manifest_is_valid():
    manifest = PluginManifest.from_distribution("napari-segflow")
    ids = {c.id for c in manifest.contributions.commands}
    assert "napari-segflow.taxonomy_widget" in ids
    for c in manifest.contributions.commands:
        assert c.python_name.startswith("napari_segflow.")


def test_save_and_reopen_png_through_napari(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    tax = load_preset("cityscapes")
    data = np.full((20, 30), 255, np.uint8)
    data[5:10, 5:25] = 13
    layer = viewer.add_labels(data, name="frame", **labels_layer_kwargs(tax))
    path = tmp_path / "frame_gtFine_labelIds.png"
    viewer.layers.selection = {layer}
    written = viewer.layers.save(str(path), selected=True, plugin="napari-segflow")
    assert written == [str(path)]
    np.testing.assert_array_equal(read_png(path), data)
    (reopened,) = viewer.open(str(path), plugin="napari-segflow")
    np.testing.assert_array_equal(reopened.data, data)
    assert get_taxonomy(reopened) == tax


def test_png_reader_declines_ordinary_png(tmp_path):
    from PIL import Image

    from napari_segflow._reader import get_png_labels_reader

    path = tmp_path / "photo.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    assert get_png_labels_reader(str(path)) is None
    assert get_png_labels_reader(str(tmp_path / "a.tif")) is None


def test_writer_refuses_layer_without_taxonomy(tmp_path):
    import pytest

    from napari_segflow._writer import write_labels_png

    with pytest.raises(ValueError, match="has no taxonomy"):
        write_labels_png(
            str(tmp_path / "x.png"), np.zeros((3, 3), np.uint8), {"name": "x", "metadata": {}}
        )
    assert not (tmp_path / "x.png").exists()


def test_sample_data_opens_with_taxonomy(make_napari_viewer):
    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-segflow", "landsat")
    image, labels = layers
    assert image.rgb and image.data.shape == (718, 791, 3)
    assert labels.data.shape == (718, 791)
    assert get_taxonomy(labels).name == "land-use"
    layers = viewer.open_sample("napari-segflow", "nuclei")
    assert layers[0].data.dtype == np.uint16 and get_taxonomy(layers[1]).name == "nuclei"


def test_png_with_provenance_sidecar_opens_as_ai_pending(make_napari_viewer, tmp_path):
    from napari_segflow.core.io import write_png
    from napari_segflow.core.provenance import AI_PENDING, PROVENANCE_KEY, write_provenance
    from napari_segflow.layers import get_provenance

    tax = load_preset("land-use")
    labels = np.zeros((12, 10), np.uint8)
    labels[2:6, 3:8] = 4
    prov = np.zeros_like(labels)
    prov[2:6, 3:8] = AI_PENDING
    path = tmp_path / "tile.png"
    write_png(labels, path, taxonomy=tax)
    write_provenance(path, prov)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-segflow")
    np.testing.assert_array_equal(layer.metadata[PROVENANCE_KEY], prov)
    np.testing.assert_array_equal(get_provenance(layer), prov)
    assert int((get_provenance(layer) == AI_PENDING).sum()) == 20
