"""``segflow project init/status/export/report`` on real nuclei tiles."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_segflow.cli import main
from napari_segflow.core.io.labels import read_labels
from napari_segflow.core.project import DONE, open_project
from napari_segflow.core.provenance import AI_PENDING


@pytest.fixture
def tiles(shared_data, tmp_path):
    """Four 128x128 tiles of the real DSB2018 nuclei image and their masks (nucleus = 1)."""
    img = tifffile.imread(shared_data / "nuclei_dsb2018" / "img2d.tif")
    mask = (tifffile.imread(shared_data / "nuclei_dsb2018" / "mask2d.tif") > 0).astype(np.uint8)
    folder = tmp_path / "images"
    folder.mkdir()
    out = {}
    for k, (r, c) in enumerate([(0, 0), (0, 128), (128, 0), (128, 128)]):
        tifffile.imwrite(folder / f"tile{k}.tif", img[r : r + 128, c : c + 128])
        out[f"tile{k}"] = mask[r : r + 128, c : c + 128]
    return folder, out


def _init(tmp_path, folder, *extra):
    return main(
        [
            "project", "init", str(tmp_path / "proj"), "--images", str(folder),
            "--taxonomy", "nuclei", "--annotators", "ana,ben", *extra,
        ]
    )  # fmt: skip


def test_init_then_refuse_existing_project_with_exit_2(tmp_path, tiles, capsys):
    folder, _ = tiles
    assert _init(tmp_path, folder) == 0
    assert "4 images" in capsys.readouterr().out
    root = tmp_path / "proj"
    before = {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}
    assert _init(tmp_path, folder) == 2
    err = capsys.readouterr().err
    assert err.startswith("segflow project: error:") and "already exists" in err
    assert "Traceback" not in err
    assert {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()} == before
    # bad inputs: one line, exit 2, no project left behind
    assert main(["project", "init", str(tmp_path / "p2"), "--images", str(tmp_path / "nope"),
                 "--taxonomy", "nuclei"]) == 2  # fmt: skip
    assert not (tmp_path / "p2" / "project.json").exists()
    assert main(["project", "status", str(tmp_path / "nope")]) == 2


def _work(root, tiles, *, pending=False):
    with open_project(root) as p:
        for stem in ("tile0", "tile1"):
            item = p.open_item(stem, annotator="ana")
            prov = item.provenance.copy()
            if pending and stem == "tile1":
                prov[tiles[stem] == 1] = AI_PENDING
            p.save_item(item, tiles[stem], prov, seconds=30.0, edits=4, status=DONE)
        item = p.open_item("tile2", annotator="ben")
        p.save_item(item, tiles["tile2"], seconds=10.0)


def test_status_json_keys_and_counts(tmp_path, tiles, capsys):
    folder, masks = tiles
    _init(tmp_path, folder)
    _work(tmp_path / "proj", masks)
    capsys.readouterr()
    assert main(["project", "status", str(tmp_path / "proj"), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["images"] == 4
    assert st["status"] == {
        "todo": 1, "in_progress": 1, "done": 2, "skipped": 0,
        "in_review": 0, "accepted": 0, "rejected": 0,
    }  # fmt: skip
    assert st["annotators"]["ana"]["production"] == {"done": 2}
    assert st["annotators"]["ana"]["seconds"] == pytest.approx(60.0)
    assert st["annotators"]["ben"]["production"] == {"in_progress": 1}
    assert main(["project", "status", str(tmp_path / "proj")]) == 0
    assert "ana: done 2" in capsys.readouterr().out


def test_export_png_and_require_confirmed(tmp_path, tiles, capsys):
    folder, masks = tiles
    _init(tmp_path, folder)
    root = tmp_path / "proj"
    _work(root, masks, pending=True)
    out = tmp_path / "delivery"
    rc = main(["project", "export", str(root), "--format", "png", "--out", str(out),
               "--require-confirmed"])  # fmt: skip
    assert rc == 2 and "unconfirmed AI pixels" in capsys.readouterr().err
    assert not out.exists()
    rc = main(["project", "export", str(root), "--format", "png", "--out", str(out)])
    assert rc == 0
    cap = capsys.readouterr()
    assert "warning:" in cap.err and "2 file(s)" in cap.out
    assert sorted(p.name for p in out.iterdir()) == ["tile0.png", "tile1.png"]
    np.testing.assert_array_equal(read_labels(out / "tile0.png"), masks["tile0"])
    rc = main(["project", "export", str(root), "--format", "coco", "--out", str(tmp_path / "c")])
    assert rc == 0 and (tmp_path / "c" / "annotations.json").is_file()
    # plain TIFF tiles have no georeference: GeoTIFF export fails per image, exit 1
    rc = main(
        ["project", "export", str(root), "--format", "geotiff", "--out", str(tmp_path / "g")]
    )
    assert rc == 1 and "no georeference" in capsys.readouterr().err


def test_report_json_and_html(tmp_path, tiles, capsys):
    folder, masks = tiles
    _init(tmp_path, folder)
    root = tmp_path / "proj"
    _work(root, masks)
    with open_project(root) as p:
        p.draw_qa_batch(rates={"common": 1.0, "rare": 1.0})
        for e in p.images(mode="qa"):
            item = p.open_item(e.stem, annotator="rev", mode="qa")
            fixed = item.labels.copy()
            fixed[:10] = 0  # the reviewer removes the top rows
            p.review(item, "accepted", fixed)
    out = tmp_path / "report"
    assert main(["project", "report", str(root), "--out", str(out)]) == 0
    doc = json.loads((out / "project_report.json").read_text())
    ana = doc["annotators"]["ana"]
    assert ana["images"] == 2 and ana["images_per_hour"] == pytest.approx(120.0)
    assert ana["seconds_per_image"] == pytest.approx(30.0)
    assert ana["edits_per_image"] == pytest.approx(4.0)
    assert ana["class_mix"] == {"nucleus": 1.0}  # share of labelled pixels; no debris drawn
    (batch,) = doc["qa_batches"]
    a, b = masks["tile0"], masks["tile1"]
    fa, fb = a.copy(), b.copy()
    fa[:10] = 0
    fb[:10] = 0
    iou = ((fa == 1).sum() + (fb == 1).sum()) / ((a == 1).sum() + (b == 1).sum())
    assert batch["per_class_iou"]["nucleus"] == pytest.approx(iou, abs=1e-6)
    page = (out / "project_report.html").read_text()
    assert page.count("data:image/png;base64,") == 2  # throughput and QA plots, embedded
    assert "<h3>Batch 1</h3>" in page


def test_take_over_a_held_image_only_once_it_is_stale(tmp_path, tiles, capsys):
    folder, _ = tiles
    _init(tmp_path, folder)
    root = tmp_path / "proj"
    with open_project(root) as p:
        stem = p.next_stem(annotator="ana")
        item = p.open_item(stem, annotator="ana")  # ana's window holds it, then goes away
        labels = item.labels.copy()
        labels[:8, :8] = 1
        p.save_item(item, labels, seconds=5.0, edits=1)
    capsys.readouterr()
    take = ["project", "take-over", str(root), stem, "--annotator", "ben"]
    # ana worked on it just now: refused, one line, nothing changed
    assert main(take) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ana worked on it" in err
    with open_project(root) as p, pytest.raises(ValueError, match="by ana"):
        p.open_item(stem, annotator="ben")
    # unknown image or a negative age: one line, exit 2
    assert main(["project", "take-over", str(root), "nope", "--annotator", "ben"]) == 2
    assert "no image 'nope'" in capsys.readouterr().err
    assert not list((root / "claims").glob("nope@*"))  # refused before any claim file
    assert main([*take, "--stale-after", "-1"]) == 2
    capsys.readouterr()
    # once stale (here: at once), ben takes it and can open it; ana's next save is refused
    assert main([*take, "--stale-after", "0"]) == 0
    assert f"{stem}: now held by ben" in capsys.readouterr().out
    with open_project(root) as p:
        assert p.open_item(stem, annotator="ben").annotator == "ben"
        with pytest.raises(ValueError):
            p.save_item(item, labels, seconds=1.0, edits=1)
