"""Make docs/images/prompt_widget.png. Run under a display: ``xvfb-run -a python docs/make_prompt_screenshot.py``.

Real nuclei image and the real LiteMedSAM: two earlier pre-labels wait for confirmation (orange
outlines), one was accepted, and a box prompt shows its proposal.
"""

import os
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from napari_segflow.core.provenance import AI_CONFIRMED, AI_PENDING
from napari_segflow.layers import commit_mask
from napari_segflow.widgets.prompt import PromptWidget

OUT = Path(__file__).parent / "images" / "prompt_widget.png"
SHARED = (
    Path(
        os.environ.get(
            "SEGFLOW_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
        )
    )
    / "nuclei_dsb2018"
)


def wait(cond, seconds=120):
    end = time.time() + seconds
    while not cond() and time.time() < end:
        QApplication.processEvents()
        time.sleep(0.05)


viewer = napari.Viewer(title="napari-segflow")
viewer.window._qt_window.resize(1400, 900)
image, labels = viewer.open_sample("napari-segflow", "nuclei")
widget = PromptWidget(viewer)
viewer.window.add_dock_widget(widget, name="Click to segment")
widget.set_layers(image=image, labels=labels)
widget.set_class(1)

import tifffile  # noqa: E402

inst = tifffile.imread(SHARED / "mask2d.tif")
ids = [i for i in np.unique(inst) if i]
centres = {i: np.argwhere(inst == i).mean(axis=0) for i in ids}
target = max(ids, key=lambda i: int((inst == i).sum()))
near = sorted(
    (i for i in ids if i != target), key=lambda i: np.linalg.norm(centres[i] - centres[target])
)
commit_mask(labels, inst == near[0], 1, provenance=AI_CONFIRMED)
for i in near[1:3]:
    commit_mask(labels, inst == i, 1, provenance=AI_PENDING)
big = [None, None, None, target]
widget.refresh_pending()

widget.refresh_embedding()
wait(lambda: widget.ready)
rows, cols = np.nonzero(inst == big[3])
widget.use_box()
widget.box.add_rectangles(
    np.array([[rows.min() - 3, cols.min() - 3], [rows.max() + 3, cols.max() + 3]])
)
wait(lambda: widget.proposal is not None, 30)
r, c = rows.mean(), cols.mean()
viewer.camera.center = (r, c)
viewer.camera.zoom = 3
for _ in range(10):
    QApplication.processEvents()
viewer.screenshot(str(OUT), canvas_only=False)
viewer.close()
