import numpy as np
import pytest

from napari_segflow.core.plane import Plane


@pytest.mark.parametrize(
    ("axes", "point", "expected"),
    [
        ((1, 2), (2, 0, 0), lambda v: v[2]),
        ((2, 1), (2, 0, 0), lambda v: v[2].T),
        ((0, 1), (0, 0, 3), lambda v: v[:, :, 3]),
        ((0, 2), (0, 1, 0), lambda v: v[:, 1, :]),
        ((2, 0), (0, 1, 0), lambda v: v[:, 1, :].T),
    ],
)
def test_take_matches_numpy_slicing(axes, point, expected):
    vol = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    plane = Plane(axes=axes, point=point, shape=vol.shape)
    np.testing.assert_array_equal(plane.take(vol), expected(vol))


@pytest.mark.parametrize("axes", [(1, 2), (2, 1), (0, 2), (2, 0), (0, 1)])
def test_indices_write_back_where_take_reads(axes):
    vol = np.zeros((4, 5, 6), dtype=np.uint8)
    plane = Plane(axes=axes, point=(1, 2, 3), shape=vol.shape)
    rng = np.random.default_rng(0)
    mask = rng.random(plane.plane_shape) > 0.5
    vol[plane.indices(mask)] = 7
    np.testing.assert_array_equal(plane.take(vol) == 7, mask)
    assert np.count_nonzero(vol) == mask.sum()  # nothing outside the plane


def test_points_round_trip_and_contains():
    plane = Plane(axes=(2, 0), point=(0, 3, 0), shape=(4, 5, 6))
    rc = np.array([[5.0, 1.0], [0.0, 3.0]])
    data = plane.to_data(rc)
    np.testing.assert_array_equal(data, [[1, 3, 5], [3, 3, 0]])
    np.testing.assert_array_equal(plane.to_plane(data), rc)
    assert plane.contains([[1, 3.2, 5], [1, 4, 5]]).tolist() == [True, False]


def test_rgb_channel_kept_and_box_clipped():
    rgb = np.zeros((7, 8, 3), dtype=np.uint8)
    plane = Plane(axes=(0, 1), point=(0, 0), shape=(7, 8))
    assert plane.take(rgb, channel_axis=True).shape == (7, 8, 3)
    assert plane.box_to_plane([[-3.2, 1.4], [2.6, 20.0]]) == (0, 1, 3, 7)


def test_bad_planes_raise():
    with pytest.raises(ValueError, match="two different axes"):
        Plane(axes=(1, 1), point=(0, 0, 0), shape=(2, 3, 4))
    with pytest.raises(ValueError, match="outside"):
        Plane(axes=(1, 2), point=(5, 0, 0), shape=(2, 3, 4))
    with pytest.raises(ValueError, match="does not match"):
        Plane(axes=(0, 1), point=(0, 0), shape=(3, 4)).take(np.zeros((4, 3)))
