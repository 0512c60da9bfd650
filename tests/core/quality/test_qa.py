from __future__ import annotations

import json
import math

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from napari_segflow.core.quality.qa import class_frequencies, qa_batch_report, stratified_sample
from napari_segflow.core.taxonomy import load_preset


def _dataset(n=200, seed=1):
    rng = np.random.default_rng(seed)
    freqs = {}
    for i in range(n):
        f = {"road": int(rng.integers(5000, 9000)), "car": int(rng.integers(0, 800))}
        if i % 10 == 0:
            f["pedestrian"] = int(rng.integers(20, 60))
        if i % 25 == 0:
            f["cone"] = 7
        freqs[f"img{i:03d}"] = f
    return freqs


def test_rates_by_frequency_cut_and_by_class():
    freqs = _dataset()
    s = stratified_sample(
        freqs, rates={"common": 0.15, "rare": 0.30, "cone": 1.0}, rare_threshold=0.01, seed=4
    )
    assert s.rare_classes == ["cone", "pedestrian"]
    assert s.rates == {"car": 0.15, "cone": 1.0, "pedestrian": 0.30, "road": 0.15}
    n_with = {c: sum(1 for f in freqs.values() if f.get(c, 0) > 0) for c in s.rates}
    for cls, rate in s.rates.items():
        drawn = [im for im in s.images if any(r.startswith(f"{cls}:") for r in im.reasons)]
        assert len(drawn) == math.ceil(rate * n_with[cls])
        assert all(freqs[im.name].get(cls, 0) > 0 for im in drawn)
    # every cone image is in; the rare class is oversampled relative to the common rate
    assert {im.name for im in s.images} >= {k for k, f in freqs.items() if "cone" in f}
    ped = next(im for im in s.images if any(r.startswith("pedestrian:") for r in im.reasons))
    assert any("rare (frequency" in r for r in ped.reasons)


def test_reproducible_and_seed_dependent():
    freqs = _dataset()
    a = stratified_sample(freqs, rare_threshold=0.01, seed=11)
    b = stratified_sample(freqs, rare_threshold=0.01, seed=11)
    c = stratified_sample(freqs, rare_threshold=0.01, seed=12)
    assert a.to_dict() == b.to_dict()
    assert a.names != c.names
    doc = json.loads(a.to_json())
    assert doc["seed"] == 11 and len(doc["images"]) == len(a.images)
    assert a.to_csv().splitlines()[0] == "image,reasons,classes"


def test_image_frequency_mode_and_bad_rates():
    freqs = {"a": {"x": 10, "y": 1}, "b": {"x": 10}, "c": {"x": 10}, "d": {}}
    s = stratified_sample(
        freqs, rates={"common": 0.0, "rare": 1.0}, rare_threshold=0.5, frequency="images", seed=0
    )
    assert s.class_frequency == {"x": 0.75, "y": 0.25}
    assert s.names == ["a"]
    with pytest.raises(ValueError, match="rate for 'rare'"):
        stratified_sample(freqs, rates={"rare": 1.5})


def test_class_frequencies_counts():
    tax = load_preset("nuclei")
    labels = {"a": np.array([[0, 1, 1], [2, 0, 0]]), "b": np.zeros((2, 2), dtype=np.uint8)}
    assert class_frequencies(labels, tax) == {"a": {"nucleus": 2, "debris": 1}, "b": {}}


def test_batch_report_warns_when_mean_hides_a_failing_class(shared_data):
    seg = np.asarray(
        __import__("nibabel").load(shared_data / "abdomen_mr" / "example_seg_mr.nii.gz").dataobj
    )
    liver = 5
    ann = seg.copy()
    rim = (seg == liver) & ~ndimage.binary_erosion(seg == liver, iterations=3)
    ann[rim] = 0
    gold = {"s0": seg[..., :10], "s1": seg[..., 10:]}
    batch = {"s0": ann[..., :10], "s1": ann[..., 10:]}
    rep = qa_batch_report(gold, batch, threshold=0.75, dilation_ratio=None)
    # without a taxonomy every value is a class, background 0 included
    assert rep.classes[0] == "0"
    expected = (seg == liver) & (ann == liver)
    assert rep.per_class_iou["5"] == pytest.approx(expected.sum() / (seg == liver).sum())
    assert rep.mean_iou > 0.75
    assert rep.below_threshold == ["5"]
    assert (
        len(rep.warnings) == 1 and "looks healthy" in rep.warnings[0] and "'5'" in rep.warnings[0]
    )
    assert set(rep.per_image_mean_iou) == {"s0", "s1"}
    assert rep.per_image_mean_iou_mean == pytest.approx(
        np.mean(list(rep.per_image_mean_iou.values()))
    )


def test_batch_report_files(shared_data, tmp_path):
    m = (tifffile.imread(shared_data / "nuclei_dsb2018" / "mask2d.tif") > 0).astype(np.uint8)
    rep = qa_batch_report({"n": m}, {"n": np.roll(m, 4, axis=0)}, taxonomy=load_preset("nuclei"))
    assert rep.below_threshold == ["nucleus"]
    assert "below 0.75" in rep.warnings[0]
    paths = rep.save(tmp_path)
    doc = json.loads(paths["json"].read_text())
    assert doc["per_class_iou"]["debris"] is None
    assert doc["per_class_iou"]["nucleus"] == pytest.approx(rep.per_class_iou["nucleus"], abs=1e-6)
    assert "data:image/png;base64," in paths["html"].read_text()
    assert paths["csv"].read_text().splitlines()[1].startswith("nucleus,")
