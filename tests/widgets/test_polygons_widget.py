import importlib
from pathlib import Path

import numpy as np
import tifffile
from npe2 import PluginManifest

import napari_segflow
from napari_segflow.core.taxonomy import load_preset
from napari_segflow.layers import labels_layer_kwargs
from napari_segflow.widgets.polygons import PolygonCheckWidget


def _run(widget, qtbot):
    widget.run()
    qtbot.waitUntil(lambda: widget._worker is None, timeout=60000)


def test_manifest_registers_the_widget():
    manifest = PluginManifest.from_file(Path(napari_segflow.__file__).parent / "napari.yaml")
    (cmd,) = [c for c in manifest.contributions.commands if c.id.endswith("polygon_check_widget")]
    module, name = cmd.python_name.split(":")
    assert getattr(importlib.import_module(module), name) is PolygonCheckWidget
    assert cmd.id in {w.command for w in manifest.contributions.widgets}


def test_check_real_nuclei_instances(make_napari_viewer, qtbot, shared_data):
    viewer = make_napari_viewer()
    inst = tifffile.imread(shared_data / "nuclei_dsb2018" / "mask2d.tif")[:256, :256]
    layer = viewer.add_labels(inst, name="nuclei", scale=(2, 2))
    widget = PolygonCheckWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget._labels.value is layer
    widget._instances.value = True
    widget._budget.value = 10
    _run(widget, qtbot)
    report = widget.report
    n = len(np.unique(inst)) - 1
    assert report.classes[0].n_objects == n
    assert widget._table.rowCount() == 1
    assert widget._table.item(0, 1).text() == str(n)
    assert (
        widget._table.item(0, widget._table.columnCount() - 1).text() == report.classes[0].verdict
    )
    shapes = widget.shapes_layer
    assert shapes.name == "nuclei polygons k=10"
    assert len(shapes.data) >= n and all(len(v) <= 10 for v in shapes.data)
    np.testing.assert_array_equal(shapes.scale, layer.scale)
    assert set(shapes.features["object"]) == set(range(1, n + 1))


def test_check_3d_layer_with_taxonomy(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    tax = load_preset("nuclei")
    vol = np.zeros((3, 40, 40), np.uint8)
    vol[:, 5:15, 5:30] = 1
    vol[1, 20:36, 20:36] = 2
    vol[1, 25:30, 25:30] = 0  # a hole
    layer = viewer.add_labels(vol, name="vol", **labels_layer_kwargs(tax))
    widget = PolygonCheckWidget(viewer)
    widget.set_labels_layer(layer)
    _run(widget, qtbot)
    names = [c.name for c in widget.report.classes]
    assert names == ["nucleus", "debris"]
    shapes = widget.shapes_layer
    assert len(shapes.data) == 5  # three rectangles, the square and its hole
    assert all(v.shape[1] == 3 for v in shapes.data)
    assert sorted({int(v[0, 0]) for v in shapes.data}) == [0, 1, 2]
    assert list(shapes.features["hole"]).count(True) == 1


def test_user_mistakes_do_not_raise(make_napari_viewer, qtbot, monkeypatch):
    viewer = make_napari_viewer()
    errors = []
    monkeypatch.setattr("napari_segflow.widgets.polygons.show_error", errors.append)
    widget = PolygonCheckWidget(viewer)
    widget.run()
    viewer.add_labels(np.zeros((10, 10), np.uint8), name="empty")
    widget.run()
    assert len(errors) == 2 and "Choose a Labels layer" in errors[0] and "no labelled" in errors[1]
    assert widget.report is None


def test_cancel_stops_a_long_run(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    vol = np.zeros((300, 64, 64), np.uint8)  # about two seconds of work uncancelled
    yy, xx = np.mgrid[:64, :64]
    vol[:] = ((yy - 32) ** 2 + (xx - 32) ** 2 < 400)[None]
    viewer.add_labels(vol)
    widget = PolygonCheckWidget(viewer)
    widget.run()
    widget.cancel()
    qtbot.waitUntil(lambda: widget._worker is None, timeout=60000)
    assert widget.report is None and widget._run.isEnabled()
