"""COCO JSON with run-length-encoded masks (pycocotools), and reading COCO files from other tools.

Semantic labels become one annotation per class present in an image (``iscrowd: 1``, the COCO
convention for a region encoded as RLE that may cover many objects); with ``instances=True`` each
connected component of a class is its own annotation (``iscrowd: 0``, RLE segmentation; pycocotools'
``annToRLE`` accepts RLE for either value).

The taxonomy and the value of unlabelled pixels are kept under ``info["segflow"]`` so a file written
here reads back to identical label arrays.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from napari_segflow.core.atomic import atomic_write_bytes
from napari_segflow.core.taxonomy import Taxonomy, TaxonomyError, taxonomy_from_dict

from .guard import MAX_PIXELS, brief, check_format, check_not_partial, check_pixels
from .validate import ExportError, present_ids, validate_labels

__all__ = [
    "INFO_KEY",
    "check_rle",
    "coco_annotations",
    "read_coco",
    "read_coco_taxonomy",
    "rle_counts",
    "write_coco",
]

#: Key in the COCO ``info`` block that holds segflow's taxonomy and unlabelled id.
INFO_KEY = "segflow"

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def _encode(mask_f: np.ndarray) -> dict[str, Any]:
    """RLE of a Fortran-ordered uint8 mask, with ``counts`` as text (JSON-ready)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(mask_f)
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _rle_stats(rle: dict[str, Any]) -> tuple[int, list[float]]:
    from pycocotools import mask as mask_utils

    coded = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    area = int(mask_utils.area(coded))
    bbox = [float(v) for v in mask_utils.toBbox(coded)]
    return area, bbox


def coco_annotations(
    labels: np.ndarray, *, taxonomy: Taxonomy, image_id: int = 1, instances: bool = False
) -> list[dict[str, Any]]:
    """COCO annotations (RLE) for one 2D label image, without ids; no per-pixel Python.

    Examples
    --------
    >>> from napari_segflow.core.taxonomy import load_preset
    >>> lab = np.array([[0, 4, 4], [0, 0, 4]], dtype=np.uint8)
    >>> [(a["category_id"], a["area"], a["bbox"]) for a in coco_annotations(lab, taxonomy=load_preset("land-use"))]
    [(4, 3, [1.0, 0.0, 2.0, 2.0])]
    """
    arr = np.asfortranarray(labels)  # masks compared from a Fortran array stay Fortran-ordered
    present = present_ids(arr)
    out: list[dict[str, Any]] = []
    for cid in present:
        if not taxonomy.has_id(int(cid)):
            continue  # unlabelled / ignore pixels get no annotation
        mask = (arr == cid).view(np.uint8)
        if instances:
            from scipy import ndimage

            comp, n = ndimage.label(mask, structure=_EIGHT_CONNECTED)
            comp = np.asfortranarray(comp)
            parts = [(comp == k).view(np.uint8) for k in range(1, n + 1)]
        else:
            parts = [mask]
        for part in parts:
            rle = _encode(part)
            area, bbox = _rle_stats(rle)
            out.append(
                {
                    "image_id": image_id,
                    "category_id": int(cid),
                    "segmentation": rle,
                    "area": area,
                    "bbox": bbox,
                    "iscrowd": 0 if instances else 1,
                }
            )
    return out


def write_coco(
    images: Mapping[str, np.ndarray],
    path: str | os.PathLike[str],
    *,
    taxonomy: Taxonomy,
    instances: bool = False,
) -> Path:
    """Write label images as one COCO JSON file with RLE masks, atomically.

    Parameters
    ----------
    images : mapping of str to (H, W) integer array
        Image file name (as written in ``images[].file_name``) to its class-index labels.
    path : path-like
        Destination ``.json``.
    taxonomy : Taxonomy
        Gives ``categories`` (id, name, colour); ids absent from it are refused.
    instances : bool
        One annotation per 8-connected component instead of one per class.

    Returns
    -------
    Path

    Raises
    ------
    ExportError
        For an empty mapping, non-2D or non-integer labels or ids absent from the taxonomy;
        nothing is written.
    """
    if not images:
        raise ExportError("no label images to export")
    checked = {}
    for name, labels in images.items():
        try:
            arr = validate_labels(labels, taxonomy, max_ndim=2)
        except ExportError as exc:
            raise ExportError(f"{name}: {exc}") from None
        if arr.ndim != 2:
            raise ExportError(f"{name}: a COCO mask must be 2D, got shape {arr.shape}")
        checked[str(name)] = arr
    categories = [
        {"id": c.id, "name": c.name, "supercategory": taxonomy.name, "color": c.hex_color}
        for c in taxonomy.classes
    ]
    doc: dict[str, Any] = {
        "info": {
            "description": f"segflow export, taxonomy {taxonomy.name}",
            INFO_KEY: {"unlabeled_id": taxonomy.unlabeled_id, "taxonomy": taxonomy.to_dict()},
        },
        "images": [],
        "annotations": [],
        "categories": categories,
    }
    for image_id, (name, arr) in enumerate(checked.items(), start=1):
        h, w = arr.shape
        doc["images"].append({"id": image_id, "file_name": name, "height": h, "width": w})
        doc["annotations"].extend(
            coco_annotations(arr, taxonomy=taxonomy, image_id=image_id, instances=instances)
        )
    for ann_id, ann in enumerate(doc["annotations"], start=1):
        ann["id"] = ann_id
    return atomic_write_bytes(path, json.dumps(doc).encode("utf-8"))


def rle_counts(counts: str | bytes) -> list[int]:
    """Run lengths of a compressed COCO RLE string (pycocotools' text encoding).

    Each run is a sequence of characters ``'0' + 6-bit group`` (5 data bits, bit 5 "more");
    the last group's bit 4 is the sign, and from the third run on the value is a difference
    to the run two places back.

    Raises
    ------
    ValueError
        For characters outside the encoding or a number left unfinished.

    Examples
    --------
    >>> rle_counts("21100")  # pycocotools' encoding of [[0, 1, 1], [0, 0, 0]]
    [2, 1, 1, 1, 1]
    """
    text = counts.decode("ascii") if isinstance(counts, bytes) else counts
    runs: list[int] = []
    value = shift = 0
    for ch in text:
        c = ord(ch) - 48
        if not 0 <= c < 64:
            raise ValueError(f"RLE counts contain {ch!r}, not a COCO RLE character")
        value |= (c & 0x1F) << shift
        shift += 5
        if c & 0x20:
            if shift > 60:
                raise ValueError("RLE counts hold a number too long to be a run length")
            continue
        if c & 0x10:
            value -= 1 << shift  # sign-extend the last group
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
        value = shift = 0
    if shift:
        raise ValueError("RLE counts end in the middle of a number")
    return runs


def check_rle(seg: Mapping[str, Any], height: int, width: int) -> None:
    """Check a COCO RLE against its image before decoding: size and run lengths must agree.

    pycocotools decodes whatever it is given; runs that sum to less than ``height * width``
    leave the rest of the mask uninitialised, and an absurd ``size`` allocates that much.

    Raises
    ------
    ValueError
        One line saying what is wrong.

    Examples
    --------
    >>> check_rle({"size": [2, 3], "counts": [1, 2, 3]}, 2, 3)
    >>> check_rle({"size": [2, 3], "counts": [1, 2]}, 2, 3)
    Traceback (most recent call last):
    ...
    ValueError: RLE runs cover 3 pixels, the mask has 6
    """
    size = seg.get("size")
    if not isinstance(size, list | tuple) or len(size) != 2:
        raise ValueError(f"RLE 'size' must be [height, width], got {brief(size)}")
    check_pixels(size, what="RLE mask")
    if [int(size[0]), int(size[1])] != [height, width]:
        raise ValueError(f"RLE size {list(size)} differs from its image [{height}, {width}]")
    counts = seg.get("counts")
    if isinstance(counts, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in counts):
            raise ValueError("RLE counts must be integers")
        runs = counts
    elif isinstance(counts, str | bytes):
        if len(counts) > 12 * height * width + 16:
            raise ValueError("RLE counts are longer than any mask of this size needs")
        runs = rle_counts(counts)
    else:
        raise ValueError(f"RLE 'counts' must be a string or a list, got {brief(counts)}")
    if any(v < 0 for v in runs):
        raise ValueError("RLE counts contain a negative run length")
    total = sum(runs)
    if total != height * width:
        raise ValueError(f"RLE runs cover {total} pixels, the mask has {height * width}")


def _segmentation_rle(seg: Any, height: int, width: int) -> Any:
    """Any COCO segmentation (compressed/uncompressed RLE, polygons, a bare flat polygon) as RLE.

    RLE is checked against the image (:func:`check_rle`) and polygon coordinates must be finite
    numbers before pycocotools sees them.
    """
    from pycocotools import mask as mask_utils

    if isinstance(seg, dict):
        check_rle(seg, height, width)
        counts = seg.get("counts")
        if isinstance(counts, list):  # uncompressed RLE
            return mask_utils.frPyObjects(seg, height, width)
        if isinstance(counts, str):
            return {"size": [height, width], "counts": counts.encode("ascii")}
        return {"size": [height, width], "counts": counts}
    if isinstance(seg, list):
        if seg and all(isinstance(v, int | float) for v in seg):
            seg = [seg]  # a single flat polygon (written by some tools, e.g. solaris)
        polys = []
        for p in seg:
            if not isinstance(p, list) or len(p) < 6:
                continue
            if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in p):
                raise ValueError("polygon coordinates must be numbers")
            arr = np.asarray(p, dtype=np.float64)
            if not np.isfinite(arr).all() or np.abs(arr).max() > 1e7:
                raise ValueError("polygon coordinates must be finite numbers of sane size")
            polys.append(arr.tolist())
        if not polys:
            return None
        return mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    if seg is None:
        return None
    raise ValueError(f"unsupported segmentation of type {type(seg).__name__}")


def _labels_dtype(top: int) -> np.dtype:
    if top <= 255:
        return np.dtype(np.uint8)
    return np.dtype(np.uint16 if top <= 65535 else np.int32)


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ValueError(f"{what} must be an integer, got {brief(value)}")
    return int(value)


def read_coco(
    path: str | os.PathLike[str], *, max_pixels: int = MAX_PIXELS
) -> dict[str, np.ndarray]:
    """Read a COCO JSON file as ``{image file_name: class-index labels}``.

    Each annotation's category id is painted into its image in file order (a later annotation wins
    where two overlap). RLE (compressed or not) and polygons are read; polygons are rasterised by
    pycocotools. Pixels outside every annotation hold the unlabelled id recorded by
    :func:`write_coco`, or 0 for files from other tools.

    Nothing in the file is trusted: image sizes are bounded (``max_pixels`` per image and in
    all), every RLE is checked against its image before decoding, keys and types are checked.

    Raises
    ------
    ValueError
        One line naming the file, and the image or annotation, that is wrong.
    """
    from pycocotools import mask as mask_utils

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no such file")
    check_not_partial(p)
    check_format(p, {"json"})
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{p}: not a COCO JSON file ({type(exc).__name__}: {exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise ValueError(f"{p}: not a COCO JSON file (no 'images' list)")
    images = doc["images"]
    annotations = doc.get("annotations", [])
    if not isinstance(annotations, list):
        raise ValueError(f"{p}: 'annotations' must be a list")
    categories = doc.get("categories", [])
    if not isinstance(categories, list):
        raise ValueError(f"{p}: 'categories' must be a list")
    info = doc.get("info") if isinstance(doc.get("info"), dict) else {}
    seg_info = info.get(INFO_KEY) if isinstance(info.get(INFO_KEY), dict) else {}
    try:
        fill = seg_info.get("unlabeled_id")
        fill = 0 if fill is None else _int(fill, "info.segflow.unlabeled_id")
        cat_ids = []
        for k, c in enumerate(categories):
            if not isinstance(c, dict) or "id" not in c:
                raise ValueError(f"categories[{k}] is not an object with an 'id'")
            cat_ids.append(_int(c["id"], f"categories[{k}].id"))
        for k, a in enumerate(annotations):
            if not isinstance(a, dict) or "category_id" not in a:
                raise ValueError(f"annotation {k} is not an object with a 'category_id'")
            cat_ids.append(_int(a["category_id"], f"annotation {k}: category_id"))
        ids = [fill, *cat_ids]
        if min(ids) < 0 or max(ids) > np.iinfo(np.int32).max:
            raise ValueError(f"category ids must be in 0..{np.iinfo(np.int32).max}")
    except ValueError as exc:
        raise ValueError(f"{p}: {exc}") from None
    dtype = _labels_dtype(max(ids))

    shapes: dict[Any, tuple[str, int, int]] = {}
    names: set[str] = set()
    total = 0
    for k, im in enumerate(images):
        if not isinstance(im, dict) or "id" not in im:
            raise ValueError(f"{p}: images[{k}] is not an object with an 'id'")
        name = str(im.get("file_name", im["id"]))
        if name in names:
            raise ValueError(f"{p}: two images are named {brief(name)}")
        names.add(name)
        try:
            h = _int(im.get("height"), "height")
            w = _int(im.get("width"), "width")
            check_pixels([h, w], what=f"image {brief(name)}", max_pixels=max_pixels)
        except ValueError as exc:
            raise ValueError(f"{p}: images[{k}]: {exc}") from None
        total += h * w
        if total > 4 * max_pixels:
            raise ValueError(f"{p}: the images hold more than {4 * max_pixels} pixels in all")
        try:
            hash(im["id"])
        except TypeError:
            raise ValueError(f"{p}: images[{k}]: 'id' must be a number or a string") from None
        shapes[im["id"]] = (name, h, w)

    out: dict[str, np.ndarray] = {}
    by_id: dict[Any, np.ndarray] = {}
    for image_id, (name, h, w) in shapes.items():
        arr = np.full((h, w), fill, dtype=dtype)
        out[name] = arr
        by_id[image_id] = arr
    for k, ann in enumerate(annotations):
        image_id = ann.get("image_id")
        arr = by_id.get(image_id) if isinstance(image_id, int | str) else None
        if arr is None:
            raise ValueError(f"{p}: annotation {k} refers to unknown image {brief(image_id)}")
        try:
            rle = _segmentation_rle(ann.get("segmentation"), *arr.shape)
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"{p}: annotation {k}: {exc}") from None
        if rle is None:
            continue
        if isinstance(rle, list):
            rle = mask_utils.merge(rle)
        mask = mask_utils.decode(rle)
        if mask.shape != arr.shape:
            raise ValueError(f"{p}: annotation {k} has size {mask.shape}, its image {arr.shape}")
        arr[mask.astype(bool)] = int(ann["category_id"])
    return out


def read_coco_taxonomy(path: str | os.PathLike[str]) -> Taxonomy | None:
    """The taxonomy recorded by :func:`write_coco`, or ``None`` for COCO files from elsewhere."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        data = doc["info"][INFO_KEY]["taxonomy"]
        return taxonomy_from_dict(data, source=f"{path} (embedded taxonomy)")
    except (OSError, ValueError, KeyError, TypeError, RecursionError, TaxonomyError):
        return None
