import numpy as np
import pytest

from napari_segflow.core.io.nifti import read_nifti, write_nifti


def test_labels_round_trip_with_source_affine(tmp_path, shared_data):
    src = read_nifti(shared_data / "abdomen_mr" / "example_seg_mr.nii.gz")
    out = write_nifti(src.data, tmp_path / "seg.nii.gz", affine=src.affine)
    back = read_nifti(out)
    np.testing.assert_array_equal(back.data, src.data)
    np.testing.assert_array_equal(back.affine, src.affine)
    assert back.spacing == src.spacing


@pytest.mark.parametrize(
    ("values", "dtype"),
    [((0, 200), np.uint8), ((0, 300), np.uint16), ((-5, 7), np.int16), ((-1, 70000), np.int32)],
)
def test_integer_range_kept_exactly(tmp_path, values, dtype):
    arr = np.array([[values[0], values[1]], [0, 1]], dtype=np.int64)
    back = read_nifti(write_nifti(arr, tmp_path / "x.nii", affine=None))
    assert back.data.dtype == dtype
    np.testing.assert_array_equal(back.data, arr)


def test_truncated_file_is_a_clear_error(tmp_path, shared_data):
    raw = (shared_data / "abdomen_mr" / "example_seg_mr.nii.gz").read_bytes()
    bad = tmp_path / "cut.nii.gz"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="cut.nii.gz: not a readable NIfTI file"):
        read_nifti(bad)
