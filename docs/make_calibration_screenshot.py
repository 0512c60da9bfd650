"""Make docs/images/calibration_widget.png from the real nuclei mask and three perturbed copies.

Run under a display: ``xvfb-run -a python docs/make_calibration_screenshot.py [DATA_DIR]``
(DATA_DIR defaults to ``../shared/data`` beside the checkout, or $SEGFLOW_SHARED_DATA).
"""

import os
import sys
from pathlib import Path

import napari
import numpy as np
import tifffile
from qtpy.QtWidgets import QApplication
from scipy import ndimage

from napari_segflow.core.taxonomy import load_preset
from napari_segflow.layers import labels_layer_kwargs
from napari_segflow.widgets.calibration import CalibrationWidget

REPO = Path(__file__).resolve().parents[1]
DATA = Path(
    sys.argv[1]
    if len(sys.argv) > 1
    else os.environ.get("SEGFLOW_SHARED_DATA", REPO.parent / "shared" / "data")
)
OUT = Path(__file__).parent / "images" / "calibration_widget.png"

image = tifffile.imread(DATA / "nuclei_dsb2018" / "img2d.tif")
mask = (tifffile.imread(DATA / "nuclei_dsb2018" / "mask2d.tif") > 0).astype(np.uint8)
tax = load_preset("nuclei")
viewer = napari.Viewer(title="napari-segflow")
viewer.add_image(image, name="nuclei", contrast_limits=(0, 120))
gold = viewer.add_labels(mask, name="gold", **labels_layer_kwargs(tax))
copies = {
    "ana (eroded)": ndimage.binary_erosion(mask).astype(np.uint8),
    "ben (shifted 4 px)": np.roll(mask, 4, axis=1),
    "cai (dilated)": ndimage.binary_dilation(mask, iterations=2).astype(np.uint8),
}
layers = [
    viewer.add_labels(data, name=name, visible=False, **labels_layer_kwargs(tax))
    for name, data in copies.items()
]
widget = CalibrationWidget(viewer)
viewer.window.add_dock_widget(widget, name="Calibration", area="right")
widget.set_layers(gold, layers)
widget.compute()
gold.visible = False
viewer.window._qt_window.resize(1500, 950)
for _ in range(5):
    QApplication.processEvents()
viewer.screenshot(str(OUT), canvas_only=False)
viewer.close()
