"""Make docs/images/prelabel_widget.png: the abdominal MR pre-labelled from 3 labelled slices.

Run under a display: ``xvfb-run -a python docs/make_prelabel_screenshot.py [DATA_DIR]``
(DATA_DIR defaults to ``../shared/data`` beside the checkout, or $SEGFLOW_SHARED_DATA).
The classifier uses the filter bank only here, to keep the script quick on a CPU.
"""

import os
import sys
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from napari_segflow.core.io.nifti import read_nifti
from napari_segflow.core.taxonomy import taxonomy_from_dict
from napari_segflow.layers import labels_layer_kwargs, track_provenance
from napari_segflow.widgets.prelabel import PrelabelWidget

REPO = Path(__file__).resolve().parents[1]
DATA = Path(
    sys.argv[1]
    if len(sys.argv) > 1
    else os.environ.get("SEGFLOW_SHARED_DATA", REPO.parent / "shared" / "data")
)
OUT = Path(__file__).parent / "images" / "prelabel_widget.png"
GROUPS = {
    "liver": ((5,), "#c87533"),
    "spleen": ((1,), "#b040b0"),
    "kidneys": ((2, 3), "#30b030"),
    "stomach": ((6,), "#e0c020"),
    "bowel": ((13, 14, 15), "#40a0ff"),
    "spine": ((19, 20, 21), "#f0f0f0"),
    "vessels": ((23, 24, 25), "#ff3030"),
    "back muscles": ((46, 47, 48, 49), "#a05050"),
    "other organs": ((4, 7, 8, 9), "#00e0a0"),
    "rest of body": ((), "#404040"),
}
TRAIN = (3, 10, 16)

d = DATA / "abdomen_mr"
image = read_nifti(d / "example_mr_sm.nii.gz").data.transpose(2, 1, 0)
seg = read_nifti(d / "example_seg_mr.nii.gz").data.transpose(2, 1, 0)
tax = taxonomy_from_dict(
    {
        "name": "abdomen",
        "classes": [
            {"id": i + 1, "name": n, "color": c} for i, (n, (_, c)) in enumerate(GROUPS.items())
        ],
    }
)
gold = np.full(seg.shape, len(GROUPS), np.uint8)  # "rest of body" where no organ
gold[image < 40] = 0  # air around the body: nobody labels it
for gid, (ids, _) in enumerate(GROUPS.values(), start=1):
    if ids:
        gold[np.isin(seg, ids)] = gid

viewer = napari.Viewer(title="napari-segflow")
img = viewer.add_image(image, name="abdomen MR", scale=(3, 3, 3))
labels = viewer.add_labels(
    np.zeros(seg.shape, np.uint8), name="organs", scale=(3, 3, 3), **labels_layer_kwargs(tax)
)
track_provenance(labels)
for z in TRAIN:  # the annotator's three labelled slices
    idx = np.nonzero(gold[z] > 0)
    labels.data_setitem((np.full(idx[0].shape, z), *idx), gold[z][idx])
widget = PrelabelWidget(viewer)
viewer.window.add_dock_widget(widget, name="Pre-label", area="right")
widget.set_layers(img, labels)
widget._embeddings.value = False
widget.train()
widget.predict(whole=True)
widget.measure()  # the held-out IoU table; the gate applies to the next pre-labels
viewer.dims.set_current_step(0, 7)
viewer.window._qt_window.resize(1500, 950)
for _ in range(5):
    QApplication.processEvents()
viewer.screenshot(str(OUT), canvas_only=False)
viewer.close()
