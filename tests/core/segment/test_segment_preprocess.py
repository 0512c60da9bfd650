"""Intensity windows, presets, Hounsfield detection and the 8-bit picture the models see."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segflow.core.segment.preprocess import (
    WINDOW_PRESETS,
    Percentile,
    Window,
    looks_like_hounsfield,
    preprocess_token,
    resolve_window,
    to_rgb8,
)


def test_soft_tissue_window_maps_level_and_edges():
    img = np.array([[-1000, -160, 40], [240, 1000, 90]], dtype=np.int16)
    out = to_rgb8(img, "ct-soft-tissue")
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], [[0, 0, 128], [255, 255, 159]])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])  # grey repeated to RGB


def test_presets_have_the_usual_ct_values():
    assert WINDOW_PRESETS["ct-soft-tissue"] == Window(40, 400)
    assert WINDOW_PRESETS["ct-bone"].bounds == (-500.0, 1300.0)
    assert WINDOW_PRESETS["ct-lung"].bounds == (-1350.0, 150.0)


def test_default_keeps_uint8_and_stretches_others():
    u8 = np.array([[3, 7], [9, 200]], dtype=np.uint8)
    np.testing.assert_array_equal(to_rgb8(u8)[..., 1], u8)
    u16 = np.array([[100, 200], [300, 500]], dtype=np.uint16)
    np.testing.assert_array_equal(to_rgb8(u16)[..., 0], [[0, 64], [128, 255]])
    flat = np.full((3, 3), 7.5)
    assert to_rgb8(flat).max() == 0  # a constant image does not divide by zero


def test_percentile_clipping_ignores_outliers():
    img = np.tile(np.arange(100, dtype=np.float32), (4, 1))
    img[0, 0] = 1e6  # one hot pixel
    plain = to_rgb8(img)[..., 0]
    clipped = to_rgb8(img, Percentile(0, 99))[..., 0]
    assert plain[1].max() == 0  # the outlier squashes everything else to black
    assert clipped[1, 50] > 100


def test_rgb_and_rgba_inputs():
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0] = 10
    rgba[..., 3] = 255
    out = to_rgb8(rgba)
    assert out.shape == (4, 5, 3) and (out[..., 0] == 10).all()


def test_auto_picks_by_content():
    ct = np.array([[-1024, -1000], [40, 800]], dtype=np.int16)
    np.testing.assert_array_equal(to_rgb8(ct, "auto"), to_rgb8(ct, "ct-soft-tissue"))
    mr = np.array([[0, 50], [400, 900]], dtype=np.uint16)
    np.testing.assert_array_equal(to_rgb8(mr, "auto"), to_rgb8(mr, "percentile"))


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (np.array([-1024, 0, 60, 1200], dtype=np.int16), True),
        (np.array([-3024, -1000, 40], dtype=np.float32), True),
        (np.array([0, 120, 800], dtype=np.int16), False),
        (np.array([0, 120, 800], dtype=np.uint16), False),
        (np.array([-1.0, 0.5, 1.0], dtype=np.float32), False),
        (np.array([-20000, 0], dtype=np.int32), False),
    ],
)
def test_looks_like_hounsfield(image, expected):
    assert looks_like_hounsfield(image) is expected


def test_window_tokens_differ_for_the_cache_key():
    tokens = {
        preprocess_token(w)
        for w in (None, "auto", "ct-soft-tissue", "ct-bone", (40, 401), "percentile")
    }
    assert len(tokens) == 6


@pytest.mark.parametrize(
    ("window", "match"),
    [
        ("ct-liver", "unknown window preset 'ct-liver'"),
        ((40, 0), "width must be a positive number"),
        ((40, -5), "width must be a positive number"),
        (3, "window must be a preset name"),
    ],
)
def test_bad_windows(window, match):
    with pytest.raises(ValueError, match=match):
        resolve_window(window)


def test_bad_percentiles():
    with pytest.raises(ValueError, match="0 <= low < high <= 100"):
        Percentile(50, 10)
