"""The examples in the docstrings of the polygon module run and give what they show."""

from __future__ import annotations

import doctest

from napari_segflow.core.quality import polygons


def test_docstring_examples():
    result = doctest.testmod(polygons, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
