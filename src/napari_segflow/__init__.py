"""napari-segflow: pixel-accurate semantic-segmentation annotation in napari."""

__version__ = "0.1.0"
