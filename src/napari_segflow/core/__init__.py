"""The GUI-free core of napari-segflow: numpy in, numpy out. Imports no Qt, napari or magicgui."""
