import numpy as np
import pytest

from napari_segflow.core.provenance import (
    AI_CONFIRMED,
    AI_PENDING,
    provenance_regions,
    region_labels,
)


def test_regions_are_connected_components_with_bbox_and_centroid():
    prov = np.zeros((6, 7), np.uint8)
    prov[1:3, 1:4] = AI_PENDING  # 6 px
    prov[5, 6] = AI_PENDING  # 1 px
    prov[4, 0:3] = AI_CONFIRMED  # not pending
    regions = provenance_regions(prov)
    assert [r.area for r in regions] == [6, 1]
    assert regions[0].bbox == (1, 1, 2, 3)
    assert regions[0].centroid == (1.5, 2.0)
    assert regions[1].bbox == (5, 6, 5, 6)
    confirmed = provenance_regions(prov, state=AI_CONFIRMED)
    assert len(confirmed) == 1 and confirmed[0].area == 3


def test_diagonal_pixels_join_only_with_full_connectivity():
    prov = np.zeros((3, 3), np.uint8)
    prov[0, 0] = prov[1, 1] = AI_PENDING
    assert len(provenance_regions(prov)) == 2
    assert len(provenance_regions(prov, connectivity=2)) == 1


def test_volume_regions_index_back_into_the_volume():
    prov = np.zeros((3, 4, 5), np.uint8)
    prov[1, 1:3, 2:5] = AI_PENDING
    prov[2, 1:3, 2:5] = AI_PENDING
    (region,) = provenance_regions(prov)
    assert region.area == 12
    marked = np.zeros_like(prov)
    marked[region.indices] = 1
    np.testing.assert_array_equal(marked == 1, prov == AI_PENDING)
    labels = np.zeros(prov.shape, int)
    labels[prov == AI_PENDING] = 5
    labels[1, 1, 2] = 9
    assert region_labels(labels, region) == {5: 11, 9: 1}


def test_no_pending_gives_empty_list_and_bad_connectivity_raises():
    assert provenance_regions(np.zeros((4, 4), np.uint8)) == []
    with pytest.raises(ValueError, match="connectivity"):
        provenance_regions(np.zeros((4, 4), np.uint8), connectivity=3)
