"""The 2D plane of an nD array that the viewer shows: cut it out, map points and masks in and out.

A :class:`Plane` names two array axes, the one shown vertically (plane rows) and the one shown
horizontally (plane columns), and the index along every other axis. A 2D image is the plane
``Plane(axes=(0, 1), point=(0, 0), shape=(H, W))``; the current slice of a ``(Z, Y, X)`` volume
shown in the usual order is ``Plane(axes=(1, 2), point=(z, 0, 0), shape=(Z, Y, X))``; a transposed
view just swaps the axes. Everything about the viewer's axis order is resolved here, once, so the
model only ever sees a plain 2D image and (row, col) prompts in that image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Plane"]


@dataclass(frozen=True)
class Plane:
    """A displayed 2D plane of an array of ``shape``.

    Parameters
    ----------
    axes : tuple of int
        ``(row_axis, col_axis)``: the array axes shown vertically and horizontally.
    point : tuple of int
        Index along every axis; the entries of ``axes`` are ignored (normalised to 0).
    shape : tuple of int
        Shape of the (label) array the plane cuts, without any colour channel.

    Examples
    --------
    >>> vol = np.arange(24).reshape(2, 3, 4)
    >>> p = Plane(axes=(1, 2), point=(1, 0, 0), shape=vol.shape)
    >>> p.take(vol).shape
    (3, 4)
    >>> p.to_plane([[1, 2, 3]]).tolist()
    [[2.0, 3.0]]
    >>> Plane(axes=(2, 1), point=(1, 0, 0), shape=vol.shape).take(vol).shape
    (4, 3)
    """

    axes: tuple[int, int]
    point: tuple[int, ...]
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        ndim = len(self.shape)
        if ndim < 2:
            raise ValueError(
                f"a plane needs an array with at least 2 axes, got shape {self.shape}"
            )
        axes = tuple(int(a) for a in self.axes)
        if len(axes) != 2 or axes[0] == axes[1] or not all(0 <= a < ndim for a in axes):
            raise ValueError(
                f"axes must be two different axes of a {ndim}D array, got {self.axes}"
            )
        if len(self.point) != ndim:
            raise ValueError(f"point needs {ndim} entries, got {len(self.point)}")
        point = [int(v) for v in self.point]
        for ax in axes:
            point[ax] = 0
        for ax, (v, n) in enumerate(zip(point, self.shape, strict=True)):
            if not 0 <= v < n:
                raise ValueError(f"index {v} along axis {ax} is outside 0..{n - 1}")
        object.__setattr__(self, "axes", axes)
        object.__setattr__(self, "point", tuple(point))
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))

    @property
    def plane_shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the plane."""
        return self.shape[self.axes[0]], self.shape[self.axes[1]]

    @property
    def key(self) -> tuple:
        """A hashable identity: two equal keys cut the same pixels in the same order."""
        fixed = tuple(v for ax, v in enumerate(self.point) if ax not in self.axes)
        return (self.axes, fixed, self.shape)

    def _index(self) -> tuple:
        return tuple(slice(None) if ax in self.axes else v for ax, v in enumerate(self.point))

    def take(self, data: np.ndarray, *, channel_axis: bool = False) -> np.ndarray:
        """Cut the plane out of ``data`` as ``(rows, cols)`` (``(rows, cols, C)`` with channels).

        ``channel_axis=True`` means ``data`` has one extra last axis (RGB) that is kept.
        """
        expected = len(self.shape) + (1 if channel_axis else 0)
        if np.ndim(data) != expected or tuple(np.shape(data)[: len(self.shape)]) != self.shape:
            raise ValueError(
                f"array of shape {np.shape(data)} does not match the plane's shape {self.shape}"
            )
        cut = np.asarray(data[self._index()])
        if self.axes[0] > self.axes[1]:  # rows come from the later axis: transposed view
            cut = np.swapaxes(cut, 0, 1)
        return cut

    def contains(self, coords: Sequence[Sequence[float]], *, tol: float = 0.5) -> np.ndarray:
        """Which nD data coordinates lie on this plane (within ``tol`` along the other axes)."""
        c = np.asarray(coords, dtype=float).reshape(-1, len(self.shape))
        others = [ax for ax in range(len(self.shape)) if ax not in self.axes]
        if not others:
            return np.ones(len(c), dtype=bool)
        fixed = np.asarray([self.point[ax] for ax in others], dtype=float)
        return np.all(np.abs(c[:, others] - fixed) < tol, axis=1)

    def to_plane(self, coords: Sequence[Sequence[float]]) -> np.ndarray:
        """nD data coordinates -> ``(N, 2)`` float ``(row, col)`` coordinates of the plane."""
        c = np.asarray(coords, dtype=float).reshape(-1, len(self.shape))
        return c[:, list(self.axes)]

    def to_data(self, rc: Sequence[Sequence[float]]) -> np.ndarray:
        """``(N, 2)`` plane ``(row, col)`` coordinates -> ``(N, ndim)`` data coordinates."""
        rc = np.asarray(rc, dtype=float).reshape(-1, 2)
        out = np.tile(np.asarray(self.point, dtype=float), (len(rc), 1))
        out[:, self.axes[0]] = rc[:, 0]
        out[:, self.axes[1]] = rc[:, 1]
        return out

    def indices(self, mask: np.ndarray) -> tuple[np.ndarray, ...]:
        """Fancy indices into the full array of the ``True`` pixels of a plane ``mask``.

        Examples
        --------
        >>> p = Plane(axes=(2, 1), point=(1, 0, 0), shape=(2, 3, 4))
        >>> m = np.zeros((4, 3), bool); m[3, 0] = True
        >>> [a.tolist() for a in p.indices(m)]
        [[1], [0], [3]]
        """
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.plane_shape:
            raise ValueError(f"mask shape {mask.shape} is not the plane's {self.plane_shape}")
        rows, cols = np.nonzero(mask)
        out = []
        for ax, v in enumerate(self.point):
            if ax == self.axes[0]:
                out.append(rows.astype(np.intp))
            elif ax == self.axes[1]:
                out.append(cols.astype(np.intp))
            else:
                out.append(np.full(rows.shape, v, dtype=np.intp))
        return tuple(out)

    def box_to_plane(self, corners: Sequence[Sequence[float]]) -> tuple[int, int, int, int]:
        """Corners of a rectangle (nD data coords) -> ``(row_min, col_min, row_max, col_max)``.

        The box is clipped to the plane and rounded to whole pixels (inclusive bounds).
        """
        rc = self.to_plane(corners)
        rows, cols = self.plane_shape
        r0, c0 = np.floor(rc.min(axis=0) + 0.5)
        r1, c1 = np.floor(rc.max(axis=0) + 0.5)
        r0, r1 = np.clip([r0, r1], 0, rows - 1)
        c0, c1 = np.clip([c0, c1], 0, cols - 1)
        return int(r0), int(c0), int(r1), int(c1)
