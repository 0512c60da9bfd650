import numpy as np
import pytest

from napari_segflow.core.taxonomy import load_preset
from napari_segflow.layers import TAXONOMY_KEY, get_taxonomy
from napari_segflow.widgets.taxonomy import TaxonomyWidget


@pytest.fixture
def viewer_and_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = TaxonomyWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return viewer, widget


def test_create_labels_layer_for_rgb_image(viewer_and_widget):
    viewer, widget = viewer_and_widget
    image = viewer.add_image(np.zeros((30, 40, 3), np.uint8), rgb=True, name="photo")
    widget.reset_choices()
    widget.load("cityscapes")
    layer = widget.create_labels_layer(image)
    assert layer.data.shape == (30, 40)
    assert layer.data.dtype == np.uint8
    assert np.all(layer.data == 255)  # unlabelled = ignore id
    assert get_taxonomy(layer) == load_preset("cityscapes")
    # colours are the taxonomy's, unlabelled is transparent
    np.testing.assert_allclose(layer.colormap.map(13)[:3], np.array([0, 0, 142]) / 255, atol=1e-6)
    assert layer.colormap.map(255)[3] == 0
    assert layer.colormap.background_value == 255


def test_apply_to_existing_3d_layer_names_in_status(viewer_and_widget):
    viewer, widget = viewer_and_widget
    data = np.zeros((4, 20, 20), np.uint8)
    data[2, 5:10, 5:10] = 3
    layer = viewer.add_labels(data, name="organs")
    widget.reset_choices()
    widget.load("pelvis-oar")
    widget.apply_to(layer)
    assert layer.metadata[TAXONOMY_KEY]["name"] == "pelvis-oar"
    np.testing.assert_allclose(
        layer.colormap.map(1)[:3],
        np.array(load_preset("pelvis-oar").by_id(1).color) / 255,
        atol=1e-6,
    )
    # the status bar shows the class name under the cursor
    viewer.dims.set_point(0, 2)
    props = layer._get_properties((2, 7, 7))
    assert props == ["class: femoral head L"]
    assert widget.counts[3] == 25 and widget.counts[1] == 0


def test_clicking_class_selects_paint_label_and_counts_follow_paint(viewer_and_widget, qtbot):
    viewer, widget = viewer_and_widget
    viewer.add_image(np.zeros((32, 32), np.float32), name="img")
    widget.reset_choices()
    widget.load("land-use")
    layer = widget.create_labels_layer(viewer.layers["img"])
    widget._classes.setCurrentRow(3)  # the list row of "water"
    assert layer.selected_label == 4
    assert "water" in widget._details.text()
    # painting updates the live pixel count (after the throttle timer)
    layer.paint((10, 10), 4, refresh=True)
    painted = int(np.count_nonzero(layer.data == 4))
    assert painted > 0
    qtbot.waitUntil(lambda: widget.counts.get(4) == painted, timeout=3000)
    assert f"({painted:,} px)" in widget._classes.item(3).text()
    # selecting a label on the layer moves the list selection
    layer.selected_label = 2
    assert widget._classes.currentRow() == 1


def test_bad_taxonomy_file_is_reported_not_raised(viewer_and_widget, tmp_path, monkeypatch):
    _, widget = viewer_and_widget
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nclasses: [{id: 1, name: a, color: nope}]\n")
    errors = []
    monkeypatch.setattr("napari_segflow.widgets.taxonomy.show_error", errors.append)
    widget._source.value = "from file..."
    widget._file.value = bad
    widget._on_load()
    assert len(errors) == 1 and "bad colour 'nope'" in errors[0] and "bad.yaml" in errors[0]
    assert widget.taxonomy is None


def test_widget_picks_up_taxonomy_of_selected_layer(make_napari_viewer):
    from napari_segflow.layers import labels_layer_kwargs

    viewer = make_napari_viewer()
    viewer.add_labels(np.zeros((8, 8), np.uint8), **labels_layer_kwargs(load_preset("crop-weed")))
    widget = TaxonomyWidget(viewer)
    assert widget.taxonomy == load_preset("crop-weed")
    assert widget._classes.count() == 4


def test_new_labels_layer_inherits_source_geometry(viewer_and_widget, shared_data):
    from napari_segflow._reader import get_geotiff_reader

    viewer, widget = viewer_and_widget
    path = str(shared_data / "spacenet_atlanta" / "sample_geotiff.tif")
    reader = get_geotiff_reader(path)
    (image,) = [viewer.add_layer(napari_layer(d)) for d in reader(path)]
    widget.reset_choices()
    widget.load("land-use")
    labels = widget.create_labels_layer(image)
    assert labels.metadata["geotiff"] == image.metadata["geotiff"]
    assert get_taxonomy(labels).name == "land-use"


def napari_layer(layer_data):
    from napari.layers import Layer

    return Layer.create(*layer_data)
