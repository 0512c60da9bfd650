"""The examples in the project modules' docstrings run and give what they show."""

from __future__ import annotations

import doctest

from napari_segflow.core.project import work


def test_docstring_examples():
    result = doctest.testmod(work, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


def test_view_docstring_examples():
    from napari_segflow.core.project import view

    result = doctest.testmod(view, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
