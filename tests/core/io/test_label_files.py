from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_segflow.core.io.labels import (
    label_files,
    label_stem,
    match_label_files,
    read_labels,
)
from napari_segflow.core.io.nifti import write_nifti
from napari_segflow.core.io.png import write_png
from napari_segflow.core.taxonomy import load_preset


@pytest.fixture
def labels2d():
    rng = np.random.default_rng(0)
    return rng.integers(0, 3, size=(20, 30)).astype(np.uint8)


def test_reads_png_tiff_nifti(tmp_path, labels2d):
    tax = load_preset("nuclei")
    write_png(labels2d, tmp_path / "a.png", taxonomy=tax)
    tifffile.imwrite(tmp_path / "b.tif", labels2d.astype(np.uint16))
    vol = np.stack([labels2d, labels2d[::-1]], axis=-1)
    write_nifti(vol, tmp_path / "c.nii.gz", affine=None)
    np.testing.assert_array_equal(read_labels(tmp_path / "a.png"), labels2d)
    np.testing.assert_array_equal(read_labels(tmp_path / "b.tif"), labels2d)
    np.testing.assert_array_equal(read_labels(tmp_path / "c.nii.gz"), vol)


def test_rejects_fractional_and_unknown(tmp_path, labels2d):
    tifffile.imwrite(tmp_path / "f.tif", labels2d.astype(np.float32) + 0.5)
    with pytest.raises(ValueError, match="whole numbers"):
        read_labels(tmp_path / "f.tif")
    tifffile.imwrite(tmp_path / "w.tif", labels2d.astype(np.float32))
    assert read_labels(tmp_path / "w.tif").dtype.kind == "i"
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(ValueError, match="unknown label file type"):
        read_labels(tmp_path / "x.jpg")
    with pytest.raises(ValueError, match="no such file"):
        read_labels(tmp_path / "nope.png")


def test_stems_and_matching(tmp_path, labels2d):
    assert label_stem("x/case.nii.gz") == "case"
    assert label_stem("x/case.TIFF") == "case"
    gold, ann = tmp_path / "gold", tmp_path / "ann"
    gold.mkdir()
    ann.mkdir()
    for name in ("one", "two", "three"):
        tifffile.imwrite(gold / f"{name}.tif", labels2d)
    (gold / "README.txt").write_text("not a label file")
    tifffile.imwrite(ann / "one.tif", labels2d)
    tifffile.imwrite(ann / "two.tif", labels2d[:10])
    tifffile.imwrite(ann / "extra.tif", labels2d)
    assert list(label_files(gold)) == ["one", "three", "two"]
    m = match_label_files(gold, {"bob": ann})
    assert sorted(m.reference) == ["one", "three", "two"]
    assert list(m.others["bob"]) == ["one"]
    text = "\n".join(m.problems)
    assert "bob: two.tif: shape (10, 30) differs from reference (20, 30)" in text
    assert "bob: three: missing" in text
    assert "bob: extra.tif: no reference file of that name" in text
    tifffile.imwrite(ann / "one.tiff", labels2d)
    with pytest.raises(ValueError, match="two label files named 'one'"):
        label_files(ann)
