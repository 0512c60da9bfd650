"""COCO RLE export/import: exact round-trips checked with pycocotools' own decoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from scipy import ndimage
from skimage.measure import label as sk_label

from napari_segflow.core.io.coco import read_coco, read_coco_taxonomy, write_coco
from napari_segflow.core.io.validate import ExportError
from napari_segflow.core.taxonomy import load_preset, taxonomy_from_dict

BUILDINGS = taxonomy_from_dict(
    {
        "name": "buildings",
        "classes": [
            {"id": 1, "name": "truncated", "color": "#ff8000"},
            {"id": 2, "name": "whole", "color": "#ff0000"},
        ],
    }
)


@pytest.fixture(scope="module")
def spacenet(shared_data):
    folder = shared_data / "spacenet_atlanta"
    labels = read_coco(folder / "coco_sample_2.json")["sample_geotiff.tif"]
    mask = tifffile.imread(folder / "sample_fp_mask_from_geojson.tif") > 0
    return labels, mask


def test_solaris_flat_polygons_match_the_footprint_mask(spacenet):
    labels, mask = spacenet
    assert labels.shape == (900, 900)
    assert set(np.unique(labels)) == {0, 1, 2}
    ours = labels > 0
    iou = (ours & mask).sum() / (ours | mask).sum()
    assert iou > 0.99
    # the two rasterisers disagree only on the one-pixel rim of the buildings
    rim = ndimage.binary_dilation(mask) & ~ndimage.binary_erosion(mask)
    assert not np.any((ours != mask) & ~rim)


def test_flat_polygon_needs_wrapping_for_pycocotools(shared_data):
    doc = json.loads((shared_data / "spacenet_atlanta" / "coco_sample_2.json").read_text())
    seg = doc["annotations"][0]["segmentation"]
    assert isinstance(seg[0], float)  # a bare coordinate list, not a list of polygons
    wrapped = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([seg], 900, 900)))
    labels = read_coco(shared_data / "spacenet_atlanta" / "coco_sample_2.json")
    only_first = labels["sample_geotiff.tif"] == doc["annotations"][0]["category_id"]
    assert np.all(only_first[wrapped.astype(bool)])


def test_round_trip_on_real_labels_decoded_by_pycocotools(spacenet, tmp_path):
    labels, _ = spacenet
    out = write_coco({"sample_geotiff.tif": labels}, tmp_path / "a.json", taxonomy=BUILDINGS)
    assert np.array_equal(read_coco(out)["sample_geotiff.tif"], labels)
    assert read_coco_taxonomy(out) == BUILDINGS

    coco = COCO(str(out))
    img = coco.imgs[1]
    assert (img["file_name"], img["height"], img["width"]) == ("sample_geotiff.tif", 900, 900)
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["truncated", "whole"]
    anns = coco.loadAnns(coco.getAnnIds())
    assert sorted(a["category_id"] for a in anns) == [1, 2]
    rebuilt = np.zeros_like(labels)
    for ann in anns:
        assert isinstance(ann["segmentation"]["counts"], str)
        assert ann["iscrowd"] == 1
        m = coco.annToMask(ann).astype(bool)
        assert np.array_equal(m, labels == ann["category_id"])
        assert ann["area"] == int(m.sum())
        rows, cols = np.nonzero(m)
        assert ann["bbox"] == [
            cols.min(),
            rows.min(),
            cols.max() - cols.min() + 1,
            rows.max() - rows.min() + 1,
        ]
        rebuilt[m] = ann["category_id"]
    assert np.array_equal(rebuilt, labels)


def test_instances_one_annotation_per_component(spacenet, tmp_path):
    labels, _ = spacenet
    out = write_coco({"t.tif": labels}, tmp_path / "i.json", taxonomy=BUILDINGS, instances=True)
    coco = COCO(str(out))
    for cid in (1, 2):
        anns = coco.loadAnns(coco.getAnnIds(catIds=[cid]))
        assert len(anns) == sk_label(labels == cid, connectivity=2).max()
        union = np.zeros(labels.shape, bool)
        for ann in anns:
            m = coco.annToMask(ann).astype(bool)
            assert sk_label(m, connectivity=2).max() == 1
            assert not np.any(union & m)
            union |= m
        assert np.array_equal(union, labels == cid)
    assert np.array_equal(read_coco(out)["t.tif"], labels)


def test_unlabelled_id_and_class_zero_survive(tmp_path):
    tax = taxonomy_from_dict(
        {
            "name": "t",
            "ignore_id": 255,
            "classes": [
                {"id": 0, "name": "road", "color": "#804080"},
                {"id": 7, "name": "car", "color": "#00008e"},
            ],
        }
    )
    lab = np.array([[255, 0, 0], [7, 7, 255]], dtype=np.uint8)
    out = write_coco(
        {"x.png": lab, "y.png": np.full((2, 2), 255, np.uint8)}, tmp_path / "u.json", taxonomy=tax
    )
    back = read_coco(out)
    assert np.array_equal(back["x.png"], lab)
    assert np.array_equal(back["y.png"], np.full((2, 2), 255))
    doc = json.loads(out.read_text())
    assert len(doc["annotations"]) == 2  # road and car in x.png; ignore pixels get none


def test_reads_polygons_and_uncompressed_rle_from_other_tools(tmp_path):
    doc = {
        "images": [{"id": 5, "file_name": "p.jpg", "height": 6, "width": 6}],
        "categories": [{"id": 3, "name": "a"}, {"id": 4, "name": "b"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 5,
                "category_id": 3,
                "iscrowd": 0,
                "segmentation": [[1, 1, 4, 1, 4, 4, 1, 4]],
            },
            {
                "id": 2,
                "image_id": 5,
                "category_id": 4,
                "iscrowd": 1,
                "segmentation": {"size": [6, 6], "counts": [30, 2, 4]},
            },
        ],
    }
    path = tmp_path / "other.json"
    path.write_text(json.dumps(doc))
    expected = np.zeros((6, 6), np.uint8)
    expected[1:4, 1:4] = 3
    expected[0:2, 5] = 4  # column-major runs: 30 zeros, then 2 ones at the top of column 5
    assert np.array_equal(read_coco(path)["p.jpg"], expected)
    assert read_coco_taxonomy(path) is None


def test_refusals_write_nothing(tmp_path):
    tax = load_preset("land-use")
    with pytest.raises(ExportError, match=r"a\.png: .*absent from taxonomy 'land-use': 9, 12"):
        write_coco({"a.png": np.array([[0, 9], [12, 1]])}, tmp_path / "x.json", taxonomy=tax)
    with pytest.raises(ExportError, match="at most 2"):
        write_coco({"v": np.zeros((2, 3, 3), np.uint8)}, tmp_path / "x.json", taxonomy=tax)
    with pytest.raises(ExportError, match="no label images"):
        write_coco({}, tmp_path / "x.json", taxonomy=tax)
    assert list(tmp_path.iterdir()) == []


def test_bad_files_give_clear_errors(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a COCO JSON file"):
        read_coco(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="no such file"):
        read_coco(tmp_path / "missing.json")
