"""Mistakes that used to print a traceback, or were silently ignored: one line, exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from napari_segflow.core.prelabel.prompts import image_stem, read_coco_prompts
from napari_segflow.core.taxonomy import load_preset


@pytest.fixture
def empty_npy(tmp_path):
    p = tmp_path / "empty.npy"
    np.save(p, np.zeros((0, 0), np.uint8))
    return p


@pytest.mark.parametrize(
    ("command", "extra"),
    [("export", ["--out", "o"]), ("rules-check", []), ("polygon-check", ["--out", "o"])],
)
def test_empty_npy(empty_npy, command, extra, segflow, refused):
    run = segflow(command, "--taxonomy", "land-use", *extra, empty_npy, cwd=empty_npy.parent)
    refused(run, command, "empty.npy", "empty array")


def _images(tmp_path, names=("tile",)):
    d = tmp_path / "imgs"
    d.mkdir()
    for n in names:
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(d / f"{n}.png")
    return d


def _prompts(tmp_path, images):
    p = tmp_path / "p.json"
    p.write_text(json.dumps({"format": "segflow-prompts/1", "images": images}))
    return p


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ({"class": "nucleus", "points": [[4, 4]], "labels": 5}, "labels must be 1/0"),
        ({"class": "nucleus", "box": [5, 5, 2, 2]}, "is inverted"),
        ({"class": "nucleus", "box": [1, 2, 3]}, "box must have shape (4,)"),
    ],
)
def test_bad_prompt_entries(tmp_path, entry, fragment, segflow, refused):
    imgs = _images(tmp_path)
    run = segflow(
        "prelabel", imgs, "--prompts", _prompts(tmp_path, {"tile": [entry]}),
        "--taxonomy", "nuclei", "--out", tmp_path / "o", "--workers", "0", "--no-progress",
    )  # fmt: skip
    refused(run, "prelabel", "tile[0]", fragment)


def test_prompt_keys_that_match_no_image_are_reported(tmp_path):
    # the CLI says which prompt keys are not used; here the core part: keys are names, and a
    # ../ path never reaches a file outside the image folder
    from napari_segflow.core.prelabel.batch import make_tasks

    tax = load_preset("nuclei")
    imgs = _images(tmp_path, ["a"])
    from napari_segflow.core.prelabel.prompts import read_prompts_json

    prompts = read_prompts_json(
        _prompts(tmp_path, {"a": [{"class": 1, "box": [1, 1, 4, 4]}],
                            "../a": [{"class": 1, "box": [1, 1, 4, 4]}]}),
        taxonomy=tax,
    )  # fmt: skip
    tasks, problems = make_tasks({"a": imgs / "a.png"}, prompts=prompts)
    assert [t.stem for t in tasks] == ["a"] and not problems
    assert sorted(set(prompts) - {"a"}) == ["../a"]


def test_unmatched_prompt_keys_are_printed(tmp_path, segflow):
    imgs = _images(tmp_path, ["a"])
    p = _prompts(tmp_path, {"../a": [{"class": 1, "box": [1, 1, 4, 4]}]})
    run = segflow(
        "prelabel", imgs, "--prompts", p, "--taxonomy", "nuclei", "--out", tmp_path / "o",
        "--workers", "0", "--no-progress",
    )  # fmt: skip
    assert "Traceback" not in run.stderr
    assert "not used: prompts for '../a' match no image" in run.stderr
    assert "not queued: a: no prompts for this image" in run.stderr
    assert run.returncode == 1 and not (tmp_path / "a.png").exists()


@pytest.mark.parametrize("content", [None, b"not a checkpoint"])
def test_a_bad_checkpoint_is_one_error_before_any_image(tmp_path, content, segflow, refused):
    imgs = _images(tmp_path, ["a", "b", "c"])
    (tmp_path / "coarse").mkdir()
    for n in "abc":
        Image.fromarray(np.pad(np.ones((4, 4), np.uint8), 6)).save(
            tmp_path / "coarse" / f"{n}.png"
        )
    ckpt = tmp_path / "w.pth"
    if content is not None:
        ckpt.write_bytes(content)
    run = segflow(
        "prelabel", imgs, "--coarse", tmp_path / "coarse", "--taxonomy", "nuclei",
        "--out", tmp_path / "o", "--checkpoint", ckpt, "--workers", "0", "--no-progress",
    )  # fmt: skip
    refused(run, "prelabel", "checkpoint" if content is None else "cannot load model")
    assert "failed:" not in run.stderr + run.stdout  # not once per image
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").glob("*.png"))


def test_coco_file_names_with_dots_match_their_image(tmp_path):
    doc = {
        "images": [{"id": 1, "file_name": "sub/tile.v2.png", "height": 8, "width": 8}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 3, 3]}],
        "categories": [{"id": 1, "name": "nucleus"}],
    }
    (tmp_path / "c.json").write_text(json.dumps(doc))
    prompts = read_coco_prompts(tmp_path / "c.json", taxonomy=load_preset("nuclei"))
    assert list(prompts) == ["tile.v2"] and image_stem("tile.v2.png") == "tile.v2"


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({"images": [{"id": 1, "file_name": "a.png"}]}, "missing height, width"),
        ({"images": ["a.png"]}, "not an object"),
        ({"images": {}}, "no 'images' list"),
    ],
)
def test_coco_prompt_files_with_missing_keys(tmp_path, doc, fragment, segflow, refused):
    imgs = _images(tmp_path)
    (tmp_path / "c.json").write_text(json.dumps(doc))
    run = segflow(
        "prelabel", imgs, "--coco", tmp_path / "c.json", "--taxonomy", "nuclei",
        "--out", tmp_path / "o", "--workers", "0", "--no-progress",
    )  # fmt: skip
    refused(run, "prelabel", fragment)


# ------------------------------------------------------------------ up-front checks
def test_bad_window_is_refused_before_any_image(tmp_path, segflow, refused):
    imgs = _images(tmp_path)
    (tmp_path / "coarse").mkdir()
    run = segflow(
        "prelabel", imgs, "--coarse", tmp_path / "coarse", "--taxonomy", "nuclei",
        "--out", tmp_path / "o", "--window", "ct-bogus", "--no-progress",
    )  # fmt: skip
    refused(run, "prelabel", "--window", "unknown window preset")


def test_out_that_cannot_be_a_folder_is_refused_up_front(tmp_path, segflow, refused):
    imgs = _images(tmp_path)
    (tmp_path / "coarse").mkdir()
    (tmp_path / "file").write_text("x")
    run = segflow(
        "prelabel", imgs, "--coarse", tmp_path / "coarse", "--taxonomy", "nuclei",
        "--out", tmp_path / "file" / "o", "--no-progress",
    )  # fmt: skip
    refused(run, "prelabel", "is a file, not a folder")


def test_read_only_out_is_refused_up_front(tmp_path, segflow, refused):
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders; the is-a-file case covers the check")
    imgs = _images(tmp_path)
    (tmp_path / "coarse").mkdir()
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    run = segflow(
        "prelabel", imgs, "--coarse", tmp_path / "coarse", "--taxonomy", "nuclei",
        "--out", ro, "--no-progress",
    )  # fmt: skip
    refused(run, "prelabel", "cannot write there")


def test_unknown_class_in_rate_is_refused(tmp_path, segflow, refused):
    d = tmp_path / "labels"
    d.mkdir()
    Image.fromarray(np.array([[0, 1], [2, 0]], np.uint8)).save(d / "a.png")
    run = segflow(
        "qa-sample", d, "--taxonomy", "nuclei", "--rate", "catz=0.5", "--out", tmp_path / "o"
    )
    refused(run, "qa-sample", "--rate", "'catz'")


# ------------------------------------------------------------------ huge taxonomies
def _taxonomy(path, n, ignore_id=None):
    doc = {"name": "huge", "classes": [{"id": i, "name": f"c{i}", "color": "#102030"}
                                       for i in range(1, n + 1)]}  # fmt: skip
    if ignore_id is not None:
        doc["ignore_id"] = ignore_id
    path.write_text(json.dumps(doc))
    return path


def _gold_and_annotated(tmp_path):
    rng = np.random.default_rng(0)
    for d in ("g", "a"):
        (tmp_path / d).mkdir()
    for n in range(2):
        g = rng.integers(1, 6, (48, 48)).astype(np.uint16)
        a = g.copy()
        a[:6] = 3
        Image.fromarray(g).save(tmp_path / "g" / f"i{n}.png")
        Image.fromarray(a).save(tmp_path / "a" / f"i{n}.png")


def test_calibration_with_65535_classes_and_an_ignore_id(tmp_path, segflow):
    tax = _taxonomy(tmp_path / "t.json", 65535, ignore_id=0)
    _gold_and_annotated(tmp_path)
    run = segflow(
        "calibrate", "--taxonomy", tax, "--gold", tmp_path / "g",
        "--annotator", f"x={tmp_path / 'a'}", "--out", tmp_path / "o",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert len(report["classes"]) == 5  # the classes present, not 65,535 empty rows


def test_class_indices_past_65535_do_not_overflow(tmp_path):
    from napari_segflow.core.quality.calibration import class_indices
    from napari_segflow.core.taxonomy import load_taxonomy

    tax = load_taxonomy(_taxonomy(tmp_path / "t.json", 65535, ignore_id=0))
    idx = class_indices(np.array([0, 1, 65535, 7]), tax, gold=True)
    # class i sits at index i - 1; the ignore id at k + 1 = 65536, past uint16
    assert idx.tolist() == [65536, 0, 65534, 6]


def test_qa_report_with_20000_classes_is_bounded(tmp_path, segflow):
    tax = _taxonomy(tmp_path / "t.json", 20000)
    _gold_and_annotated(tmp_path)
    run = segflow(
        "qa-report", "--taxonomy", tax, "--gold", tmp_path / "g",
        "--annotated", tmp_path / "a", "--out", tmp_path / "o", timeout=90,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "'c3' is at IoU" in run.stdout  # the damaged class is found among 20,000
    assert run.seconds < 90


# ------------------------------------------------------------------ taxonomy inside masks
def test_a_big_taxonomy_is_not_copied_whole_into_every_png(tmp_path):
    from PIL import Image as PILImage

    from napari_segflow.core.io.png import (
        TAXONOMY_HASH_CHUNK,
        read_png_taxonomy,
        taxonomy_digest,
        write_png,
    )
    from napari_segflow.core.taxonomy import LabelClass, Taxonomy

    lab = np.zeros((16, 16), np.uint8)
    small = load_preset("land-use")
    write_png(lab, tmp_path / "s.png", taxonomy=small)
    assert read_png_taxonomy(tmp_path / "s.png") == small  # compact copy reads back
    rng = np.random.default_rng(0)
    big = Taxonomy(
        "big",
        tuple(
            LabelClass(i, f"c{i}", (1, 2, 3), rng.bytes(60).hex())  # incompressible text
            for i in range(1, 20001)
        ),
    )
    write_png(lab, tmp_path / "b.png", taxonomy=big)
    assert (tmp_path / "b.png").stat().st_size < 4096  # not 2.4 MB of text per mask
    with PILImage.open(tmp_path / "b.png") as im:
        assert im.text[TAXONOMY_HASH_CHUNK] == taxonomy_digest(big)
