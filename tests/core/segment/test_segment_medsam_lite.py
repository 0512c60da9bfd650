"""LiteMedSAM adapter with the real bundled weights, on small images."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segflow.core.segment import (
    Embedding,
    PromptableModel,
    SegmentationResult,
    available_models,
    load_model,
)


def _disk_image(shape=(96, 160), center=(40, 100), radius=18):
    rr, cc = np.mgrid[: shape[0], : shape[1]]
    disk = (rr - center[0]) ** 2 + (cc - center[1]) ** 2 <= radius**2
    rng = np.random.default_rng(0)
    img = 200.0 + 600.0 * disk + rng.normal(0, 20, shape)  # uint16-like MR intensities
    return img.astype(np.uint16), disk


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


@pytest.fixture(scope="module")
def model(medsam):
    return medsam


@pytest.fixture(scope="module")
def disk_case(model):
    img, disk = _disk_image()
    return img, disk, model.embed(img)


def test_available_and_capabilities(model):
    assert available_models()[0] == "medsam-lite"
    assert isinstance(model, PromptableModel)
    assert model.supports_boxes is True
    assert model.supports_points is True  # clicks alone give a mask (see clicks.py)


def test_box_prompt_segments_a_bright_disk(model, disk_case):
    img, disk, emb = disk_case
    assert isinstance(emb, Embedding) and emb.image_shape == img.shape
    r, c = np.nonzero(disk)
    res = model.predict(emb, box=(r.min(), c.min(), r.max(), c.max()))
    assert isinstance(res, SegmentationResult)
    assert res.mask.dtype == bool and res.mask.shape == img.shape
    assert res.logits.shape == (1, 256, 256) and res.logits.dtype == np.float32
    assert isinstance(res.score, float)
    assert _iou(res.mask, disk) > 0.85
    # refining with its own logits keeps the object
    again = model.predict(emb, box=(r.min(), c.min(), r.max(), c.max()), mask_input=res.logits)
    assert _iou(again.mask, disk) > 0.85


def test_box_on_background_does_not_return_the_disk(model, disk_case):
    img, disk, emb = disk_case
    res = model.predict(emb, box=(60, 5, 90, 40))
    assert (res.mask & disk).sum() == 0


def test_multimask_gives_three_candidates_and_picks_best(model, disk_case):
    img, disk, emb = disk_case
    r, c = np.nonzero(disk)
    res = model.predict(emb, box=(r.min(), c.min(), r.max(), c.max()), multimask=True)
    assert res.masks.shape == (3, *img.shape) and res.scores.shape == (3,)
    assert res.score == pytest.approx(float(res.scores.max()))
    np.testing.assert_array_equal(res.mask, res.masks[res.index])


def test_embedding_is_cached_in_memory(model, disk_case):
    img, _, emb = disk_case
    again = model.embed(img.copy())
    assert again is emb and model.last_cache_hit == "memory"


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((0, 5)), "image is empty"),
        (np.zeros((1, 1)), "1x1 pixels"),
        (np.array([[0.0, np.nan], [1.0, 2.0]]), "NaN or infinite"),
        (np.array([[0.0, np.inf], [1.0, 2.0]]), "NaN or infinite"),
        (np.zeros((4, 4, 2)), r"\(H, W\) or \(H, W, C\)"),
        (np.zeros((2, 4, 4, 3)), r"\(H, W\) or \(H, W, C\)"),
    ],
)
def test_bad_images_raise(model, image, match):
    with pytest.raises(ValueError, match=match):
        model.embed(image)


def test_bad_prompts_raise(model, disk_case):
    _, _, emb = disk_case
    with pytest.raises(ValueError, match="outside the 96x160 image"):
        model.predict(emb, box=(200, 200, 300, 300))
    with pytest.raises(ValueError, match=r"points must have shape \(N, 2\)"):
        model.predict(emb, points=[1, 2, 3], box=(0, 0, 10, 10))
    with pytest.raises(ValueError, match="needs a box or at least one point"):
        model.predict(emb)
    with pytest.raises(ValueError, match=r"mask_input must be the \(1, 256, 256\) logits"):
        model.predict(emb, box=(0, 0, 10, 10), mask_input=np.zeros((64, 64)))
    with pytest.raises(ValueError, match="must come from"):
        model.predict(np.zeros((4, 4)), box=(0, 0, 1, 1))


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model 'sam3'.*medsam-lite"):
        load_model("sam3")


def test_apply_clicks_by_hand():
    from napari_segflow.core.segment.medsam_lite import apply_clicks

    logits = np.array(
        [
            [4.0, 3.0, -2.0, -6.0],
            [3.0, 0.5, -1.0, -6.0],
            [-5.0, -5.0, -5.0, -3.0],
        ]
    )
    mask = logits > 0
    box = (0, 0, 3, 2)  # XYXY over the whole array
    # positive click at (x=2, y=1): adds the connected pixels with logits >= -1
    grown = apply_clicks(logits, mask, np.array([[2.0, 1.0]]), np.array([1]), box)
    assert grown.astype(int).tolist() == [[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]]
    # negative click at (x=1, y=1): removes mask pixels with logits <= 0.5 connected to it
    cut = apply_clicks(logits, mask, np.array([[1.0, 1.0]]), np.array([0]), box)
    assert cut.astype(int).tolist() == [[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    # a click that agrees with the mask changes nothing
    same = apply_clicks(logits, mask, np.array([[0.0, 0.0]]), np.array([1]), box)
    np.testing.assert_array_equal(same, mask)


def test_clicks_with_earlier_logits_and_without_box(model, disk_case):
    img, disk, emb = disk_case
    r, c = np.nonzero(disk)
    first = model.predict(emb, box=(r.min(), c.min(), r.max(), c.max()))
    # a negative click in the middle of the disk carves out the low-confidence part around it
    centre = [int(r.mean()), int(c.mean())]
    carved = model.predict(emb, points=[centre], point_labels=[0], mask_input=first.logits)
    assert carved.mask.shape == img.shape
    # (the refinement may also move the outline by a pixel elsewhere: compare around the click)
    rr, cc = np.mgrid[: img.shape[0], : img.shape[1]]
    near = (rr - centre[0]) ** 2 + (cc - centre[1]) ** 2 <= 8**2
    assert carved.mask[near].sum() < first.mask[near].sum()
    assert carved.mask.sum() > 0.5 * first.mask.sum()  # not the whole object
    assert not carved.mask[centre[0], centre[1]]
    # a click alone finds the disk; a negative click alone has nothing to remove: an error
    alone = model.predict(emb, points=[centre], point_labels=[1])
    assert _iou(alone.mask, disk) > 0.8
    with pytest.raises(ValueError, match="first click on an object must be positive"):
        model.predict(emb, points=[centre], point_labels=[0])
    with pytest.raises(ValueError, match="mask_input is empty"):
        model.predict(
            emb, points=[centre], point_labels=[0], mask_input=np.full((1, 256, 256), -5.0)
        )


def test_bad_medsam_checkpoints(tmp_path):
    from napari_segflow.core.segment import CheckpointError

    garbage = tmp_path / "lite_medsam.pth"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="not a readable medsam-lite checkpoint"):
        load_model("medsam-lite", checkpoint=garbage)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model("medsam-lite", checkpoint=tmp_path / "absent.pth")
