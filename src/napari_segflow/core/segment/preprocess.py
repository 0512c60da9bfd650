"""Intensity handling before a model sees an image: windows, percentile clipping, 8-bit RGB.

Both backends consume an 8-bit, 3-channel picture, as they were trained on. Medical images
arrive as int16 Hounsfield units, uint16 MR or float; how they become 8 bits matters a lot
(a soft-tissue window turns a CT slice from grey mush into visible organs), so the choice is
explicit, part of the embedding cache key, and has presets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "WINDOW_PRESETS",
    "Percentile",
    "Window",
    "looks_like_hounsfield",
    "resolve_window",
    "to_rgb8",
    "validate_image",
]


@dataclass(frozen=True)
class Window:
    """Linear intensity window: ``level - width/2`` maps to 0 and ``level + width/2`` to 255.

    Examples
    --------
    >>> Window(40, 400).bounds
    (-160.0, 240.0)
    """

    level: float
    width: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.level) and np.isfinite(self.width)) or self.width <= 0:
            raise ValueError(f"window width must be a positive number, got {self.width}")

    @property
    def bounds(self) -> tuple[float, float]:
        return (float(self.level - self.width / 2), float(self.level + self.width / 2))

    def cache_token(self) -> str:
        return f"window:{self.level:g}:{self.width:g}"


@dataclass(frozen=True)
class Percentile:
    """Clip to the image's own ``low``-th and ``high``-th percentiles, then stretch (MR, microscopy).

    Examples
    --------
    >>> Percentile(0.5, 99.5).cache_token()
    'percentile:0.5:99.5'
    """

    low: float = 0.5
    high: float = 99.5

    def __post_init__(self) -> None:
        if not 0 <= self.low < self.high <= 100:
            raise ValueError(
                f"percentiles need 0 <= low < high <= 100, got {self.low}, {self.high}"
            )

    def cache_token(self) -> str:
        return f"percentile:{self.low:g}:{self.high:g}"


#: Common CT windows (Hounsfield units) and MR/microscopy percentile clipping.
WINDOW_PRESETS: dict[str, Window | Percentile] = {
    "ct-soft-tissue": Window(40, 400),
    "ct-bone": Window(400, 1800),
    "ct-lung": Window(-600, 1500),
    "ct-brain": Window(40, 80),
    "percentile": Percentile(0.5, 99.5),
}


def looks_like_hounsfield(image: np.ndarray) -> bool:
    """Guess whether ``image`` holds CT Hounsfield units (air near -1000, signed values).

    Examples
    --------
    >>> looks_like_hounsfield(np.array([[-1000, -1024], [40, 700]], dtype=np.int16))
    True
    >>> looks_like_hounsfield(np.array([[0, 12], [40, 700]], dtype=np.uint16))
    False
    """
    a = np.asarray(image)
    if a.dtype.kind not in "if" or a.size == 0:
        return False
    finite = a[np.isfinite(a)] if a.dtype.kind == "f" else a.ravel()
    if finite.size == 0:
        return False
    lo, hi = float(finite.min()), float(finite.max())
    # air sits around -1000 HU; scanners pad outside the field of view down to -3024
    return -3100 <= lo <= -800 and hi <= 40000


def resolve_window(window: str | Window | Percentile | tuple[float, float] | None):
    """Turn a preset name, ``(level, width)`` tuple or object into a Window/Percentile/None.

    ``"auto"`` is resolved per image by :func:`to_rgb8` (soft-tissue window for Hounsfield data,
    percentile clipping otherwise) and is returned unchanged here.

    Examples
    --------
    >>> resolve_window("ct-soft-tissue")
    Window(level=40, width=400)
    >>> resolve_window((50, 350))
    Window(level=50, width=350)
    """
    if window is None or window == "auto" or isinstance(window, (Window, Percentile)):
        return window
    if isinstance(window, str):
        if window not in WINDOW_PRESETS:
            raise ValueError(
                f"unknown window preset {window!r}; choose one of {sorted(WINDOW_PRESETS)} or 'auto'"
            )
        return WINDOW_PRESETS[window]
    if isinstance(window, (tuple, list)) and len(window) == 2:
        return Window(*window)
    raise ValueError(
        f"window must be a preset name, (level, width), Window or Percentile; got {window!r}"
    )


def validate_image(image: np.ndarray) -> np.ndarray:
    """Check an image a model can take: (H, W) or (H, W, C) with C in 1, 3, 4; finite; >= 2x2.

    Returns the array as (H, W, C).
    """
    a = np.asarray(image)
    if a.size == 0:
        raise ValueError(f"image is empty (shape {a.shape})")
    if a.dtype.kind not in "biuf":
        raise ValueError(f"image must hold numbers, got dtype {a.dtype}")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"image must be (H, W) or (H, W, C) with C in 1, 3 or 4 channels, got shape {np.shape(image)}"
        )
    if a.shape[0] < 2 or a.shape[1] < 2:
        raise ValueError(f"image is {a.shape[0]}x{a.shape[1]} pixels; at least 2x2 is needed")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError("image contains NaN or infinite values")
    if a.shape[2] == 4:
        a = a[:, :, :3]  # alpha carries no content for the model
    return a


def preprocess_token(window) -> str:
    """The part of the cache key that describes the intensity handling."""
    w = resolve_window(window)
    if w is None:
        return "minmax"
    if w == "auto":
        return "auto"
    return w.cache_token()


def to_rgb8(image: np.ndarray, window=None) -> np.ndarray:
    """Map an image to an (H, W, 3) uint8 picture for the model.

    Parameters
    ----------
    image : (H, W) or (H, W, C) array of any numeric dtype
    window : None, "auto", preset name, (level, width), Window or Percentile
        None keeps uint8 images as they are and stretches other dtypes from their minimum to
        their maximum. ``"auto"`` uses the CT soft-tissue window when the image looks like
        Hounsfield units and 0.5-99.5 percentile clipping otherwise.

    Examples
    --------
    >>> img = np.array([[-1000, -160], [40, 240]], dtype=np.int16)
    >>> to_rgb8(img, "ct-soft-tissue")[..., 0].tolist()
    [[0, 0], [128, 255]]
    """
    a = validate_image(image)
    w = resolve_window(window)
    if w == "auto":
        w = WINDOW_PRESETS["ct-soft-tissue"] if looks_like_hounsfield(a) else Percentile(0.5, 99.5)
    if w is None and a.dtype == np.uint8:
        out = a
    else:
        f = a.astype(np.float32)
        if w is None:
            lo, hi = float(f.min()), float(f.max())
        elif isinstance(w, Window):
            lo, hi = w.bounds
        else:
            lo, hi = (float(v) for v in np.percentile(f, (w.low, w.high)))
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        out = np.clip((f - lo) * scale, 0, 255)
        out = np.rint(out).astype(np.uint8)
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    return np.ascontiguousarray(out)
