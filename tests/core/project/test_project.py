"""Annotation projects on real images: status, claims, autosaved labels, calibration, QA, delivery."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from napari_segflow.core.io.labels import read_labels
from napari_segflow.core.io.png import write_png
from napari_segflow.core.project import (
    ACCEPTED,
    DONE,
    IN_PROGRESS,
    IN_REVIEW,
    REJECTED,
    TODO,
    ProjectError,
    ProjectExistsError,
    ai_stats,
    create_project,
    export_project,
    open_project,
    project_report,
)
from napari_segflow.core.provenance import (
    AI_CONFIRMED,
    AI_PENDING,
    HUMAN,
    read_provenance,
    write_provenance,
)
from napari_segflow.core.taxonomy import taxonomy_from_dict

PETS = ["Abyssinian_11", "Abyssinian_13", "Abyssinian_10", "Abyssinian_12"]
TAX = {
    "name": "pets",
    "classes": [
        {"id": 1, "name": "pet", "color": "#ff7f0e"},
        {"id": 2, "name": "background", "color": "#1f77b4"},
        {"id": 3, "name": "outline", "color": "#aaaaaa"},
    ],
}


def trimap(shared_data, stem):
    return read_labels(shared_data / "pets_oxford" / "trimaps" / f"{stem}.png")


@pytest.fixture
def images(tmp_path, shared_data):
    """Four real pet photos (linked, never copied) and the gold trimap of the first two."""
    img, gold = tmp_path / "images", tmp_path / "gold"
    img.mkdir()
    gold.mkdir()
    for s in PETS:
        os.symlink(shared_data / "pets_oxford" / "images" / f"{s}.jpg", img / f"{s}.jpg")
    for s in PETS[:2]:
        os.symlink(shared_data / "pets_oxford" / "trimaps" / f"{s}.png", gold / f"{s}.png")
    return img, gold


@pytest.fixture
def project(tmp_path, images):
    img, gold = images
    tax = taxonomy_from_dict(TAX)
    p = create_project(
        tmp_path / "proj", images=img, taxonomy=tax, gold=gold, annotators=["ana", "ben"]
    )
    yield p
    p.close()


def test_create_refuses_an_existing_project_and_changes_nothing(tmp_path, images, project):
    st = project.status()
    assert st["images"] == 4 and st["gold"] == 2
    assert st["status"][TODO] == 4 and set(st["annotators"]) == {"ana", "ben"}
    root = project.root
    before = {p.name: p.stat().st_mtime_ns for p in root.iterdir()}
    with pytest.raises(ProjectExistsError, match="already exists"):
        create_project(root, images=images[0], taxonomy=taxonomy_from_dict(TAX))
    assert {p.name: p.stat().st_mtime_ns for p in root.iterdir()} == before
    with pytest.raises(ProjectError, match="annotator name"):
        create_project(tmp_path / "p2", images=images[0], taxonomy="nuclei", annotators=["a/b"])
    assert not (tmp_path / "p2" / "project.json").exists()


def test_production_claims_saves_resumes_and_skips_done(project, shared_data):
    first = project.next_stem(annotator="ana")
    assert first == PETS[2]  # images in name order: Abyssinian_10 first
    item = project.open_item(first, annotator="ana")
    assert item.source == "new" and item.labels.shape == item.image.shape[:2]
    assert project.images()[0].status == IN_PROGRESS
    with pytest.raises(ProjectError, match="by ana"):
        project.open_item(first, annotator="ben")  # someone else holds it
    assert project.next_stem(annotator="ben") != first

    labels = item.labels.copy()
    labels[20:60, 30:90] = 1
    path = project.save_item(item, labels, seconds=12.5, edits=3)
    assert path == project.root / "labels" / "ana" / f"{first}.png"
    np.testing.assert_array_equal(read_labels(path), labels)
    assert read_provenance(path).shape == labels.shape
    assert project.resume("ana") == ("production", first)

    # a second window on the same project sees the save and resumes the same image
    with open_project(project.root) as other:
        again = other.open_item(first, annotator="ana")
        assert again.source == "saved"
        np.testing.assert_array_equal(again.labels, labels)
        other.save_item(again, status=DONE, seconds=2.5)
    st = project.status()
    assert st["status"][DONE] == 1
    assert st["annotators"]["ana"]["production"] == {DONE: 1}
    assert st["annotators"]["ana"]["seconds"] == pytest.approx(15.0)
    nxt = project.next_stem(annotator="ana", after=first)
    assert nxt != first and project.next_stem(annotator="ana") != first  # done is skipped
    assert project.previous_stem(annotator="ana", before=nxt) == first
    prog = project.progress()
    assert prog["done"] == 1 and prog["class_pixels"]["pet"] == 40 * 60


def test_one_claim_wins_when_two_windows_race(project):
    stem = PETS[3]
    results = []

    def claim(name):
        with open_project(project.root) as p:
            try:
                p.open_item(stem, annotator=name)
                results.append(name)
            except ProjectError:
                results.append("refused")

    threads = [threading.Thread(target=claim, args=(n,)) for n in ("ana", "ben")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results)[-1] == "refused" and len(set(results) - {"refused"}) == 1


def test_prelabels_open_ai_pending_and_count_accepted_and_corrected(project, shared_data):
    stem = PETS[0]
    tri = trimap(shared_data, stem)
    ai = np.where(tri == 1, 1, 0).astype(np.uint8)  # the pet as a pre-label, as prelabel writes
    out = project.root / "prelabels" / f"{stem}.png"
    write_provenance(out, np.where(ai > 0, AI_PENDING, HUMAN).astype(np.uint8))
    write_png(ai, out, taxonomy=project.taxonomy)
    item = project.open_item(stem, annotator="ben")
    assert item.source == "prelabel"
    np.testing.assert_array_equal(item.provenance == AI_PENDING, ai == 1)
    labels, prov = item.labels.copy(), item.provenance.copy()
    rows = np.nonzero(ai.any(axis=1))[0]
    top = np.zeros_like(ai, dtype=bool)
    top[: rows[len(rows) // 2]] = True
    prov[(ai == 1) & top] = AI_CONFIRMED  # the top half accepted as it is
    labels[(ai == 1) & ~top] = 3  # the bottom half corrected to another class
    prov[(ai == 1) & ~top] = HUMAN
    project.save_item(item, labels, prov, status=DONE)
    row = project.work_rows()[0][1]
    row = (row["ai_pixels"], row["ai_accepted"], row["ai_corrected"])
    assert row == (
        int((ai == 1).sum()),
        int(((ai == 1) & top).sum()),
        int(((ai == 1) & ~top).sum()),
    )
    rep = project_report(project).to_dict()["annotators"]["ben"]
    assert rep["ai_accepted_share"] == pytest.approx(
        ((ai == 1) & top).sum() / (ai == 1).sum(), abs=1e-4
    )
    assert ai_stats(labels, prov, None, None) == (0, 0, 0)


def _iou(a, b):
    return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()


def test_calibration_flags_the_class_an_annotator_misses(project, shared_data):
    for stem in PETS[:2]:
        item = project.open_item(stem, annotator="ana", mode="calibration")
        g = trimap(shared_data, stem)
        labels = np.where(g == 3, 2, g).astype(np.uint8)  # ana never draws the outline
        project.save_item(item, labels, status=DONE)
    # production status is untouched by calibration work
    assert project.status()["status"][TODO] == 4
    seen = []
    with pytest.raises(InterruptedError, match="cancelled"):
        project.run_calibration(cancel=lambda: bool(seen), progress=lambda d, t: seen.append(d))
    assert seen == [1] and not (project.root / "calibration.json").exists()  # nothing stored
    rep = project.run_calibration(threshold=0.75, dilation_ratio=None)
    assert rep.annotators == ["ana"] and ("ana", "outline") in rep.flagged
    gs = [trimap(shared_data, s) for s in PETS[:2]]
    inter = sum(((g == 2) & (np.where(g == 3, 2, g) == 2)).sum() for g in gs)
    union = sum(((g == 2) | (np.where(g == 3, 2, g) == 2)).sum() for g in gs)
    assert rep.iou[0, rep.classes.index("background")] == pytest.approx(inter / union)
    flags = project.calibration_flags()["ana"]
    assert flags == ["retrain before handling class 'outline' (IoU 0.00)"]
    assert project.status()["annotators"]["ana"]["flags"] == ["outline"]


def test_qa_batch_review_scores_against_the_correction(project, shared_data):
    done = {}
    for stem in PETS[:2]:
        item = project.open_item(stem, annotator="ana")
        labels = trimap(shared_data, stem).astype(np.uint8)
        project.save_item(item, labels, status=DONE)
        done[stem] = labels
    batch = project.draw_qa_batch(rates={"common": 1.0, "rare": 1.0})
    qa = project.images(mode="qa")
    assert [e.stem for e in qa] == sorted(done) and {e.status for e in qa} == {IN_REVIEW}
    with pytest.raises(ProjectError, match="no longer change"):
        item = project.open_item(PETS[0], annotator="ana")
        project.save_item(item)
    # the reviewer turns the outline of the first image into pet and accepts; rejects the other
    first = project.open_item(PETS[0], annotator="rev", mode="qa")
    assert first.source == "annotator"
    fixed = np.where(first.labels == 3, 1, first.labels).astype(np.uint8)
    project.review(first, ACCEPTED, fixed)
    second = project.open_item(PETS[1], annotator="rev", mode="qa")
    project.review(second, REJECTED)
    rep = project.qa_batches()[0]["report"]  # stored once nothing is pending
    assert rep["batch"] == batch and rep["reviewed"] == 2
    a, c = done[PETS[0]], fixed
    b = done[PETS[1]]
    pet = (np.logical_and(a == 1, c == 1).sum() + (b == 1).sum()) / (
        np.logical_or(a == 1, c == 1).sum() + (b == 1).sum()
    )
    assert rep["overall"]["per_class_iou"]["pet"] == pytest.approx(pet, abs=1e-6)
    assert rep["annotators"]["ana"]["per_class_iou"]["pet"] == pytest.approx(pet, abs=1e-6)
    st = project.status()["status"]
    assert st[ACCEPTED] == 1 and st[REJECTED] == 1
    # the rejected image is back in ana's queue; the reviewer's file is in the reviewer's folder
    assert project.next_stem(annotator="ana", after=PETS[3]) == PETS[1]
    assert project.next_stem(annotator="ben", after=PETS[3]) != PETS[1]
    assert (project.root / "labels" / "rev" / "qa" / f"{PETS[0]}.png").is_file()
    # delivery: the accepted image with the reviewer's correction, the rejected one left out
    summary = export_project(project, project.root.parent / "out", fmt="png")
    assert [p.name for p in summary.written] == [f"{PETS[0]}.png"]
    np.testing.assert_array_equal(read_labels(summary.written[0]), fixed)
    assert summary.left_out[PETS[1]] == REJECTED
    report = project_report(project).to_dict()
    assert report["qa_batches"][0]["per_class_iou"]["pet"] == pytest.approx(pet, abs=1e-4)


def test_export_refuses_unconfirmed_ai_pixels_and_the_labels_folder(project, shared_data):
    stem = PETS[2]
    item = project.open_item(stem, annotator="ana")
    labels = item.labels.copy()
    labels[5:15, 5:15] = 1
    prov = item.provenance.copy()
    prov[5:15, 5:15] = AI_PENDING
    project.save_item(item, labels, prov, status=DONE)
    out = project.root.parent / "delivery"
    with pytest.raises(ValueError, match="unconfirmed AI pixels"):
        export_project(project, out, fmt="png", require_confirmed=True)
    assert not out.exists()  # nothing written
    with pytest.raises(ValueError, match="inside the project's labels"):
        export_project(project, project.root / "labels" / "x", fmt="png")
    summary = export_project(project, out, fmt="coco")
    assert summary.warnings and summary.written == [out / "annotations.json"]
    from napari_segflow.core.io.coco import read_coco

    got = read_coco(out / "annotations.json")
    np.testing.assert_array_equal(got[f"{stem}.jpg"], labels)


def test_geotiff_tile_exports_with_its_georeference(tmp_path, shared_data):
    from napari_segflow.core.io.geotiff import geotiff_info

    src = shared_data / "landsat_rgb" / "RGB.byte.tif"
    p = create_project(tmp_path / "geo", images=[src], taxonomy="land-use", annotators=["ana"])
    item = p.open_item("RGB.byte", annotator="ana")
    assert item.image.shape == (718, 791, 3)
    labels = item.labels.copy()
    labels[item.image.sum(axis=2) > 300] = 1
    p.save_item(item, labels, status=DONE)
    summary = export_project(p, tmp_path / "out", fmt="geotiff")
    info, ref = geotiff_info(summary.written[0]), geotiff_info(src)
    assert info["crs"] == ref["crs"] and info["transform"] == ref["transform"]
    np.testing.assert_array_equal(read_labels(summary.written[0]), labels)
    p.close()


def test_volume_labels_keep_the_nifti_affine(tmp_path, shared_data):
    from napari_segflow.core.io.nifti import read_nifti

    src = shared_data / "abdomen_mr" / "example_mr_sm.nii.gz"
    tax = taxonomy_from_dict(
        {"name": "mr", "classes": [{"id": 1, "name": "liver", "color": "#aa3333"}]}
    )
    p = create_project(tmp_path / "vol", images=[src], taxonomy=tax, annotators=["ana"])
    item = p.open_item("example_mr_sm", annotator="ana")
    assert item.is_volume and item.labels.shape == (117, 91, 20)
    labels = item.labels.copy()
    labels[40:60, 30:50, 5:10] = 1
    path = p.save_item(item, labels, status=DONE)
    assert path.name == "example_mr_sm.nii.gz"
    summary = export_project(p, tmp_path / "out", fmt="nifti")
    vol = read_nifti(summary.written[0])
    np.testing.assert_array_equal(vol.data, labels)
    np.testing.assert_array_equal(vol.affine, read_nifti(src).affine)
    p.close()


def test_a_qa_batch_file_still_being_written_is_read_again_once_complete(project, shared_data):
    """Without hard links a batch file exists empty for a moment: nothing stale is kept."""
    import json

    from napari_segflow.core.project.view import QA_DIR

    for stem in PETS[:2]:
        item = project.open_item(stem, annotator="ana")
        project.save_item(item, trimap(shared_data, stem).astype(np.uint8), status=DONE)
    batch = project.draw_qa_batch(rates={"common": 1.0, "rare": 1.0})
    path = project.root / QA_DIR / f"batch-{batch}.json"
    doc = path.read_bytes()
    path.write_bytes(b"")  # as another process's exclusive create leaves it for a moment
    assert project.images(mode="qa") == []
    assert project.status()["status"].get(IN_REVIEW, 0) == 0
    path.write_bytes(doc)  # complete now: the same listing, read again
    assert [e.stem for e in project.images(mode="qa")] == sorted(PETS[:2])
    assert project.status()["status"][IN_REVIEW] == 2
    assert json.loads(doc)["batch"] == batch
