"""The examples in the docstrings of the calibration/QA modules run and give what they show."""

from __future__ import annotations

import doctest

import pytest

from napari_segflow.core.io import labels
from napari_segflow.core.quality import calibration, metrics, qa


@pytest.mark.parametrize("module", [metrics, calibration, qa, labels])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
