"""``segflow rules-check`` on PNG, TIFF and NIfTI masks: output and exit codes."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_segflow.cli import main
from napari_segflow.core.io.nifti import write_nifti
from napari_segflow.core.io.png import write_png
from napari_segflow.core.taxonomy import save_taxonomy, taxonomy_from_dict

TAX = taxonomy_from_dict(
    {
        "name": "abc",
        "classes": [
            {"id": 1, "name": "a", "color": "#ff0000"},
            {"id": 2, "name": "b", "color": "#00ff00"},
            {"id": 3, "name": "c", "color": "#0000ff"},
        ],
        "rules": [{"classes": ["a", "b"], "text": "the a/b edge is b", "resolve_to": "b"}],
    }
)


@pytest.fixture
def tax_file(tmp_path):
    return save_taxonomy(TAX, tmp_path / "abc.yaml")


@pytest.fixture
def masks(tmp_path):
    png = tmp_path / "one.png"
    write_png(np.array([[1, 1, 2], [1, 1, 2], [0, 0, 0]], dtype=np.uint8), png, taxonomy=TAX)
    tif = tmp_path / "two.tif"
    tifffile.imwrite(tif, np.array([[1, 3, 3], [1, 3, 3]], dtype=np.uint16))  # a/c 2
    vol = np.zeros((3, 3, 3), dtype=np.uint8)
    vol[0] = 2
    vol[1] = 3  # b/c: 9 face contacts
    nii = write_nifti(vol, tmp_path / "three.nii.gz", affine=None)
    return png, tif, nii


def test_prints_pairs_rules_and_uncovered_totals(tax_file, masks, capsys):
    png, tif, nii = masks
    assert main(["rules-check", "--taxonomy", str(tax_file), str(png), str(tif), str(nii)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "3 masks" in lines[0] and "3 touching pair(s)" in lines[0]
    # longest contact first: b/c 9, a/c 2, a/b 2
    assert lines[1].split()[:4] == ["b", "/", "c", "9"] and "no rule written" in lines[1]
    ab = next(line for line in lines if line.strip().startswith("a / b"))
    assert "2 px in 1 mask(s)" in ab and "the a/b edge is b" in ab and "-> b" in ab
    tail = out.split("uncovered pairs, by total contact (2):")[1].split()
    assert tail == ["b", "/", "c", "9", "px", "a", "/", "c", "2", "px"]


def test_strict_exit_codes(tax_file, masks, capsys):
    png, tif, _ = masks
    assert main(["rules-check", "--taxonomy", str(tax_file), "--strict", str(tif)]) == 1
    # every touching pair in this mask has a rule
    assert main(["rules-check", "--taxonomy", str(tax_file), "--strict", str(png)]) == 0
    assert "every touching pair has a rule" in capsys.readouterr().out


def test_connectivity_adds_diagonal_contacts(tmp_path, tax_file, capsys):
    npy = tmp_path / "diag.npy"
    np.save(npy, np.array([[1, 0], [0, 3]], dtype=np.uint8))
    assert main(["rules-check", "--taxonomy", str(tax_file), "--strict", str(npy)]) == 0
    assert "0 touching pair(s)" in capsys.readouterr().out
    args = ["rules-check", "--taxonomy", str(tax_file), "--strict", "--connectivity", "2"]
    assert main([*args, str(npy)]) == 1
    assert "a / c" in capsys.readouterr().out


def test_user_errors_exit_2(tmp_path, tax_file, masks, capsys):
    png, _, nii = masks
    base = ["rules-check", "--taxonomy", str(tax_file)]
    assert main([*base, "--connectivity", "3", str(png)]) == 2
    assert "connectivity 3 needs 1..2" in capsys.readouterr().err
    assert main([*base, "--connectivity", "3", str(nii)]) == 0
    assert main([*base, str(tmp_path / "missing.png")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "labels.jpg"
    bad.write_bytes(b"x")
    assert main([*base, str(bad)]) == 2
    assert "unsupported label file type" in capsys.readouterr().err
    assert main(["rules-check", "--taxonomy", str(tmp_path / "nope.yaml"), str(png)]) == 2


def test_unknown_ids_warned_and_skipped(tmp_path, tax_file, capsys):
    tif = tmp_path / "odd.tif"
    tifffile.imwrite(tif, np.array([[1, 9, 2]], dtype=np.uint8))
    assert main(["rules-check", "--taxonomy", str(tax_file), "--strict", str(tif)]) == 0
    captured = capsys.readouterr()
    assert "ids not in taxonomy 'abc' are skipped: 9" in captured.err
    assert "0 touching pair(s)" in captured.out
