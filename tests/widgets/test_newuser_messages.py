"""Messages a new user meets: a missing SAM 2 checkpoint offline, the Rules dock header, the
Taxonomy dock's file and absent-id messages."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segflow.core.taxonomy import load_preset
from napari_segflow.layers import labels_layer_kwargs
from napari_segflow.widgets.prompt import PromptWidget
from napari_segflow.widgets.rules import RulesWidget
from napari_segflow.widgets.taxonomy import TaxonomyWidget


@pytest.fixture
def notes():
    """(severity, message) of the napari notifications shown during the test."""
    from napari.utils.notifications import notification_manager

    got: list[tuple[str, str]] = []

    def collect(notification):
        got.append((str(notification.severity), notification.message))

    notification_manager.notification_ready.connect(collect)
    yield got
    notification_manager.notification_ready.disconnect(collect)


def test_sam2_offline_is_one_clear_warning_without_traceback(
    make_napari_viewer, qtbot, notes, tmp_path, monkeypatch
):
    import napari_segflow.core.segment.sam2 as sam2

    monkeypatch.setenv("SEGFLOW_CACHE_DIR", str(tmp_path))  # no checkpoint cached
    monkeypatch.setattr(sam2, "_BASE_URL", "http://127.0.0.1:9/")  # and no way to fetch one
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((32, 32), np.uint8))
    labels = viewer.add_labels(np.zeros((32, 32), np.uint8))
    widget = PromptWidget(viewer, models={})
    qtbot.addWidget(widget)
    widget.set_layers(image=image, labels=labels)
    widget.set_model("sam2.1-tiny")
    widget.refresh_embedding()
    qtbot.waitUntil(lambda: widget._worker is None, timeout=60_000)
    qtbot.wait(100)
    assert len(notes) == 1, notes  # pytest-qt also fails on a re-raised worker exception
    severity, message = notes[0]
    assert severity == "warning"
    assert "sam2.1-tiny is not available" in message and "medsam-lite" in message
    assert "checkpoint=" not in message and "Traceback" not in message


def test_rules_header_names_the_class_id_and_counts_rules(make_napari_viewer):
    viewer = make_napari_viewer()
    tax = load_preset("land-use")
    layer = viewer.add_labels(np.zeros((8, 8), np.uint8), **labels_layer_kwargs(tax))
    widget = RulesWidget(viewer)
    layer.selected_label = tax.by_name("bare soil").id
    title = widget._class_title.text()
    n = len(tax.rules_for("bare soil"))
    assert title.startswith(f"Rules for class 5 'bare soil', {n} rule")
    assert "(1)" not in title


def test_taxonomy_file_messages(make_napari_viewer, notes, tmp_path):
    viewer = make_napari_viewer()
    widget = TaxonomyWidget(viewer)
    widget._source.value = "from file..."
    missing = tmp_path / "nowhere" / "classes.yaml"
    widget._file.value = missing
    widget._on_load()
    assert notes[-1] == ("error", f"Taxonomy file not found: {missing}")


def test_apply_taxonomy_warns_about_absent_ids(make_napari_viewer, notes, shared_data):
    import nibabel as nib

    seg = np.asarray(
        nib.load(shared_data / "abdomen_mr" / "example_seg_mr.nii.gz").dataobj, dtype=np.uint8
    )
    viewer = make_napari_viewer()
    layer = viewer.add_labels(seg, name="organs")
    widget = TaxonomyWidget(viewer)
    widget.load("land-use")  # ids 1-5: the sample's other organ ids are absent from it
    widget.apply_to(layer)
    absent = sorted({int(v) for v in np.unique(seg)} - {0, 1, 2, 3, 4, 5})
    severity, message = notes[-1]
    assert severity == "warning"
    assert f"holds {len(absent)} id(s) absent from taxonomy 'land-use'" in message
    assert message.split(": ", 1)[1].startswith(", ".join(map(str, absent[:10])))
    notes.clear()
    widget.load("abdomen-mr")  # the matching preset: nothing to say
    widget.apply_to(layer)
    assert not [n for n in notes if n[0] == "warning"]


def test_require_confirmed_box_makes_saving_refuse_pending_pixels(make_napari_viewer, tmp_path):
    from napari_segflow._writer import REQUIRE_CONFIRMED_KEY
    from napari_segflow.core.provenance import AI_PENDING
    from napari_segflow.layers import commit_mask

    viewer = make_napari_viewer()
    tax = load_preset("land-use")
    layer = viewer.add_labels(np.zeros((20, 20), np.uint8), **labels_layer_kwargs(tax))
    widget = TaxonomyWidget(viewer)
    widget._labels.value = layer
    mask = np.zeros((20, 20), bool)
    mask[2:8, 2:8] = True
    commit_mask(layer, mask, 1, provenance=AI_PENDING)
    widget._require.setChecked(True)
    assert layer.metadata[REQUIRE_CONFIRMED_KEY] is True
    # File > Save Selected Layers with segflow's PNG writer chosen in the dialog
    writer = _segflow_writer(".png")
    with pytest.raises(ValueError, match="36 AI-labelled pixels are not confirmed"):
        viewer.layers.save(str(tmp_path / "x.png"), selected=False, _writer=writer)
    assert not (tmp_path / "x.png").exists()


def _segflow_writer(ext: str):
    from npe2 import PluginManager

    manifest = PluginManager.instance().get_manifest("napari-segflow")
    return next(w for w in manifest.contributions.writers if ext in w.filename_extensions)


def test_taxonomy_dock_saves_with_segflow_writers(make_napari_viewer, notes, tmp_path):
    import rasterio

    viewer = make_napari_viewer()
    viewer.open_sample("napari-segflow", "landsat")
    labels = viewer.layers["Landsat RGB labels"]
    labels.data_setitem((np.array([5, 6]), np.array([7, 7])), 4)
    widget = TaxonomyWidget(viewer)
    widget._labels.value = labels
    written = widget.save_labels(tmp_path / "landuse.tif")
    assert written == [str(tmp_path / "landuse.tif")]
    with rasterio.open(written[0]) as dst:
        assert dst.crs.to_epsg() == 32618 and int((dst.read(1) == 4).sum()) == 2
    assert widget.save_labels(tmp_path / "landuse.bmp") == []
    assert notes[-1][0] == "error" and ".png, .json (COCO)" in notes[-1][1]
    assert not (tmp_path / "landuse.bmp").exists()
