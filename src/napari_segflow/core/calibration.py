"""Compatibility path for :mod:`napari_segflow.core.quality.calibration`, where this code now lives.

Kept because earlier docs and user scripts import ``napari_segflow.core.calibration``; new code imports
the stage module directly (see docs/architecture.md).
"""

from napari_segflow.core.quality.calibration import *  # noqa: F403
from napari_segflow.core.quality.calibration import __all__  # noqa: F401
