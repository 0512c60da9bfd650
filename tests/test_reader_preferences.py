"""segflow as napari's preferred reader for the extensions only it reads (.nii, .nii.gz)."""

from __future__ import annotations

import pytest

from napari_segflow._reader import SEGFLOW_READER_PATTERNS, prefer_segflow_readers


@pytest.fixture
def settings():
    from napari.settings import get_settings

    s = get_settings()
    saved = dict(s.plugins.extension2reader)
    yield s
    s.plugins.extension2reader = saved


def test_open_nifti_without_choosing_a_reader(make_napari_viewer, shared_data, settings):
    settings.plugins.extension2reader = {}
    path = str(shared_data / "abdomen_mr" / "example_mr_sm.nii.gz")
    viewer = make_napari_viewer()
    # napari's own reader (the default of viewer.open) fails on NIfTI
    with pytest.raises(OSError, match="Could not find a backend"):
        viewer.open(path)
    # File > Open passes plugin=None: with no preference napari must ask which reader
    from napari.errors import MultipleReaderError

    with pytest.raises(MultipleReaderError):
        viewer.open(path, plugin=None)
    assert prefer_segflow_readers() == list(SEGFLOW_READER_PATTERNS)
    (layer,) = viewer.open(path, plugin=None)  # no question now: segflow reads it
    assert layer.data.shape == (20, 91, 117)
    assert settings.plugins.extension2reader["*.nii.gz"] == "napari-segflow"


def test_a_users_own_choice_is_kept(settings):
    settings.plugins.extension2reader = {"*.nii": "someone-else"}
    assert prefer_segflow_readers() == ["*.nii.gz"]
    assert settings.plugins.extension2reader["*.nii"] == "someone-else"
    assert prefer_segflow_readers() == []
