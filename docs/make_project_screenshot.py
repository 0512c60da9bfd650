"""Make docs/images/project_widget.png and project_qa.png from a project over real pet photos.

Run under a display: ``xvfb-run -a python docs/make_project_screenshot.py [DATA_DIR]``
(DATA_DIR defaults to ``../shared/data`` beside the checkout, or $SEGFLOW_SHARED_DATA).
The project is made in a temporary folder; the photos are linked, not copied.
"""

import os
import sys
import tempfile
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from napari_segflow.core.io.labels import read_labels
from napari_segflow.core.io.png import write_png
from napari_segflow.core.project import ACCEPTED, DONE, create_project
from napari_segflow.core.provenance import AI_PENDING, HUMAN, write_provenance
from napari_segflow.core.taxonomy import taxonomy_from_dict
from napari_segflow.widgets.project import ProjectWidget

REPO = Path(__file__).resolve().parents[1]
DATA = Path(
    sys.argv[1]
    if len(sys.argv) > 1
    else os.environ.get("SEGFLOW_SHARED_DATA", REPO.parent / "shared" / "data")
)
OUT = Path(__file__).parent / "images" / "project_widget.png"
OUT_QA = Path(__file__).parent / "images" / "project_qa.png"
PETS = DATA / "pets_oxford"
STEMS = ["Abyssinian_1", "Abyssinian_10", "Abyssinian_11", "Abyssinian_12", "Abyssinian_13",
         "Abyssinian_14", "Abyssinian_2", "Abyssinian_4"]  # fmt: skip
TAX = taxonomy_from_dict(
    {
        "name": "pets",
        "classes": [
            {"id": 1, "name": "pet", "color": "#ff7f0e"},
            {"id": 2, "name": "background", "color": "#1f77b4"},
            {"id": 3, "name": "outline", "color": "#e8e8e8"},
        ],
    }
)

tmp = Path(tempfile.mkdtemp())
(tmp / "images").mkdir()
for s in STEMS:
    os.symlink(PETS / "images" / f"{s}.jpg", tmp / "images" / f"{s}.jpg")
project = create_project(
    tmp / "proj", images=tmp / "images", taxonomy=TAX, annotators=["ana", "ben"]
)
# two images finished by ana, one by ben (the trimaps stand in for their work)
for stem, who in ((STEMS[0], "ana"), (STEMS[1], "ana"), (STEMS[2], "ben")):
    item = project.open_item(stem, annotator=who)
    project.save_item(item, read_labels(PETS / "trimaps" / f"{stem}.png"), seconds=95, status=DONE)
# an earlier QA batch, reviewed: the outline was meant to be pet (the dock shows its IoU)
project.draw_qa_batch(rates={"common": 1.0, "rare": 1.0})
for stem in STEMS[:3]:
    item = project.open_item(stem, annotator="rev", mode="qa")
    project.review(item, ACCEPTED, np.where(item.labels == 3, 1, item.labels).astype(np.uint8))
# two more images finished by ben, for the next batch
for stem in STEMS[4:6]:
    item = project.open_item(stem, annotator="ben")
    project.save_item(item, read_labels(PETS / "trimaps" / f"{stem}.png"), seconds=80, status=DONE)
# an AI pre-label of the next image (the pet only), as `segflow prelabel` leaves it
tri = read_labels(PETS / "trimaps" / f"{STEMS[3]}.png")
pre = np.where(tri == 1, 1, 0).astype(np.uint8)
target = tmp / "proj" / "prelabels" / f"{STEMS[3]}.png"
write_provenance(target, np.where(pre > 0, AI_PENDING, HUMAN).astype(np.uint8))
write_png(pre, target, taxonomy=TAX)
project.close()

viewer = napari.Viewer(title="napari-segflow")
widget = ProjectWidget(viewer)
viewer.window.add_dock_widget(widget, name="Project", area="right")
widget.open_project(tmp / "proj")  # ana resumes where she was
widget.open_image(STEMS[3])  # the next image of her queue opens with its AI pre-label
viewer.window._qt_window.resize(1400, 950)
while (
    widget._embed_worker is not None or widget._progress_workers
):  # the next image is embedded in the background
    QApplication.processEvents()
for _ in range(5):
    QApplication.processEvents()
viewer.screenshot(str(OUT), canvas_only=False)

# QA: the reviewer draws the next batch of finished images; the dock shows batch 1's IoU
widget.set_annotator("rev")
widget._qa_rate.value = 1.0
widget.draw_qa_batch()
while widget._embed_worker is not None or widget._progress_workers:
    QApplication.processEvents()
for _ in range(5):
    QApplication.processEvents()
viewer.screenshot(str(OUT_QA), canvas_only=False)
widget._autosave.stop()
viewer.close()
