"""Make docs/images/new_user.png: the Landsat sample (a GeoTIFF) with the Taxonomy dock (Save
labels..., require confirmed AI pixels) and the Polygon check dock in a 1000-px-high window.

Run under a display: ``xvfb-run -a python docs/make_new_user_screenshot.py``.
"""

from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from napari_segflow.widgets.polygons import PolygonCheckWidget

OUT = Path(__file__).parent / "images" / "new_user.png"

viewer = napari.Viewer(title="napari-segflow")
viewer.open_sample("napari-segflow", "landsat")
labels = viewer.layers["Landsat RGB labels"]
rows, cols = np.mgrid[300:360, 420:520]
labels.data_setitem((rows.ravel(), cols.ravel()), 2)  # a field of the land-use class 2
_, taxonomy = viewer.window.add_plugin_dock_widget("napari-segflow", "Taxonomy")
taxonomy._require.setChecked(True)
polygons = PolygonCheckWidget(viewer)
viewer.window.add_dock_widget(polygons, name="Polygon check", area="right")
polygons.set_labels_layer(labels)
viewer.window._qt_window.resize(1400, 1000)
for _ in range(10):
    QApplication.processEvents()
OUT.parent.mkdir(exist_ok=True)
viewer.screenshot(str(OUT), canvas_only=False)
print(f"wrote {OUT}")
viewer.close()
