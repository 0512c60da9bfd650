"""The abdominal MR preset matches the shipped MR sample: its ids, names and touching organs."""

from __future__ import annotations

import json

import numpy as np

from napari_segflow.core.io.nifti import read_nifti
from napari_segflow.core.taxonomy import list_presets, load_preset
from napari_segflow.core.taxonomy.rules import uncovered_pairs


def test_abdomen_mr_preset_is_the_total_mr_class_map(shared_data):
    assert "abdomen-mr" in list_presets()
    tax = load_preset("abdomen-mr")
    doc = json.loads(
        (shared_data / "abdomen_mr" / "class_map_total_and_total_mr.json").read_text()
    )
    class_map = {int(k): v for k, v in doc["total_mr"].items()}
    assert {c.id: c.name for c in tax.classes} == class_map
    assert len({c.color for c in tax.classes}) == len(tax.classes)  # every organ its own colour


def test_abdomen_mr_preset_covers_the_sample_labels_and_their_contacts(shared_data):
    tax = load_preset("abdomen-mr")
    seg = read_nifti(shared_data / "abdomen_mr" / "example_seg_mr.nii.gz").data
    ids = {int(v) for v in np.unique(seg)} - {0}
    assert ids <= {c.id for c in tax.classes}
    # every pair of organs that touch in the sample has a written rule
    assert uncovered_pairs(seg, tax) == []
    assert tax.rule_between("liver", "gallbladder") is not None
    assert tax.rule_between("stomach", "duodenum") is not None
