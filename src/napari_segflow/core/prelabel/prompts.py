"""Prompt sources for batch pre-labelling: COCO files and a JSON of boxes/points per class.

Both are turned into plain, JSON-ready *prompt entries* per image (small enough to ship to a
worker with the task) and become :class:`~napari_segflow.core.prelabel.refine.ObjectPrompt` objects on
the worker with :func:`entries_to_objects`.

Prompt entries
--------------
One dictionary per object, coordinates in napari convention (row, col), boxes inclusive::

    {"class_id": 1, "box": [row_min, col_min, row_max, col_max]}
    {"class_id": 1, "points": [[row, col], ...], "labels": [1, 0, ...]}   # labels optional
    {"class_id": 1, "polygon": [[row, col], ...]}                         # a coarse region
    {"class_id": 1, "rle": {"size": [H, W], "counts": "..."}}             # COCO RLE region

A box may be combined with points. Polygon and RLE entries are coarse regions: they are refined
(box + mask prompt, changes limited to a band) like a coarse label image.

JSON prompt file (``segflow-prompts``)
-------------------------------------
::

    {
      "format": "segflow-prompts/1",
      "images": {
        "tile_001": [
          {"class": "building", "box": [10, 20, 60, 90]},
          {"class": 2, "points": [[40, 41], [5, 5]], "labels": [1, 0]},
          {"class": "road", "polygon": [[0, 0], [0, 50], [12, 50]]}
        ]
      }
    }

``images`` keys are image file names without extension; ``class`` is a class name or id of the
taxonomy.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_segflow.core.prelabel.refine import ObjectPrompt
from napari_segflow.core.taxonomy import Taxonomy

__all__ = [
    "PROMPTS_FORMAT",
    "entries_to_objects",
    "read_coco_prompts",
    "read_prompts_json",
]

PROMPTS_FORMAT = "segflow-prompts/1"


def _class_id(value: Any, taxonomy: Taxonomy, where: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{where}: class must be a name or an id, got {value!r}")
    if isinstance(value, int):
        if not taxonomy.has_id(value):
            raise ValueError(f"{where}: class id {value} is not in taxonomy {taxonomy.name!r}")
        return value
    if isinstance(value, str):
        try:
            return taxonomy.by_name(value).id
        except KeyError:
            raise ValueError(
                f"{where}: unknown class {value!r} (taxonomy {taxonomy.name!r} has "
                f"{', '.join(taxonomy.names)})"
            ) from None
    raise ValueError(f"{where}: class must be a name or an id, got {value!r}")


def _numbers(value: Any, shape: tuple[int, ...] | None, where: str, what: str) -> list:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {what} must be numbers") from None
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{where}: {what} must have shape {shape}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{where}: {what} contains NaN or infinite values")
    return arr.tolist()


def _entry(raw: Mapping[str, Any], taxonomy: Taxonomy, where: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: each prompt must be an object, got {type(raw).__name__}")
    if "class" not in raw:
        raise ValueError(f"{where}: missing 'class'")
    out: dict[str, Any] = {"class_id": _class_id(raw["class"], taxonomy, where)}
    if "box" in raw:
        out["box"] = _numbers(raw["box"], (4,), where, "box")
    if "points" in raw:
        pts = np.asarray(_numbers(raw["points"], None, where, "points"))
        if pts.ndim != 2 or pts.shape[1] != 2 or not len(pts):
            raise ValueError(f"{where}: points must be a list of [row, col] pairs")
        out["points"] = pts.tolist()
        labels = raw.get("labels", [1] * len(pts))
        if len(labels) != len(pts) or any(v not in (0, 1) for v in labels):
            raise ValueError(f"{where}: labels must be 1/0, one per point")
        out["labels"] = [int(v) for v in labels]
    if "polygon" in raw:
        poly = np.asarray(_numbers(raw["polygon"], None, where, "polygon"))
        if poly.ndim != 2 or poly.shape[1] != 2 or len(poly) < 3:
            raise ValueError(f"{where}: polygon must be at least three [row, col] vertices")
        out["polygon"] = poly.tolist()
    if len(out) == 1:
        raise ValueError(f"{where}: give a box, points or a polygon")
    return out


def read_prompts_json(
    path: str | os.PathLike[str], *, taxonomy: Taxonomy
) -> dict[str, list[dict[str, Any]]]:
    """Read a ``segflow-prompts/1`` file into ``{image stem: [prompt entries]}``.

    Raises
    ------
    ValueError
        Naming the image and entry that is wrong.
    """
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p}: cannot read prompts JSON ({exc})") from None
    if not isinstance(doc, Mapping) or doc.get("format") != PROMPTS_FORMAT:
        raise ValueError(f'{p}: not a prompts file (expected "format": "{PROMPTS_FORMAT}")')
    images = doc.get("images")
    if not isinstance(images, Mapping):
        raise ValueError(f"{p}: 'images' must map image names to lists of prompts")
    out: dict[str, list[dict[str, Any]]] = {}
    for stem, items in images.items():
        if not isinstance(items, list):
            raise ValueError(f"{p}: images[{stem!r}] must be a list")
        out[str(stem)] = [
            _entry(raw, taxonomy, f"{p.name}: {stem}[{i}]") for i, raw in enumerate(items)
        ]
    return out


def read_coco_prompts(
    path: str | os.PathLike[str], *, taxonomy: Taxonomy
) -> dict[str, list[dict[str, Any]]]:
    """Read a COCO file's boxes, polygons and RLE masks as ``{image stem: [prompt entries]}``.

    Categories map to taxonomy classes by name, else by id. A flat ``segmentation`` list (one
    polygon, as some exporters write) is accepted. An annotation without a segmentation
    becomes a box prompt from its ``bbox``.
    """
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p}: cannot read COCO JSON ({exc})") from None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("images"), list):
        raise ValueError(f"{p}: not a COCO file (no 'images' list)")
    cats: dict[int, int] = {}
    for cat in doc.get("categories", []):
        name = str(cat.get("name", ""))
        if name in taxonomy.names:
            cats[int(cat["id"])] = taxonomy.by_name(name).id
        elif taxonomy.has_id(int(cat["id"])):
            cats[int(cat["id"])] = int(cat["id"])
    images = {}
    for im in doc["images"]:
        stem = Path(str(im["file_name"])).name.split(".")[0]
        images[im["id"]] = (stem, int(im["height"]), int(im["width"]))
    out: dict[str, list[dict[str, Any]]] = {stem: [] for stem, _, _ in images.values()}
    for k, ann in enumerate(doc.get("annotations", [])):
        where = f"{p.name}: annotation {ann.get('id', k)}"
        if ann.get("image_id") not in images:
            raise ValueError(f"{where}: unknown image_id {ann.get('image_id')!r}")
        cid = int(ann.get("category_id", -1))
        if cid not in cats:
            raise ValueError(f"{where}: category {cid} matches no class of {taxonomy.name!r}")
        stem, h, w = images[ann["image_id"]]
        entry: dict[str, Any] = {"class_id": cats[cid]}
        seg = ann.get("segmentation")
        if isinstance(seg, dict):
            counts = seg.get("counts")
            entry["rle"] = {
                "size": [int(v) for v in seg.get("size", (h, w))],
                "counts": counts.decode() if isinstance(counts, bytes) else counts,
            }
        elif isinstance(seg, list) and seg:
            rings = seg if isinstance(seg[0], list) else [seg]
            entry["coco_polygons"] = [[float(v) for v in ring] for ring in rings]
            entry["size"] = [h, w]
        elif "bbox" in ann:
            x, y, bw, bh = (float(v) for v in ann["bbox"])
            entry["box"] = [y, x, y + bh - 1, x + bw - 1]
        else:
            raise ValueError(f"{where}: neither segmentation nor bbox")
        out[stem].append(entry)
    return out


def _polygon_mask(vertices: Sequence[Sequence[float]], shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre lies inside a (row, col) polygon (even-odd rule)."""
    from PIL import Image, ImageDraw

    img = Image.new("1", (shape[1], shape[0]), 0)
    # PIL fills polygons given in (x, y) with pixel centres at integer coordinates
    ImageDraw.Draw(img).polygon([(float(c), float(r)) for r, c in vertices], fill=1, outline=1)
    return np.array(img, dtype=bool)


def entries_to_objects(
    entries: Sequence[Mapping[str, Any]], *, shape: tuple[int, int]
) -> list[ObjectPrompt]:
    """Turn prompt entries into :class:`ObjectPrompt` objects for an image of ``shape``.

    Examples
    --------
    >>> objs = entries_to_objects([{"class_id": 2, "box": [1, 2, 5, 9]}], shape=(16, 16))
    >>> objs[0].class_id, objs[0].bbox()
    (2, (1, 2, 5, 9))
    """
    out: list[ObjectPrompt] = []
    for e in entries:
        cid = int(e["class_id"])
        mask = None
        if "polygon" in e:
            mask = _polygon_mask(e["polygon"], shape)
        elif "coco_polygons" in e or "rle" in e:
            from pycocotools import mask as mask_utils

            h, w = shape
            if "rle" in e:
                rle = dict(e["rle"])
                if isinstance(rle["counts"], list):
                    rle = mask_utils.frPyObjects(rle, h, w)
            else:
                rle = mask_utils.merge(mask_utils.frPyObjects(e["coco_polygons"], h, w))
            mask = mask_utils.decode(rle).astype(bool)
            if mask.shape != tuple(shape):
                raise ValueError(f"COCO mask {mask.shape} does not match the image {shape}")
        if mask is not None and not mask.any():
            continue  # a degenerate polygon covers no pixel centre: nothing to refine
        box = tuple(e["box"]) if "box" in e and mask is None else None
        pts = np.asarray(e["points"], dtype=np.float64) if "points" in e else None
        lab = np.asarray(e["labels"], dtype=np.int32) if "labels" in e else None
        out.append(ObjectPrompt(cid, mask=mask, box=box, points=pts, point_labels=lab))
    return out
