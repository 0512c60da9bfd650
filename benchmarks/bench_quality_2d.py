"""Masks that fit the object: the bundled model alone, a classical graph cut alone, the default.

For each set, side by side in one run, mean IoU of:

- ``model``: LiteMedSAM with ``refine=False`` (its box mask; clicks edit it by its logits);
- ``graphcut``: OpenCV GrabCut alone from the same box (clicks as hard constraints; a first
  click alone gets a box of 30 % of the image's longest side around it), same working size;
- ``default``: LiteMedSAM with the refinement of core/segment/refine.py (what users get);
- ``before`` (``--before``): the default as it was before the last change (``BEFORE_*``: a
  first click alone tried six boxes judged at full size and decoded the winner's box a seventh
  time), for a before/after in one run;
- ``zoomed`` (``--zoom``): the default with small boxes decoded on a re-embedded zoomed crop
  (core/segment/zoom.py).

Box: the object's box. Clicks: no box; the first click at the point farthest inside the object,
each next one at the point farthest inside the larger error region (positive on a miss,
negative on a false detection), all clicks replayed through ``PromptSession`` as the widget does.
Sets: pets (natural photographs, trimap band ignored), nuclei, SpaceNet buildings, MR organs.
Then the per-click latency at 1024x1024 (median of several clicks; the machine may be busy) with
the decoder runs per call, the methods interleaved so that all see the same load.

    python benchmarks/bench_quality_2d.py [--data ../shared/data] [--full] [--threads 1]
        [--sets pets,nuclei,buildings,mr] [--split all|tune|report] [--pets N] [--before]
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from napari_segflow.core.segment import clicks, load_model
from napari_segflow.core.segment.prompting import PromptSession
from napari_segflow.core.segment.refine import RefineOptions, refine_mask
from napari_segflow.core.segment.zoom import ZoomOptions

CLICKS = (1, 3, 5)


def _iou(pred, gt, valid):
    p, g = pred & valid, gt & valid
    return float((p & g).sum() / max((p | g).sum(), 1))


def _next_click(pred, gt, valid):
    fn = ndi.distance_transform_edt(np.pad(gt & ~pred & valid, 1))[1:-1, 1:-1]
    fp = ndi.distance_transform_edt(np.pad(pred & ~gt & valid, 1))[1:-1, 1:-1]
    positive = fn.max() >= fp.max()
    d = fn if positive else fp
    return [int(v) for v in np.unravel_index(np.argmax(d), d.shape)], int(positive)


def _box(mask):
    r, c = np.nonzero(mask)
    return int(r.min()), int(c.min()), int(r.max()), int(c.max())


# ----------------------------------------------------------------------------- data
def pets(root: Path, n: int, split: str = "all"):
    from PIL import Image

    rows = list(csv.DictReader(open(root / "manifest.csv")))
    # tune on the even rows of the manifest, report on the odd ones (both species in each half)
    rows = rows[{"all": 0, "tune": 0, "report": 1}[split] :: 1 if split == "all" else 2][:n]
    for row in rows:
        img = np.asarray(Image.open(root / "images" / f"{row['stem']}.jpg").convert("RGB"))
        tri = np.asarray(Image.open(root / "trimaps" / f"{row['stem']}.png"))
        x0, y0, x1, y1 = (int(v) for v in row["bbox_fg_or_unknown_xyxy"].split())
        yield img, [(tri == 1, tri != 3, (y0, x0, y1, x1))]


def nuclei(root: Path, n: int):
    import tifffile

    img = tifffile.imread(root / "nuclei_dsb2018" / "img2d.tif")
    lab = tifffile.imread(root / "nuclei_dsb2018" / "mask2d.tif")
    ids = np.unique(lab)[1:][::2][:n]
    yield img, [(lab == i, np.ones(lab.shape, bool), _box(lab == i)) for i in ids]


def buildings(root: Path, n: int):
    import tifffile

    img = tifffile.imread(root / "spacenet_atlanta" / "sample_geotiff.tif")
    m = tifffile.imread(root / "spacenet_atlanta" / "sample_fp_mask_from_geojson.tif") > 0
    lab, k = ndi.label(m)
    sizes = ndi.sum(m, lab, range(1, k + 1))
    ids = [i + 1 for i in np.argsort(sizes)[::-1] if sizes[i] >= 100][:n]
    yield img, [(lab == i, np.ones(m.shape, bool), _box(lab == i)) for i in ids]


def mr(root: Path, n: int):
    from napari_segflow.core.io.nifti import read_nifti

    vol = read_nifti(root / "abdomen_mr" / "example_mr_sm.nii.gz").data
    seg = read_nifti(root / "abdomen_mr" / "example_seg_mr.nii.gz").data
    for z in (7, 10, 13)[:n]:
        image, labels = vol[:, :, z].T, seg[:, :, z].T
        cases = []
        for lab in np.unique(labels)[1:]:
            gt = labels == lab
            if gt.sum() >= 50:
                cases.append((gt, np.ones(gt.shape, bool), _box(gt)))
        yield image, cases


# ----------------------------------------------------------------------------- methods
def _graphcut_box(rgb, box):
    r0, c0, r1, c1 = box
    prior = np.zeros(rgb.shape[:2], bool)
    prior[r0 : r1 + 1, c0 : c1 + 1] = True
    return refine_mask(rgb, prior, box=(c0, r0, c1, r1), band=1e6)


def _graphcut_clicks(rgb, pts, labs):
    h, w = rgb.shape[:2]
    r, c = pts[0]
    half = 0.15 * max(h, w)
    box = (max(c - half, 0), max(r - half, 0), min(c + half, w - 1), min(r + half, h - 1))
    prior = np.zeros((h, w), bool)
    prior[int(box[1]) : int(box[3]) + 1, int(box[0]) : int(box[2]) + 1] = True
    xy = np.asarray(pts, float)[:, ::-1]
    pos = xy[np.asarray(labs) == 1]
    box = (
        min(box[0], pos[:, 0].min()),
        min(box[1], pos[:, 1].min()),
        max(box[2], pos[:, 0].max()),
        max(box[3], pos[:, 1].max()),
    )
    return refine_mask(rgb, prior, box=box, points=xy, point_labels=labs, band=1e6)


def _settings(meth):
    """First-click rule and refinement settings of a row (``before``: those the default had)."""
    if meth == "before":
        return BEFORE_FIRST_CLICK, BEFORE_BOX_REFINE, BEFORE_CLICK_REFINE
    return clicks.FirstClickRule(), RefineOptions(), CLICK_REFINE


def _use(meth, model=None):
    clicks.FIRST_CLICK, clicks.BOX_REFINE, clicks.CLICK_REFINE = _settings(meth)
    if model is not None:
        model.__dict__.pop("_box_for_click", None)
        if meth == "before":
            model._box_for_click = lambda emb, point: _before_box_for_click(model, emb, point)


def _before_box_for_click(model, emb, point_xy):
    """A lone first click as before: every tried box judged at full size, the box decoded again."""
    from napari_segflow.core.segment._base import image_of

    box = clicks.box_for_click(
        lambda b: (lambda f, _l, s: (f[0], s[0]))(*model._box_logits(emb, b, False)),
        point_xy,
        emb.image_shape,
        image=image_of(emb),
        rule=BEFORE_FIRST_CLICK,
    )
    return box, None  # no answer to reuse: the model decodes the box (a seventh time)


#: the first-click rule and cut settings before this benchmark's last change
BEFORE_FIRST_CLICK = clicks.FirstClickRule(
    fractions=(0.06, 0.15, 0.3, 0.5, 0.75, 1.0),
    edge_penalty=0.25,
    outline_weight=0.05,
    stop_edge=None,
    stop_score=None,
)
CLICK_REFINE = clicks.CLICK_REFINE
BEFORE_BOX_REFINE = RefineOptions()
BEFORE_CLICK_REFINE = RefineOptions(band=0.35, min_agreement=0.5)


class _DecodeCounter:
    """Counts the decoder's box runs of a model (one per box on ONNX Runtime)."""

    def __init__(self, model) -> None:
        self.n = 0
        self._decode = model._decode_boxes

        def counted(image_embed, boxes, multimask):
            self.n += int(np.asarray(boxes).reshape(-1, 4).shape[0])
            return self._decode(image_embed, boxes, multimask)

        model._decode_boxes = counted


def run_set(name, items, model, out, *, before=False, zoom=False):
    from napari_segflow.core.segment._base import image_of

    methods = (
        "model",
        "graphcut",
        "default",
        *(("before",) if before else ()),
        *(("zoomed",) if zoom else ()),
    )
    scores = {m: {k: [] for k in ("box", *CLICKS)} for m in methods}
    for image, cases in items:
        emb = model.embed(image)
        rgb = image_of(emb)
        for gt, valid, box in cases:
            for meth in [m for m in methods if m != "graphcut"]:
                model.refine = meth != "model"
                model.zoom = ZoomOptions() if meth == "zoomed" else None
                _use(meth, model)
                res = model.predict(emb, box=box)
                scores[meth]["box"].append(_iou(res.mask, gt, valid))
                s = PromptSession(model)
                s.want("img")
                s.offer("img", emb)
                pred, pts, labs = np.zeros(gt.shape, bool), [], []
                for k in range(1, max(CLICKS) + 1):
                    p, lab = _next_click(pred, gt, valid)
                    pts.append(p)
                    labs.append(lab)
                    pred = s.predict(pts, labs, None).mask
                    if k in CLICKS:
                        scores[meth][k].append(_iou(pred, gt, valid))
            scores["graphcut"]["box"].append(_iou(_graphcut_box(rgb, box), gt, valid))
            pred, pts, labs = np.zeros(gt.shape, bool), [], []
            for k in range(1, max(CLICKS) + 1):
                p, lab = _next_click(pred, gt, valid)
                pts.append(p)
                labs.append(lab)
                pred = _graphcut_clicks(rgb, pts, labs)
                if k in CLICKS:
                    scores["graphcut"][k].append(_iou(pred, gt, valid))
    model.refine, model.zoom = True, None
    _use("default", model)
    n = len(scores["model"]["box"])
    print(f"\n{name} ({n} objects): mean IoU")
    print(
        f"  {'method':<10}"
        + "".join(f"{c:>9}" for c in ("box", "1 click", "3 clicks", "5 clicks"))
    )
    for meth, d in scores.items():
        vals = [np.mean(d[k]) for k in ("box", *CLICKS)]
        print(f"  {meth:<10}" + "".join(f"{v:>9.3f}" for v in vals))
        out[(name, meth)] = vals
    return scores


def latency(model, root: Path, repeats: int, *, before=False):
    import cv2
    from PIL import Image

    img = np.asarray(Image.open(root / "pets_oxford" / "images" / "Bengal_1.jpg").convert("RGB"))
    img = cv2.resize(img, (1024, 1024), interpolation=cv2.INTER_LINEAR)
    emb = model.embed(img)
    clicks = [[400, 500], [300, 500], [700, 400], [520, 560], [150, 150]]
    labs = [1, 1, 1, 0, 0]
    counter = _DecodeCounter(model)
    methods = ("model", "default", *(("before",) if before else ()))
    times = {m: ([], [], []) for m in methods}
    runs = {m: ([], [], []) for m in methods}
    load = [os.getloadavg()[0]]

    def timed(meth, slot, call):
        counter.n = 0
        t = time.perf_counter()
        call()
        times[meth][slot].append(time.perf_counter() - t)
        runs[meth][slot].append(counter.n)

    # the methods take turns within each repeat, so that all see the same load
    for _ in range(repeats):
        for meth in methods:
            model.refine = meth != "model"
            _use(meth, model)
            timed(meth, 0, lambda: model.predict(emb, box=(200, 250, 800, 800)))
            s = PromptSession(model)
            s.want("img")
            s.offer("img", emb)
            for k in range(1, len(clicks) + 1):
                timed(
                    meth,
                    1 if k == 1 else 2,
                    lambda k=k, s=s: s.predict(clicks[:k], labs[:k], None),
                )
        load.append(os.getloadavg()[0])
    model.refine = True
    _use("default", model)
    model.__dict__.pop("_decode_boxes", None)
    print("\nper-call latency at 1024x1024 (box, then clicks replayed as the widget does;")
    print("medians, decoder runs per call in brackets, later clicks: mean runs):")
    for meth in methods:
        med = [1000 * statistics.median(x) for x in times[meth]]
        dec = [statistics.median(runs[meth][0]), statistics.median(runs[meth][1])]
        dec.append(statistics.mean(runs[meth][2]))
        print(
            f"  {meth:<10} box {med[0]:6.0f} ms [{dec[0]:.0f}]   first click {med[1]:6.0f} ms "
            f"[{dec[1]:.0f}]   later clicks {med[2]:6.0f} ms [{dec[2]:.1f}]"
        )
    print(
        f"  load average (1 min) {min(load):.2f}-{max(load):.2f} during the run "
        f"({os.cpu_count()} cores)"
    )


def _default_data() -> Path:
    env = os.environ.get("SEGFLOW_SHARED_DATA")
    if env:
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared" / "data").is_dir():
            return parent / "shared" / "data"
    return Path("../shared/data")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=_default_data())
    ap.add_argument("--full", action="store_true", help="all 40 pets, 63 nuclei, 3 MR slices")
    ap.add_argument("--sets", default="pets,nuclei,buildings,mr")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--split",
        choices=("all", "tune", "report"),
        default="all",
        help="pets: all rows, the even rows (tuning half) or the odd rows (report half)",
    )
    ap.add_argument("--pets", type=int, default=None, help="how many pets (default 12, --full 40)")
    ap.add_argument(
        "--before",
        action="store_true",
        help="also a row 'before': the default as it was before the last change",
    )
    ap.add_argument(
        "--zoom",
        action="store_true",
        help="also a row 'zoomed': the default with small boxes decoded on a zoomed crop",
    )
    ap.add_argument("--repeats", type=int, default=None, help="latency repeats (1, --full 3)")
    ap.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    args = ap.parse_args(argv)
    import cv2
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    model = load_model("medsam-lite", device="cpu")
    full = args.full
    sets = {
        "pets": lambda: pets(
            args.data / "pets_oxford", args.pets or (40 if full else 12), args.split
        ),
        "nuclei": lambda: nuclei(args.data, 63 if full else 16),
        "buildings": lambda: buildings(args.data, 44 if full else 12),
        "mr": lambda: mr(args.data, 3 if full else 1),
    }
    out = {}
    for name in [n for n in args.sets.split(",") if n and n != "none"]:
        run_set(name, sets[name](), model, out, before=args.before, zoom=args.zoom)
    if not args.no_latency:
        latency(model, args.data, args.repeats or (3 if full else 1), before=args.before)


if __name__ == "__main__":
    main()
