"""Promptable segmentation: SAM 2 and LiteMedSAM behind one API, with an embedding cache.

Examples
--------
>>> from napari_segflow.core.segment import available_models
>>> "medsam-lite" in available_models()
True
"""

from __future__ import annotations

import os

from napari_segflow.core.segment.cache import DEFAULT_MEMORY_BYTES, EmbeddingCache
from napari_segflow.core.segment.checkpoints import CheckpointError, cache_dir
from napari_segflow.core.segment.coords import ModelPrompts, to_model_prompts
from napari_segflow.core.segment.preprocess import WINDOW_PRESETS, Percentile, Window
from napari_segflow.core.segment.protocol import Embedding, PromptableModel, SegmentationResult
from napari_segflow.core.segment.volume import (
    Prompt,
    PropagationCancelled,
    segment_volume,
    segment_volume_multi,
)

__all__ = [
    "WINDOW_PRESETS",
    "CheckpointError",
    "Embedding",
    "EmbeddingCache",
    "ModelPrompts",
    "Percentile",
    "PromptableModel",
    "Prompt",
    "PropagationCancelled",
    "SegmentationResult",
    "Window",
    "available_models",
    "cache_dir",
    "load_model",
    "segment_volume",
    "segment_volume_multi",
    "to_model_prompts",
]

_SAM2_NAMES = ("sam2.1-tiny", "sam2.1-small", "sam2.1-base-plus", "sam2.1-large")


def available_models() -> tuple[str, ...]:
    """Names accepted by :func:`load_model`; ``"medsam-lite"`` (bundled, offline) first."""
    return ("medsam-lite", *_SAM2_NAMES)


def load_model(
    name: str,
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    window=None,
    cache_dir: str | os.PathLike[str] | None = None,
    cache_bytes: int = DEFAULT_MEMORY_BYTES,
    cache: EmbeddingCache | None = None,
    device: str | None = None,
    pretrained: bool = True,
    runtime: str = "auto",
    refine: bool | None = None,
) -> PromptableModel:
    """Build a promptable model by name.

    Parameters
    ----------
    name : str
        One of :func:`available_models`.
    checkpoint : path-like, optional
        Weights file. None: the bundled weights (medsam-lite) or the SAM 2 file from the cache
        folder, downloaded when online.
    window : optional
        Intensity handling before the model: None (min-max), ``"auto"``, a preset name from
        ``WINDOW_PRESETS`` (``"ct-soft-tissue"``, ``"ct-bone"``, ``"ct-lung"``...),
        ``(level, width)``, a ``Window`` or ``Percentile``. Part of the cache key.
    cache_dir : path-like, optional
        Folder for on-disk embeddings (one file per image). None: memory only.
    cache_bytes : int
        Memory budget of the embedding LRU.
    cache : EmbeddingCache, optional
        Share one cache between models instead (overrides ``cache_dir``/``cache_bytes``).
    device : str, optional
        Torch device; default CUDA when available, else CPU.
    pretrained : bool
        False builds SAM 2 with random weights (tests, plumbing checks); no file is needed.
    runtime : {"auto", "torch", "onnx"}
        medsam-lite only: ``"auto"`` runs its encoder and box decoder with ONNX Runtime on the
        CPU (built from the weights at first use, cached) and torch on CUDA or as a fallback.
        Threads per call: :func:`~napari_segflow.core.segment.threads.set_threads`.
    refine : bool, optional
        Fit every mask to the image's colours and edges
        (:func:`~napari_segflow.core.segment.refine.refine_mask`). None: on for medsam-lite, off
        for SAM 2. The model's ``refine`` attribute can be changed later.
    """
    opts = dict(
        window=window,
        cache=cache,
        cache_dir=cache_dir,
        cache_bytes=cache_bytes,
        device=device,
        refine=refine,
    )
    if name == "medsam-lite":
        from napari_segflow.core.segment.medsam_lite import MedSAMLite

        return MedSAMLite(checkpoint, runtime=runtime, **opts)
    if name in _SAM2_NAMES:
        from napari_segflow.core.segment.sam2 import SAM2Model

        return SAM2Model(name, checkpoint, pretrained=pretrained, **opts)
    raise ValueError(f"unknown model {name!r}; available: {', '.join(available_models())}")
