"""Cost of the prompt widget's bookkeeping beside plain napari edits (no model involved).

Run: ``python benchmarks/bench_prompt.py``. For each label size it prints the time to write a
proposal-sized mask through ``commit_mask`` (history + provenance) next to the baseline of a bare
``Labels.data_setitem``, the same for undo, and the time to list pending regions.
"""

from __future__ import annotations

import time

import numpy as np
from napari.layers import Labels

from napari_segflow.core.plane import Plane
from napari_segflow.core.provenance import AI_PENDING, provenance_regions
from napari_segflow.layers import commit_mask, track_provenance


def _best_ms(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        times.append(fn())
    return min(times) * 1e3


def _disc(shape: tuple[int, ...], radius: int) -> np.ndarray:
    rr, cc = np.ogrid[: shape[-2], : shape[-1]]
    disc = (rr - shape[-2] / 2) ** 2 + (cc - shape[-1] / 2) ** 2 < radius**2
    mask = np.zeros(shape, bool)
    if len(shape) == 2:
        mask[:] = disc
    else:
        mask[shape[0] // 2] = disc  # one slice of a volume, as the widget writes it
    return mask


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    rows = []
    for shape in [(512, 512), (1024, 1024), (64, 512, 512)]:
        mask = _disc(shape, radius=min(shape[-2:]) // 6)
        idx = np.nonzero(mask)

        point = (shape[0] // 2, 0, 0) if len(shape) == 3 else (0, 0)
        plane = Plane(axes=(len(shape) - 2, len(shape) - 1), point=point, shape=shape)
        plane_mask = plane.take(mask)

        def write(tracked: bool, shape=shape, idx=idx, plane=plane, plane_mask=plane_mask):
            layer = Labels(np.zeros(shape, np.uint8))
            if tracked:
                # the tracker and provenance array are set up once per layer: time a later commit
                track_provenance(layer).provenance  # noqa: B018
                return _timed(lambda: commit_mask(layer, plane_mask, 1, plane=plane))
            return _timed(lambda: layer.data_setitem(idx, 1))

        def undo(tracked: bool, shape=shape, idx=idx, plane=plane, plane_mask=plane_mask):
            layer = Labels(np.zeros(shape, np.uint8))
            if tracked:
                commit_mask(layer, plane_mask, 1, plane=plane)
            else:
                layer.data_setitem(idx, 1)
            return _timed(layer.undo)

        prov = np.zeros(shape, np.uint8)
        prov[mask] = AI_PENDING
        rows.append(
            (
                shape,
                int(mask.sum()),
                _best_ms(lambda w=write: w(False)),
                _best_ms(lambda w=write: w(True)),
                _best_ms(lambda u=undo: u(False)),
                _best_ms(lambda u=undo: u(True)),
                _best_ms(lambda p=prov: _timed(lambda: provenance_regions(p))),
            )
        )

    head = (
        f"{'labels shape':>16} {'mask px':>8} {'data_setitem':>13} {'commit_mask':>12}"
        f" {'undo plain':>11} {'undo tracked':>13} {'pending list':>13}"
    )
    print(head)
    print("-" * len(head))
    for shape, n, wp, wt, up, ut, rg in rows:
        print(
            f"{str(shape):>16} {n:>8} {wp:>10.1f} ms {wt:>9.1f} ms {up:>8.1f} ms"
            f" {ut:>10.1f} ms {rg:>10.1f} ms"
        )
    print("baseline: napari Labels.data_setitem / undo without provenance tracking")


if __name__ == "__main__":
    main()
