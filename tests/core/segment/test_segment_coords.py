"""The single napari (row, col) -> model (x, y) conversion."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segflow.core.segment.coords import to_model_prompts


def test_points_swap_to_xy_and_keep_labels():
    p = to_model_prompts([[5, 7], [0, 9]], [1, 0], image_shape=(10, 12))
    np.testing.assert_array_equal(p.points, [[7, 5], [9, 0]])
    np.testing.assert_array_equal(p.labels, [1, 0])
    assert p.points.dtype == np.float32 and p.labels.dtype == np.int32
    assert p.box is None


def test_single_point_and_default_positive_label():
    p = to_model_prompts((3, 4), image_shape=(10, 10))
    np.testing.assert_array_equal(p.points, [[4, 3]])
    np.testing.assert_array_equal(p.labels, [1])


def test_inclusive_box_becomes_xyxy_with_same_extreme_pixels():
    # an object covering rows 2..5 and cols 1..8 (inclusive)
    mask = np.zeros((10, 12), bool)
    mask[2:6, 1:9] = True
    r, c = np.nonzero(mask)
    p = to_model_prompts(box=(r.min(), c.min(), r.max(), c.max()), image_shape=mask.shape)
    np.testing.assert_array_equal(p.box, [1, 2, 8, 5])


def test_reversed_corners_are_sorted_and_partial_box_clipped():
    p = to_model_prompts(box=(8, 20, -3, 2), image_shape=(10, 12))
    np.testing.assert_array_equal(p.box, [2, 0, 11, 8])


def test_no_prompts_gives_nones():
    p = to_model_prompts(image_shape=(4, 4))
    assert p.points is None and p.labels is None and p.box is None
    p = to_model_prompts([], [], box=(0, 0, 1, 1), image_shape=(4, 4))
    assert p.points is None and p.labels is None and p.box is not None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"points": [[1, 2, 3]]}, r"points must have shape \(N, 2\)"),
        ({"points": [[[1, 2]]]}, r"points must have shape \(N, 2\)"),
        ({"points": [[1, 2]], "point_labels": [1, 0]}, r"point_labels must have shape \(1,\)"),
        ({"points": [[1, 2]], "point_labels": [2]}, "1 \\(positive\\) or 0"),
        ({"points": [[1, np.nan]]}, "NaN or infinite"),
        ({"points": [[10, 2]]}, "outside the 10x12 image"),
        ({"points": [[-1, 2]]}, "outside"),
        ({"point_labels": [1]}, "point_labels given without points"),
        ({"box": (1, 2, 3)}, "box must be"),
        ({"box": (1, 2, 3, np.inf)}, "box contains NaN"),
        ({"box": (20, 30, 40, 50)}, "box .* lies outside the 10x12 image"),
        ({"box": (-9, -9, -1, -1)}, "lies outside"),
    ],
)
def test_bad_prompts_raise_clear_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        to_model_prompts(image_shape=(10, 12), **kwargs)
