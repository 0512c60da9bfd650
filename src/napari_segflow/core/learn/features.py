"""Per-pixel features: a multi-scale filter bank and the bundled encoder's embeddings.

The filter bank works on the image after its intensity window (values in [0, 1]): Gaussian
smoothing, gradient magnitude (edges), Laplacian of Gaussian (blobs) and the eigenvalues of the
Hessian (ridges and valleys), each at several scales. 2D images are filtered in 2D; volumes
(Z, H, W) in 3D, so that features see the neighbouring slices.

The embeddings are LiteMedSAM's 256 x 64 x 64 image-encoder maps, fetched through the engine
(:func:`napari_segflow.core.segment.load_model` and its embedding cache, so an image already
embedded for prompting costs nothing more), projected on a few principal components learned
from the training images, and upsampled bilinearly to pixels. Projection first, then
upsampling: both are linear, so the order does not change the result but saves memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

__all__ = [
    "FEATURE_SET",
    "bank_names",
    "filter_bank",
    "normalise",
    "slabs",
    "slice_embedding",
    "volume_features",
]

#: Name and version of the feature definitions; a model file records it.
FEATURE_SET = "segflow-bank/1"


def bank_names(sigmas: Sequence[float], *, ndim: int, channels: int) -> list[str]:
    """Names of the filter-bank features, in the order :func:`filter_bank` returns them.

    Examples
    --------
    >>> bank_names([1.0], ndim=2, channels=1)
    ['c0:raw', 'c0:gauss1', 'c0:grad1', 'c0:log1', 'c0:hess1.0', 'c0:hess1.1']
    """
    names = []
    for c in range(channels):
        names.append(f"c{c}:raw")
        for s in sigmas:
            names += [f"c{c}:gauss{s:g}", f"c{c}:grad{s:g}", f"c{c}:log{s:g}"]
            names += [f"c{c}:hess{s:g}.{i}" for i in range(ndim)]
    return names


def normalise(image: np.ndarray, window) -> np.ndarray:
    """Map raw values through ``window`` (a resolved ``Window``) to float32 in [0, 1].

    Examples
    --------
    >>> from napari_segflow.core.segment import Window
    >>> normalise(np.array([-200, 40, 300]), Window(40, 400)).tolist()
    [0.0, 0.5, 1.0]
    """
    lo, hi = window.bounds
    scale = 1.0 / (hi - lo) if hi > lo else 0.0
    out = (np.asarray(image, dtype=np.float32) - np.float32(lo)) * np.float32(scale)
    return np.clip(out, 0.0, 1.0, out=out)


def _hessian_eigenvalues(smoothed: np.ndarray, sigma: float) -> np.ndarray:
    """Eigenvalues of the scale-normalised Hessian, sorted descending, shape (ndim, *shape)."""
    ndim = smoothed.ndim
    grads = np.gradient(smoothed)
    if ndim == 1:
        grads = [grads]
    h = np.empty((*smoothed.shape, ndim, ndim), dtype=np.float32)
    for i in range(ndim):
        second = np.gradient(grads[i])
        for j in range(i, ndim):
            h[..., i, j] = second[j]
            h[..., j, i] = second[j]
    ev = np.linalg.eigvalsh(h)[..., ::-1] * np.float32(sigma**2)
    return np.moveaxis(ev.astype(np.float32), -1, 0)


def filter_bank(image: np.ndarray, sigmas: Sequence[float]) -> np.ndarray:
    """Filter-bank features of a normalised image or volume.

    Parameters
    ----------
    image : (H, W), (H, W, C), (Z, H, W) or (Z, H, W, C) float array in [0, 1]
        Channels last; the spatial dimensions are filtered together (2D or 3D).
    sigmas : sequence of float
        Scales in pixels.

    Returns
    -------
    (*spatial, F) float32 ndarray
        ``F = len(bank_names(sigmas, ...))`` features per pixel.

    Examples
    --------
    >>> img = np.zeros((9, 9), np.float32); img[3:6, 3:6] = 1
    >>> f = filter_bank(img[..., None], [1.0])
    >>> f.shape
    (9, 9, 6)
    >>> bool(f[4, 4, 3] < 0 < f[0, 0, 1] + 1)   # a bright blob: negative LoG at its centre
    True
    """
    from scipy import ndimage as ndi

    arr = np.asarray(image, dtype=np.float32)
    spatial = arr.shape[:-1]
    channels = arr.shape[-1]
    ndim = len(spatial)
    per_channel = 1 + len(sigmas) * (3 + ndim)
    out = np.empty((*spatial, channels * per_channel), dtype=np.float32)
    k = 0
    for c in range(channels):
        x = np.ascontiguousarray(arr[..., c])
        out[..., k] = x
        k += 1
        for s in sigmas:
            g = ndi.gaussian_filter(x, s, mode="reflect")
            out[..., k] = g
            out[..., k + 1] = ndi.gaussian_gradient_magnitude(x, s, mode="reflect") * s
            out[..., k + 2] = ndi.gaussian_laplace(x, s, mode="reflect") * s**2
            out[..., k + 3 : k + 3 + ndim] = np.moveaxis(_hessian_eigenvalues(g, s), 0, -1)
            k += 3 + ndim
    return out


def slice_embedding(
    model, raw_slice: np.ndarray, window, *, mean: np.ndarray | None, components: np.ndarray | None
) -> np.ndarray:
    """Encoder embedding of one 2D image, as low-resolution vectors or projected to pixels.

    Parameters
    ----------
    model : engine model
        ``load_model("medsam-lite")`` (any model whose embedding is ``image_embed``,
        (1, C, 64, 64) for a 256-px input padded at the bottom and right).
    raw_slice : (H, W) or (H, W, C) array
        Raw values; the engine applies ``window`` and caches the embedding.
    window : Window
        The image's (or volume's) intensity window, resolved once.
    mean, components : ndarray or None
        The projection (``(C,)`` and ``(K, C)``). None returns the low-resolution vectors
        ``(h, w, C)`` of the image's area (for fitting the projection).

    Returns
    -------
    ndarray
        ``(H, W, K)`` float32 projected features upsampled to pixels, or ``(h, w, C)``.
    """
    import torch
    import torch.nn.functional as F

    emb = model.embed(raw_slice, window=window)
    t = emb.features["image_embed"]
    h, w = emb.image_shape
    side = t.shape[-1]
    scale = side / max(h, w)
    eh, ew = max(1, int(np.ceil(h * scale))), max(1, int(np.ceil(w * scale)))
    low = t[0, :, :eh, :ew].float().cpu()
    if components is None:
        return low.permute(1, 2, 0).numpy()
    proj = torch.einsum(
        "kc,chw->khw", torch.from_numpy(components), low - torch.from_numpy(mean)[:, None, None]
    )
    # the grid of the embedding covers ceil-rounded pixels: resize that extent, then crop
    up = F.interpolate(
        proj[None],
        size=(int(round(eh / scale)), int(round(ew / scale))),
        mode="bilinear",
        align_corners=False,
    )[0]
    up = up[:, :h, :w]
    if up.shape[1] < h or up.shape[2] < w:
        up = F.pad(up, (0, w - up.shape[2], 0, h - up.shape[1]), mode="replicate")
    return np.ascontiguousarray(up.permute(1, 2, 0).numpy(), dtype=np.float32)


def slabs(n: int, *, chunk: int, margin: int) -> Iterator[tuple[int, int, int, int]]:
    """``(lo, hi, start, stop)``: compute on ``lo:hi``, keep ``start:stop`` (``margin`` of context).

    Examples
    --------
    >>> list(slabs(5, chunk=2, margin=1))
    [(0, 3, 0, 2), (1, 5, 2, 4), (3, 5, 4, 5)]
    """
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        yield max(0, start - margin), min(n, stop + margin), start, stop


def volume_features(
    norm: np.ndarray,
    sigmas: Sequence[float],
    *,
    embed: Callable[[int], np.ndarray] | None,
    slices: Sequence[int] | None = None,
    chunk: int = 16,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Features of a normalised volume ``(Z, H, W, C)``, slab by slab: ``(start, stop, F)``.

    ``embed(z)`` gives the ``(H, W, K)`` embedding features of slice ``z``. ``slices``: only
    slabs holding one of these slices are computed (training on sparse annotated slices).
    """
    # Gaussian filters reach 4 sigma: with that much context a slab equals the whole volume
    margin = int(np.ceil(4 * max(sigmas))) if len(sigmas) else 0
    n = norm.shape[0]
    if slices is None:
        parts = list(slabs(n, chunk=chunk, margin=margin))
    else:
        parts = [
            (max(0, z - margin), min(n, z + margin + 1), z, z + 1) for z in sorted(set(slices))
        ]
    for lo, hi, start, stop in parts:
        bank = filter_bank(norm[lo:hi], sigmas)[start - lo : stop - lo]
        if embed is not None:
            emb = np.stack([embed(z) for z in range(start, stop)])
            bank = np.concatenate([bank, emb], axis=-1)
        yield start, stop, bank
