"""SAM 2's video predictor on a volume: slices as frames, fed from memory.

``SAM2VideoPredictor.init_state`` only reads an MP4 file or a folder of JPEGs. Writing CT slices
as 8-bit JPEGs would throw away the intensity window and add compression noise, so this module
builds the same inference state itself from a :class:`SliceFrames` sequence: each slice is
windowed once for the whole volume (float, no 8-bit step), resized to the model's square input
and normalised with SAM 2's mean and std, lazily, when the predictor asks for that frame. Only a
few frames are held at a time and tracking outputs far behind the current frame are dropped, so
memory stays bounded on long volumes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = [
    "SAM2_MEAN",
    "SAM2_STD",
    "SliceFrames",
    "find_sam2_base",
    "init_volume_state",
    "propagate_video",
    "video_predictor_from",
]

#: The ImageNet statistics SAM 2's frame loaders normalise with.
SAM2_MEAN = (0.485, 0.456, 0.406)
SAM2_STD = (0.229, 0.224, 0.225)


class SliceFrames:
    """The slices of a volume as SAM 2 video frames, computed on demand.

    ``frames[i]`` is a float32 tensor ``(3, S, S)``: slice ``i`` mapped through ``window`` to
    [0, 1] (clipped), repeated to three channels (or its own RGB), resized to ``S x S``
    (bilinear, like SAM 2's loaders) and normalised with :data:`SAM2_MEAN`/:data:`SAM2_STD`.

    Parameters
    ----------
    stack : (N, H, W) or (N, H, W, C) array
    image_size : int
        The model's input side (``predictor.image_size``).
    window : Window
        The volume's intensity window (see ``volume.volume_window``).
    keep : int
        How many computed frames to keep (an LRU); the predictor asks for one at a time.
    """

    def __init__(self, stack: np.ndarray, image_size: int, window, *, keep: int = 4) -> None:
        self.stack = stack
        self.image_size = int(image_size)
        self.lo, self.hi = (float(v) for v in window.bounds)
        self.keep = max(1, int(keep))
        self._cache: OrderedDict[int, Any] = OrderedDict()
        self.computed = 0  # how many frames were built (tests and benchmarks read it)

    def __len__(self) -> int:
        return int(self.stack.shape[0])

    @property
    def video_height(self) -> int:
        return int(self.stack.shape[1])

    @property
    def video_width(self) -> int:
        return int(self.stack.shape[2])

    def normalised(self, index: int) -> np.ndarray:
        """Slice ``index`` windowed to [0, 1] as ``(3, H, W)`` float32, before resizing."""
        a = np.asarray(self.stack[index], dtype=np.float32)
        a = np.clip((a - self.lo) / max(self.hi - self.lo, 1e-6), 0.0, 1.0)
        if a.ndim == 2:
            return np.repeat(a[None], 3, axis=0)
        return np.ascontiguousarray(a[..., :3].transpose(2, 0, 1))

    def __getitem__(self, index: int):
        import torch
        import torch.nn.functional as F

        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"frame {index} of {len(self)}")
        index %= len(self)
        hit = self._cache.get(index)
        if hit is not None:
            self._cache.move_to_end(index)
            return hit
        x = torch.from_numpy(self.normalised(index))[None]
        x = F.interpolate(
            x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
        )[0]
        mean = torch.tensor(SAM2_MEAN, dtype=torch.float32)[:, None, None]
        std = torch.tensor(SAM2_STD, dtype=torch.float32)[:, None, None]
        x = (x - mean) / std
        self._cache[index] = x
        self.computed += 1
        while len(self._cache) > self.keep:
            self._cache.popitem(last=False)
        return x


def find_sam2_base(model):
    """The ``SAM2Base`` network inside an engine model (or the network itself), else ``None``."""
    from sam2.modeling.sam2_base import SAM2Base

    seen: set[int] = set()
    todo = [model]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or obj is None:
            continue
        seen.add(id(obj))
        if isinstance(obj, SAM2Base):
            return obj
        if hasattr(obj, "__dict__") and not isinstance(obj, (np.ndarray, type)):
            for value in vars(obj).values():
                if hasattr(value, "__dict__") and not isinstance(value, (str, bytes)):
                    todo.append(value)
    return None


def video_predictor_from(net):
    """A ``SAM2VideoPredictor`` sharing the weights of a built SAM 2 network (no copy).

    ``build_sam2`` returns a plain ``SAM2Base``; the video predictor is the same network with
    tracking methods. The settings are those ``build_sam2_video_predictor`` applies, except
    the CUDA-only hole filling (``fill_hole_area=0``; it would only warn on a CPU).
    """
    from sam2.sam2_video_predictor import SAM2VideoPredictor

    if isinstance(net, SAM2VideoPredictor):
        return net
    vp = SAM2VideoPredictor.__new__(SAM2VideoPredictor)
    vp.__dict__.update(net.__dict__)  # modules, parameters and buffers are shared, not copied
    vp.fill_hole_area = 0
    vp.non_overlap_masks = False
    vp.clear_non_cond_mem_around_input = False
    vp.add_all_frames_to_correct_as_cond = False
    vp.binarize_mask_from_pts_for_mem_enc = True
    return vp


def init_volume_state(predictor, frames: SliceFrames, *, warm_frame: int = 0) -> dict:
    """The inference state ``predictor.init_state`` would build, with ``frames`` as images.

    Every field of ``SAM2VideoPredictor.init_state`` is filled the same way; only the source of
    ``images`` differs (a lazy :class:`SliceFrames` instead of decoded JPEGs). ``init_state``
    computes frame 0's features in advance; ``warm_frame`` picks the frame instead (the
    prompted one, whose features the first prompt needs anyway).
    """
    import torch

    device = predictor.device
    state: dict = {
        "images": frames,
        "num_frames": len(frames),
        "offload_video_to_cpu": False,
        "offload_state_to_cpu": False,
        "video_height": frames.video_height,
        "video_width": frames.video_width,
        "device": device,
        "storage_device": device,
        "point_inputs_per_obj": {},
        "mask_inputs_per_obj": {},
        "cached_features": {},
        "constants": {},
        "obj_id_to_idx": OrderedDict(),
        "obj_idx_to_id": OrderedDict(),
        "obj_ids": [],
        "output_dict_per_obj": {},
        "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
    }
    with torch.inference_mode():
        predictor._get_image_feature(state, frame_idx=int(warm_frame), batch_size=1)
    return state


def _add_prompt(predictor, state, frame: int, obj_id: int, prompt, shape) -> None:
    from napari_segflow.core.segment.coords import to_model_prompts

    if prompt.mask is not None:
        predictor.add_new_mask(
            state, frame_idx=frame, obj_id=obj_id, mask=np.asarray(prompt.mask, bool)
        )
        return
    p = to_model_prompts(prompt.points, prompt.point_labels, prompt.box, image_shape=shape)
    predictor.add_new_points_or_box(
        state,
        frame_idx=frame,
        obj_id=obj_id,
        points=p.points,
        labels=p.labels,
        box=p.box,
    )


def _drop_far_outputs(state, current: int, start: int, keep: int) -> None:
    """Forget tracking outputs more than ``keep`` frames from both ``current`` and ``start``."""
    for per_obj in state["output_dict_per_obj"].values():
        store = per_obj["non_cond_frame_outputs"]
        for f in [f for f in store if abs(f - current) > keep and abs(f - start) > keep]:
            del store[f]


def propagate_video(
    predictor,
    stack: np.ndarray,
    prompts: Mapping[int, Mapping[int, Any]],
    *,
    window,
    direction: str = "both",
    slice_range: tuple[int, int] | None = None,
    progress: Callable[[int, int], object] | None = None,
    cancel: Callable[[], bool] | None = None,
    state_hook: Callable[[dict], object] | None = None,
) -> dict[int, np.ndarray]:
    """Track every prompted object through ``stack`` with SAM 2's memory.

    Parameters
    ----------
    predictor : SAM2VideoPredictor (or a SAM2Base, wrapped by :func:`video_predictor_from`)
    stack : (N, H, W[, C]) array, slices along axis 0
    prompts : {class_id: {slice_index: Prompt}}
        Boxes/points/masks per object and slice (slice indices of ``stack``).
    window : Window
        One intensity window for the whole volume.
    direction : {"both", "forward", "backward"}
        Forward runs from the earliest prompted slice to the end of the range, backward from
        the latest prompted slice to its start.
    slice_range : (first, last), inclusive, optional
    progress, cancel : optional callbacks, as in ``segment_volume``.
    state_hook : callable(state), optional
        Called with the inference state once it is built (tests inspect the frames).

    Returns
    -------
    {class_id: (N, H, W) bool array}
    """
    import torch

    from napari_segflow.core.segment.propagation import PropagationCancelled

    predictor = video_predictor_from(predictor)
    n = stack.shape[0]
    lo, hi = (0, n - 1) if slice_range is None else slice_range
    sub = stack[lo : hi + 1]
    frames = SliceFrames(sub, predictor.image_size, window)
    shape = sub.shape[1:3]
    out = {cid: np.zeros((n, *shape), dtype=bool) for cid in prompts}
    starts = sorted(z - lo for per in prompts.values() for z in per)
    first, last = starts[0], starts[-1]
    state = init_volume_state(predictor, frames, warm_frame=first)
    if state_hook is not None:
        state_hook(state)
    for cid, per in prompts.items():
        for z, prompt in per.items():
            _add_prompt(predictor, state, z - lo, int(cid), prompt, shape)
    runs = []
    if direction in ("both", "forward"):
        runs.append((first, False, (hi - lo) - first + 1))
    if direction in ("both", "backward"):
        runs.append((last, True, last + 1))
    total = sum(r[2] for r in runs)
    done = 0
    keep = (
        max(
            int(getattr(predictor, "num_maskmem", 7)),
            int(getattr(predictor, "max_obj_ptrs_in_encoder", 16)),
        )
        + 1
    )
    with torch.inference_mode():
        for start, reverse, _ in runs:
            gen = predictor.propagate_in_video(state, start_frame_idx=start, reverse=reverse)
            for frame_idx, obj_ids, logits in gen:
                if cancel is not None and cancel():
                    gen.close()
                    raise PropagationCancelled("propagation cancelled")
                masks = (logits[:, 0] > 0.0).cpu().numpy()
                for k, oid in enumerate(obj_ids):
                    out[int(oid)][lo + frame_idx] = masks[k]
                _drop_far_outputs(state, frame_idx, start, keep)
                done += 1
                if progress is not None:
                    progress(min(done, total), total)
    return out
