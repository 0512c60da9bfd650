"""A pixel classifier that learns the project's classes from a few annotated images or slices.

Examples
--------
>>> from napari_segflow.core.learn import PixelClassifier
>>> PixelClassifier(embeddings=False).fitted
False
"""

from __future__ import annotations

from napari_segflow.core.learn.classifier import (
    FILE_FORMAT,
    CrossValidation,
    LearnCancelled,
    PixelClassifier,
    Prediction,
    taxonomy_fingerprint,
)
from napari_segflow.core.learn.features import FEATURE_SET

__all__ = [
    "FEATURE_SET",
    "FILE_FORMAT",
    "CrossValidation",
    "LearnCancelled",
    "PixelClassifier",
    "Prediction",
    "taxonomy_fingerprint",
]
