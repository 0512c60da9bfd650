"""Files that lie: about their RLE, their size, their format, their structure, their integrity."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from napari_segflow.core.io.coco import check_rle, read_coco, rle_counts
from napari_segflow.core.io.png import write_png
from napari_segflow.core.provenance import AI_PENDING, ProvenanceError, read_provenance
from napari_segflow.core.taxonomy import load_preset


def _coco(path, images, annotations=(), categories=({"id": 1, "name": "building"},)):
    path.write_text(
        json.dumps(
            {"images": list(images), "annotations": list(annotations), "categories": categories}
        )
    )
    return path


def _rle(mask):
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(r["size"]), "counts": r["counts"].decode()}


IMAGE = {"id": 1, "file_name": "tile.png", "height": 10, "width": 10}


# ------------------------------------------------------------------ COCO
@pytest.mark.parametrize(
    ("segmentation", "fragment"),
    [
        ({"size": [10, 10], "counts": [5, 50]}, "RLE runs cover 55 pixels, the mask has 100"),
        ({"size": [100000, 100000], "counts": "0"}, "exceeds the limit"),
        ({"size": [10, 12], "counts": [120]}, "differs from its image"),
        ({"size": [10, 10], "counts": [50, -10, 60]}, "negative run length"),
        ({"size": [10, 10], "counts": "\x7f\x7f"}, "not a COCO RLE character"),
        ({"size": [10], "counts": [100]}, "must be [height, width]"),
    ],
)
def test_coco_rle_that_lies_is_refused_before_decoding(
    tmp_path, segmentation, fragment, segflow, refused
):
    ann = _coco(
        tmp_path / "in.json",
        [IMAGE],
        [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": segmentation}],
    )
    run = segflow("export", "--taxonomy", "land-use", "--out", tmp_path / "o", ann)
    refused(run, "export", "annotation 0", fragment)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_a_truncated_compressed_rle_is_refused():
    mask = np.zeros((10, 10), bool)
    mask[2:5, 3:8] = True
    good = _rle(mask)
    check_rle(good, 10, 10)  # the real thing passes
    assert sum(rle_counts(good["counts"])) == 100
    for cut in range(1, len(good["counts"])):
        short = dict(good, counts=good["counts"][:-cut])
        with pytest.raises(ValueError, match="RLE (runs cover|counts end)"):
            check_rle(short, 10, 10)


@pytest.mark.parametrize(
    ("image", "fragment"),
    [
        ({"id": 1, "file_name": "x.png", "height": 100000, "width": 100000}, "exceeds the limit"),
        ({"id": 1, "file_name": "x.png"}, "height must be an integer"),
        ({"id": 1, "file_name": "x.png", "height": -4, "width": 3}, "positive integers"),
        (5, "is not an object"),
    ],
)
def test_coco_images_that_lie_are_refused(tmp_path, image, fragment, segflow, refused):
    ann = _coco(tmp_path / "in.json", [image])
    run = segflow("export", "--taxonomy", "land-use", "--out", tmp_path / "o", ann)
    refused(run, "export", "in.json", fragment)
    assert run.seconds < 60


def test_a_coco_file_without_images_is_refused(tmp_path, segflow, refused):
    (tmp_path / "in.json").write_text('{"annotations": []}')
    run = segflow(
        "export", "--taxonomy", "land-use", "--out", tmp_path / "o", tmp_path / "in.json"
    )
    refused(run, "export", "no 'images' list")


def test_prelabel_refuses_a_short_rle_prompt_before_any_model_work(tmp_path, segflow, refused):
    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "imgs" / "tile.png")
    ann = _coco(
        tmp_path / "p.json",
        [IMAGE],
        [{"id": 7, "image_id": 1, "category_id": 1,
          "segmentation": {"size": [10, 10], "counts": [40, 10]}}],
        categories=({"id": 1, "name": "nucleus"},),
    )  # fmt: skip
    run = segflow(
        "prelabel", tmp_path / "imgs", "--coco", ann, "--taxonomy", "nuclei",
        "--out", tmp_path / "o", "--workers", "0", "--no-progress",
    )  # fmt: skip
    refused(run, "prelabel", "annotation 7", "RLE runs cover 50 pixels")


def test_read_coco_still_reads_real_files(shared_data):
    # the checks refuse lies, not real files: the SpaceNet sample reads as before
    labels = read_coco(shared_data / "spacenet_atlanta" / "coco_sample_2.json")
    assert labels and all(a.ndim == 2 and a.any() for a in labels.values())


# ------------------------------------------------------------------ formats by content
def test_a_jpeg_renamed_png_is_not_read_as_labels(tmp_path, segflow, refused):
    grey = np.random.default_rng(1).integers(0, 4, (32, 32), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "mask.png", format="JPEG")
    run = segflow(
        "export", "--taxonomy", "land-use", "--out", tmp_path / "o", tmp_path / "mask.png"
    )
    refused(run, "export", "content is JPEG, not PNG")


def _png_header_only(width, height):
    def chunk(kind, data):
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_a_png_past_the_decompression_bomb_limit_is_one_line(tmp_path, segflow, refused):
    (tmp_path / "bomb.png").write_bytes(_png_header_only(100000, 100000))
    for command in ("export", "rules-check"):
        args = ["--out", tmp_path / "o"] if command == "export" else []
        run = segflow(command, "--taxonomy", "land-use", *args, tmp_path / "bomb.png")
        refused(run, command, "bomb.png", "too many pixels")
        assert run.seconds < 60


# ------------------------------------------------------------------ taxonomies
def _alias_bomb(levels=9):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    lines += ["name: t", f"classes: *a{levels}"]
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path, segflow, refused):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_alias_bomb())
    assert bomb.stat().st_size < 600
    run = segflow("taxonomy", "validate", bomb)
    line = refused(run, "taxonomy", "bomb.yaml", "expands to more than")
    assert len(line) < 300  # the expanded structure is never formatted
    assert run.seconds < 30


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_deep_nesting_is_refused_without_recursion_error(tmp_path, suffix, segflow, refused):
    deep = tmp_path / f"deep{suffix}"
    body = "[" * 100_000 + "]" * 100_000
    deep.write_text(f'{{"name": "t", "classes": {body}}}')
    run = segflow("taxonomy", "validate", deep)
    refused(run, "taxonomy", "nested")


def test_error_messages_never_format_a_big_value(tmp_path, segflow, refused):
    tax = tmp_path / "t.yaml"
    tax.write_text("name: t\nclasses:\n  - {id: [" + ", ".join(["1"] * 50_000) + "], name: a}\n")
    run = segflow("taxonomy", "validate", tax)
    line = refused(run, "taxonomy", "is not an integer")
    assert len(line) < 300


# ------------------------------------------------------------------ provenance sidecars
def _npz_bytes(**arrays):
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


SIDECARS = {
    "empty": (b"", "not an .npz archive"),
    "truncated": (_npz_bytes(provenance=np.zeros((4, 4), np.uint8))[:40], "not an .npz"),
    "wrong key": (_npz_bytes(other=np.zeros((4, 4), np.uint8)), "no 'provenance' array"),
    "npy": (b"\x93NUMPY" + b"\x00" * 100, "not an .npz archive"),
    "shape": (_npz_bytes(provenance=np.zeros((3, 4), np.uint8)), "differs from its labels"),
    "values": (_npz_bytes(provenance=np.full((4, 4), 7, np.uint8)), "value 7"),
    "dtype": (_npz_bytes(provenance=np.zeros((4, 4), np.float32)), "dtype float32"),
    "bomb": (_npz_bytes(provenance=np.zeros(8 << 20, np.uint8)), "exceeds the limit"),
}


@pytest.mark.parametrize("case", sorted(SIDECARS))
def test_a_bad_provenance_sidecar_is_a_clear_error(tmp_path, case, segflow, refused):
    data, fragment = SIDECARS[case]
    mask = tmp_path / "m.png"
    write_png(np.array([[0, 1], [2, 3]] * 2, np.uint8).reshape(4, 2).repeat(2, 1), mask,
              taxonomy=load_preset("land-use"))  # fmt: skip
    (tmp_path / "m.png.provenance.npz").write_bytes(data)
    with pytest.raises(ProvenanceError, match="invalid provenance sidecar"):
        read_provenance(mask, shape=(4, 4))
    run = segflow("export", "--taxonomy", "land-use", "--out", tmp_path / "o", mask)
    refused(run, "export", "m.png.provenance.npz", fragment)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_a_sidecar_zip_bomb_is_refused_from_its_directory(tmp_path):
    # the archive says 1.6 GB; nothing is decompressed to find out
    side = tmp_path / "m.png.provenance.npz"
    with zipfile.ZipFile(side, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("provenance.npy", b"\x00" * (64 << 20))
    with pytest.raises(ProvenanceError, match="exceeds the limit of 1000"):
        read_provenance(tmp_path / "m.png", max_bytes=1000)


def test_a_good_sidecar_still_reads(tmp_path):
    from napari_segflow.core.provenance import write_provenance

    prov = np.zeros((4, 4), np.uint8)
    prov[1, 1] = AI_PENDING
    write_provenance(tmp_path / "m.png", prov)
    assert np.array_equal(read_provenance(tmp_path / "m.png", shape=(4, 4)), prov)
