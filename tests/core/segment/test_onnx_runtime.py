"""medsam-lite on ONNX Runtime against torch eager: same masks on real data, files built once."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_segflow.core.segment import load_model
from napari_segflow.core.segment.onnx_runtime import build_onnx, weights_hash
from napari_segflow.core.segment.threads import using_threads


@pytest.fixture(scope="module")
def torch_model():
    return load_model("medsam-lite", device="cpu", runtime="torch")


@pytest.fixture(scope="module")
def onnx_model(torch_model):
    m = load_model("medsam-lite", device="cpu", runtime="onnx")
    assert m.runtime == "onnx"
    return m


def _boxes(instances: np.ndarray, min_area: int = 30) -> list[tuple[int, int, int, int]]:
    out = []
    for i in np.unique(instances)[1:]:
        rows, cols = np.nonzero(instances == i)
        if rows.size >= min_area:
            out.append((int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max())))
    return out


def _iou(a, b):
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def _cases(shared_data):
    img = tifffile.imread(shared_data / "nuclei_dsb2018" / "img2d.tif")[:256, :256]
    inst = tifffile.imread(shared_data / "nuclei_dsb2018" / "mask2d.tif")[:256, :256]
    yield "nuclei", img, _boxes(inst)
    from napari_segflow.core.io.nifti import read_nifti

    vol = read_nifti(shared_data / "abdomen_mr" / "example_mr_sm.nii.gz").data
    seg = read_nifti(shared_data / "abdomen_mr" / "example_seg_mr.nii.gz").data
    z = int(np.argmax([len(np.unique(seg[..., k])) for k in range(seg.shape[-1])]))
    yield "abdomen MR", np.asarray(vol[..., z]), _boxes(np.asarray(seg[..., z]))


def test_auto_runs_onnx_on_the_cpu(medsam):
    assert medsam.runtime == "onnx"


def test_onnx_masks_match_torch_on_shared_data(shared_data, torch_model, onnx_model):
    for name, img, boxes in _cases(shared_data):
        assert len(boxes) >= 5, name
        with using_threads(1):
            et, eo = torch_model.embed(img), onnx_model.embed(img)
        diff = np.abs(et.features["image_embed"].numpy() - eo.features["image_embed"].numpy())
        assert diff.max() < 1e-3, name
        for box in boxes:
            rt, ro = torch_model.predict(et, box=box), onnx_model.predict(eo, box=box)
            assert _iou(rt.mask, ro.mask) >= 0.999, (name, box)
            assert abs(rt.score - ro.score) < 1e-3
            assert np.abs(rt.logits - ro.logits).max() < 0.05
        # the three candidates too
        rt = torch_model.predict(et, box=boxes[0], multimask=True)
        ro = onnx_model.predict(eo, box=boxes[0], multimask=True)
        assert ro.masks.shape[0] == 3 and ro.index == rt.index
        assert min(_iou(a, b) for a, b in zip(rt.masks, ro.masks, strict=True)) >= 0.999


def test_batched_boxes_equal_one_by_one(shared_data, onnx_model, torch_model):
    _, img, boxes = next(_cases(shared_data))
    for model in (onnx_model, torch_model):
        emb = model.embed(img)
        many = model.predict_boxes(emb, boxes[:6])
        assert len(many) == 6
        for box, res in zip(boxes[:6], many, strict=True):
            one = model.predict(emb, box=box)
            assert np.array_equal(one.mask, res.mask)
            assert abs(one.score - res.score) < 1e-4
        assert model.predict_boxes(emb, []) == []


def test_onnx_files_are_built_once_and_named_by_the_weights(onnx_model, tmp_path):
    enc, dec = build_onnx(onnx_model.net)
    from napari_segflow.core.segment import onnx_runtime

    tag = weights_hash(onnx_model.net)
    assert enc.name == f"medsam-lite-encoder-{onnx_runtime._ENCODER_RECIPE}-{tag}.onnx"
    assert dec.name == f"medsam-lite-box-decoder-{onnx_runtime._DECODER_RECIPE}-{tag}.onnx"
    assert str(enc) == onnx_model._ort.encoder_path
    before = (enc.stat().st_mtime_ns, dec.stat().st_mtime_ns)
    assert build_onnx(onnx_model.net) == (enc, dec)  # cached: not rebuilt
    assert (enc.stat().st_mtime_ns, dec.stat().st_mtime_ns) == before
    # other weights, another name (the files never serve a model they were not built from)
    import copy

    import torch

    other = copy.deepcopy(onnx_model.net)
    with torch.no_grad():
        next(other.mask_decoder.parameters()).add_(1.0)
    assert weights_hash(other) != weights_hash(onnx_model.net)


def test_runtime_choice_is_checked():
    with pytest.raises(ValueError, match="runtime must be one of"):
        load_model("medsam-lite", device="cpu", runtime="tensorrt")


def test_encoder_calls_are_counted_and_cached_embeddings_are_not(onnx_model):
    img = np.random.default_rng(1).integers(0, 255, (64, 80), dtype=np.uint8)
    n = onnx_model.encoder_calls
    onnx_model.embed(img)
    onnx_model.embed(img)
    assert onnx_model.encoder_calls == n + 1


def test_decoder_image_part_is_computed_once_per_embedding_and_never_served_stale(
    shared_data, torch_model, onnx_model
):
    from napari_segflow.core.segment.onnx_runtime import image_part_path

    ort = onnx_model._ort
    assert image_part_path(ort.decoder_path).is_file()
    (_, img_a, boxes_a), (_, img_b, boxes_b) = _cases(shared_data)
    feats = []
    for img in (img_a, img_b):
        with using_threads(1):
            feats.append(onnx_model.embed(img).features["image_embed"].numpy())
    box = np.asarray([[20.0, 30.0, 120.0, 140.0]], np.float32)
    first = ort.decode(feats[0], box, threads=1)
    kept = ort._image_part
    again = ort.decode(feats[0].copy(), box, threads=1)  # the same pixels: the part is reused
    assert ort._image_part is kept
    other = ort.decode(feats[1], box, threads=1)  # another image: computed for it
    assert ort._image_part is not kept
    back = ort.decode(feats[0], box, threads=1)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(first, back, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(first[0], other[0])
    # the split graphs give the model's own decoder output (torch eager, whole decoder)
    import torch

    with torch.inference_mode():
        low, iou = torch_model._decode_boxes(torch.from_numpy(feats[1]), box, True)
    np.testing.assert_allclose(other[0][:, 1:], low.numpy(), atol=1e-3)
    np.testing.assert_allclose(other[1][:, 1:], iou.numpy(), atol=1e-4)


def test_blocks_to_image_places_every_block_element_at_its_pixel():
    from napari_segflow.core.segment.onnx_runtime import blocks_to_image

    h, w = 3, 5
    rng = np.random.default_rng(0)
    blocks = rng.standard_normal((2, 4, 16 * h * w)).astype(np.float32)
    img = blocks_to_image(blocks, h, w)
    assert img.shape == (2, 4, 4 * h, 4 * w)
    b = blocks.reshape(2, 4, h, w, 2, 2, 2, 2)
    for y, x, i, j, i2, j2 in np.ndindex(h, w, 2, 2, 2, 2):
        np.testing.assert_array_equal(
            img[:, :, 4 * y + 2 * i + i2, 4 * x + 2 * j + j2], b[:, :, y, x, i, j, i2, j2]
        )


def test_files_of_earlier_recipes_are_removed_and_current_ones_of_other_weights_kept(tmp_path):
    from napari_segflow.core.segment import onnx_runtime
    from napari_segflow.core.segment.onnx_runtime import remove_old_recipes

    enc, dec = onnx_runtime._ENCODER_RECIPE, onnx_runtime._DECODER_RECIPE
    old = [
        "medsam-lite-encoder-5088f2731d592ebe.onnx",  # names before recipe tags
        "medsam-lite-box-decoder-80aef0c356c1df82.onnx",
        "medsam-lite-decoder-image-part-80aef0c356c1df82.onnx",
        "medsam-lite-box-decoder-d1-0123456789abcdef.onnx",
    ]
    kept = [
        f"medsam-lite-encoder-{enc}-0123456789abcdef.onnx",  # another checkpoint's, current
        f"medsam-lite-box-decoder-{dec}-fedcba9876543210.onnx",
        f"medsam-lite-decoder-image-part-{dec}-fedcba9876543210.onnx",
        "notes.onnx",
        "medsam-lite-encoder-x.onnx",  # not ours by its name
    ]
    for name in old + kept:
        (tmp_path / name).write_bytes(b"x")
    removed = remove_old_recipes(tmp_path)
    assert sorted(p.name for p in removed) == sorted(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
