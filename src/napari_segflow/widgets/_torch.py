"""Prepare torch in a napari process before a model loads."""

from __future__ import annotations

import sys


def prepare_torch() -> None:
    """Import torch on the main thread and keep triton out of CPU-only processes.

    torchvision pulls in ``torch._dynamo``, which imports triton when it is installed. triton
    bundles its own LLVM, and loading it after napari has created an OpenGL context on Mesa's
    software renderer (llvmpipe, also LLVM, e.g. on a virtual screen) kills the process with a
    segmentation fault. Without CUDA triton has nothing to do, so it is hidden from the import
    system (``import triton`` then raises ImportError and torch carries on without it).
    Call it from the main thread before the first model is built.
    """
    if "triton" in sys.modules:
        return
    import torch

    if not torch.cuda.is_available():
        sys.modules["triton"] = None  # type: ignore[assignment]
