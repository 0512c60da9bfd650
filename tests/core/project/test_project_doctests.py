"""The examples in the project module's docstrings run and give what they show."""

from __future__ import annotations

import doctest

from napari_segflow.core.project import project


def test_docstring_examples():
    result = doctest.testmod(project, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
