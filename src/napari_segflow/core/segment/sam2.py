"""SAM 2.1 image models through the ``sam2`` package (its own configs and predictor).

The adapter keeps ``SAM2ImagePredictor``'s preprocessing and decoding untouched (so masks equal
what the predictor gives for the same prompts) and only moves the image features in and out of
it, which lets one model serve many cached embeddings.

Checkpoints are found in this order: the ``checkpoint`` argument, then
``cache_dir()/checkpoints/<file>`` (``$SEGFLOW_CACHE_DIR`` overrides the folder), then a download
from Meta's official location when online. Otherwise one :class:`CheckpointError` names the file,
the URL and the folder to put it in.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from napari_segflow.core.segment._base import CachedModel, image_of, make_result
from napari_segflow.core.segment.checkpoints import (
    CACHE_ENV,
    CheckpointError,
    checkpoint_dir,
    download,
    load_state_dict,
)
from napari_segflow.core.segment.clicks import finish_mask
from napari_segflow.core.segment.coords import ModelPrompts
from napari_segflow.core.segment.protocol import Embedding, SegmentationResult

__all__ = ["SAM2_MODELS", "SAM2Model", "checkpoint_url", "resolve_checkpoint"]

log = logging.getLogger(__name__)

_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"

#: model name -> (config inside the sam2 package, checkpoint file name)
SAM2_MODELS: dict[str, tuple[str, str]] = {
    "sam2.1-tiny": ("configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1_hiera_tiny.pt"),
    "sam2.1-small": ("configs/sam2.1/sam2.1_hiera_s.yaml", "sam2.1_hiera_small.pt"),
    "sam2.1-base-plus": ("configs/sam2.1/sam2.1_hiera_b+.yaml", "sam2.1_hiera_base_plus.pt"),
    "sam2.1-large": ("configs/sam2.1/sam2.1_hiera_l.yaml", "sam2.1_hiera_large.pt"),
}


def _spec(name: str) -> tuple[str, str]:
    if name not in SAM2_MODELS:
        raise ValueError(f"unknown SAM 2 model {name!r}; available: {', '.join(SAM2_MODELS)}")
    return SAM2_MODELS[name]


def checkpoint_url(name: str) -> str:
    """Official download address of a SAM 2.1 checkpoint.

    Examples
    --------
    >>> checkpoint_url("sam2.1-tiny")
    'https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_tiny.pt'
    """
    return _BASE_URL + _spec(name)[1]


def resolve_checkpoint(
    name: str,
    checkpoint=None,
    *,
    allow_download: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Find the weights file for ``name`` (explicit path -> cache folder -> download)."""
    _, filename = _spec(name)
    if checkpoint is not None:
        p = Path(checkpoint).expanduser()
        if not p.is_file():
            raise CheckpointError(f"{name} checkpoint {p} does not exist")
        return p
    folder = checkpoint_dir()
    cached = folder / filename
    if cached.is_file():
        return cached
    url = checkpoint_url(name)
    reason = "downloads are switched off"
    if allow_download:
        try:
            log.info("downloading %s to %s", url, cached)
            return download(url, cached, progress=progress)
        except OSError as exc:
            reason = f"download failed: {getattr(exc, 'reason', exc)}"
    raise CheckpointError(
        f"SAM 2 checkpoint {filename} is not in {folder} and could not be fetched from {url} "
        f"({reason}). Download that file and put it in {folder} (set {CACHE_ENV} to use "
        f"another cache folder) or pass checkpoint=<path>."
    )


class SAM2Model(CachedModel):
    """A SAM 2.1 image model (``sam2.1-tiny``, ``-small``, ``-base-plus``, ``-large``)."""

    supports_points = True
    supports_boxes = True
    mask_input_size = 256

    def __init__(
        self,
        name: str,
        checkpoint=None,
        *,
        pretrained: bool = True,
        allow_download: bool = True,
        progress: Callable[[int, int], None] | None = None,
        **kwargs,
    ) -> None:
        config, _ = _spec(name)
        super().__init__(**kwargs)
        self.name = name
        path = (
            resolve_checkpoint(name, checkpoint, allow_download=allow_download, progress=progress)
            if pretrained
            else None
        )
        self.checkpoint = path
        self.net = _build(name, config, path, self.device)
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        self._predictor = SAM2ImagePredictor(self.net)
        # the predictor holds one image's state; calls from several threads take turns
        self._lock = threading.Lock()

    def _compute_features(self, rgb8: np.ndarray) -> dict:
        with self._lock:
            self._predictor.set_image(rgb8)
            f = self._predictor._features
            feats = {"image_embed": f["image_embed"]}
            feats.update({f"high_res_{i}": t for i, t in enumerate(f["high_res_feats"])})
            self._predictor.reset_predictor()
        return feats

    def _decode(
        self, emb: Embedding, prompts: ModelPrompts, mask_input, multimask: bool
    ) -> SegmentationResult:
        f = emb.features
        n_high = sum(1 for k in f if k.startswith("high_res_"))
        p = self._predictor
        with self._lock:
            p._features = {
                "image_embed": f["image_embed"],
                "high_res_feats": [f[f"high_res_{i}"] for i in range(n_high)],
            }
            p._orig_hw = [tuple(emb.image_shape)]
            p._is_image_set = True
            p._is_batch = False
            try:
                masks, scores, low = p.predict(
                    point_coords=prompts.points,
                    point_labels=prompts.labels,
                    box=prompts.box,
                    mask_input=mask_input,
                    multimask_output=multimask,
                )
            finally:
                p.reset_predictor()
        masks = masks > 0.5
        image = image_of(emb) if self.refine else None
        if image is not None:  # off by default: SAM 2 sees the image at 1024 px
            masks = np.stack([finish_mask(image, m, None, None, prompts.box) for m in masks])
        return make_result(masks, scores, low)


def _build(name: str, config: str, path: Path | None, device: str):
    from sam2.build_sam import build_sam2

    # read the file first: a damaged one fails fast, before the network is built
    state = None if path is None else load_state_dict(path, model_name=name)
    net = build_sam2(config, ckpt_path=None, device="cpu")
    if state is not None:
        try:
            missing, unexpected = net.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # tensor shape mismatches: weights of another size
            raise CheckpointError(
                f"{path} does not match {name} ({config}): {str(exc).splitlines()[-1].strip()}"
            ) from None
        if missing or unexpected:
            raise CheckpointError(
                f"{path} does not match {name} ({config}): {len(missing)} missing and "
                f"{len(unexpected)} unexpected weights (e.g. {(list(missing) + list(unexpected))[:3]})"
            )
    return net.to(device).eval()
