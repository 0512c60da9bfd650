"""Compatibility path for :mod:`napari_segflow.core.quality.metrics`, where this code now lives.

Kept because earlier docs and user scripts import ``napari_segflow.core.metrics``; new code imports
the stage module directly (see docs/architecture.md).
"""

from napari_segflow.core.quality.metrics import *  # noqa: F403
from napari_segflow.core.quality.metrics import __all__  # noqa: F401
