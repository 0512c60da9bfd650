"""Layer combo-box helpers shared by the dock widgets (layers are chosen as objects, never by name)."""

from __future__ import annotations

from collections.abc import Callable


def layer_choices(viewer, kind: type, keep: Callable | None = None) -> list[tuple[str, object]]:
    """``(name, layer)`` pairs of the viewer's layers of type ``kind`` for a magicgui ComboBox.

    ``keep`` filters further (e.g. only 3D layers, or not the widget's own preview layer).
    """
    return [
        (lay.name, lay)
        for lay in viewer.layers
        if isinstance(lay, kind) and (keep is None or keep(lay))
    ]


def follow_layer_list(viewer, reset_choices: Callable) -> None:
    """Refresh a widget's layer choices whenever layers are added or removed."""
    viewer.layers.events.inserted.connect(reset_choices)
    viewer.layers.events.removed.connect(reset_choices)
