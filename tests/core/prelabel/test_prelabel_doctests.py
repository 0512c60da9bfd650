"""The examples in the docstrings of the pre-labelling modules run and give what they show."""

from __future__ import annotations

import doctest

import pytest

from napari_segflow.core.prelabel import batch, prompts, refine, snap


@pytest.mark.parametrize("module", [refine, prompts, batch, snap])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
