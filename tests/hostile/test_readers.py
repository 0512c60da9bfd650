"""Every registered reader against damaged, empty, mislabelled and oversized files.

The cases run over :data:`napari_segflow.core.io.labels.READERS` (plus the COCO reader), so a
reader added to the registry is held to the same standard without a new test.
"""

from __future__ import annotations

import gzip
import time

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_segflow.core.io.coco import read_coco
from napari_segflow.core.io.labels import READERS, read_label_file

READER_SUFFIXES = sorted(READERS)


def _good_file(path):
    """A small valid file of the format ``path``'s name promises."""
    lab = np.array([[0, 1], [2, 3]], np.uint8)
    name = path.name.lower()
    if name.endswith(".png"):
        Image.fromarray(lab).save(path, format="PNG")
    elif name.endswith((".tif", ".tiff")):
        tifffile.imwrite(path, lab)
    elif name.endswith(".npy"):
        np.save(path, lab)
    elif name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        nib.save(nib.Nifti1Image(lab[..., None], np.eye(4)), str(path))
    else:
        raise AssertionError(f"add a valid sample for {name} to _good_file")
    return path


def _read(path):
    if path.name.endswith(".json"):
        return read_coco(path)
    return read_label_file(path)


def _check_refused(path, fragment=None):
    t0 = time.perf_counter()
    with pytest.raises(ValueError) as err:
        _read(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path.name) in msg and len(msg) < 600, msg
    if fragment:
        assert fragment in msg, msg
    assert time.perf_counter() - t0 < 10


@pytest.mark.parametrize("suffix", [*READER_SUFFIXES, ".json"])
def test_empty_file(tmp_path, suffix):
    p = tmp_path / f"x{suffix}"
    p.write_bytes(b"")
    _check_refused(p, "empty file")


@pytest.mark.parametrize("suffix", [*READER_SUFFIXES, ".json"])
def test_random_bytes(tmp_path, suffix):
    p = tmp_path / f"x{suffix}"
    p.write_bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _check_refused(p)


@pytest.mark.parametrize("suffix", READER_SUFFIXES)
def test_valid_file_reads(tmp_path, suffix):
    arr = np.asarray(_read(_good_file(tmp_path / f"x{suffix}")))
    assert arr.size == 4 and set(np.unique(arr).tolist()) == {0, 1, 2, 3}


@pytest.mark.parametrize("suffix", READER_SUFFIXES)
def test_truncated_file(tmp_path, suffix):
    good = _good_file(tmp_path / f"g{suffix}")
    data = good.read_bytes()
    p = tmp_path / f"x{suffix}"
    p.write_bytes(data[: max(8, len(data) // 2)])
    _check_refused(p)


@pytest.mark.parametrize("suffix", READER_SUFFIXES)
def test_another_format_under_this_name(tmp_path, suffix):
    # a JPEG (or, for a JPEG-like name, a PNG) renamed: refused by content, not decoded
    p = tmp_path / f"x{suffix}"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(p, format="JPEG")
    _check_refused(p, "content is JPEG")


def test_gzip_that_is_not_nifti(tmp_path):
    p = tmp_path / "x.nii.gz"
    p.write_bytes(gzip.compress(b"not a header" * 50))
    _check_refused(p)


def test_npy_with_pickled_objects_is_never_unpickled(tmp_path):
    p = tmp_path / "x.npy"
    np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    _check_refused(p, "not a readable .npy")


def test_npy_whose_header_announces_more_than_the_file_holds(tmp_path):
    p = tmp_path / "x.npy"
    np.save(p, np.zeros((4, 4), np.uint8))
    header = p.read_bytes().replace(b"(4, 4)", b"(99999, 99999)".ljust(6)[:14])
    p.write_bytes(header)
    _check_refused(p)


def test_tiff_whose_header_announces_a_huge_image(tmp_path, monkeypatch):
    from napari_segflow.core.io import labels

    p = _good_file(tmp_path / "x.tif")
    monkeypatch.setattr(labels, "MAX_VOXELS", 3)  # the bound is checked before reading
    _check_refused(p, "above the limit")
