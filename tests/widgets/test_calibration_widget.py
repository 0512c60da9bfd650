from __future__ import annotations

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from napari_segflow.core.taxonomy import load_preset
from napari_segflow.layers import labels_layer_kwargs
from napari_segflow.widgets.calibration import DISAGREEMENT_LAYER, CalibrationWidget


@pytest.fixture
def setup(make_napari_viewer, shared_data):
    viewer = make_napari_viewer()
    mask = (tifffile.imread(shared_data / "nuclei_dsb2018" / "mask2d.tif") > 0).astype(np.uint8)
    mask = mask[:256, :256]
    tax = load_preset("nuclei")
    gold = viewer.add_labels(mask, name="gold", **labels_layer_kwargs(tax))
    eroded = viewer.add_labels(ndimage.binary_erosion(mask).astype(np.uint8), name="eroded")
    shifted = viewer.add_labels(np.roll(mask, 4, axis=1), name="shifted")
    widget = CalibrationWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return viewer, widget, mask, gold, eroded, shifted


def _iou(a, b):
    return np.sum(a & b) / np.sum(a | b)


def test_calibration_widget_table_flags_and_layer(setup, qtbot):
    viewer, widget, mask, gold, eroded, shifted = setup
    widget.set_layers(gold, [eroded, shifted])
    widget._on_run()
    qtbot.waitUntil(lambda: widget.report is not None and widget._worker is None, timeout=20000)
    rep = widget.report
    assert rep.annotators == ["eroded", "shifted"]
    assert rep.classes == ["nucleus", "debris"]  # taxonomy read from the gold layer
    exp_shift = _iou(mask == 1, np.roll(mask, 4, axis=1) == 1)
    assert rep.iou[1, 0] == pytest.approx(exp_shift)
    assert rep.flagged == [("shifted", "nucleus")]
    # table: flagged cell red, healthy cell green, absent class grey "n/a"
    assert widget._table.item(1, 0).text() == f"{exp_shift:.3f}"
    assert widget.cell_color(1, 0).red() > widget.cell_color(1, 0).green()
    assert widget.cell_color(0, 0).green() > widget.cell_color(0, 0).red()
    assert widget._table.item(0, 1).text() == "n/a"
    assert widget._tabs.count() == 3
    dis = viewer.layers[DISAGREEMENT_LAYER].data
    er = ndimage.binary_erosion(mask).astype(np.uint8)
    np.testing.assert_array_equal(dis > 0, er != np.roll(mask, 4, axis=1))
    # the disagreement layer is not offered as an annotator
    assert DISAGREEMENT_LAYER not in [c for c in widget._annotators.choices if isinstance(c, str)]
    assert all(getattr(c, "name", None) != DISAGREEMENT_LAYER for c in widget._annotators.choices)


def test_user_mistakes_become_messages(setup, tmp_path):
    viewer, widget, mask, gold, eroded, shifted = setup
    small = viewer.add_labels(np.zeros((10, 10), dtype=np.uint8), name="small")
    widget.set_layers(gold, [small])
    assert widget.compute() is None  # shape mismatch: an error notification, no exception
    widget.set_layers(gold, [eroded])
    rep = widget.compute()
    assert rep.flagged == []
    widget._folder.value = tmp_path
    widget._on_save()
    assert (tmp_path / "report.json").is_file() and (tmp_path / "report.html").is_file()


def test_folders_mode_with_image_choice(setup, tmp_path):
    viewer, widget, mask, *_ = setup
    gold_dir, root = tmp_path / "gold", tmp_path / "annotators"
    tiles = {"left": mask[:, :128], "right": mask[:, 128:]}
    for d in (gold_dir, root / "ana", root / "ben"):
        d.mkdir(parents=True)
    for k, m in tiles.items():
        tifffile.imwrite(gold_dir / f"{k}.tif", m)
        tifffile.imwrite(root / "ana" / f"{k}.tif", np.roll(m, 5, axis=0))
    tifffile.imwrite(root / "ben" / "left.tif", tiles["left"])  # ben lacks "right"
    widget._taxonomy.value = "nuclei"
    widget.set_folders(gold_dir, root)
    assert widget._gold.native.isHidden() and not widget._gold_dir.native.isHidden()
    rep = widget.compute()
    assert rep.annotators == ["ana", "ben"]
    assert "ben: right: missing (no file named right.*)" in rep.problems
    inter = sum(np.sum((m == 1) & (np.roll(m, 5, axis=0) == 1)) for m in tiles.values())
    union = sum(np.sum((m == 1) | (np.roll(m, 5, axis=0) == 1)) for m in tiles.values())
    assert rep.iou[0, 0] == pytest.approx(inter / union)
    assert rep.images["ben"] == ["left"]
    assert list(widget._image.choices) == ["left", "right"]
    layer = viewer.layers[DISAGREEMENT_LAYER]
    assert layer.metadata["segflow_image"] == "left"
    np.testing.assert_array_equal(
        layer.data > 0, np.roll(tiles["left"], 5, axis=0) != tiles["left"]
    )
    widget._image.value = "right"
    # only ana labelled "right": nobody to disagree with
    assert layer.metadata["segflow_image"] == "right"
    assert not layer.data.any()
