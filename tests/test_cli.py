import numpy as np
import pytest

from napari_segflow.cli import main
from napari_segflow.core.io import read_png


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "taxonomy" in out and "export" in out


def test_presets_and_validate(capsys, tmp_path):
    assert main(["taxonomy", "presets"]) == 0
    assert "cityscapes" in capsys.readouterr().out
    assert main(["taxonomy", "copy", "land-use", str(tmp_path / "t.yaml")]) == 0
    assert main(["taxonomy", "validate", str(tmp_path / "t.yaml")]) == 0
    assert "valid (5 classes" in capsys.readouterr().out


def test_invalid_taxonomy_is_one_line_error(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nclasses: [{id: 1, name: a, color: '#fff'}]\n")
    assert main(["taxonomy", "validate", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bad colour '#fff'" in err and "Traceback" not in err


def test_export_png_cityscapes(tmp_path, capsys):
    labels = np.array([[0, 1], [255, 18]], np.uint8)
    np.save(tmp_path / "frame.npy", labels)
    out = tmp_path / "out"
    rc = main(
        [
            "export",
            "--taxonomy",
            "cityscapes",
            "--out",
            str(out),
            "--cityscapes",
            "--color",
            str(tmp_path / "frame.npy"),
        ]
    )
    assert rc == 0
    np.testing.assert_array_equal(read_png(out / "frame_gtFine_labelIds.png"), labels)
    assert (out / "frame_gtFine_color.png").is_file()


def test_export_refuses_unknown_ids(tmp_path, capsys):
    np.save(tmp_path / "bad.npy", np.array([[0, 42]], np.uint8))
    rc = main(
        [
            "export",
            "--taxonomy",
            "land-use",
            "--out",
            str(tmp_path / "o"),
            str(tmp_path / "bad.npy"),
        ]
    )
    assert rc == 1
    assert "42" in capsys.readouterr().out
    assert not (tmp_path / "o" / "bad.png").exists()
