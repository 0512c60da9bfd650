"""Calibration on real masks with perturbed copies whose IoU is computed independently here."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from napari_segflow.core.io.labels import read_labels
from napari_segflow.core.quality.calibration import (
    ai_prelabel_gate,
    calibrate,
    class_indices,
    prelabels_from_gold_boxes,
)
from napari_segflow.core.taxonomy import LabelClass, Taxonomy, load_preset


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """Plain set IoU of two boolean masks."""
    return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()


def _summed_iou(pairs) -> float:
    inter = sum(np.logical_and(a, b).sum() for a, b in pairs)
    union = sum(np.logical_or(a, b).sum() for a, b in pairs)
    return inter / union


@pytest.fixture(scope="module")
def nuclei(shared_data):
    mask = (tifffile.imread(shared_data / "nuclei_dsb2018" / "mask2d.tif") > 0).astype(np.uint8)
    gold = {"top": mask[:256], "bottom": mask[256:]}
    alice = {k: v.copy() for k, v in gold.items()}
    bob = {k: ndimage.binary_erosion(v).astype(np.uint8) for k, v in gold.items()}
    carol = {k: np.roll(v, 3, axis=1) for k, v in gold.items()}
    return gold, {"alice": alice, "bob": bob, "carol": carol}


@pytest.fixture(scope="module")
def nuclei_report(nuclei):
    gold, ann = nuclei
    return calibrate(gold, ann, taxonomy=load_preset("nuclei"), threshold=0.75)


def test_per_annotator_iou_matches_independent_computation(nuclei, nuclei_report):
    gold, ann = nuclei
    rep = nuclei_report
    assert rep.classes == ["nucleus", "debris"]
    assert rep.annotators == ["alice", "bob", "carol"]
    for a, name in enumerate(rep.annotators):
        expected = _summed_iou([(gold[k] == 1, ann[name][k] == 1) for k in gold])
        assert rep.iou[a, 0] == pytest.approx(expected)
        assert math.isnan(rep.iou[a, 1])  # debris in neither gold nor annotation
    # sanity of the perturbations themselves: exact copy, mild erosion, 3-pixel shift
    assert rep.iou[0, 0] == 1.0
    assert 0.8 < rep.iou[1, 0] < 0.9
    assert 0.6 < rep.iou[2, 0] < 0.75


def test_flags_are_exactly_the_pairs_below_threshold(nuclei_report):
    assert nuclei_report.flagged == [("carol", "nucleus")]


def test_per_image_means_reported_separately(nuclei, nuclei_report):
    gold, ann = nuclei
    per_img = nuclei_report.per_image_mean_iou["carol"]
    for k in gold:
        assert per_img[k] == pytest.approx(_iou(gold[k] == 1, ann["carol"][k] == 1))


def test_boundary_iou_reacts_more_than_mask_iou(nuclei_report):
    b = nuclei_report.boundary_iou
    assert b[0, 0] == 1.0
    assert b[1, 0] < nuclei_report.iou[1, 0]
    assert b[2, 0] < nuclei_report.iou[2, 0]
    assert math.isnan(b[0, 1])


def test_pairwise_matrix_and_disagreement(nuclei, nuclei_report):
    gold, ann = nuclei
    pw = nuclei_report.pairwise_mean_iou
    np.testing.assert_allclose(np.diag(pw), 1.0)
    np.testing.assert_allclose(pw, pw.T)
    # alice equals gold, so alice-vs-bob is bob's gold IoU; bob-vs-carol computed directly
    assert pw[0, 1] == pytest.approx(nuclei_report.iou[1, 0])
    expected_bc = _summed_iou([(ann["bob"][k] == 1, ann["carol"][k] == 1) for k in gold])
    assert pw[1, 2] == pytest.approx(expected_bc)
    for k in gold:
        a, b, c = (ann[n][k] for n in ("alice", "bob", "carol"))
        differ = (a != b) | (a != c) | (b != c)
        dis = nuclei_report.disagreement[k]
        np.testing.assert_array_equal(dis > 0, differ)
        assert dis.max() <= 2


def test_json_matches_schema(nuclei_report, tmp_path):
    doc = json.loads(nuclei_report.to_json(tmp_path / "r.json"))
    assert set(doc) == {"threshold", "classes", "annotators", "pairwise_mean_iou"}
    assert doc["threshold"] == 0.75
    assert doc["classes"] == ["nucleus", "debris"]
    carol = doc["annotators"]["carol"]
    assert set(carol) == {"per_class_iou", "per_class_boundary_iou", "mean_iou", "flagged"}
    assert carol["per_class_iou"]["debris"] is None
    assert carol["per_class_boundary_iou"]["debris"] is None
    assert carol["per_class_iou"]["nucleus"] == pytest.approx(nuclei_report.iou[2, 0], abs=1e-6)
    assert carol["mean_iou"] == pytest.approx(carol["per_class_iou"]["nucleus"])
    assert carol["flagged"] == ["nucleus"]
    assert doc["annotators"]["alice"]["flagged"] == []
    assert set(doc["pairwise_mean_iou"]["alice"]) == {"bob", "carol"}
    assert json.loads((tmp_path / "r.json").read_text()) == doc


def test_csv_and_html(nuclei_report, tmp_path):
    paths = nuclei_report.save(tmp_path)
    rows = paths["csv"].read_text().splitlines()
    assert rows[0] == "annotator,class_id,class,iou,boundary_iou,flagged"
    assert len(rows) == 1 + 3 * 2
    carol_nuc = next(r for r in rows if r.startswith("carol,1,nucleus"))
    assert carol_nuc.endswith(",1")
    page = paths["html"].read_text()
    assert page.count("data:image/png;base64,") == 3  # heatmap, bar chart, pairwise matrix
    assert "src='http" not in page and "<script" not in page  # self-contained
    assert "carol" in page


def test_missing_and_mismatched_images_are_reported(nuclei):
    gold, ann = nuclei
    dave = {"top": ann["bob"]["top"], "bottom": ann["bob"]["bottom"][:100]}
    erin = {"top": ann["alice"]["top"], "elsewhere": ann["alice"]["top"]}
    rep = calibrate(gold, {"dave": dave, "erin": erin}, taxonomy=load_preset("nuclei"))
    assert any("dave: bottom: shape (100, 512)" in p for p in rep.problems)
    assert "erin: bottom: missing" in rep.problems
    assert any("erin: elsewhere: no gold image" in p for p in rep.problems)
    # the rest is still scored, on the images that are usable
    assert rep.images == {"dave": ["top"], "erin": ["top"]}
    assert rep.iou[0, 0] == pytest.approx(_iou(gold["top"] == 1, dave["top"] == 1))


@pytest.fixture(scope="module")
def abdomen(shared_data):
    folder = shared_data / "abdomen_mr"
    seg = read_labels(folder / "example_seg_mr.nii.gz")
    names = json.loads((folder / "class_map_total_and_total_mr.json").read_text())["total_mr"]
    ids = [int(i) for i in np.unique(seg) if i != 0]
    tax = Taxonomy(
        "total_mr", tuple(LabelClass(i, names[str(i)], (i * 5 % 255, 80, 160)) for i in ids)
    )
    return seg, tax


def test_3d_calibration_flags_eroded_organ(abdomen):
    seg, tax = abdomen
    liver = tax.by_name("liver").id
    ann = seg.copy()
    rim = (seg == liver) & ~ndimage.binary_erosion(seg == liver, iterations=2)
    ann[rim] = 0
    rep = calibrate(
        {"case": seg},
        {"rater": {"case": ann}, "exact": {"case": seg.copy()}},
        taxonomy=tax,
        threshold=0.75,
    )
    k = rep.classes.index("liver")
    assert rep.iou[0, k] == pytest.approx(_iou(seg == liver, ann == liver))
    assert rep.flagged == [("rater", "liver")]
    others = [i for i in range(len(rep.classes)) if i != k]
    np.testing.assert_allclose(rep.iou[0, others], 1.0)
    np.testing.assert_allclose(rep.iou[1], 1.0)
    # the two raters differ exactly on the removed liver rim
    np.testing.assert_array_equal(rep.disagreement["case"] > 0, rim)
    assert rep.pairwise_mean_iou[0, 1] == pytest.approx(rep.mean_iou[0])


def test_ignore_id_in_gold_is_dont_care():
    tax = Taxonomy(
        "t",
        (LabelClass(0, "road", (1, 1, 1)), LabelClass(1, "car", (2, 2, 2))),
        ignore_id=255,
    )
    gold = np.array([[0, 0, 1, 255]], dtype=np.uint8)
    ann = np.array([[0, 1, 1, 1]], dtype=np.uint8)
    rep = calibrate({"x": gold}, {"a": {"x": ann}}, taxonomy=tax, dilation_ratio=None)
    # road TP 1 FN 1 -> 1/2; car TP 1 FP 1 -> 1/2; the ignored pixel counts for nothing
    np.testing.assert_allclose(rep.iou[0], [0.5, 0.5])
    assert np.isnan(rep.boundary_iou).all()
    # unlabelled annotator pixels are misses, not ignored
    np.testing.assert_array_equal(class_indices(np.array([7, 255]), tax), [2, 2])
    np.testing.assert_array_equal(class_indices(np.array([7, 255]), tax, gold=True), [2, 3])


def test_ai_gate_turns_off_bad_classes_in_a_copy(abdomen):
    seg, tax = abdomen
    liver, spleen = tax.by_name("liver").id, tax.by_name("spleen").id
    pre = seg.copy()
    pre[(seg == liver) & ~ndimage.binary_erosion(seg == liver, iterations=3)] = 0
    pre[ndimage.binary_dilation(seg == spleen, iterations=1) & (seg == 0)] = spleen
    res = ai_prelabel_gate({"case": seg}, {"case": pre}, taxonomy=tax)
    expect_liver = _iou(seg == liver, pre == liver)
    expect_spleen = _iou(seg == spleen, pre == spleen)
    assert res.per_class_iou["liver"] == pytest.approx(expect_liver)
    assert res.per_class_iou["spleen"] == pytest.approx(expect_spleen)
    assert expect_liver < 0.70 < expect_spleen
    assert res.disabled == ["liver"]
    assert res.taxonomy.by_name("liver").ai_assist is False
    assert res.taxonomy.by_name("spleen").ai_assist is True
    assert tax.by_name("liver").ai_assist is True  # input untouched


class _BoxFill:
    """The box-as-mask baseline: every pixel inside the prompt box is the object."""

    def embed(self, image):
        return image.shape[:2]

    def predict(self, emb, *, box):
        mask = np.zeros(emb, dtype=bool)
        r0, c0, r1, c1 = box
        mask[r0 : r1 + 1, c0 : c1 + 1] = True
        return SimpleNamespace(mask=mask, score=1.0, logits=None)


def test_prelabels_from_gold_boxes_feed_the_gate(nuclei, shared_data):
    gold, _ = nuclei
    image = tifffile.imread(shared_data / "nuclei_dsb2018" / "img2d.tif")
    images = {"top": image[:256], "bottom": image[256:]}
    tax = load_preset("nuclei")
    pre = prelabels_from_gold_boxes(images, gold, _BoxFill(), taxonomy=tax)
    for k, g in gold.items():
        boxes = np.zeros_like(g, dtype=bool)
        for sl in ndimage.find_objects(ndimage.label(g == 1)[0]):
            boxes[sl] = True
        np.testing.assert_array_equal(pre[k] == 1, boxes)
    res = ai_prelabel_gate(gold, pre, taxonomy=tax)
    expected = _summed_iou([(gold[k] == 1, pre[k] == 1) for k in gold])
    assert res.per_class_iou["nucleus"] == pytest.approx(expected)
    assert ("nucleus" in res.disabled) == (expected < 0.70)


def test_progress_and_cancel(nuclei):
    gold, ann = nuclei
    seen = []
    calibrate(gold, ann, taxonomy=load_preset("nuclei"), progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 2), (2, 2)]
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 1  # let the first image through, stop before the second

    with pytest.raises(InterruptedError, match="cancelled"):
        calibrate(gold, ann, taxonomy=load_preset("nuclei"), cancel=cancel)
    assert len(calls) == 2


def test_user_errors(nuclei):
    gold, ann = nuclei
    tax = load_preset("nuclei")
    with pytest.raises(ValueError, match="threshold"):
        calibrate(gold, ann, taxonomy=tax, threshold=75)
    with pytest.raises(ValueError, match="must map image names"):
        calibrate(gold, {"x": gold["top"]}, taxonomy=tax)
    with pytest.raises(ValueError, match="empty"):
        calibrate({}, ann, taxonomy=tax)


def test_class_indices_folds_out_of_taxonomy_values():
    tax = load_preset("nuclei")  # ids 1, 2; 0 unlabelled
    labels = np.array([-4, 0, 1, 2, 3, 2**40], dtype=np.int64)
    np.testing.assert_array_equal(class_indices(labels, tax), [2, 2, 0, 1, 2, 2])
    big = np.array([1, 2**63, 0], dtype=np.uint64)
    np.testing.assert_array_equal(class_indices(big, tax), [0, 2, 2])


def test_boundary_iou_dataset_level_matches_erosion_reference(nuclei, nuclei_report):
    gold, ann = nuclei

    def band(mask, d):
        padded = np.pad(mask, d + 1)
        eroded = ndimage.binary_erosion(padded, structure=np.ones((3, 3)), iterations=d)
        return mask & ~eroded[d + 1 : -(d + 1), d + 1 : -(d + 1)]

    for a, name in enumerate(nuclei_report.annotators):
        inter = union = 0
        for k, g in gold.items():
            d = round(0.02 * math.hypot(*g.shape))
            gb, pb = band(g == 1, d), band(ann[name][k] == 1, d)
            inter += np.sum(gb & pb)
            union += np.sum(gb | pb)
        assert nuclei_report.boundary_iou[a, 0] == pytest.approx(inter / union)
