"""What should a click mean for LiteMedSAM (trained on boxes only)? Measured on real data.

Starting from the prediction for the reference mask's bounding box, a simulated annotator clicks
the deepest point of the larger error region (positive on a miss, negative on a false
detection), three times. Mean IoU after 0/1/2/3 clicks, for:

- the engine's rules (clicks edit the box prediction by the model's logits; or, without a box,
  edit the earlier logits), through the public API;
- the alternatives it rejected: clicks as point prompts to LiteMedSAM's decoder, with or without
  the previous logits as mask input, or the previous logits alone, or best of 3 candidates.

    python benchmarks/bench_segment_clicks.py [--data ../shared/data] [--quick]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import tifffile
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from napari_segflow.core.io.nifti import read_nifti
from napari_segflow.core.segment import load_model
from napari_segflow.core.segment.coords import to_model_prompts
from napari_segflow.core.segment.medsam_lite import _SIZE, _resized_shape


def _iou(a, b):
    return float((a & b).sum() / max((a | b).sum(), 1))


def _click(pred, gt):
    fn = ndi.distance_transform_edt(np.pad(gt & ~pred, 1))[1:-1, 1:-1]
    fp = ndi.distance_transform_edt(np.pad(pred & ~gt, 1))[1:-1, 1:-1]
    worse, label = (fn, 1) if fn.max() >= fp.max() else (fp, 0)
    return [int(v) for v in np.unravel_index(np.argmax(worse), gt.shape)], label


def _decoder_with_points(model, emb, box, points, labels, mask_input, multimask):
    """The rejected route: clicks straight into LiteMedSAM's prompt encoder."""
    h, w = emb.image_shape
    scale = _SIZE / max(h, w)
    nh, nw = _resized_shape(h, w)
    p = to_model_prompts(points, labels, box, image_shape=(h, w))
    net = model.net
    with torch.inference_mode():
        sparse, dense = net.prompt_encoder(
            points=(torch.from_numpy(p.points * scale)[None], torch.from_numpy(p.labels)[None]),
            boxes=torch.from_numpy(p.box * scale).reshape(1, 1, 4),
            masks=None if mask_input is None else torch.from_numpy(mask_input)[None],
        )
        low, iou = net.mask_decoder(
            image_embeddings=emb.features["image_embed"],
            image_pe=net.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
    k = int(iou[0].argmax())
    full = F.interpolate(low[:, k : k + 1, :nh, :nw], size=(h, w), mode="bilinear")
    return full[0, 0].numpy() > 0, low[0, k : k + 1].clamp(-32, 32).numpy()


def _decoder_mask_only(model, emb, box, mask_input):
    h, w = emb.image_shape
    scale = _SIZE / max(h, w)
    nh, nw = _resized_shape(h, w)
    p = to_model_prompts(box=box, image_shape=(h, w))
    net = model.net
    with torch.inference_mode():
        sparse, dense = net.prompt_encoder(
            points=None,
            boxes=torch.from_numpy(p.box * scale).reshape(1, 1, 4),
            masks=torch.from_numpy(mask_input)[None],
        )
        low, _ = net.mask_decoder(
            image_embeddings=emb.features["image_embed"],
            image_pe=net.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
    full = F.interpolate(low[:, :, :nh, :nw], size=(h, w), mode="bilinear")
    return full[0, 0].numpy() > 0, low[0].clamp(-32, 32).numpy()


STRATEGIES = [
    "kept: box + clicks edit logits",
    "kept: no box, edit earlier logits",
    "box + clicks as point prompts",
    "box + clicks + previous logits",
    "box + previous logits only",
    "box + clicks, best of 3",
]


def run_case(model, image, masks, table):
    emb = model.embed(image)
    for gt in masks:
        r, c = np.nonzero(gt)
        box = (r.min(), c.min(), r.max(), c.max())
        base = model.predict(emb, box=box)
        for name in STRATEGIES:
            pts, labs = [], []
            mask, logits = base.mask, base.logits
            row = [_iou(mask, gt)]
            for _ in range(3):
                p, lab = _click(mask, gt)
                pts.append(p)
                labs.append(lab)
                if name.startswith("kept: box"):
                    mask = model.predict(emb, box=box, points=pts, point_labels=labs).mask
                elif name.startswith("kept: no box"):
                    mask = model.predict(
                        emb, points=pts, point_labels=labs, mask_input=base.logits
                    ).mask
                elif name == "box + clicks as point prompts":
                    mask, _ = _decoder_with_points(model, emb, box, pts, labs, None, False)
                elif name == "box + clicks + previous logits":
                    mask, logits = _decoder_with_points(model, emb, box, pts, labs, logits, False)
                elif name == "box + previous logits only":
                    mask, logits = _decoder_mask_only(model, emb, box, logits)
                else:
                    mask, _ = _decoder_with_points(model, emb, box, pts, labs, None, True)
                row.append(_iou(mask, gt))
            table.setdefault(name, []).append(row)


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    ap.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
    ap.add_argument("--quick", action="store_true", help="one MR slice, 20 nuclei")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    model = load_model("medsam-lite", device="cpu")
    vol = read_nifti(args.data / "abdomen_mr" / "example_mr_sm.nii.gz").data
    seg = read_nifti(args.data / "abdomen_mr" / "example_seg_mr.nii.gz").data
    nuc = tifffile.imread(args.data / "nuclei_dsb2018" / "img2d.tif")
    nlab = tifffile.imread(args.data / "nuclei_dsb2018" / "mask2d.tif")
    results = {}
    mr = {}
    for z in (10,) if args.quick else (7, 10, 13):
        image, labels = vol[:, :, z].T, seg[:, :, z].T
        ids = [i for i in np.unique(labels)[1:] if (labels == i).sum() >= 50]
        run_case(model, image, [labels == i for i in ids], mr)
    results["MR organs"] = mr
    ids = np.unique(nlab)[1:][::2]
    results["nuclei"] = {}
    run_case(model, nuc, [nlab == i for i in (ids[:20] if args.quick else ids)], results["nuclei"])
    for dataset, table in results.items():
        n = len(next(iter(table.values())))
        print(f"\n{dataset} ({n} masks): mean IoU after 0 / 1 / 2 / 3 clicks")
        for name in STRATEGIES:
            means = np.mean(np.array(table[name]), axis=0)
            print(f"  {name:<36} " + " / ".join(f"{v:.3f}" for v in means))


if __name__ == "__main__":
    main()
