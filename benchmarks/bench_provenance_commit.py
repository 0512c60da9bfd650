"""Cost of keeping provenance in step with a propagation, and of the PNG provenance sidecar.

Rows (the shipped abdominal MR labels as the "propagated" volume, written into an empty layer):
- ``baseline data_setitem + undo + redo``: napari's undoable write of the same voxels, undone and
  redone, without provenance (the floor);
- ``commit_propagation``: segflow's write through the provenance tracker (one undo item, pending
  marks recorded for undo/redo), then one undo and one redo;
- ``write_png`` / ``write_labels_png``: one slice as a class-index PNG without and with the
  ``.provenance.npz`` sidecar.

    python benchmarks/bench_provenance_commit.py [--repeat 5] [--data DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from napari_segflow._writer import write_labels_png  # noqa: E402
from napari_segflow.core.io import write_png  # noqa: E402
from napari_segflow.core.io.nifti import read_nifti  # noqa: E402
from napari_segflow.core.io.volume_layout import to_layer_order  # noqa: E402
from napari_segflow.core.provenance import AI_PENDING, PROVENANCE_KEY  # noqa: E402
from napari_segflow.core.taxonomy import load_preset  # noqa: E402
from napari_segflow.layers import TAXONOMY_KEY  # noqa: E402
from napari_segflow.layers_volume import commit_propagation  # noqa: E402


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--data",
        default=os.environ.get("SEGFLOW_SHARED_DATA", REPO.parent / "shared" / "data"),
    )
    args = ap.parse_args()
    from napari.layers import Labels

    seg = np.ascontiguousarray(
        to_layer_order(read_nifti(Path(args.data) / "abdomen_mr" / "example_seg_mr.nii.gz").data)
    ).astype(np.uint8)
    n = int((seg > 0).sum())

    def baseline():
        layer = Labels(np.zeros_like(seg))
        index = np.nonzero(seg)
        layer.data_setitem(index, seg[index])
        layer.undo()
        layer.redo()

    def segflow():
        layer = Labels(np.zeros_like(seg))
        commit_propagation(layer, seg)
        layer.undo()
        layer.redo()
        assert int((layer.metadata[PROVENANCE_KEY] == AI_PENDING).sum()) == n

    tax = load_preset("abdomen-mr")
    z = int(np.argmax((seg > 0).sum(axis=(1, 2))))
    plane = seg[z]
    prov = np.where(plane > 0, AI_PENDING, 0).astype(np.uint8)
    meta = {"name": "s", "metadata": {TAXONOMY_KEY: tax.to_dict(), PROVENANCE_KEY: prov}}
    with tempfile.TemporaryDirectory() as tmp:
        t_png = _best(lambda: write_png(plane, Path(tmp) / "a.png", taxonomy=tax), args.repeat)
        t_side = _best(
            lambda: write_labels_png(str(Path(tmp) / "b.png"), plane, meta), args.repeat
        )
    t_base = _best(baseline, args.repeat)
    t_seg = _best(segflow, args.repeat)
    print(f"volume {seg.shape}, {n:,} labelled voxels; best of {args.repeat}")
    print(f"{'baseline data_setitem + undo + redo':<40}{t_base * 1e3:9.1f} ms")
    print(f"{'commit_propagation + undo + redo':<40}{t_seg * 1e3:9.1f} ms")
    print(f"slice {z} {plane.shape}")
    print(f"{'write_png (no sidecar)':<40}{t_png * 1e3:9.1f} ms")
    print(f"{'write_labels_png (+ provenance sidecar)':<40}{t_side * 1e3:9.1f} ms")


if __name__ == "__main__":
    main()
