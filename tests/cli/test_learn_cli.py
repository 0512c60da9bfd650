"""``segflow learn train`` and ``segflow prelabel --classifier`` on the real abdominal MR."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_segflow.cli import main
from napari_segflow.core.io.labels import read_labels
from napari_segflow.core.provenance import AI_PENDING, HUMAN, read_provenance
from napari_segflow.core.taxonomy import load_taxonomy, save_taxonomy, taxonomy_from_dict

GROUPS = {"liver": (5,), "spleen": (1,), "kidneys": (2, 3), "back muscles": (46, 47, 48, 49)}
TRAIN = (3, 10, 16)  # annotated slices (last NIfTI axis)


@pytest.fixture(scope="module")
def mr_project(shared_data, tmp_path_factory):
    import nibabel as nib

    root = tmp_path_factory.mktemp("mr")
    src = nib.load(shared_data / "abdomen_mr" / "example_mr_sm.nii.gz")
    seg = np.asarray(nib.load(shared_data / "abdomen_mr" / "example_seg_mr.nii.gz").dataobj)
    gold = np.zeros(seg.shape, np.uint8)
    for gid, ids in enumerate(GROUPS.values(), start=1):
        gold[np.isin(seg, ids)] = gid
    sparse = np.full(seg.shape, 255, np.uint8)
    sparse[..., list(TRAIN)] = gold[..., list(TRAIN)]
    for d in ("images", "labels"):
        (root / d).mkdir()
    image = np.asarray(src.dataobj).astype(np.int16)
    nib.Nifti1Image(image, src.affine).to_filename(root / "images" / "mr.nii.gz")
    nib.Nifti1Image(sparse, src.affine).to_filename(root / "labels" / "mr.nii.gz")
    colors = ["#aa5500", "#aa00aa", "#00aa00", "#884444"]
    tax = taxonomy_from_dict(
        {
            "name": "abdomen",
            "classes": [
                {"id": i + 1, "name": n, "color": colors[i]} for i, n in enumerate(GROUPS)
            ],
        }
    )
    save_taxonomy(tax, root / "taxonomy.yaml")
    return root, gold


def _train_argv(root, out, *extra):
    argv = ["learn", "train", str(root / "images"), "--labels", str(root / "labels")]
    return argv + ["--taxonomy", str(root / "taxonomy.yaml"), "--out", str(out), *extra]


def test_train_then_prelabel_a_folder(mr_project, tmp_path, capsys):
    root, gold = mr_project
    model = tmp_path / "mr.npz"
    argv = _train_argv(root, model, "--no-embeddings", "--trees", "16", "--report")
    argv += [str(tmp_path / "cv.json"), "--gated-taxonomy", str(tmp_path / "gated.yaml")]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "mean IoU" in text and f"wrote {model}" in text
    report = json.loads((tmp_path / "cv.json").read_text())
    cv = {c["name"]: c for c in report["cross_validation"]["classes"]}
    assert cv["liver"]["iou"] > 0.7 and cv["liver"]["ai_assist"] is True
    gated = load_taxonomy(tmp_path / "gated.yaml")
    off = {c.name for c in gated.classes if not c.ai_assist}
    assert off == {n for n, c in cv.items() if c["iou"] is not None and c["iou"] < 0.70}

    out = tmp_path / "out"
    pre = ["prelabel", str(root / "images"), "--classifier", str(model), "--taxonomy"]
    pre += [str(tmp_path / "gated.yaml"), "--out", str(out), "--workers", "0", "--no-progress"]
    assert main(pre) == 0
    assert "done 1, skipped 0, failed 0" in capsys.readouterr().out
    labels = read_labels(out / "mr.nii.gz")
    prov = read_provenance(out / "mr.nii.gz")
    assert labels.shape == gold.shape == prov.shape
    # every proposal is AI-pending, nothing else is
    assert np.array_equal(prov == AI_PENDING, labels != 0)
    assert np.all(prov[labels == 0] == HUMAN)
    # gated-off classes are never pre-labelled; the liver is found on unlabelled slices
    for name in off:
        assert not np.any(labels == gated.by_name(name).id)
    test = [z for z in range(gold.shape[-1]) if z not in TRAIN]
    a, b = gold[..., test] == 1, labels[..., test] == 1
    assert np.count_nonzero(a & b) / np.count_nonzero(a | b) > 0.7
    doc = json.loads((out / "mr.prelabel.json").read_text())
    assert doc["method"] == "pixel-classifier" and doc["pixels"]["liver"] > 0
    assert sorted(doc["skipped_classes"]) == sorted(off)
    # resumable: a rerun skips the finished volume
    assert main(pre) == 0
    assert "done 0, skipped 1, failed 0" in capsys.readouterr().out


def test_bad_input_gives_one_line_and_writes_nothing(mr_project, tmp_path, capsys):
    root, _ = mr_project
    # labels with ids the taxonomy lacks
    other = tmp_path / "tax.yaml"
    save_taxonomy(
        taxonomy_from_dict(
            {"name": "liver-only", "classes": [{"id": 1, "name": "liver", "color": "#aa5500"}]}
        ),
        other,
    )
    model = tmp_path / "m.npz"
    argv = ["learn", "train", str(root / "images"), "--labels", str(root / "labels")]
    argv += ["--taxonomy", str(other), "--out", str(model), "--no-embeddings", "--cv", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("segflow learn: error:") and "absent from the taxonomy" in err
    assert "Traceback" not in err and not model.exists()
    # a model file from another taxonomy
    good = tmp_path / "good.npz"
    assert main(_train_argv(root, good, "--no-embeddings", "--cv", "0", "--trees", "4")) == 0
    capsys.readouterr()
    pre = ["prelabel", str(root / "images"), "--classifier", str(good), "--taxonomy", str(other)]
    pre += ["--out", str(tmp_path / "out"), "--workers", "0", "--no-progress"]
    assert main(pre) == 2
    err = capsys.readouterr().err
    assert "trained for taxonomy 'abdomen'" in err and not (tmp_path / "out").exists()
    # an empty label folder
    (tmp_path / "empty").mkdir()
    argv = _train_argv(root, tmp_path / "x.npz", "--no-embeddings")
    argv[argv.index("--labels") + 1] = str(tmp_path / "empty")
    assert main(argv) == 2
    assert "no label file for mr" in capsys.readouterr().err
    # the output may not be an input
    argv = _train_argv(root, root / "labels" / "mr.nii.gz", "--no-embeddings")
    assert main(argv) == 2
    assert "is an input file" in capsys.readouterr().err
