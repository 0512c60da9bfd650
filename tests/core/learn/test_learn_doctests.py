"""The examples in the docstrings of the pixel-classifier modules run and give what they show."""

from __future__ import annotations

import doctest

import pytest

import napari_segflow.core.learn as learn_pkg
from napari_segflow.core.learn import classifier, features, forest


@pytest.mark.parametrize("module", [learn_pkg, classifier, features, forest])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
