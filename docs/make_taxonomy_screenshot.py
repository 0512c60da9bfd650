"""Make docs/images/taxonomy_widget.png. Run under a display: ``xvfb-run -a python docs/make_taxonomy_screenshot.py``."""

from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from napari_segflow.widgets.taxonomy import TaxonomyWidget

OUT = Path(__file__).parent / "images" / "taxonomy_widget.png"

viewer = napari.Viewer(title="napari-segflow")
viewer.window._qt_window.resize(1400, 860)
image, labels = viewer.open_sample("napari-segflow", "landsat")
widget = TaxonomyWidget(viewer)
viewer.window.add_dock_widget(widget, name="Taxonomy")
# a few strokes of annotation so the class colours and live counts show
rgb = image.data.astype(int)
water = (rgb[..., 2] > rgb[..., 0] + 25) & (rgb[..., 2] > 60)
forest = (rgb[..., 1] > rgb[..., 0] + 8) & (rgb[..., 1] > 50) & ~water
region = np.zeros(water.shape, bool)
region[200:520, 250:620] = True
labels.data_setitem(np.nonzero(water & region), 4)
labels.data_setitem(np.nonzero(forest & region), 1)
widget.select_class(4)
widget.refresh_counts()
for _ in range(5):
    QApplication.processEvents()
viewer.screenshot(str(OUT), canvas_only=False)
viewer.close()
