"""Real data and the real LiteMedSAM encoder for the pixel-classifier tests."""

from __future__ import annotations

import numpy as np
import pytest

#: TotalSegmentator MR ids grouped into 9 organ groups (the benchmark uses the same groups)
MR_GROUPS = {
    "liver": (5,),
    "spleen": (1,),
    "kidneys": (2, 3),
    "stomach": (6,),
    "bowel": (13, 14, 15),
    "spine": (19, 20, 21),
    "vessels": (23, 24, 25),
    "back muscles": (46, 47, 48, 49),
    "other organs": (4, 7, 8, 9),
}
#: the three annotated slices of the 20-slice volume
MR_TRAIN_SLICES = (3, 10, 16)


@pytest.fixture(scope="session")
def mr_taxonomy():
    from napari_segflow.core.taxonomy import taxonomy_from_dict

    colors = [
        "#aa5500",
        "#aa00aa",
        "#00aa00",
        "#ffaa00",
        "#55aaff",
        "#ffffff",
        "#ff0000",
        "#884444",
        "#00ffaa",
    ]
    return taxonomy_from_dict(
        {
            "name": "abdomen-groups",
            "classes": [
                {"id": i + 1, "name": name, "color": colors[i]} for i, name in enumerate(MR_GROUPS)
            ],
        }
    )


@pytest.fixture(scope="session")
def mr_volume(shared_data):
    """``(image, gold)``: the abdominal MR as (Z, H, W) int16 and its 9 organ groups (0 = rest)."""
    from napari_segflow.core.io.nifti import read_nifti

    d = shared_data / "abdomen_mr"
    image = np.ascontiguousarray(read_nifti(d / "example_mr_sm.nii.gz").data.transpose(2, 1, 0))
    seg = read_nifti(d / "example_seg_mr.nii.gz").data.transpose(2, 1, 0)
    gold = np.zeros(seg.shape, np.uint8)
    for gid, ids in enumerate(MR_GROUPS.values(), start=1):
        gold[np.isin(seg, ids)] = gid
    return image, gold


@pytest.fixture(scope="session")
def nuclei(shared_data):
    """``(image, gold, scribbles)``: a 256x256 crop, nucleus = 1, and a few strokes (255 elsewhere)."""
    import tifffile

    d = shared_data / "nuclei_dsb2018"
    img = tifffile.imread(d / "img2d.tif")[:256, :256]
    inst = tifffile.imread(d / "mask2d.tif")[:256, :256]
    gold = (inst > 0).astype(np.uint8)
    return img, gold, _nuclei_scribbles(inst)


def _nuclei_scribbles(inst: np.ndarray, n_nuclei: int = 8, n_rows: int = 4) -> np.ndarray:
    """Strokes as an annotator draws them: a line across a few nuclei, a few background lines."""
    from scipy import ndimage as ndi

    lab = np.full(inst.shape, 255, np.uint8)
    ids = [i for i in np.unique(inst) if i]
    for i in ids[:: max(1, len(ids) // n_nuclei)][:n_nuclei]:
        core = ndi.binary_erosion(inst == i, iterations=2)
        if core.any():
            r = int(np.round(np.argwhere(core)[:, 0].mean()))
            lab[r][core[r]] = 1
    far = ndi.distance_transform_edt(inst == 0) > 4
    for r in np.linspace(10, inst.shape[0] - 10, n_rows).astype(int):
        lab[r, np.flatnonzero(far[r])[:60]] = 0
    return lab


def _group_ious(gold: np.ndarray, pred: np.ndarray, n: int = len(MR_GROUPS)) -> np.ndarray:
    out = []
    for c in range(1, n + 1):
        a, b = gold == c, pred == c
        union = np.count_nonzero(a | b)
        out.append(np.count_nonzero(a & b) / union if union else np.nan)
    return np.array(out)


@pytest.fixture(scope="session")
def group_ious():
    """``f(gold, pred)``: IoU of each of the 9 organ groups (NaN where absent from both)."""
    return _group_ious


@pytest.fixture(scope="session")
def mr_train_slices():
    return MR_TRAIN_SLICES
