from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from napari_segflow.core.quality import metrics
from napari_segflow.core.quality.metrics import (
    boundary_iou,
    confusion_matrix,
    dataset_scores,
    mean_iou,
    per_class_dice,
    per_class_iou,
)


def test_confusion_matrix_hand_computed_2d():
    gt = np.array([[0, 0, 1, 1], [2, 2, 2, 1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 2]])
    cm = confusion_matrix(gt, pred, n_classes=3)
    # rows gt, cols pred
    expected = np.array([[1, 1, 0], [0, 2, 1], [1, 0, 2]])
    np.testing.assert_array_equal(cm, expected)
    assert cm.dtype == np.int64


def test_iou_and_dice_hand_computed_with_absent_class():
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
    pred = np.array([[0, 1, 1, 1], [0, 0, 1, 1]])
    # class 0: TP 3, FP 0, FN 1 -> IoU 3/4, Dice 6/7
    # class 1: TP 4, FP 1, FN 0 -> IoU 4/5, Dice 8/9; class 2, 3 absent
    iou = per_class_iou(gt, pred, n_classes=4)
    np.testing.assert_allclose(iou[:2], [3 / 4, 4 / 5])
    assert np.isnan(iou[2]) and np.isnan(iou[3])
    dice = per_class_dice(gt, pred, n_classes=4)
    np.testing.assert_allclose(dice[:2], [6 / 7, 8 / 9])
    assert np.isnan(dice[2:]).all()
    # absent classes are excluded, not counted as 0 or 1
    assert mean_iou(gt, pred, n_classes=4) == pytest.approx((3 / 4 + 4 / 5) / 2)


def test_class_only_in_prediction_counts_as_zero():
    gt = np.zeros((2, 2), dtype=np.uint8)
    pred = np.array([[0, 0], [0, 3]], dtype=np.uint8)
    iou = per_class_iou(gt, pred, n_classes=4)
    assert iou[3] == 0.0
    assert iou[0] == pytest.approx(3 / 4)
    assert mean_iou(gt, pred, n_classes=4) == pytest.approx(3 / 8)


def test_ignore_index_drops_gt_pixels_whatever_pred_says():
    gt = np.array([[0, 255, 1], [255, 1, 1]], dtype=np.uint8)
    pred = np.array([[0, 1, 1], [0, 1, 0]], dtype=np.uint8)
    cm = confusion_matrix(gt, pred, n_classes=2, ignore_index=255)
    np.testing.assert_array_equal(cm, [[1, 0], [1, 2]])
    # pred may hold the ignore value where gt is ignored
    pred2 = pred.copy()
    pred2[0, 1] = 255
    np.testing.assert_array_equal(
        confusion_matrix(gt, pred2, n_classes=2, ignore_index=255), [[1, 0], [1, 2]]
    )
    # but not where gt is a real class
    pred2[0, 0] = 255
    with pytest.raises(ValueError, match="pred holds value 255"):
        confusion_matrix(gt, pred2, n_classes=2, ignore_index=255)


def test_3d_hand_computed():
    gt = np.zeros((2, 3, 3), dtype=np.int32)
    gt[1] = 1
    pred = gt.copy()
    pred[1, 0, :] = 0  # three voxels of class 1 called 0
    cm = confusion_matrix(gt, pred, n_classes=2)
    np.testing.assert_array_equal(cm, [[9, 0], [3, 6]])
    np.testing.assert_allclose(per_class_iou(gt, pred, n_classes=2), [9 / 12, 6 / 9])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.int64, np.uint64])
def test_agrees_with_sklearn_on_random_data(dtype):
    rng = np.random.default_rng(7)
    n = 11
    gt = rng.integers(0, n, size=(37, 53, 5)).astype(dtype)
    pred = np.where(rng.random(gt.shape) < 0.6, gt, rng.integers(0, n, size=gt.shape)).astype(
        dtype
    )
    ours = confusion_matrix(gt, pred, n_classes=n)
    ref = sk_confusion_matrix(gt.ravel(), pred.ravel(), labels=np.arange(n))
    np.testing.assert_array_equal(ours, ref)


def test_agrees_with_sklearn_across_chunks_with_ignore(monkeypatch):
    # small blocks so several of them, with and without ignored pixels, are summed
    monkeypatch.setattr(metrics, "_CHUNK", 1000)
    rng = np.random.default_rng(3)
    n = 19
    gt = rng.integers(0, n, size=(64, 97)).astype(np.uint8)
    gt[:20][rng.random((20, 97)) < 0.3] = 255
    pred = rng.integers(0, n, size=gt.shape).astype(np.uint8)
    keep = gt.ravel() != 255
    ref = sk_confusion_matrix(gt.ravel()[keep], pred.ravel()[keep], labels=np.arange(n))
    np.testing.assert_array_equal(confusion_matrix(gt, pred, n_classes=n, ignore_index=255), ref)


def test_rejects_bad_inputs():
    a = np.zeros((3, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="shape mismatch"):
        confusion_matrix(a, np.zeros((3, 4), dtype=np.uint8), n_classes=2)
    with pytest.raises(ValueError, match="integers"):
        confusion_matrix(a.astype(float), a, n_classes=2)
    with pytest.raises(ValueError, match="gt holds value 5"):
        confusion_matrix(a + 5, a, n_classes=2)
    with pytest.raises(ValueError, match="pred holds value -1"):
        confusion_matrix(a.astype(np.int8), a.astype(np.int8) - 1, n_classes=2)


def _band_reference(mask: np.ndarray, d: int) -> np.ndarray:
    """Cheng et al.'s band: mask minus its d-fold 3x3 erosion, image border as background."""
    padded = np.pad(mask, d + 1)
    eroded = ndimage.binary_erosion(padded, structure=np.ones((3,) * mask.ndim), iterations=d)
    inner = tuple(slice(d + 1, -(d + 1)) for _ in range(mask.ndim))
    return mask & ~eroded[inner]


def test_boundary_iou_hand_computed_squares():
    gt = np.zeros((10, 10), dtype=np.uint8)
    gt[2:8, 2:8] = 1
    pred = np.zeros_like(gt)
    pred[2:8, 3:9] = 1
    # diagonal 14.1 * 0.07 -> d = 1: both bands are 20-pixel rings sharing the top and
    # bottom rows of columns 3..7 (10 pixels) -> 10 / 30
    biou = boundary_iou(gt, pred, dilation_ratio=0.07)
    assert biou[1] == pytest.approx(10 / 30)
    # identical masks -> 1 for every present class
    np.testing.assert_allclose(boundary_iou(gt, gt, dilation_ratio=0.07), [1.0, 1.0])


def test_boundary_iou_matches_erosion_reference_on_real_mask(shared_data):
    import tifffile

    mask = tifffile.imread(shared_data / "nuclei_dsb2018" / "mask2d.tif") > 0
    crop = mask[:200, :256]
    shifted = np.roll(crop, 2, axis=1)
    d = round(0.02 * math.hypot(*crop.shape))
    g1, p1 = _band_reference(crop, d), _band_reference(shifted, d)
    g0, p0 = _band_reference(~crop, d), _band_reference(~shifted, d)
    expected = [np.sum(g0 & p0) / np.sum(g0 | p0), np.sum(g1 & p1) / np.sum(g1 | p1)]
    got = boundary_iou(crop.astype(np.uint8), shifted.astype(np.uint8))
    np.testing.assert_allclose(got, expected)
    # boundary IoU punishes the shift more than mask IoU does
    assert got[1] < per_class_iou(crop.astype(np.uint8), shifted.astype(np.uint8), n_classes=2)[1]


def test_boundary_iou_3d_absent_and_ignore():
    gt = np.zeros((6, 8, 8), dtype=np.uint8)
    gt[1:5, 2:6, 2:6] = 2
    pred = gt.copy()
    res = boundary_iou(gt, pred, n_classes=4)
    assert res[0] == 1.0 and res[2] == 1.0
    assert np.isnan(res[1]) and np.isnan(res[3])
    # ignored gt voxels leave the bands: an ignored slab where pred differs changes nothing
    gt_ign = gt.copy()
    gt_ign[:, :, 0] = 255
    pred2 = pred.copy()
    pred2[:, :, 0] = 3
    res2 = boundary_iou(gt_ign, pred2, n_classes=4, ignore_index=255)
    assert np.isnan(res2[3])
    assert res2[2] == 1.0


def test_dataset_level_vs_per_image():
    a_gt = np.array([[0, 0], [0, 1]])
    a_pr = np.array([[0, 0], [0, 0]])  # misses the single class-1 pixel
    b_gt = np.array([[1, 1], [1, 1]])
    b_pr = b_gt.copy()
    s = dataset_scores([(a_gt, a_pr), (b_gt, b_pr)], n_classes=2)
    # summed: class 0 TP 3 FP 1 -> 3/4; class 1 TP 4 FN 1 -> 4/5
    np.testing.assert_allclose(s.dataset_per_class_iou, [3 / 4, 4 / 5])
    assert s.dataset_mean_iou == pytest.approx((3 / 4 + 4 / 5) / 2)
    # image a: class 0 3/4, class 1 0 -> 3/8; image b: class 0 absent, class 1 1 -> 1
    np.testing.assert_allclose(s.per_image_mean_iou, [3 / 8, 1.0])
    assert s.mean_of_per_image_mean_iou == pytest.approx((3 / 8 + 1) / 2)
    assert np.isnan(s.per_image_per_class_iou[1, 0])
    np.testing.assert_array_equal(s.confusion, [[3, 0], [1, 4]])


@pytest.mark.parametrize("layout", ["C", "F", "mixed", "strided"])
def test_memory_layouts_agree_with_sklearn(layout, monkeypatch):
    monkeypatch.setattr(metrics, "_CHUNK", 500)
    rng = np.random.default_rng(5)
    gt = rng.integers(0, 6, size=(12, 17, 9)).astype(np.uint8)
    pred = rng.integers(0, 6, size=(12, 17, 9)).astype(np.int16)
    ref = sk_confusion_matrix(gt.ravel(), pred.ravel(), labels=np.arange(6))
    if layout == "F":
        gt, pred = np.asfortranarray(gt), np.asfortranarray(pred)
    elif layout == "mixed":
        gt = np.asfortranarray(gt)
    elif layout == "strided":
        big_g = np.zeros((24, 17, 9), dtype=np.uint8)
        big_p = np.zeros((24, 17, 9), dtype=np.int16)
        big_g[::2], big_p[::2] = gt, pred
        gt, pred = big_g[::2], big_p[::2]
    np.testing.assert_array_equal(confusion_matrix(gt, pred, n_classes=6), ref)
