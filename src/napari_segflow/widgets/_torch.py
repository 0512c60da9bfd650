"""Prepare a napari process for torch without importing it on the GUI thread."""

from __future__ import annotations

import glob
import sys

from napari_segflow.core.segment.threads import get_threads

__all__ = ["has_nvidia_gpu", "prepare_torch", "warm_up"]


def has_nvidia_gpu() -> bool:
    """Whether an NVIDIA device node exists (what CUDA would use); cheap, imports nothing."""
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def prepare_torch() -> None:
    """Keep triton out of CPU-only processes, without importing torch (it takes seconds).

    torchvision pulls in ``torch._dynamo``, which imports triton when it is installed. triton
    bundles its own LLVM, and loading it after napari has created an OpenGL context on Mesa's
    software renderer (llvmpipe, also LLVM, e.g. on a virtual screen) kills the process with a
    segmentation fault. Without CUDA triton has nothing to do, so it is hidden from the import
    system (``import triton`` then raises ImportError and torch carries on without it).

    Whether CUDA is there is read from the device nodes, not from torch, so that this costs
    microseconds on the GUI thread; torch itself is imported by the worker that loads the model.
    Call it from the main thread before the first model is built.
    """
    if "triton" in sys.modules:
        return
    if "torch" in sys.modules:
        if sys.modules["torch"].cuda.is_available():
            return
    elif has_nvidia_gpu():
        return
    sys.modules["triton"] = None  # type: ignore[assignment]


def warm_up() -> None:
    """Import torch and set its threads (run it in a worker thread, never on the GUI thread)."""
    prepare_torch()
    import torch

    torch.set_num_threads(get_threads())
