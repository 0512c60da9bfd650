"""``--workers`` runs meet the same hostile input as serial ones: huge taxonomies, many files."""

from __future__ import annotations

import contextlib
import json
import socket

import numpy as np
from PIL import Image


def _taxonomy(path, n):
    doc = {"name": "huge", "classes": [{"id": i, "name": f"c{i}", "color": "#102030"}
                                       for i in range(1, n + 1)]}  # fmt: skip
    path.write_text(json.dumps(doc))
    return path


def _gold_and_annotated(tmp_path, n_images=3):
    rng = np.random.default_rng(1)
    for d in ("g", "a"):
        (tmp_path / d).mkdir()
    for n in range(n_images):
        # a few classes spread over the id range, one of them past 19,000
        g = rng.choice([1, 2, 3, 777, 19_999], size=(40, 40)).astype(np.uint16)
        a = g.copy()
        a[:8] = 3
        Image.fromarray(g).save(tmp_path / "g" / f"i{n}.png")
        Image.fromarray(a).save(tmp_path / "a" / f"i{n}.png")


def test_qa_report_with_20000_classes_and_workers_matches_serial(tmp_path, segflow):
    # a dense (K+1)^2 int64 matrix of 20,000 classes is 3.2 GB: past the child's 3 GiB cap
    tax = _taxonomy(tmp_path / "t.json", 20_000)
    _gold_and_annotated(tmp_path)
    common = ("qa-report", "--taxonomy", tax, "--gold", tmp_path / "g",
              "--annotated", tmp_path / "a")  # fmt: skip
    serial = segflow(*common, "--out", tmp_path / "serial", timeout=150)
    assert serial.returncode == 0, serial.stderr[-2000:]
    par = segflow(*common, "--out", tmp_path / "par", "--workers", "2", timeout=150)
    assert par.returncode == 0, par.stderr[-2000:]
    assert "Traceback" not in par.stderr, par.stderr[-3000:]
    one = json.loads((tmp_path / "serial" / "qa_report.json").read_text())
    two = json.loads((tmp_path / "par" / "qa_report.json").read_text())
    assert one["classes"] == two["classes"] == ["c1", "c2", "c3", "c777", "c19999"]
    assert one["per_class_iou"] == two["per_class_iou"]
    assert one["per_class_boundary_iou"] == two["per_class_boundary_iou"]
    assert two["per_class_iou"]["c3"] < 0.75 < two["per_class_iou"]["c19999"]


def test_calibrate_with_20000_classes_and_workers_matches_serial(tmp_path, segflow):
    tax = _taxonomy(tmp_path / "t.json", 20_000)
    _gold_and_annotated(tmp_path)
    common = ("calibrate", "--taxonomy", tax, "--gold", tmp_path / "g",
              "--annotator", f"x={tmp_path / 'a'}")  # fmt: skip
    serial = segflow(*common, "--out", tmp_path / "serial", timeout=150)
    assert serial.returncode == 0, serial.stderr[-2000:]
    par = segflow(*common, "--out", tmp_path / "par", "--workers", "2", timeout=150)
    assert par.returncode == 0, par.stderr[-2000:]
    one = json.loads((tmp_path / "serial" / "report.json").read_text())
    two = json.loads((tmp_path / "par" / "report.json").read_text())
    assert len(two["classes"]) == 5
    assert one == two


def test_a_many_file_workers_run_ends_without_a_traceback(tmp_path, segflow):
    # another run's cluster holds dask's default port 8787 (as on a shared machine) and 2,000
    # tiny files keep the workers busy to the end: this used to print a port warning and, at
    # shutdown, a CommClosedError traceback after exit 0
    held = socket.socket()
    with contextlib.suppress(OSError):  # already held by someone else: the same situation
        held.bind(("127.0.0.1", 8787))
        held.listen()
    rng = np.random.default_rng(2)
    for d in ("g", "a"):
        (tmp_path / d).mkdir()
    for n in range(2000):
        m = rng.integers(0, 3, (8, 8)).astype(np.uint8)
        Image.fromarray(m).save(tmp_path / "g" / f"i{n}.png")
        Image.fromarray(m).save(tmp_path / "a" / f"i{n}.png")
    run = segflow(
        "qa-report", "--taxonomy", "nuclei", "--gold", tmp_path / "g",
        "--annotated", tmp_path / "a", "--out", tmp_path / "o", "--workers", "2", timeout=150,
    )  # fmt: skip
    held.close()
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert "CommClosedError" not in run.stderr
    assert "Port 8787" not in run.stderr
    assert "mean IoU 1.000" in run.stdout
