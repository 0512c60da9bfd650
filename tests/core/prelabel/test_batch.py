"""Batch pre-labelling: serial vs a 2-worker dask cluster, killed workers, interruption, resume."""

from __future__ import annotations

import json
import os
import shutil
import signal

import numpy as np
import pytest
import tifffile

from napari_segflow.core.io.png import read_png, write_png
from napari_segflow.core.prelabel.batch import (
    ImageTask,
    PrelabelJob,
    image_files,
    make_tasks,
    output_paths,
    output_valid,
    run_prelabel,
)
from napari_segflow.core.prelabel.evaluate import polygon_mask, simplify_polygon
from napari_segflow.core.provenance import read_provenance
from napari_segflow.core.taxonomy import load_preset

TILES = {"t0": (0, 0), "t1": (0, 256), "t2": (256, 64), "t3": (300, 300)}
SIZE = 80


@pytest.fixture(scope="module")
def dataset(shared_data, tmp_path_factory):
    """Four real nuclei tiles with 15-vertex polygon labels, and one unreadable image."""
    root = tmp_path_factory.mktemp("batch")
    img = tifffile.imread(shared_data / "nuclei_dsb2018" / "img2d.tif")
    inst = tifffile.imread(shared_data / "nuclei_dsb2018" / "mask2d.tif")
    tax = load_preset("nuclei")
    (root / "images").mkdir()
    (root / "coarse").mkdir()
    for stem, (r, c) in TILES.items():
        tile, ins = img[r : r + SIZE, c : c + SIZE], inst[r : r + SIZE, c : c + SIZE]
        coarse = np.zeros(ins.shape, np.uint8)
        for i in np.unique(ins)[1:]:
            m = ins == i
            if m.sum() >= 16:
                coarse[polygon_mask(simplify_polygon(m, 15), m.shape)] = 1
        tifffile.imwrite(root / "images" / f"{stem}.tif", tile)
        write_png(coarse, root / "coarse" / f"{stem}.png", taxonomy=tax)
    (root / "images" / "broken.tif").write_bytes(b"II*\x00 this is not a TIFF")
    write_png(np.zeros((SIZE, SIZE), np.uint8), root / "coarse" / "broken.png", taxonomy=tax)
    tasks, problems = make_tasks(image_files(root / "images"), coarse_dir=root / "coarse")
    assert not problems and [t.stem for t in tasks] == ["broken", *TILES]
    return root, tasks, tax


# looser than the defaults, so that the model changes pixels and the comparisons mean something
LOOSE = {"min_iou": 0.8, "confidence": 2.0, "min_width": 1, "edge_check": False}


def _job(out, tax) -> PrelabelJob:
    return PrelabelJob(out_dir=str(out), taxonomy=tax.to_dict(), options=LOOSE)


def _outputs(out) -> dict[str, tuple[np.ndarray, np.ndarray, list]]:
    res = {}
    for stem in TILES:
        labels, _, report = output_paths(out, stem)
        objects = json.loads(report.read_text())["objects"]
        res[stem] = (read_png(labels), read_provenance(labels), objects)
    return res


def _assert_same(a, b) -> None:
    assert a.keys() == b.keys()
    for stem in a:
        assert np.array_equal(a[stem][0], b[stem][0]), stem
        assert np.array_equal(a[stem][1], b[stem][1]), stem
        assert a[stem][2] == b[stem][2], stem


@pytest.fixture(scope="module")
def serial(dataset, tmp_path_factory):
    root, tasks, tax = dataset
    out = tmp_path_factory.mktemp("serial")
    summary = run_prelabel(_job(out, tax), tasks, workers=0)
    return out, summary


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


def test_serial_run_summary_and_bad_image(serial, dataset):
    out, summary = serial
    assert sorted(summary.done) == sorted(TILES)
    assert list(summary.failed) == ["broken"]
    assert summary.failed["broken"].startswith("broken.tif: ")
    doc = json.loads((out / "prelabel_summary.json").read_text())
    assert doc["failed"] == {"broken": summary.failed["broken"]}
    outs = _outputs(out)
    # the model did something, and every output carries its provenance
    assert any(o[1].any() for o in outs.values())
    assert not list(out.glob(".*part*"))


def test_two_workers_equal_serial_and_rerun_skips(serial, dataset, client, tmp_path):
    root, tasks, tax = dataset
    job = _job(tmp_path, tax)
    summary = run_prelabel(job, tasks, client=client)
    assert sorted(summary.done) == sorted(TILES) and list(summary.failed) == ["broken"]
    _assert_same(_outputs(tmp_path), _outputs(serial[0]))
    again = run_prelabel(job, tasks, client=client)
    assert sorted(again.skipped) == sorted(TILES) and not again.done


def test_killed_worker_loses_nothing(serial, dataset, client, tmp_path):
    root, tasks, tax = dataset
    pids = client.run(os.getpid)
    killed = []

    def kill_one(outcome, finished, total):
        # after the first finished image, kill a worker that did not produce it
        if outcome.status == "done" and not killed:
            victim = next(a for a in pids if a != outcome.worker)
            os.kill(pids[victim], signal.SIGKILL)
            killed.append(victim)

    summary = run_prelabel(_job(tmp_path, tax), tasks, client=client, progress=kill_one)
    assert killed
    # the killed worker's image was rescheduled (or, at worst, failed and is redone below)
    rerun = run_prelabel(_job(tmp_path, tax), tasks, client=client)
    assert sorted(summary.done + rerun.done) == sorted(TILES)
    assert sorted(rerun.skipped) == sorted(summary.done)
    _assert_same(_outputs(tmp_path), _outputs(serial[0]))
    assert not list(tmp_path.glob(".*part*"))


def test_interrupted_job_resumes_to_the_same_result(serial, dataset, tmp_path):
    root, tasks, tax = dataset
    job = _job(tmp_path, tax)

    def stop_after_two(outcome, finished, total):
        if finished == 3:  # broken + two images
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_prelabel(job, tasks, progress=stop_after_two)
    finished = [s for s in TILES if output_valid(tmp_path, s)]
    assert len(finished) == 2
    summary = run_prelabel(job, tasks)
    assert sorted(summary.skipped) == sorted(finished)
    assert sorted(summary.done) == sorted(set(TILES) - set(finished))
    _assert_same(_outputs(tmp_path), _outputs(serial[0]))


def test_corrupt_or_partial_outputs_are_redone(serial, dataset, tmp_path):
    root, tasks, tax = dataset
    shutil.copytree(serial[0], tmp_path, dirs_exist_ok=True)
    labels0, _, _ = output_paths(tmp_path, "t0")
    labels0.write_bytes(labels0.read_bytes()[:50])  # truncated PNG
    _, side1, _ = output_paths(tmp_path, "t1")
    side1.unlink()  # killed between writing two files
    assert not output_valid(tmp_path, "t0") and not output_valid(tmp_path, "t1")
    assert output_valid(tmp_path, "t2", (SIZE, SIZE)) and not output_valid(tmp_path, "t2", (9, 9))
    summary = run_prelabel(_job(tmp_path, tax), tasks)
    assert sorted(summary.done) == ["t0", "t1"]
    assert sorted(summary.skipped) == ["t2", "t3"]
    _assert_same(_outputs(tmp_path), _outputs(serial[0]))


def test_make_tasks_reports_images_without_prompts(dataset):
    root, _, _ = dataset
    images = image_files(root / "images")
    tasks, problems = make_tasks(images, prompts={"t0": [{"class_id": 1, "box": [1, 1, 9, 9]}]})
    assert [t.stem for t in tasks] == ["t0"]
    assert isinstance(tasks[0], ImageTask) and tasks[0].prompts[0]["box"] == [1, 1, 9, 9]
    assert set(problems) == {"broken", "t1", "t2", "t3"}
    with pytest.raises(ValueError, match="exactly one prompt source"):
        make_tasks(images)
