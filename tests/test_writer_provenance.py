"""Every segflow writer that can carry provenance writes its sidecar, and the readers give it
back: AI pixels nobody confirmed stay AI-pending after a save and a re-open. Saving refuses them
when the layer asks for confirmed pixels only (the GUI's ``--require-confirmed``)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_segflow._reader import get_coco_reader, get_geotiff_reader, get_png_labels_reader
from napari_segflow._writer import (
    REQUIRE_CONFIRMED_KEY,
    write_labels_coco,
    write_labels_geotiff,
    write_labels_png,
)
from napari_segflow.core.io.geotiff import GEO_KEY, geotiff_info
from napari_segflow.core.io.validate import ExportError
from napari_segflow.core.provenance import (
    AI_PENDING,
    HUMAN,
    PROVENANCE_KEY,
    pending_count,
    read_provenance,
    sidecar_path,
)
from napari_segflow.core.taxonomy import load_preset
from napari_segflow.layers import TAXONOMY_KEY

NUCLEI = load_preset("nuclei")


@pytest.fixture
def layer(shared_data):
    """Real nuclei labels (class 1) where the model made some nuclei nobody confirmed yet."""
    mask = tifffile.imread(shared_data / "nuclei_dsb2018" / "mask2d.tif")
    labels = (mask > 0).astype(np.uint8)
    prov = np.full(labels.shape, HUMAN, np.uint8)
    ai = (mask > 0) & (mask % 3 == 0)  # every third nucleus came from the model
    prov[ai] = AI_PENDING
    assert 0 < ai.sum() < labels.sum()
    meta = {"name": "nuclei", "metadata": {TAXONOMY_KEY: NUCLEI.to_dict(), PROVENANCE_KEY: prov}}
    return labels, meta, int(ai.sum())


def test_png_writer_writes_the_sidecar_and_reopens_pending(layer, tmp_path):
    labels, meta, n_ai = layer
    path = str(tmp_path / "nuclei.png")
    written = write_labels_png(path, labels, meta)
    assert written == [path, str(sidecar_path(path))]
    [(data, kwargs, kind)] = get_png_labels_reader(path)(path)
    assert kind == "labels" and np.array_equal(data, labels)
    assert pending_count(kwargs["metadata"][PROVENANCE_KEY]) == n_ai


def test_coco_writer_writes_the_sidecar(layer, tmp_path):
    labels, meta, n_ai = layer
    path = str(tmp_path / "nuclei.json")
    written = write_labels_coco(path, labels, meta)
    assert len(written) == 2 and pending_count(read_provenance(path)) == n_ai
    [(_, kwargs, _)] = get_coco_reader(path)(path)
    assert pending_count(kwargs["metadata"][PROVENANCE_KEY]) == n_ai


def test_geotiff_writer_writes_the_sidecar(shared_data, tmp_path):
    folder = shared_data / "spacenet_atlanta"
    mask = tifffile.imread(folder / "sample_fp_mask_from_geojson.tif")
    labels = (mask > 0).astype(np.uint8)
    prov = np.where(labels[:, ::-1] > 0, AI_PENDING, HUMAN).astype(np.uint8) * labels
    geo = geotiff_info(folder / "sample_geotiff.tif")
    meta = {
        "name": "m",
        "metadata": {TAXONOMY_KEY: NUCLEI.to_dict(), GEO_KEY: geo, PROVENANCE_KEY: prov},
    }
    path = str(tmp_path / "m.tif")
    assert len(write_labels_geotiff(path, labels, meta)) == 2
    [(_, kwargs, kind)] = get_geotiff_reader(path)(path)
    assert kind == "labels"
    assert pending_count(kwargs["metadata"][PROVENANCE_KEY]) == pending_count(prov) > 0


def test_require_confirmed_refuses_and_writes_nothing(layer, tmp_path):
    labels, meta, n_ai = layer
    meta["metadata"][REQUIRE_CONFIRMED_KEY] = True
    path = tmp_path / "nuclei.png"
    with pytest.raises(ExportError, match=f"{n_ai} AI-labelled pixels are not confirmed"):
        write_labels_png(str(path), labels, meta)
    assert list(tmp_path.iterdir()) == []
    meta["metadata"][PROVENANCE_KEY][:] = HUMAN  # all confirmed / human: saved
    assert len(write_labels_png(str(path), labels, meta)) == 2


def test_a_stale_sidecar_is_replaced_by_an_all_human_record(layer, tmp_path):
    labels, meta, n_ai = layer
    path = str(tmp_path / "nuclei.png")
    write_labels_png(path, labels, meta)
    del meta["metadata"][PROVENANCE_KEY]  # a layer without a record saved over the same file
    write_labels_png(path, labels, meta)
    assert pending_count(read_provenance(path)) == 0


def test_save_from_the_viewer_keeps_pending_pixels(make_napari_viewer, layer, tmp_path):
    labels, meta, n_ai = layer
    viewer = make_napari_viewer()
    lay = viewer.add_labels(labels, name="nuclei", metadata=meta["metadata"])
    path = str(tmp_path / "saved.png")
    viewer.layers.save(path, selected=False, plugin="napari-segflow")
    assert pending_count(read_provenance(path)) == n_ai
    assert lay.metadata[PROVENANCE_KEY] is meta["metadata"][PROVENANCE_KEY]
