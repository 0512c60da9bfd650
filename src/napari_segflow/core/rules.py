"""Compatibility path for :mod:`napari_segflow.core.taxonomy.rules`, where this code now lives.

Kept because earlier docs and user scripts import ``napari_segflow.core.rules``; new code imports
the stage module directly (see docs/architecture.md).
"""

from napari_segflow.core.taxonomy.rules import *  # noqa: F403
from napari_segflow.core.taxonomy.rules import __all__  # noqa: F401
