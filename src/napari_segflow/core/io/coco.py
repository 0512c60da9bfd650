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

from .validate import ExportError, present_ids, validate_labels

__all__ = ["INFO_KEY", "coco_annotations", "read_coco", "read_coco_taxonomy", "write_coco"]

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


def _segmentation_rle(seg: Any, height: int, width: int) -> Any:
    """Any COCO segmentation (compressed/uncompressed RLE, polygons, a bare flat polygon) as RLE."""
    from pycocotools import mask as mask_utils

    if isinstance(seg, dict):
        counts = seg.get("counts")
        if isinstance(counts, list):  # uncompressed RLE
            return mask_utils.frPyObjects(seg, height, width)
        if isinstance(counts, str):
            return {"size": list(seg["size"]), "counts": counts.encode("ascii")}
        return seg
    if isinstance(seg, list):
        if seg and all(isinstance(v, int | float) for v in seg):
            seg = [seg]  # a single flat polygon (written by some tools, e.g. solaris)
        polys = [list(map(float, p)) for p in seg if isinstance(p, list) and len(p) >= 6]
        if not polys:
            return None
        return mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    raise ValueError(f"unsupported segmentation of type {type(seg).__name__}")


def _labels_dtype(top: int) -> np.dtype:
    if top <= 255:
        return np.dtype(np.uint8)
    return np.dtype(np.uint16 if top <= 65535 else np.int32)


def read_coco(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a COCO JSON file as ``{image file_name: class-index labels}``.

    Each annotation's category id is painted into its image in file order (a later annotation wins
    where two overlap). RLE (compressed or not) and polygons are read; polygons are rasterised by
    pycocotools. Pixels outside every annotation hold the unlabelled id recorded by
    :func:`write_coco`, or 0 for files from other tools.

    Raises
    ------
    ValueError
        For a missing or malformed file.
    """
    from pycocotools import mask as mask_utils

    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
        images = doc["images"]
        annotations = doc.get("annotations", [])
    except FileNotFoundError:
        raise ValueError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{p}: not a COCO JSON file ({type(exc).__name__}: {exc})") from None
    info = doc.get("info") if isinstance(doc.get("info"), dict) else {}
    fill = (info.get(INFO_KEY) or {}).get("unlabeled_id")
    fill = 0 if fill is None else int(fill)
    cat_ids = [int(c["id"]) for c in doc.get("categories", [])]
    cat_ids += [int(a["category_id"]) for a in annotations]
    dtype = _labels_dtype(max([fill, *cat_ids]))

    out: dict[str, np.ndarray] = {}
    by_id: dict[Any, np.ndarray] = {}
    for im in images:
        name = str(im.get("file_name", im["id"]))
        if name in out:
            raise ValueError(f"{p}: two images are named {name!r}")
        arr = np.full((int(im["height"]), int(im["width"])), fill, dtype=dtype)
        out[name] = arr
        by_id[im["id"]] = arr
    for k, ann in enumerate(annotations):
        arr = by_id.get(ann.get("image_id"))
        if arr is None:
            raise ValueError(
                f"{p}: annotation {k} refers to unknown image {ann.get('image_id')!r}"
            )
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
    except (OSError, ValueError, KeyError, TypeError, TaxonomyError):
        return None
