"""The Rules dock: checklist of the selected class, reminders after paint, go to a site."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segflow.core.taxonomy import taxonomy_from_dict
from napari_segflow.layers import labels_layer_kwargs
from napari_segflow.widgets.rules import RulesWidget, edited_region

TAX = taxonomy_from_dict(
    {
        "name": "abc",
        "classes": [
            {"id": 1, "name": "a", "color": "#ff0000"},
            {"id": 2, "name": "b", "color": "#00ff00"},
            {"id": 3, "name": "c", "color": "#0000ff"},
        ],
        "rules": [{"classes": ["a", "b"], "text": "the a/b edge is b", "resolve_to": "b"}],
    }
)


@pytest.fixture
def notes():
    """Messages of the napari notifications shown during the test."""
    from napari.utils.notifications import notification_manager

    got: list[str] = []

    def collect(notification):
        got.append(notification.message)

    notification_manager.notification_ready.connect(collect)
    yield got
    notification_manager.notification_ready.disconnect(collect)


@pytest.fixture
def scene(make_napari_viewer):
    viewer = make_napari_viewer()
    data = np.zeros((40, 40), dtype=np.uint8)
    data[5:15, 5:15] = 2  # a block of b
    data[25:35, 5:15] = 3  # a block of c
    layer = viewer.add_labels(data, name="labels", **labels_layer_kwargs(TAX))
    widget = RulesWidget(viewer, throttle_s=0)
    viewer.window.add_dock_widget(widget, name="Rules")
    return viewer, layer, widget


def wait_checked(qtbot, widget, n):
    """Wait until the widget has checked ``n`` edited regions."""
    qtbot.waitUntil(lambda: widget.checks == n, timeout=2000)


def test_paint_creating_new_contact_shows_rule(scene, qtbot, notes):
    viewer, layer, widget = scene
    assert widget.layer is layer
    layer.brush_size = 3
    # a stroke of 'a' in empty space touches nothing: no reminder, nothing listed
    layer.paint((10, 25), 1)
    wait_checked(qtbot, widget, 1)
    assert layer.data[10, 25] == 1
    assert widget.reminders == [] and widget.sites == []
    assert not any("Rule" in n for n in notes)
    # 'a' painted right next to the b block creates an a/b contact: the rule pops up
    layer.paint((10, 16), 1)
    qtbot.waitUntil(lambda: bool(widget.reminders), timeout=2000)
    assert widget.reminders == ["Rule a / b -> b: the a/b edge is b"]
    assert widget.reminders[0] in notes
    (site,) = widget.sites
    assert site.classes == ("a", "b") and site.contact_length == 3
    assert widget.site_rows() == ["a / b, 3 px: the a/b edge is b"]


def test_edit_touching_nothing_new_stays_quiet(scene, qtbot, notes):
    _, layer, widget = scene
    data = layer.data
    data[5:15, 15:20] = 1  # an 'a' strip already beside b, written outside the editor
    layer.refresh()
    # extending the strip away from b touches only 'a' and unlabelled pixels
    layer.data_setitem((np.array([8, 9, 10]), np.array([20, 20, 20])), 1)
    wait_checked(qtbot, widget, 1)
    assert np.all(layer.data[8:11, 20] == 1)
    assert widget.reminders == [] and widget.sites == []
    assert not any("Rule" in n for n in notes)


def test_pair_without_rule_listed_not_notified(scene, qtbot, notes):
    _, layer, widget = scene
    # 'a' pixels right of the c block: a/c has no rule
    layer.data_setitem((np.array([28, 29]), np.array([15, 15])), 1)
    qtbot.waitUntil(lambda: bool(widget.sites), timeout=2000)
    assert [s.classes for s in widget.sites] == [("a", "c")]
    assert widget.site_rows() == ["a / c, 2 px: no rule written"]
    assert widget.reminders == []
    assert not any("Rule" in n for n in notes)


def test_reminders_are_throttled(scene, qtbot):
    _, layer, widget = scene
    widget.throttle_s = 600
    layer.data_setitem((np.array([6]), np.array([15])), 1)
    qtbot.waitUntil(lambda: bool(widget.reminders), timeout=2000)
    layer.data_setitem((np.array([12]), np.array([15])), 1)
    qtbot.waitUntil(lambda: widget.sites[0].anchor[0] == 12, timeout=2000)
    assert len(widget.reminders) == 1  # the same pair again within the throttle time
    widget.throttle_s = 0
    layer.data_setitem((np.array([13]), np.array([15])), 1)
    qtbot.waitUntil(lambda: len(widget.reminders) == 2, timeout=2000)


def test_stroke_of_several_dabs_is_one_region(scene, qtbot):
    _, layer, widget = scene
    layer.brush_size = 1
    seen = []
    layer.events.paint.connect(lambda e: seen.append(edited_region(e.value, layer.data.shape)))
    with layer.block_history():
        layer.paint((20, 20), 1)
        layer.paint((20, 22), 1)
    assert len(seen) == 1
    box, mask = seen[0]
    assert box == (slice(20, 21), slice(20, 23))
    assert mask.tolist() == [[True, False, True]]
    wait_checked(qtbot, widget, 1)
    assert widget.sites == []


def test_checklist_of_selected_class(scene):
    _, layer, widget = scene
    layer.selected_label = 2
    assert widget.checklist() == [("vs a (-> b): the a/b edge is b", False)]
    widget._checklist.item(0).setCheckState(widget._checklist.item(0).checkState().Checked)
    layer.selected_label = 3
    assert widget.checklist() == []
    assert "No rules written for class 3 'c'" in widget._class_title.text()
    layer.selected_label = 1  # the a/b rule shows as read from the 'a' side too
    assert widget.checklist() == [("vs b (-> b): the a/b edge is b", True)]


def test_check_region_after_writing_a_mask_and_go_to_in_3d(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    vol = np.zeros((12, 30, 30), dtype=np.uint8)
    vol[:, 2:10, 2:10] = 2
    layer = viewer.add_labels(vol, **labels_layer_kwargs(TAX))
    widget = RulesWidget(viewer, throttle_s=0)
    # another widget accepts a proposal of class 'a' on plane 7, beside the b block
    proposal = np.zeros(vol.shape, dtype=bool)
    proposal[7, 20:24, 10:14] = True
    layer.data_setitem(np.nonzero(proposal), 1)
    assert widget.check_region(layer, proposal) == []  # away from the b block
    proposal2 = np.zeros(vol.shape, dtype=bool)
    proposal2[7, 4:8, 10:14] = True
    layer.data_setitem(np.nonzero(proposal2), 1)
    sites = widget.check_region(layer, proposal2)
    assert [(s.classes, s.contact_length) for s in sites] == [(("a", "b"), 4)]
    site = sites[0]
    assert site.bbox == ((7, 8), (4, 8), (9, 11))
    assert viewer.dims.point[0] != 7
    widget.go_to(site, layer)
    assert viewer.dims.point[0] == pytest.approx(7)
    assert tuple(viewer.camera.center[-2:]) == pytest.approx(site.anchor[1:])


def test_layer_without_taxonomy(make_napari_viewer):
    viewer = make_napari_viewer()
    layer = viewer.add_labels(np.zeros((5, 5), dtype=np.uint8))
    widget = RulesWidget(viewer)
    assert widget.layer is layer
    assert "no taxonomy" in widget._class_title.text()
    assert widget.check_region(layer, (slice(0, 2), slice(0, 2))) == []


def test_mouse_stroke_is_checked_once_after_release(scene, qtbot, MouseEvent):
    from napari.utils._proxies import ReadOnlyWrapper
    from napari.utils.interactions import (
        mouse_move_callbacks,
        mouse_press_callbacks,
        mouse_release_callbacks,
    )

    _, layer, widget = scene
    layer.mode = "paint"
    layer.selected_label = 1
    layer.brush_size = 2

    def send(callbacks, kind, position, dragging):
        event = MouseEvent(type=kind, is_dragging=dragging, position=position, dims_point=(0, 0))
        callbacks(layer, ReadOnlyWrapper(event))

    # a drag from empty space up to the b block (rows 5..14, cols 5..14)
    send(mouse_press_callbacks, "mouse_press", (20, 25), False)
    send(mouse_move_callbacks, "mouse_move", (20, 20), True)
    send(mouse_move_callbacks, "mouse_move", (12, 15), True)
    assert widget.checks == 0 and not widget._pending  # nothing checked mid-stroke
    send(mouse_release_callbacks, "mouse_release", (12, 15), False)
    wait_checked(qtbot, widget, 1)
    assert layer.data[12, 15] == 1 and layer.data[20, 25] == 1
    assert [s.classes for s in widget.sites] == [("a", "b")]
    assert widget.reminders == ["Rule a / b -> b: the a/b edge is b"]
