"""``segflow prelabel --coarse`` snaps by default; ``--reference`` reports IoU before and after."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from napari_segflow.cli import main
from napari_segflow.core.io.png import read_png, write_png
from napari_segflow.core.prelabel.evaluate import polygon_mask, simplify_polygon
from napari_segflow.core.taxonomy import load_preset


def test_snap_cli_reports_iou_before_and_after(shared_data, tmp_path, capsys):
    tax = load_preset("nuclei")  # one class: any foreground
    for d in ("images", "coarse", "ref"):
        (tmp_path / d).mkdir()
    for stem in ("Abyssinian_1", "Bengal_1"):
        src = shared_data / "pets_oxford"
        img = Image.open(src / "images" / f"{stem}.jpg").convert("RGB")
        img.save(tmp_path / "images" / f"{stem}.png")
        tri = np.asarray(Image.open(src / "trimaps" / f"{stem}.png"))
        truth = (tri == 1).astype(np.uint8)
        coarse = polygon_mask(simplify_polygon(truth > 0, 15), truth.shape).astype(np.uint8)
        write_png(coarse, tmp_path / "coarse" / f"{stem}.png", taxonomy=tax)
        write_png(truth, tmp_path / "ref" / f"{stem}.png", taxonomy=tax)
    out = tmp_path / "out"
    argv = ["prelabel", str(tmp_path / "images"), "--coarse", str(tmp_path / "coarse"),
            "--taxonomy", "nuclei", "--out", str(out), "--reference", str(tmp_path / "ref"),
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "IoU with the reference over 2 images: before" in text
    summary = json.loads((out / "prelabel_summary.json").read_text())
    ref = summary["reference"]
    assert ref["images"] == 2 and 0 < ref["iou_before"] < 1
    changed = 0
    for stem in ("Abyssinian_1", "Bengal_1"):
        rep = json.loads((out / f"{stem}.prelabel.json").read_text())
        assert rep["model"] == "snap"
        coarse = read_png(tmp_path / "coarse" / f"{stem}.png")
        labels = read_png(out / f"{stem}.png")
        # pixels changed in the report are the pixels that differ from the coarse input
        assert rep["pixels_changed"] == int(np.count_nonzero(labels != coarse))
        changed += rep["pixels_changed"]
        ref_img = read_png(tmp_path / "ref" / f"{stem}.png")
        after = np.count_nonzero((labels == 1) & (ref_img == 1)) / np.count_nonzero(
            (labels == 1) | (ref_img == 1)
        )
        assert abs(rep["reference"]["after"] - after) < 1e-6
    assert summary["pixels_changed"] == changed


def test_reference_folder_missing_a_file_is_one_error(shared_data, tmp_path, capsys):
    tax = load_preset("nuclei")
    for d in ("images", "coarse", "ref"):
        (tmp_path / d).mkdir()
    img = Image.open(shared_data / "pets_oxford" / "images" / "Bengal_2.jpg").convert("RGB")
    img.save(tmp_path / "images" / "a.png")
    write_png(np.zeros(img.size[::-1], np.uint8), tmp_path / "coarse" / "a.png", taxonomy=tax)
    argv = ["prelabel", str(tmp_path / "images"), "--coarse", str(tmp_path / "coarse"),
            "--taxonomy", "nuclei", "--out", str(tmp_path / "out"),
            "--reference", str(tmp_path / "ref"), "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "segflow prelabel: error: --reference" in err and "no reference labels for a" in err
    assert not (tmp_path / "out" / "a.png").exists()


def test_a_failed_image_leaves_no_output_files(shared_data, tmp_path, capsys):
    tax = load_preset("nuclei")
    for d in ("images", "coarse"):
        (tmp_path / d).mkdir()
    img = Image.open(shared_data / "pets_oxford" / "images" / "Bengal_2.jpg").convert("RGB")
    img.save(tmp_path / "images" / "good.png")
    img.save(tmp_path / "images" / "bad.png")
    h, w = img.size[::-1]
    coarse = np.zeros((h, w), np.uint8)
    coarse[h // 4 : h // 2, w // 4 : w // 2] = 1
    write_png(coarse, tmp_path / "coarse" / "good.png", taxonomy=tax)
    write_png(coarse[:-5], tmp_path / "coarse" / "bad.png", taxonomy=tax)  # wrong size
    out = tmp_path / "out"
    argv = ["prelabel", str(tmp_path / "images"), "--coarse", str(tmp_path / "coarse"),
            "--taxonomy", "nuclei", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 1
    assert "failed bad: coarse labels" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "good.png",
        "good.png.provenance.npz",
        "good.prelabel.json",
        "prelabel_summary.json",
    ]
