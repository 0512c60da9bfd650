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

from napari_segflow.core.io.guard import brief, check_pixels
from napari_segflow.core.prelabel.refine import ObjectPrompt
from napari_segflow.core.taxonomy import Taxonomy

__all__ = [
    "PROMPTS_FORMAT",
    "entries_to_objects",
    "image_stem",
    "read_coco_prompts",
    "read_prompts_json",
]

PROMPTS_FORMAT = "segflow-prompts/1"

_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".tiff", ".tif", ".png", ".jpeg", ".jpg")


def image_stem(file_name: str) -> str:
    """The name an image is known by in a batch: its file name without folder or image suffix.

    Only a known image ending is removed, so dots inside a name are kept.

    Examples
    --------
    >>> image_stem("train/tile.v2.png"), image_stem("case_1.nii.gz"), image_stem("a.b")
    ('tile.v2', 'case_1', 'a.b')
    """
    name = Path(str(file_name).replace("\\", "/")).name
    lower = name.lower()
    for suffix in _IMAGE_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _class_id(value: Any, taxonomy: Taxonomy, where: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{where}: class must be a name or an id, got {brief(value)}")
    if isinstance(value, int):
        if not taxonomy.has_id(value):
            raise ValueError(f"{where}: class id {value} is not in taxonomy {taxonomy.name!r}")
        return value
    if isinstance(value, str):
        try:
            return taxonomy.by_name(value).id
        except KeyError:
            raise ValueError(
                f"{where}: unknown class {brief(value)} (taxonomy {taxonomy.name!r} has "
                f"{brief(', '.join(taxonomy.names), 200)})"
            ) from None
    raise ValueError(f"{where}: class must be a name or an id, got {brief(value)}")


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
        box = _numbers(raw["box"], (4,), where, "box")
        if box[2] < box[0] or box[3] < box[1]:
            raise ValueError(
                f"{where}: box {box} is inverted; expected [row_min, col_min, row_max, col_max]"
            )
        out["box"] = box
    if "points" in raw:
        pts = np.asarray(_numbers(raw["points"], None, where, "points"))
        if pts.ndim != 2 or pts.shape[1] != 2 or not len(pts):
            raise ValueError(f"{where}: points must be a list of [row, col] pairs")
        out["points"] = pts.tolist()
        labels = raw.get("labels", [1] * len(pts))
        if (
            not isinstance(labels, list)
            or len(labels) != len(pts)
            or any(isinstance(v, bool) or v not in (0, 1) for v in labels)
        ):
            raise ValueError(f"{where}: labels must be 1/0, one per point (a list)")
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
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{p}: cannot read prompts JSON ({type(exc).__name__})") from None
    if not isinstance(doc, Mapping) or doc.get("format") != PROMPTS_FORMAT:
        raise ValueError(f'{p}: not a prompts file (expected "format": "{PROMPTS_FORMAT}")')
    images = doc.get("images")
    if not isinstance(images, Mapping):
        raise ValueError(f"{p}: 'images' must map image names to lists of prompts")
    out: dict[str, list[dict[str, Any]]] = {}
    for stem, items in images.items():
        if not isinstance(items, list):
            raise ValueError(f"{p}: images[{brief(stem)}] must be a list")
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
    from napari_segflow.core.io.coco import check_rle

    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{p}: cannot read COCO JSON ({type(exc).__name__})") from None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("images"), list):
        raise ValueError(f"{p}: not a COCO file (no 'images' list)")
    cats: dict[int, int] = {}
    for k, cat in enumerate(doc.get("categories") or []):
        if not isinstance(cat, Mapping) or not _is_int(cat.get("id")):
            raise ValueError(f"{p.name}: categories[{k}] is not an object with an integer 'id'")
        name = str(cat.get("name", ""))
        if name in taxonomy.names:
            cats[int(cat["id"])] = taxonomy.by_name(name).id
        elif taxonomy.has_id(int(cat["id"])):
            cats[int(cat["id"])] = int(cat["id"])
    images = {}
    for k, im in enumerate(doc["images"]):
        where = f"{p.name}: images[{k}]"
        if not isinstance(im, Mapping):
            raise ValueError(f"{where}: not an object")
        missing = [key for key in ("id", "file_name", "height", "width") if key not in im]
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)}")
        if not (_is_int(im["height"]) and _is_int(im["width"])):
            raise ValueError(f"{where}: height and width must be integers")
        try:
            h, w = check_pixels([int(im["height"]), int(im["width"])], what=where)
            hash(im["id"])
        except TypeError:
            raise ValueError(f"{where}: 'id' must be a number or a string") from None
        images[im["id"]] = (image_stem(str(im["file_name"])), h, w)
    out: dict[str, list[dict[str, Any]]] = {stem: [] for stem, _, _ in images.values()}
    annotations = doc.get("annotations", [])
    if not isinstance(annotations, list):
        raise ValueError(f"{p.name}: 'annotations' must be a list")
    for k, ann in enumerate(annotations):
        if not isinstance(ann, Mapping):
            raise ValueError(f"{p.name}: annotation {k}: not an object")
        where = f"{p.name}: annotation {brief(ann.get('id', k))}"
        image_id = ann.get("image_id")
        if not isinstance(image_id, int | str) or image_id not in images:
            raise ValueError(f"{where}: unknown image_id {brief(image_id)}")
        if not _is_int(ann.get("category_id", -1)):
            raise ValueError(f"{where}: category_id must be an integer")
        cid = int(ann.get("category_id", -1))
        if cid not in cats:
            raise ValueError(f"{where}: category {cid} matches no class of {taxonomy.name!r}")
        stem, h, w = images[image_id]
        entry: dict[str, Any] = {"class_id": cats[cid]}
        seg = ann.get("segmentation")
        if isinstance(seg, dict):
            try:
                check_rle(seg, h, w)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
            counts = seg.get("counts")
            entry["rle"] = {
                "size": [h, w],
                "counts": counts.decode() if isinstance(counts, bytes) else counts,
            }
        elif isinstance(seg, list) and seg:
            rings = seg if isinstance(seg[0], list) else [seg]
            try:
                entry["coco_polygons"] = [
                    _numbers(ring, None, where, "polygon") for ring in rings if len(ring) >= 6
                ]
            except TypeError:
                raise ValueError(f"{where}: polygon must be lists of numbers") from None
            if not entry["coco_polygons"]:
                raise ValueError(f"{where}: no polygon with three or more vertices")
            entry["size"] = [h, w]
        elif "bbox" in ann:
            x, y, bw, bh = _numbers(ann["bbox"], (4,), where, "bbox")
            if bw <= 0 or bh <= 0:
                raise ValueError(f"{where}: bbox {[x, y, bw, bh]} has no area")
            entry["box"] = [y, x, y + bh - 1, x + bw - 1]
        else:
            raise ValueError(f"{where}: neither segmentation nor bbox")
        out[stem].append(entry)
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
