"""The examples in the docstrings of the segmentation modules run and give what they show."""

from __future__ import annotations

import doctest

import pytest

from napari_segflow.core import atomic
from napari_segflow.core.segment import (
    cache,
    checkpoints,
    clicks,
    coords,
    onnx_runtime,
    preprocess,
    prompting,
    refine,
    threads,
    volume,
    zoom,
)

MODULES = [cache, checkpoints, clicks, coords, onnx_runtime, preprocess, prompting, refine,
           threads, volume, zoom, atomic]  # fmt: skip


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
