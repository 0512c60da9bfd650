"""Sample data: real images with a matching, empty Labels layer."""

from __future__ import annotations

from importlib import resources

import numpy as np

from .core.taxonomy import load_preset
from .layers import labels_layer_kwargs, new_labels_data


def _data_file(name: str):
    return resources.files("napari_segflow").joinpath("data", name)


def _with_labels(
    image: np.ndarray, image_meta: dict, preset: str, rgb: bool, *, labels_meta: dict | None = None
) -> list[tuple]:
    taxonomy = load_preset(preset)
    shape = image.shape[:-1] if rgb else image.shape
    labels_kwargs = labels_layer_kwargs(taxonomy, metadata=labels_meta)
    labels_kwargs["name"] = f"{image_meta['name']} labels"
    return [
        (image, image_meta, "image"),
        (new_labels_data(shape, taxonomy), labels_kwargs, "labels"),
    ]


def landsat_land_use() -> list[tuple]:
    """A real Landsat 7 RGB scene (a GeoTIFF, UTM 18N) with an empty land-use Labels layer.

    Both layers carry the scene's georeference, so File > Save as ``.tif`` (segflow's GeoTIFF
    writer) puts the labels on the map.
    """
    from .core.io.geotiff import GEO_KEY, read_geotiff

    with resources.as_file(_data_file("landsat_rgb.tif")) as path:
        scene = read_geotiff(path, lazy=False)
        rgb = np.asarray(scene.data)
    geo = {GEO_KEY: scene.info}
    meta = {"name": "Landsat RGB", "rgb": True, "metadata": dict(geo)}
    return _with_labels(rgb, meta, "land-use", rgb=True, labels_meta=dict(geo))


def nuclei() -> list[tuple]:
    """A real fluorescence nuclei image (DSB 2018) with an empty nuclei Labels layer."""
    import tifffile

    with resources.as_file(_data_file("nuclei.tif")) as path:
        image = tifffile.imread(path)
    meta = {"name": "nuclei", "contrast_limits": (0, int(image.max()))}
    return _with_labels(image, meta, "nuclei", rgb=False)
