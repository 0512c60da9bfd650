"""Make docs/images/polygons_widget.png. Run under a display: ``xvfb-run -a python docs/make_polygons_screenshot.py``.

Needs the real nuclei mask in ``shared/data`` beside the checkout (or SEGFLOW_SHARED_DATA).
"""

import os
from pathlib import Path

import napari
import tifffile
from qtpy.QtWidgets import QApplication

from napari_segflow.widgets.polygons import PolygonCheckWidget

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SEGFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))
OUT = REPO / "docs" / "images" / "polygons_widget.png"

image = tifffile.imread(DATA / "nuclei_dsb2018" / "img2d.tif")
mask = tifffile.imread(DATA / "nuclei_dsb2018" / "mask2d.tif")
viewer = napari.Viewer(title="napari-segflow")
viewer.window._qt_window.resize(1600, 900)
viewer.add_image(image, name="nuclei", contrast_limits=(0, int(image.max())))
labels = viewer.add_labels(mask, name="nuclei instances", opacity=0.35)
widget = PolygonCheckWidget(viewer)
widget.setMinimumWidth(540)  # room for the whole class table
viewer.window.add_dock_widget(widget, name="Polygon check")
widget.set_labels_layer(labels)
widget._instances.value = True
widget._budget.value = 10
widget.run()
while widget._worker is not None:
    QApplication.processEvents()
widget.shapes_layer.edge_width = 1.0
viewer.camera.center = (150, 150)
viewer.camera.zoom = 2.6
for _ in range(10):
    QApplication.processEvents()
viewer.screenshot(str(OUT), canvas_only=False)
viewer.close()
