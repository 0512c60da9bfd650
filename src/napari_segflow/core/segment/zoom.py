"""A zoomed crop for small objects: the model sees the object's neighbourhood at full input size.

LiteMedSAM sees the whole picture at 256 px, so an object of 20 pixels in a 512-pixel image is
10 pixels wide when the model looks at it. Re-embedding a crop around the box and decoding the
box there gives the model more pixels on the object, at the cost of one more encoder run.
:func:`zoom_window` decides whether a box is small enough for that and where the crop lies; its
windows sit on a grid (power-of-two sides, origins on quarter-side steps) so that neighbouring
objects share one crop and its embedding is computed once and served from the cache after.
:func:`paste_logits` puts the crop's answer back into the full picture's frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ZoomOptions", "paste_logits", "zoom_window"]


@dataclass(frozen=True)
class ZoomOptions:
    """When and how :func:`zoom_window` zooms (defaults measured on the shared data).

    Attributes
    ----------
    max_fraction : float
        Zoom only when the box's longest side is below this fraction of the image's longest
        side.
    context : float
        The crop's side is at least this many times the box's longest side.
    min_side : int
        Smallest crop side in pixels (tiny boxes are not blown up beyond the model's reach).
    """

    max_fraction: float = 0.2
    context: float = 3.0
    min_side: int = 64


def zoom_window(
    box_xyxy, image_shape: tuple[int, int], *, options: ZoomOptions | None = None
) -> tuple[int, int, int, int] | None:
    """The crop ``(row0, col0, row1, col1)`` (end exclusive) to re-embed for a box, or None.

    None when the box is not small relative to the image (zooming would not give the model
    more pixels) or the crop would be the whole image.

    Parameters
    ----------
    box_xyxy : (x_min, y_min, x_max, y_max)
        The box in model convention (inclusive).
    image_shape : (rows, cols)
    options : ZoomOptions, optional

    Examples
    --------
    A 20-pixel box in a 512 image gets a 64-pixel crop that holds it; a big box gets none:

    >>> zoom_window((100, 200, 119, 219), (512, 512))
    (176, 64, 240, 128)
    >>> zoom_window((0, 0, 300, 300), (512, 512)) is None
    True
    """
    opts = options or ZoomOptions()
    h, w = (int(v) for v in image_shape)
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    side = max(x1 - x0 + 1, y1 - y0 + 1, 1.0)
    if side > opts.max_fraction * max(h, w):
        return None
    want = max(opts.context * side, float(opts.min_side))
    s = int(2 ** np.ceil(np.log2(want)))
    if s >= max(h, w):
        return None
    step = max(s // 4, 1)

    def origin(lo: float, hi: float, size: int) -> int:
        centre = 0.5 * (lo + hi)
        o = int(np.floor((centre - s / 2) / step)) * step
        # the grid may leave the box at the crop's edge: move by whole steps until it fits
        while o + s <= hi and o + s < size:
            o += step
        while o > lo and o > 0:
            o -= step
        return int(min(max(o, 0), max(size - s, 0)))

    r0, c0 = origin(y0, y1, h), origin(x0, x1, w)
    return r0, c0, min(r0 + s, h), min(c0 + s, w)


def paste_logits(
    crop_logits: np.ndarray,
    window: tuple[int, int, int, int],
    image_shape: tuple[int, int],
    *,
    outside: float = -32.0,
) -> np.ndarray:
    """Full-size logits: the crop's answer inside ``window``, ``outside`` elsewhere.

    Examples
    --------
    >>> full = paste_logits(np.ones((2, 2)), (1, 1, 3, 3), (4, 4), outside=-1.0)
    >>> full.astype(int).tolist()
    [[-1, -1, -1, -1], [-1, 1, 1, -1], [-1, 1, 1, -1], [-1, -1, -1, -1]]
    """
    r0, c0, r1, c1 = window
    out = np.full(tuple(image_shape), outside, dtype=np.float32)
    out[r0:r1, c0:c1] = crop_logits
    return out
