"""Prompt sources: the segflow-prompts JSON schema and COCO files (real SpaceNet polygons)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_segflow.core.prelabel.prompts import (
    PROMPTS_FORMAT,
    entries_to_objects,
    read_coco_prompts,
    read_prompts_json,
)
from napari_segflow.core.prelabel.refine import mask_iou
from napari_segflow.core.taxonomy import load_preset, taxonomy_from_dict

BUILDINGS = taxonomy_from_dict(
    {
        "name": "buildings",
        "classes": [
            {"id": 1, "name": "building-truncated", "color": "#ff0000"},
            {"id": 2, "name": "building", "color": "#00ff00"},
        ],
    }
)


def test_prompts_json_names_ids_boxes_points_polygons(tmp_path):
    doc = {
        "format": PROMPTS_FORMAT,
        "images": {
            "tile": [
                {"class": "nucleus", "box": [2, 3, 10, 12]},
                {"class": 2, "points": [[5, 5], [1, 1]], "labels": [1, 0]},
                {"class": "nucleus", "polygon": [[0, 0], [0, 8], [8, 8], [8, 0]]},
            ]
        },
    }
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    entries = read_prompts_json(path, taxonomy=load_preset("nuclei"))["tile"]
    assert [e["class_id"] for e in entries] == [1, 2, 1]
    objs = entries_to_objects(entries, shape=(16, 16))
    assert objs[0].bbox() == (2, 3, 10, 12) and objs[0].mask is None
    assert objs[1].point_labels.tolist() == [1, 0] and objs[1].bbox() == (1, 1, 5, 5)
    # a polygon through pixel centres (0..8) covers the 9x9 pixels it encloses
    assert objs[2].mask.sum() == 81 and objs[2].mask[:9, :9].all()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"box": [1, 2, 3, 4]}, "missing 'class'"),
        ({"class": "cat", "box": [1, 2, 3, 4]}, "unknown class 'cat'"),
        ({"class": 9, "box": [1, 2, 3, 4]}, "class id 9 is not in taxonomy"),
        ({"class": 1, "box": [1, 2, 3]}, r"box must have shape \(4,\)"),
        ({"class": 1, "points": [[1, 2]], "labels": [3]}, "labels must be 1/0"),
        ({"class": 1, "polygon": [[1, 2], [3, 4]]}, "at least three"),
        ({"class": 1}, "give a box, points or a polygon"),
    ],
)
def test_prompts_json_errors_name_the_entry(tmp_path, entry, message):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"format": PROMPTS_FORMAT, "images": {"img7": [entry]}}))
    with pytest.raises(ValueError, match=message) as err:
        read_prompts_json(path, taxonomy=load_preset("nuclei"))
    assert "img7[0]" in str(err.value)


def test_prompts_json_refuses_other_files(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="not a prompts file"):
        read_prompts_json(path, taxonomy=load_preset("nuclei"))


def test_coco_polygons_rasterise_onto_the_footprint_mask(shared_data):
    folder = shared_data / "spacenet_atlanta"
    prompts = read_coco_prompts(folder / "coco_sample_2.json", taxonomy=BUILDINGS)
    entries = prompts["sample_geotiff"]
    assert len(entries) == 43
    assert sum(e["class_id"] == 1 for e in entries) == 6  # the truncated buildings
    objs = entries_to_objects(entries, shape=(900, 900))
    union = np.zeros((900, 900), bool)
    for o in objs:
        union |= o.mask
    truth = tifffile.imread(folder / "sample_fp_mask_from_geojson.tif") > 0
    assert mask_iou(union, truth) > 0.97


def test_coco_boxes_become_box_prompts(tmp_path):
    doc = {
        "images": [{"id": 3, "file_name": "a/b/scan.png", "height": 20, "width": 30}],
        "categories": [{"id": 7, "name": "debris"}],
        "annotations": [{"id": 1, "image_id": 3, "category_id": 7, "bbox": [4, 2, 10, 5]}],
    }
    path = tmp_path / "c.json"
    path.write_text(json.dumps(doc))
    entries = read_coco_prompts(path, taxonomy=load_preset("nuclei"))
    assert entries == {"scan": [{"class_id": 2, "box": [2.0, 4.0, 6.0, 13.0]}]}
    doc["categories"] = [{"id": 7, "name": "tree"}]
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="category 7 matches no class"):
        read_coco_prompts(path, taxonomy=load_preset("nuclei"))
