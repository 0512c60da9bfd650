"""Messages for GUI users about errors that core words for Python callers."""

from __future__ import annotations

__all__ = ["model_error"]


def model_error(name: str, exc: BaseException) -> str:
    """One line for a model that could not be loaded or run (a missing checkpoint offline)."""
    from napari_segflow.core.segment import CheckpointError

    if isinstance(exc, CheckpointError):
        text = str(exc).replace(" or pass checkpoint=<path>", "").rstrip(".")
        return (
            f"{name} is not available: {text}. Meanwhile choose medsam-lite, which is bundled "
            "and works offline."
        )
    return f"{name} failed: {type(exc).__name__}: {exc}"
