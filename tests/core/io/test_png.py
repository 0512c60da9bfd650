import numpy as np
import pytest
from PIL import Image

from napari_segflow.core.io import ExportError, png_paths, read_png, read_png_taxonomy, write_png
from napari_segflow.core.taxonomy import load_preset, taxonomy_from_dict

WIDE = taxonomy_from_dict(
    {
        "name": "wide",
        "classes": [
            {"id": 1, "name": "a", "color": "#ff0000"},
            {"id": 256, "name": "b", "color": "#00ff00"},
            {"id": 65535, "name": "c", "color": "#0000ff"},
        ],
    }
)


def test_uint8_round_trip_exact_with_pil(tmp_path):
    tax = load_preset("cityscapes")
    rng = np.random.default_rng(0)
    labels = rng.choice([*tax.ids, 255], size=(37, 53)).astype(np.uint8)
    (path,) = write_png(labels, tmp_path / "m.png", taxonomy=tax)
    with Image.open(path) as img:
        assert img.mode == "L"
        raw = np.array(img)
    assert raw.dtype == np.uint8
    np.testing.assert_array_equal(raw, labels)
    np.testing.assert_array_equal(read_png(path), labels)
    assert read_png_taxonomy(path) == tax


def test_uint16_when_ids_exceed_255(tmp_path):
    labels = np.array([[0, 1, 256], [65535, 0, 1]], dtype=np.int64)
    (path,) = write_png(labels, tmp_path / "wide.png", taxonomy=WIDE)
    with Image.open(path) as img:
        assert img.mode.startswith("I;16")
    back = read_png(path)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, labels)


def test_small_ids_stay_uint8_even_from_wide_dtype(tmp_path):
    labels = np.array([[0, 1], [1, 0]], dtype=np.uint16)
    (path,) = write_png(labels, tmp_path / "m.png", taxonomy=WIDE)
    assert read_png(path).dtype == np.uint8


def test_color_preview_uses_palette(tmp_path):
    tax = load_preset("land-use")
    labels = np.array([[0, 1], [4, 3]], dtype=np.uint8)
    index_path, color_path = png_paths(tmp_path, "tile")
    written = write_png(labels, index_path, taxonomy=tax, color_path=color_path)
    assert written == [index_path, color_path]
    rgb = np.array(Image.open(color_path))
    assert rgb.shape == (2, 2, 3)
    assert tuple(rgb[0, 1]) == tax.by_id(1).color
    assert tuple(rgb[1, 0]) == tax.by_id(4).color
    assert tuple(rgb[0, 0]) == (0, 0, 0)
    with pytest.raises(ValueError, match="not a class-index PNG"):
        read_png(color_path)


def test_cityscapes_naming(tmp_path):
    index_path, color_path = png_paths(tmp_path, "aachen_000000_000019", cityscapes=True)
    assert index_path.name == "aachen_000000_000019_gtFine_labelIds.png"
    assert color_path.name == "aachen_000000_000019_gtFine_color.png"


def test_unknown_ids_refused_and_nothing_written(tmp_path):
    tax = load_preset("land-use")
    labels = np.array([[0, 1, 7], [9, 9, 2]], dtype=np.uint8)
    with pytest.raises(
        ExportError, match=r"absent from taxonomy 'land-use': 7, 9; nothing was written"
    ):
        write_png(
            labels, tmp_path / "bad.png", taxonomy=tax, color_path=tmp_path / "bad_color.png"
        )
    assert list(tmp_path.iterdir()) == []


def test_existing_file_untouched_on_refusal(tmp_path):
    tax = load_preset("land-use")
    good = np.ones((3, 3), np.uint8)
    (path,) = write_png(good, tmp_path / "m.png", taxonomy=tax)
    before = path.read_bytes()
    with pytest.raises(ExportError):
        write_png(good * 9, path, taxonomy=tax)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.png"]


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.zeros((2, 2, 2), np.uint8), "at most 2"),
        (np.full((2, 2), 0.5), "must hold integers"),
        (np.zeros((0, 3), np.uint8), "empty"),
    ],
)
def test_bad_arrays_refused(tmp_path, labels, match):
    with pytest.raises(ExportError, match=match):
        write_png(labels, tmp_path / "x.png", taxonomy=load_preset("land-use"))
    assert not (tmp_path / "x.png").exists()


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    def boom(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        write_png(np.ones((4, 4), np.uint8), tmp_path / "m.png", taxonomy=load_preset("land-use"))
    assert list(tmp_path.iterdir()) == []
