"""SAM 2 video propagation through a volume: real sam2 code with random weights.

Random weights give meaningless masks, so these tests check the plumbing: the frames the
predictor sees are exactly our normalised slices, the state matches what ``init_state`` builds,
tracking runs forward and backward from the prompted slice, several objects at once.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_segflow.core.segment import Prompt, PropagationCancelled, segment_volume_multi
from napari_segflow.core.segment.preprocess import Window
from napari_segflow.core.segment.sam2_volume import (
    SAM2_MEAN,
    SAM2_STD,
    SliceFrames,
    find_sam2_base,
    init_volume_state,
    propagate_video,
    video_predictor_from,
)
from napari_segflow.core.segment.volume import _normalise_prompts, volume_window


@pytest.fixture(scope="module")
def small_net():
    """SAM 2.1 tiny, random weights, 128-pixel input (the plumbing is size-independent)."""
    from sam2.build_sam import build_sam2

    torch.manual_seed(0)
    return build_sam2(
        "configs/sam2.1/sam2.1_hiera_t.yaml",
        ckpt_path=None,
        device="cpu",
        hydra_overrides_extra=["++model.image_size=128"],
    )


@pytest.fixture(scope="module")
def ct_volume():
    """Five CT-like slices in Hounsfield units: air, soft tissue and a bright organ."""
    rng = np.random.default_rng(0)
    vol = np.full((5, 40, 48), -1000.0, dtype=np.float32)
    vol[:, 5:35, 6:42] = rng.normal(40, 15, (5, 30, 36))
    for z in range(5):
        vol[z, 12 : 22 + z, 14:30] = 300.0  # above the window: saturates
    return vol.astype(np.int16)


def test_frames_are_the_windowed_normalised_slices(ct_volume):
    win = volume_window(ct_volume)
    assert win == Window(40, 400)  # Hounsfield data: the soft-tissue window, for all slices
    frames = SliceFrames(ct_volume, 128, win)
    assert len(frames) == 5
    for z in (0, 3):
        # computed here independently: window -> [0, 1] -> 3 channels -> resize -> mean/std
        x = np.clip((ct_volume[z].astype(np.float64) + 160.0) / 400.0, 0, 1)
        t = torch.from_numpy(np.repeat(x[None, None], 3, axis=1).astype(np.float32))
        t = F.interpolate(t, size=(128, 128), mode="bilinear", align_corners=False)[0]
        t = (t - torch.tensor(SAM2_MEAN)[:, None, None]) / torch.tensor(SAM2_STD)[:, None, None]
        torch.testing.assert_close(frames[z], t, rtol=0, atol=1e-5)
    # intensities above the window saturate instead of wrapping or being rescaled per slice
    assert frames.normalised(0).max() == pytest.approx(1.0)
    assert np.unique(frames.normalised(0)[0][ct_volume[0] <= -160]).tolist() == [0.0]


def test_frames_are_lazy_and_bounded(ct_volume):
    frames = SliceFrames(ct_volume, 128, Window(40, 400), keep=2)
    for z in range(5):
        frames[z]
    frames[4]  # a hit
    assert frames.computed == 5
    assert len(frames._cache) == 2
    with pytest.raises(IndexError):
        frames[5]


def test_state_has_the_fields_init_state_builds(small_net, ct_volume, tmp_path):
    from PIL import Image

    vp = video_predictor_from(small_net)
    assert vp.image_encoder is small_net.image_encoder  # shared weights, not a copy
    for z in range(2):
        Image.fromarray(np.full((40, 48, 3), 100 * z, np.uint8)).save(tmp_path / f"{z:05d}.jpg")
    reference = vp.init_state(str(tmp_path))
    ours = init_volume_state(vp, SliceFrames(ct_volume[:2], vp.image_size, Window(40, 400)))
    assert set(ours) == set(reference)
    for key in ("num_frames", "video_height", "video_width", "offload_video_to_cpu"):
        assert ours[key] == reference[key]
    assert list(ours["cached_features"]) == [0]  # frame 0 warmed up like init_state does


def test_forward_and_backward_several_objects(small_net, ct_volume):
    states = []
    done = []
    prompts = _normalise_prompts(
        {3: Prompt(box=(12, 14, 23, 29)), 7: Prompt(points=[[30, 40]], point_labels=[1])}, 2, 5
    )
    masks = propagate_video(
        small_net,
        ct_volume,
        prompts,
        window=Window(40, 400),
        progress=lambda d, t: done.append((d, t)),
        state_hook=states.append,
    )
    (state,) = states
    assert state["obj_ids"] == [3, 7]
    assert isinstance(state["images"], SliceFrames)
    for obj_idx in (0, 1):
        tracked = state["frames_tracked_per_obj"][obj_idx]
        assert sorted(tracked) == [0, 1, 2, 3, 4]
        assert all(tracked[z]["reverse"] is False for z in (3, 4))  # forward run
        assert all(tracked[z]["reverse"] is True for z in (0, 1))  # backward run
    assert done[-1] == (6, 6)  # 3 frames forward (2, 3, 4) + 3 backward (2, 1, 0)
    assert set(masks) == {3, 7}
    assert all(m.shape == ct_volume.shape and m.dtype == bool for m in masks.values())


def test_slice_range_and_direction(small_net, ct_volume):
    states = []
    prompts = _normalise_prompts({1: Prompt(box=(12, 14, 23, 29))}, 2, 5)
    propagate_video(
        small_net,
        ct_volume,
        prompts,
        window=Window(40, 400),
        direction="forward",
        slice_range=(1, 3),
        state_hook=states.append,
    )
    (state,) = states
    assert state["num_frames"] == 3  # only slices 1..3 became frames
    tracked = state["frames_tracked_per_obj"][0]
    assert sorted(tracked) == [1, 2]  # frames of the sub-range: slices 2 and 3, forward only


def test_cancel_stops_tracking(small_net, ct_volume):
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(PropagationCancelled):
        segment_volume_multi(
            small_net, ct_volume, {1: Prompt(box=(12, 14, 23, 29))}, 2, cancel=cancel
        )


def test_engine_sam2_model_takes_the_video_path(sam2_random):
    # load_model("sam2.1-tiny", pretrained=False): the network inside is found, not copied
    assert find_sam2_base(sam2_random) is sam2_random.net
