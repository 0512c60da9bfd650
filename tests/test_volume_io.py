"""NIfTI and TIFF-stack readers/writers: axis convention, spacing, exact affine round trip."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
import tifffile

from napari_segflow._reader import get_nifti_reader, get_tiff_stack_reader
from napari_segflow._writer import write_labels_nifti
from napari_segflow.core.io.tiff_stack import read_tiff_stack
from napari_segflow.core.io.volume_layout import (
    NIFTI_META_KEY,
    affine_from_scale,
    from_layer_order,
    looks_like_labels,
    to_layer_order,
)
from napari_segflow.core.provenance import AI_PENDING, PROVENANCE_KEY, read_provenance


@pytest.fixture(scope="module")
def mr_paths(shared_data):
    d = shared_data / "abdomen_mr"
    return d / "example_mr_sm.nii.gz", d / "example_seg_mr.nii.gz"


def _read(path):
    reader = get_nifti_reader(str(path))
    assert reader is not None
    (layer,) = reader(str(path))
    return layer


def test_image_opens_slice_axis_first_with_spacing(mr_paths):
    data, kwargs, kind = _read(mr_paths[0])
    src = nib.load(str(mr_paths[0]))
    assert kind == "image"
    assert data.shape == (20, 91, 117)  # the 20-slice axis scrolls
    assert kwargs["scale"] == (3.0, 3.0, 3.0)
    np.testing.assert_array_equal(kwargs["metadata"][NIFTI_META_KEY]["affine"], src.affine)
    # voxel (i, j, k) of the file is layer voxel (k, j, i)
    raw = np.asarray(src.dataobj)
    assert data[7, 40, 100] == raw[100, 40, 7]


def test_labels_open_as_labels(mr_paths):
    data, kwargs, kind = _read(mr_paths[1])
    assert kind == "labels"
    assert data.dtype == np.uint8
    assert set(np.unique(data)) >= {0, 1, 2, 3, 5}


def test_labels_round_trip_keeps_affine_and_voxels(mr_paths, tmp_path):
    data, kwargs, _ = _read(mr_paths[1])
    edited = data.copy()
    edited[10, 40:45, 50:60] = 7
    out = tmp_path / "edited.nii.gz"
    meta = {"metadata": kwargs["metadata"], "scale": kwargs["scale"]}
    written = write_labels_nifti(str(out), edited, meta)
    assert written == [str(out)]
    back = nib.load(str(out))
    src = nib.load(str(mr_paths[1]))
    # the affine is exactly the source's, in both the sform and qform
    np.testing.assert_array_equal(back.affine, src.affine)
    np.testing.assert_array_equal(back.get_sform(), src.affine)
    assert back.header.get_zooms() == src.header.get_zooms()
    np.testing.assert_array_equal(np.asarray(back.dataobj), from_layer_order(edited))
    # and it re-opens as the same layer
    data2, kwargs2, kind2 = _read(out)
    assert kind2 == "labels"
    np.testing.assert_array_equal(data2, edited)


def test_writer_refuses_a_reshaped_layer(mr_paths, tmp_path):
    data, kwargs, _ = _read(mr_paths[1])
    with pytest.raises(ValueError, match="do not match the NIfTI volume"):
        write_labels_nifti(str(tmp_path / "x.nii.gz"), data[:5], {"metadata": kwargs["metadata"]})
    assert not (tmp_path / "x.nii.gz").exists()


def test_writer_without_source_uses_layer_scale_and_writes_provenance(tmp_path):
    labels = np.zeros((4, 5, 6), dtype=np.uint8)
    labels[1:3, 2:4, 1:5] = 2
    prov = np.zeros_like(labels)
    prov[labels > 0] = AI_PENDING
    out = tmp_path / "new.nii"
    meta = {"metadata": {PROVENANCE_KEY: prov}, "scale": (2.5, 0.5, 0.7)}
    written = write_labels_nifti(str(out), labels, meta)
    img = nib.load(str(out))
    np.testing.assert_allclose(img.header.get_zooms(), (0.7, 0.5, 2.5))
    np.testing.assert_allclose(img.affine, affine_from_scale((2.5, 0.5, 0.7)), rtol=1e-6)
    assert len(written) == 2
    np.testing.assert_array_equal(read_provenance(out), from_layer_order(prov))


def test_truncated_and_bad_files_give_a_clear_error(mr_paths, tmp_path):
    blob = mr_paths[0].read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match=r"cut\.nii\.gz: not a readable NIfTI"):
        _read(cut)
    junk = tmp_path / "junk.nii"
    junk.write_bytes(b"not a nifti header at all" * 20)
    with pytest.raises(ValueError, match="not a readable NIfTI"):
        _read(junk)
    short = tmp_path / "short.nii.gz"  # a valid header, voxel data cut off
    raw = gzip.decompress(blob)
    short.write_bytes(gzip.compress(raw[: 352 + 1000]))
    with pytest.raises(ValueError, match="not a readable NIfTI"):
        _read(short)


def test_other_extensions_are_not_claimed():
    assert get_nifti_reader("scan.png") is None
    assert get_nifti_reader(["a.nii"]) is None


def test_layer_order_helpers():
    a = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    assert to_layer_order(a).shape == (4, 3, 2)
    np.testing.assert_array_equal(from_layer_order(to_layer_order(a)), a)
    assert looks_like_labels(np.zeros((50, 50), dtype=np.uint16), "x") is True
    assert looks_like_labels(np.arange(10000).reshape(100, 100), "brain") is False


def test_tiff_stack_reader_reads_planes_and_spacing(tmp_path):
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 4000, size=(7, 32, 40), dtype=np.uint16)
    path = tmp_path / "zstack.tif"
    tifffile.imwrite(
        path,
        stack,
        imagej=True,
        resolution=(1 / 0.25, 1 / 0.2),
        metadata={"spacing": 1.5, "unit": "um"},
    )
    reader = get_tiff_stack_reader(str(path))
    assert reader is not None
    ((data, kwargs, kind),) = reader(str(path))
    assert kind == "image"
    np.testing.assert_array_equal(data, stack)
    np.testing.assert_allclose(kwargs["scale"], (1.5, 0.2, 0.25))
    assert kwargs["metadata"]["segflow_spacing_unit"] == "um"


def test_tiff_stack_reader_leaves_single_images_and_bad_files(tmp_path):
    single = tmp_path / "one.tif"
    tifffile.imwrite(single, np.zeros((16, 16), dtype=np.uint8))
    assert get_tiff_stack_reader(str(single)) is None
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00garbage")
    assert get_tiff_stack_reader(str(bad)) is None
    with pytest.raises(ValueError, match="not a readable TIFF stack"):
        read_tiff_stack(bad)
    with pytest.raises(ValueError, match="single-plane"):
        read_tiff_stack(single)
