"""Data loss first: no command writes onto one of its inputs; crash leftovers never survive."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_segflow.core.atomic import atomic_path, is_partial, remove_stale_parts
from napari_segflow.core.io.labels import READERS, read_label_file


@pytest.fixture
def nuclei_pair(shared_data, tmp_path):
    """A real nuclei crop as an image folder and its labels as a coarse folder."""
    img = tifffile.imread(shared_data / "nuclei_dsb2018" / "img2d.tif")[:64, :64]
    inst = tifffile.imread(shared_data / "nuclei_dsb2018" / "mask2d.tif")[:64, :64]
    (tmp_path / "imgs").mkdir()
    (tmp_path / "coarse").mkdir()
    Image.fromarray(np.asarray(img, np.uint8) if img.dtype != np.uint8 else img).save(
        tmp_path / "imgs" / "a.png"
    )
    Image.fromarray((inst > 0).astype(np.uint8)).save(tmp_path / "coarse" / "a.png")
    return tmp_path


@pytest.mark.parametrize("onto", ["imgs", "coarse"])
def test_prelabel_out_onto_an_input_folder_is_refused(
    nuclei_pair, onto, segflow, refused, tree_digest
):
    before = {d: tree_digest(nuclei_pair / d) for d in ("imgs", "coarse")}
    # spelled differently from the input: ./imgs/../imgs resolves to the same folder
    out = nuclei_pair / onto / ".." / onto
    run = segflow(
        "prelabel", nuclei_pair / "imgs", "--coarse", nuclei_pair / "coarse",
        "--taxonomy", "nuclei", "--out", out, "--workers", "0", "--no-progress",
    )  # fmt: skip
    refused(run, "prelabel", "would overwrite the input")
    assert {d: tree_digest(nuclei_pair / d) for d in ("imgs", "coarse")} == before
    assert run.seconds < 60


def test_prelabel_out_through_a_symlink_to_the_input_is_refused(
    nuclei_pair, segflow, refused, tree_digest
):
    os.symlink(nuclei_pair / "imgs", nuclei_pair / "alias")
    before = tree_digest(nuclei_pair / "imgs")
    run = segflow(
        "prelabel", nuclei_pair / "imgs", "--coarse", nuclei_pair / "coarse",
        "--taxonomy", "nuclei", "--out", nuclei_pair / "alias", "--no-progress",
    )  # fmt: skip
    refused(run, "prelabel", "would overwrite the input")
    assert tree_digest(nuclei_pair / "imgs") == before


def _report_inputs(root):
    """Gold, annotated and label folders of two tiny nuclei masks, and a taxonomy file."""
    from napari_segflow.core.taxonomy import load_preset, save_taxonomy

    for d in ("gold", "ann"):
        (root / d).mkdir()
    mask = np.zeros((16, 16), np.uint8)
    mask[4:10, 4:12] = 1
    for name in ("a", "b"):
        Image.fromarray(mask).save(root / "gold" / f"{name}.png")
        Image.fromarray(np.roll(mask, 1, axis=1)).save(root / "ann" / f"{name}.png")
    (root / "prior").mkdir()
    save_taxonomy(load_preset("nuclei"), root / "prior" / "taxonomy_ai_gated.yaml")
    return root


# each case: a command whose --out (or a report file it writes) is one of its inputs
REPORT_CASES = {
    "qa-sample onto its labels": ("qa-sample", ["{r}/gold", "--taxonomy", "nuclei",
                                                "--out", "{r}/gold/../gold"]),
    "qa-report onto the gold": ("qa-report", ["--taxonomy", "nuclei", "--gold", "{r}/gold",
                                              "--annotated", "{r}/ann", "--out", "{r}/gold"]),
    "qa-report --workers onto the batch": (
        "qa-report", ["--taxonomy", "nuclei", "--gold", "{r}/gold", "--annotated", "{r}/ann",
                      "--out", "{r}/ann", "--workers", "2"]),
    "calibrate onto an annotator": ("calibrate", ["--taxonomy", "nuclei", "--gold", "{r}/gold",
                                                  "--annotator", "x={r}/ann", "--out", "{r}/ann"]),
    "calibrate's gated taxonomy onto its --taxonomy": (
        "calibrate", ["--taxonomy", "{r}/prior/taxonomy_ai_gated.yaml", "--gold", "{r}/gold",
                      "--prelabels", "{r}/ann", "--out", "{r}/prior"]),
    "polygon-check onto a mask file": ("polygon-check", ["--taxonomy", "nuclei",
                                                         "--out", "{r}/gold/a.png",
                                                         "{r}/gold/a.png"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REPORT_CASES))
def test_report_commands_never_write_onto_an_input(tmp_path, case, segflow, refused, tree_digest):
    root = _report_inputs(tmp_path)
    before = tree_digest(root)
    command, args = REPORT_CASES[case]
    run = segflow(command, *[a.format(r=root) for a in args])
    refused(run, command, "would overwrite the input")
    assert tree_digest(root) == before


def test_report_commands_still_write_into_a_folder_of_their_own(tmp_path, segflow):
    root = _report_inputs(tmp_path)
    run = segflow(
        "calibrate", "--taxonomy", root / "prior" / "taxonomy_ai_gated.yaml",
        "--gold", root / "gold", "--prelabels", root / "ann", "--out", root / "next",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert (root / "next" / "taxonomy_ai_gated.yaml").is_file()
    run = segflow("polygon-check", "--taxonomy", "nuclei", root / "gold" / "a.png", cwd=root)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (root / "polygon_check.json").is_file()


def test_export_png_never_replaces_a_sibling_photo(tmp_path, segflow, refused, tree_digest):
    # a.tif (labels) beside a.png (a photograph): --out . would write a.png
    tifffile.imwrite(tmp_path / "a.tif", np.array([[0, 1], [2, 3]], np.uint8))
    photo = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "a.png")
    before = tree_digest(tmp_path)
    run = segflow("export", "--taxonomy", "land-use", "--out", ".", "a.tif", cwd=tmp_path)
    refused(run, "export", "a.png", "beside the inputs")
    assert tree_digest(tmp_path) == before


def test_export_png_onto_its_own_input_is_refused(tmp_path, segflow, refused, tree_digest):
    Image.fromarray(np.array([[0, 1], [2, 3]], np.uint8)).save(tmp_path / "m.png")
    before = tree_digest(tmp_path)
    run = segflow("export", "--taxonomy", "land-use", "--out", tmp_path, tmp_path / "m.png")
    refused(run, "export", "would overwrite the input")
    assert tree_digest(tmp_path) == before


def test_export_geotiff_onto_the_like_scene_is_refused(
    shared_data, tmp_path, segflow, refused, tree_digest
):
    scene = tmp_path / "scene.tif"
    shutil.copy(shared_data / "spacenet_atlanta" / "sample_geotiff.tif", scene)
    lab = tmp_path / "lab.tif"
    tifffile.imwrite(lab, np.zeros((4, 4), np.uint8))
    before = tree_digest(scene)
    run = segflow(
        "export", "--format", "geotiff", "--taxonomy", "land-use",
        "--out", scene, lab, "--like", scene,
    )  # fmt: skip
    refused(run, "export", "would overwrite the input", "scene.tif")
    assert tree_digest(scene) == before


def test_export_nifti_onto_the_like_scan_is_refused(
    shared_data, tmp_path, segflow, refused, tree_digest
):
    scan = tmp_path / "scan.nii.gz"
    shutil.copy(shared_data / "abdomen_mr" / "example_seg_mr.nii.gz", scan)
    lab = tmp_path / "lab.npy"
    np.save(lab, np.zeros((2, 2, 2), np.uint8))
    before = tree_digest(scan)
    # a hard link: a different name for the very same file
    os.link(scan, tmp_path / "same.nii.gz")
    run = segflow(
        "export", "--format", "nifti", "--taxonomy", "land-use",
        "--out", tmp_path / "same.nii.gz", lab, "--like", scan,
    )  # fmt: skip
    refused(run, "export", "would overwrite the input")
    assert tree_digest(scan) == before


def test_export_coco_onto_the_coco_input_is_refused(
    shared_data, tmp_path, segflow, refused, tree_digest
):
    ann = tmp_path / "ann.json"
    shutil.copy(shared_data / "spacenet_atlanta" / "coco_sample_2.json", ann)
    before = tree_digest(ann)
    run = segflow(
        "export", "--format", "coco", "--taxonomy", "land-use", "--out", ann, ann, cwd=tmp_path
    )
    refused(run, "export", "would overwrite the input")
    assert tree_digest(ann) == before


# ------------------------------------------------------------------ crash leftovers
def _leftover(folder, name=".m.999999999-abc.part.tif", size=1 << 16):
    """A temporary as a killed writer leaves it (its pid no longer runs)."""
    p = folder / name
    tifffile.imwrite(p, np.zeros((size // 256, 256), np.uint8))
    return p


def test_stale_temporaries_are_removed_and_live_ones_kept(tmp_path):
    dead = _leftover(tmp_path)
    mine = tmp_path / f".n.{os.getpid()}-xyz.part.png"
    mine.write_bytes(b"being written")
    old = tmp_path / ".o.abc.part.png"  # no pid in the name: removed only when old
    old.write_bytes(b"x")
    assert remove_stale_parts(tmp_path) == [dead]
    assert mine.exists() and old.exists()
    os.utime(old, (1, 1))
    assert remove_stale_parts(tmp_path) == [old]


def test_a_killed_export_leaves_nothing_the_next_run_keeps(tmp_path, segflow):
    out = tmp_path / "out"
    out.mkdir()
    leftovers = [_leftover(out), _leftover(out, ".x.999999998-q.part.png")]
    src = tmp_path / "m.npy"
    np.save(src, np.array([[0, 1], [2, 3]], np.uint8))
    run = segflow("export", "--taxonomy", "land-use", "--out", out, src)
    assert run.returncode == 0, run.stderr
    assert "removed 2 unfinished temporary file(s)" in run.stderr
    assert not any(p.exists() for p in leftovers)
    assert sorted(p.name for p in out.iterdir()) == ["m.png"]


def test_atomic_temporaries_are_marked_and_never_read(tmp_path):
    with atomic_path(tmp_path / "scene.tif") as tmp:
        assert is_partial(tmp) and tmp.name.endswith(".part.tif")
        tifffile.imwrite(tmp, np.zeros((4, 4), np.uint8))
        for suffix in READERS:
            name = tmp_path / f".scene.{os.getpid()}-k.part{suffix}"
            shutil.copy(tmp, name)
            with pytest.raises(ValueError, match="unfinished temporary file"):
                read_label_file(name)
    assert not is_partial(tmp_path / "scene.tif")


def test_a_geotiff_temporary_is_not_opened_as_a_raster(shared_data, tmp_path, segflow, refused):
    from napari_segflow.core.io.geotiff import geotiff_info

    part = tmp_path / ".scene.999999999-k.part.tif"
    shutil.copy(shared_data / "spacenet_atlanta" / "sample_geotiff.tif", part)
    with pytest.raises(ValueError, match="unfinished temporary file"):
        geotiff_info(part)
    run = segflow("export", "--taxonomy", "land-use", "--out", tmp_path / "o", part)
    refused(run, "export", "unfinished temporary file")


def test_readers_of_folders_skip_temporaries(tmp_path):
    from napari_segflow.core.io.labels import label_files
    from napari_segflow.core.prelabel.batch import image_files

    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png")
    _leftover(tmp_path, ".b.999999999-z.part.tif")
    assert list(label_files(tmp_path)) == ["a"]
    assert list(image_files(tmp_path)) == ["a"]
