"""Closing the viewer while a worker runs waits for it (no abort); the Polygon check dock keeps
its fields readable in a short window."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np

from napari_segflow.widgets.polygons import PolygonCheckWidget

_CLOSE_DURING_EMBEDDING = textwrap.dedent(
    """
    import time
    import numpy as np, napari
    from qtpy.QtWidgets import QApplication
    from napari_segflow.widgets._torch import prepare_torch
    prepare_torch()
    import torch
    torch.set_num_threads(1)
    from napari_segflow.core.segment import load_model
    from napari_segflow.widgets.prompt import PromptWidget
    model = load_model("medsam-lite", device="cpu")
    viewer = napari.Viewer(show=False)
    image = viewer.add_image(np.random.default_rng(0).integers(0, 255, (512, 512), np.uint8))
    labels = viewer.add_labels(np.zeros((512, 512), np.uint8))
    widget = PromptWidget(viewer, models={model.name: model})
    viewer.window.add_dock_widget(widget)
    widget.set_layers(image=image, labels=labels)
    widget.refresh_embedding()
    assert widget._worker is not None
    viewer.close()  # while the embedding runs
    for _ in range(40):
        QApplication.processEvents()
        time.sleep(0.05)
    print("closed cleanly")
    """
)


def test_viewer_close_during_embedding_does_not_abort(tmp_path):
    # in a child process: an abort (SIGABRT) must not take the test session with it
    script = tmp_path / "close.py"
    script.write_text(_CLOSE_DURING_EMBEDDING)
    run = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "closed cleanly" in run.stdout


def test_polygon_dock_fields_keep_their_height_in_a_short_window(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.add_labels(np.zeros((64, 64), np.uint8))
    viewer.window._qt_window.resize(1400, 1000)
    for name in ("Taxonomy", "Rules"):
        viewer.window.add_plugin_dock_widget("napari-segflow", name)
    widget = PolygonCheckWidget(viewer)
    viewer.window.add_dock_widget(widget, area="right")
    qtbot.wait(300)
    fields = [
        widget._labels.native,
        widget._instances.native,
        widget._iou.native,
        widget._fraction.native,
        widget._budget.native,
        widget._run,
    ]
    for field in fields:
        assert field.height() >= field.minimumSizeHint().height(), field
