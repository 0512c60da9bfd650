"""Reruns redo what is stale; a failed image leaves no outputs; counts say what happened.

Real LiteMedSAM on one small real nuclei tile (serial, one torch thread).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import tifffile

from napari_segflow.core.io.png import write_png
from napari_segflow.core.prelabel.batch import (
    PrelabelJob,
    image_files,
    make_tasks,
    output_paths,
    run_prelabel,
)
from napari_segflow.core.prelabel.evaluate import polygon_mask, simplify_polygon
from napari_segflow.core.taxonomy import load_preset

LOOSE = {"min_iou": 0.8, "confidence": 2.0, "min_width": 1, "edge_check": False}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def tile(shared_data, tmp_path):
    img = tifffile.imread(shared_data / "nuclei_dsb2018" / "img2d.tif")[:64, :64]
    inst = tifffile.imread(shared_data / "nuclei_dsb2018" / "mask2d.tif")[:64, :64]
    coarse = np.zeros(inst.shape, np.uint8)
    for i in np.unique(inst)[1:]:
        m = inst == i
        if m.sum() >= 16:
            coarse[polygon_mask(simplify_polygon(m, 12), m.shape)] = 1
    (tmp_path / "images").mkdir()
    (tmp_path / "coarse").mkdir()
    tifffile.imwrite(tmp_path / "images" / "t.tif", img)
    tax = load_preset("nuclei")
    write_png(coarse, tmp_path / "coarse" / "t.png", taxonomy=tax)
    return tmp_path, tax, coarse


def _run(root, tax, options=LOOSE):
    tasks, problems = make_tasks(image_files(root / "images"), coarse_dir=root / "coarse")
    assert not problems
    job = PrelabelJob(out_dir=str(root / "out"), taxonomy=tax.to_dict(), options=dict(options))
    return run_prelabel(job, tasks, workers=0)


def test_rerun_redoes_what_changed_and_skips_the_rest(tile):
    root, tax, coarse = tile
    first = _run(root, tax)
    assert first.done == ["t"] and not first.failed
    assert _run(root, tax).skipped == ["t"]  # nothing changed

    # new coarse labels: the old outputs were made from something else
    moved = np.roll(coarse, 3, axis=1)
    write_png(moved, root / "coarse" / "t.png", taxonomy=tax)
    again = _run(root, tax)
    assert again.done == ["t"] and again.stale == ["t"] and not again.skipped

    # another taxonomy (a colour changed) and other options are stale too
    recoloured = dataclasses.replace(
        tax, classes=tuple(dataclasses.replace(c, color=(1, 2, 3)) for c in tax.classes)
    )
    assert _run(root, recoloured).stale == ["t"]
    assert _run(root, recoloured, {**LOOSE, "min_iou": 0.7}).stale == ["t"]
    assert _run(root, recoloured, {**LOOSE, "min_iou": 0.7}).skipped == ["t"]

    report = json.loads(output_paths(root / "out", "t")[2].read_text())
    assert report["produced_by"]["options"] and report["produced_by"]["coarse"]
    summary = json.loads((root / "out" / "prelabel_summary.json").read_text())
    assert summary["skipped"] == ["t"] and summary["stale"] == []


def test_refined_counts_only_objects_the_model_changed(tile):
    root, tax, _ = tile
    summary = _run(root, tax)
    objects = json.loads(output_paths(root / "out", "t")[2].read_text())["objects"]
    changed = [o for o in objects if o["status"] == "refined" and o["changed"] > 0]
    untouched = [o for o in objects if o["status"] == "refined" and o["changed"] == 0]
    assert summary.object_counts.get("refined", 0) == len(changed)
    assert summary.object_counts.get("unchanged", 0) == len(untouched)
    assert sum(summary.object_counts.values()) == len(objects)


def test_a_failed_image_leaves_none_of_its_outputs(tile):
    root, tax, _ = tile
    out = root / "out"
    labels, prov, report = output_paths(out, "t")
    # a folder where the label file must go: the last rename fails after the others succeed
    labels.mkdir(parents=True)
    summary = _run(root, tax)
    assert list(summary.failed) == ["t"] and not summary.done
    assert not prov.exists() and not report.exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries either
