"""Which pixels a model made and whether a person confirmed them.

A provenance array has the shape of its label image, dtype uint8:
``HUMAN`` (0), ``AI_CONFIRMED`` (1) or ``AI_PENDING`` (2). In napari it lives in the Labels
layer's ``metadata[PROVENANCE_KEY]``; beside exported files it is a sidecar
``<label file>.provenance.npz`` (key ``provenance``).
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_segflow.core.atomic import atomic_write_bytes

__all__ = [
    "AI_CONFIRMED",
    "AI_PENDING",
    "HUMAN",
    "MAX_SIDECAR_BYTES",
    "PROVENANCE_KEY",
    "ProvenanceError",
    "ProvenanceRegion",
    "new_provenance",
    "pending_count",
    "provenance_regions",
    "read_provenance",
    "region_labels",
    "sidecar_path",
    "write_provenance",
]

HUMAN = 0
AI_CONFIRMED = 1
AI_PENDING = 2

#: Key of the provenance array in a napari Labels layer's metadata.
PROVENANCE_KEY = "segflow_provenance"

#: Largest uncompressed provenance array a sidecar may hold (bytes); bounds a zip bomb.
MAX_SIDECAR_BYTES = 1 << 32


class ProvenanceError(ValueError):
    """A provenance sidecar that is damaged, of the wrong shape or holds unknown states."""


def new_provenance(shape: tuple[int, ...]) -> np.ndarray:
    """An all-human provenance array."""
    return np.zeros(shape, dtype=np.uint8)


def pending_count(provenance: np.ndarray | None) -> int:
    """Number of AI-made pixels nobody has confirmed yet (0 when there is no record)."""
    if provenance is None:
        return 0
    return int(np.count_nonzero(np.asarray(provenance) == AI_PENDING))


def sidecar_path(label_path: str | os.PathLike[str]) -> Path:
    """``mask.png`` -> ``mask.png.provenance.npz``."""
    p = Path(label_path)
    return p.with_name(p.name + ".provenance.npz")


def write_provenance(label_path: str | os.PathLike[str], provenance: np.ndarray) -> Path:
    """Write the provenance sidecar of ``label_path`` atomically."""
    buf = io.BytesIO()
    np.savez_compressed(buf, provenance=np.asarray(provenance, dtype=np.uint8))
    return atomic_write_bytes(sidecar_path(label_path), buf.getvalue())


def read_provenance(
    label_path: str | os.PathLike[str],
    *,
    shape: tuple[int, ...] | None = None,
    max_bytes: int = MAX_SIDECAR_BYTES,
) -> np.ndarray | None:
    """The provenance sidecar of ``label_path``, or ``None`` when there is none.

    The sidecar is checked before it is trusted: an ``.npz`` archive (never pickled data)
    holding one array ``provenance`` of dtype uint8, values in {0, 1, 2}, of ``shape`` when
    given, whose uncompressed size is read from the archive's directory and bounded by
    ``max_bytes`` before anything is decompressed.

    Raises
    ------
    ProvenanceError
        One line naming the sidecar and what is wrong with it.
    """
    side = sidecar_path(label_path)
    if not side.is_file():
        return None

    def bad(what: str) -> ProvenanceError:
        return ProvenanceError(f"{side}: invalid provenance sidecar: {what}")

    if shape is not None:
        max_bytes = min(max_bytes, int(np.prod(shape, dtype=np.int64)) + 4096)
    try:
        with zipfile.ZipFile(side) as zf:
            members = {i.filename: i for i in zf.infolist()}
            info = members.get("provenance.npy")
            if info is None:
                raise bad(f"no 'provenance' array (found {sorted(members)[:5]})")
            if info.file_size > max_bytes:
                raise bad(f"array of {info.file_size} bytes exceeds the limit of {max_bytes}")
    except zipfile.BadZipFile:
        raise bad("not an .npz archive (empty, truncated or another format)") from None
    except OSError as exc:
        raise bad(f"cannot be read ({exc})") from None
    try:
        with np.load(side, allow_pickle=False) as npz:
            arr = np.asarray(npz["provenance"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise bad(f"damaged ({type(exc).__name__}: {exc})") from None
    if arr.dtype != np.uint8:
        raise bad(f"dtype {arr.dtype}, expected uint8")
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise bad(f"shape {arr.shape} differs from its labels {tuple(shape)}")
    if arr.size and int(arr.max()) > AI_PENDING:
        raise bad(f"value {int(arr.max())} is not a provenance state (0, 1 or 2)")
    return arr


@dataclass(frozen=True, eq=False)
class ProvenanceRegion:
    """One connected region of pixels sharing a provenance state.

    Parameters
    ----------
    bbox : tuple of int
        ``(min_0, ..., min_n, max_0, ..., max_n)``, maxima inclusive, in array coordinates.
    centroid : tuple of float
        Mean index of the region's pixels along each axis.
    area : int
        Number of pixels (voxels in a volume).
    mask : ndarray of bool
        The region inside its bounding box (shape ``max - min + 1`` per axis).
    state : int
        The provenance state of the region (usually ``AI_PENDING``).
    """

    bbox: tuple[int, ...]
    centroid: tuple[float, ...]
    area: int
    mask: np.ndarray
    state: int = AI_PENDING

    @property
    def slices(self) -> tuple[slice, ...]:
        """Slices of the bounding box, for indexing the full array."""
        n = len(self.bbox) // 2
        return tuple(slice(self.bbox[i], self.bbox[n + i] + 1) for i in range(n))

    @property
    def indices(self) -> tuple[np.ndarray, ...]:
        """Fancy indices of the region's pixels in the full array.

        Examples
        --------
        >>> prov = np.zeros((3, 4), np.uint8); prov[1, 2:4] = AI_PENDING
        >>> [a.tolist() for a in provenance_regions(prov)[0].indices]
        [[1, 1], [2, 3]]
        """
        local = np.nonzero(self.mask)
        n = len(self.bbox) // 2
        return tuple(local[i] + self.bbox[i] for i in range(n))


def provenance_regions(
    provenance: np.ndarray, *, state: int = AI_PENDING, connectivity: int = 1
) -> list[ProvenanceRegion]:
    """Connected regions of ``provenance == state``, largest first.

    Parameters
    ----------
    provenance : ndarray of uint8
        A provenance array (2D image or 3D volume).
    state : int
        Which pixels to group, ``AI_PENDING`` by default.
    connectivity : int
        Neighbourhood of the connected components, 1 (faces) up to ``provenance.ndim`` (corners).

    Returns
    -------
    list of ProvenanceRegion
        Sorted by decreasing area, then by bounding box (a stable order for a list view).

    Examples
    --------
    >>> prov = np.zeros((4, 5), np.uint8)
    >>> prov[0, 0:2] = AI_PENDING
    >>> prov[2:4, 3:5] = AI_PENDING
    >>> [(r.area, r.bbox, r.centroid) for r in provenance_regions(prov)]
    [(4, (2, 3, 3, 4), (2.5, 3.5)), (2, (0, 0, 0, 1), (0.0, 0.5))]
    """
    from scipy import ndimage

    prov = np.asarray(provenance)
    if prov.ndim < 1:
        raise ValueError("provenance must be an array with at least one axis")
    if not 1 <= connectivity <= prov.ndim:
        raise ValueError(f"connectivity must be in 1..{prov.ndim}, got {connectivity}")
    selected = prov == state
    if not selected.any():
        return []
    # label only the bounding box of the selection: pending pixels are usually a small part
    # of a volume, and labelling is the expensive step
    crop = tuple(
        slice(int(np.argmax(a)), len(a) - int(np.argmax(a[::-1])))
        for a in (
            selected.any(axis=tuple(j for j in range(prov.ndim) if j != i))
            for i in range(prov.ndim)
        )
    )
    offset = tuple(s.start for s in crop)
    structure = ndimage.generate_binary_structure(prov.ndim, connectivity)
    components, _count = ndimage.label(selected[crop], structure=structure)
    regions = []
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None:
            continue
        mask = components[box] == index
        local = np.nonzero(mask)
        lo = tuple(int(s.start) + o for s, o in zip(box, offset, strict=True))
        hi = tuple(int(s.stop) - 1 + o for s, o in zip(box, offset, strict=True))
        centroid = tuple(float(np.mean(ax) + lo[i]) for i, ax in enumerate(local))
        regions.append(ProvenanceRegion(lo + hi, centroid, int(mask.sum()), mask, int(state)))
    regions.sort(key=lambda r: (-r.area, r.bbox))
    return regions


def region_labels(labels: np.ndarray, region: ProvenanceRegion) -> dict[int, int]:
    """Pixel count per label value inside ``region`` (which classes the model wrote there).

    Examples
    --------
    >>> prov = np.zeros((2, 3), np.uint8); prov[0] = AI_PENDING
    >>> labels = np.array([[4, 4, 7], [0, 0, 0]])
    >>> region_labels(labels, provenance_regions(prov)[0])
    {4: 2, 7: 1}
    """
    values, counts = np.unique(np.asarray(labels)[region.indices], return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts, strict=True)}
