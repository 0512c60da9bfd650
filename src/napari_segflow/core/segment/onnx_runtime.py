"""ONNX Runtime for the bundled LiteMedSAM: its image encoder and box decoder as ONNX graphs.

On the CPU, ONNX Runtime runs LiteMedSAM's encoder about twice as fast as torch eager and its
box decoder about three times as fast, with the same masks (docs/segmentation.md, "Speed"). The ONNX
files are built from the weights the model was loaded with, at first use, and kept in the cache
folder under a name that carries a hash of those weights and of the export recipe: other weights
or another recipe give other files, and nothing is ever downloaded.

Only the box decoder is exported (the prompt encoder with boxes, then the mask decoder), which is
all LiteMedSAM uses: clicks edit its box prediction in numpy (``medsam_lite.apply_clicks``).
The decoder graph takes any number of boxes against one image embedding;
:meth:`OnnxLiteMedSAM.decode` feeds it one box at a time, which measured faster per box than a
batch.

The decoder is split in two graphs. The part of the mask decoder that depends on the image alone
(the image tokens with the no-mask embedding, and the first block's three projections of them)
runs once per embedding and is kept for the next boxes and clicks on the same image; the box
graph runs the rest from there. In the box graph every attention between the seven prompt tokens
and the 4096 image tokens is folded: the tokens' few queries, keys or values are taken through
the projection weights into the image's 256 channels, so the image tokens are multiplied once
per attention instead of projected (about 0.8 instead of 1.35 GMAC per box). The masks leave the
graph in the upscaling's block order and are put in place in numpy (:func:`blocks_to_image`).
Same model, same masks: the arithmetic is regrouped, not approximated (differences ~1e-5 in
logits of magnitude ~40).

Nothing here imports torch or onnxruntime at module level.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from pathlib import Path

import numpy as np

from napari_segflow.core.atomic import atomic_path

__all__ = [
    "OnnxLiteMedSAM",
    "blocks_to_image",
    "image_part_path",
    "onnx_available",
    "onnx_dir",
    "remove_old_recipes",
    "weights_hash",
]

log = logging.getLogger(__name__)

#: Tags of the export recipes, in the file names: a tag changes whenever its export changes, so
#: that old files are never reused (and are removed when new ones are built). The encoder's
#: export has not changed since the first; the decoder's is in its fifth form (see the docs).
_ENCODER_RECIPE = "e1"
_DECODER_RECIPE = "d5"
_FILE = re.compile(
    r"^medsam-lite-(?P<part>encoder|box-decoder|decoder-image-part)-"
    r"(?:(?P<recipe>[a-z]\d+)-)?[0-9a-f]{16}\.onnx$"
)
_OPSET = 17
ONNX_ENV = "SEGFLOW_ONNX"


def onnx_available() -> bool:
    """Whether onnxruntime can be imported (and ``$SEGFLOW_ONNX`` is not ``0``)."""
    if os.environ.get(ONNX_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def onnx_dir() -> Path:
    """Folder of the built ONNX files: ``<cache folder>/onnx``."""
    from napari_segflow.core.segment.checkpoints import cache_dir

    return cache_dir() / "onnx"


def weights_hash(net) -> str:
    """Short SHA-256 of a network's weights (names, shapes, dtypes and values).

    Examples
    --------
    >>> import torch
    >>> a = torch.nn.Linear(2, 1)
    >>> weights_hash(a) == weights_hash(a), len(weights_hash(a))
    (True, 16)
    """
    h = hashlib.sha256()
    for name, t in net.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def _heads(x, n: int):
    """(N, T, n * d) -> (N, n, T, d)."""
    b, t, c = x.shape
    return x.reshape(b, t, n, c // n).transpose(1, 2)


def _tokens_to_image(att, q_in, keys, keys_pe):
    """``Attention(q=q_in, k=keys_pe, v=keys)`` of segment-anything, with the image side folded.

    The few token queries are turned into the image's channel space first (``q W_k``, one row per
    head and token), so the 4096 image tokens are never projected: the logits are one product
    with the image tokens, the values one product of the attention with them, projected after.
    The key bias adds the same number to every logit of a row, which the softmax ignores; the
    value bias passes through unchanged because each attention row sums to one.
    """
    import math

    import torch

    n_heads = att.num_heads
    d = att.internal_dim // n_heads
    c = keys.shape[-1]
    q = _heads(att.q_proj(q_in), n_heads) / math.sqrt(d)  # (N, h, T, d)
    b, _, t, _ = q.shape
    wk = att.k_proj.weight.reshape(n_heads, d, c)  # per head (d, C)
    logits = (q @ wk).reshape(b, n_heads * t, c) @ keys_pe.transpose(1, 2)  # (N, h*T, HW)
    mixed = torch.softmax(logits, dim=-1) @ keys  # (N, h*T, C)
    wv = att.v_proj.weight.reshape(n_heads, d, c).transpose(1, 2)  # per head (C, d)
    out = mixed.reshape(b, n_heads, t, c) @ wv + att.v_proj.bias.reshape(n_heads, 1, d)
    return att.out_proj(out.transpose(1, 2).reshape(b, t, n_heads * d))


def _image_to_tokens(att, logits, v_in):
    """The rest of ``Attention(q=image, k=tokens, v=v_in)`` from its logits (N, HW, h*T).

    The output projection is applied to the few token values first (one (T, C) matrix per head),
    so the product with the attention goes straight to the image's channels.
    """
    import torch

    n_heads = att.num_heads
    d = att.internal_dim // n_heads
    b, hw, ht = logits.shape
    t = ht // n_heads
    attn = torch.softmax(logits.reshape(b, hw, n_heads, t), dim=-1).reshape(b, hw, ht)
    c = att.out_proj.weight.shape[0]
    wo = att.out_proj.weight.transpose(0, 1).reshape(n_heads, d, c)  # per head (d, C)
    values = _heads(att.v_proj(v_in), n_heads) @ wo  # (N, h, T, C)
    return attn @ values.reshape(b, ht, c) + att.out_proj.bias


def _image_to_tokens_logits(att, keys_pe, k_in):
    """Logits (N, HW, h*T) of ``Attention(q=keys_pe, k=k_in, ...)``: the image queries folded.

    ``(x W_q + b_q) k^T = x (W_q^T k^T) + b_q k^T``: the token keys are taken to the image's
    channel space (C, h*T) and the image tokens multiplied by that once.
    """
    import math

    import torch

    n_heads = att.num_heads
    d = att.internal_dim // n_heads
    c = keys_pe.shape[-1]
    k = _heads(att.k_proj(k_in), n_heads) / math.sqrt(d)  # (N, h, T, d)
    b, _, t, _ = k.shape
    wq = att.q_proj.weight.reshape(n_heads, d, c).transpose(1, 2)  # per head (C, d)
    fold = (wq @ k.transpose(2, 3)).permute(0, 2, 1, 3).reshape(b, c, n_heads * t)
    bias = (k @ att.q_proj.bias.reshape(n_heads, d, 1)).reshape(b, 1, n_heads * t)
    return torch.matmul(keys_pe, fold) + bias


def _block_diagonal(k, n_heads: int):
    """Token keys (N, T, h*d) -> (N, h*d, h*T): head ``i``'s keys transposed in block ``i``."""
    import torch

    b, t, c = k.shape
    kt = _heads(k, n_heads).transpose(2, 3)  # (N, h, d, T)
    eye = torch.eye(n_heads, dtype=k.dtype).reshape(1, n_heads, 1, n_heads, 1)
    return (kt.unsqueeze(3) * eye).reshape(b, c, n_heads * t)


def _Upscaling(seq):  # noqa: N802 (builds a torch module class lazily)
    """SAM's output upscaling (two 2x2 stride-2 transposed convolutions) as matrix products.

    A transposed convolution whose kernel equals its stride maps every input pixel to its own
    2x2 block of output pixels: one matrix product on channels-last pixels, with no overlap.
    The layer norm over channels then normalises the last axis, which ONNX Runtime runs as one
    fused node (the channels-first version was a dozen strided reductions and element-wise
    nodes). Same arithmetic as the model's, summed in another order.
    """
    import torch

    conv1, norm, act1, conv2, act2 = seq

    class Upscaling(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            with torch.no_grad():
                for i, conv in ((1, conv1), (2, conv2)):
                    cin, cout = conv.weight.shape[:2]
                    # (in, out, ki, kj) -> (in, ki * kj * out): columns ordered (ki, kj, out)
                    w = conv.weight.permute(0, 2, 3, 1).reshape(cin, 4 * cout).contiguous()
                    self.register_buffer(f"w{i}", w)
                    self.register_buffer(f"b{i}", conv.bias.repeat(4).contiguous())
            self.norm, self.act1, self.act2 = norm, act1, act2
            self.c1, self.c2 = int(conv1.weight.shape[1]), int(conv2.weight.shape[1])

        def forward(self, x):
            """(N, H*W, C) pixels -> (N, 16*H*W, C/8) features, rows ordered (y, x, i, j, i2, j2)."""
            import torch.nn.functional as F

            n = x.shape[0]
            x = (x @ self.w1 + self.b1).reshape(n, -1, self.c1)
            x = F.layer_norm(x, (self.c1,), self.norm.weight, self.norm.bias, self.norm.eps)
            x = self.act1(x)
            x = self.act2(x @ self.w2 + self.b2)
            return x.reshape(n, -1, self.c2)

    return Upscaling()


def _upscale_masks(up, keys, hyper):
    """Masks (N, K, 16*h*w) in block order from the image tokens (N, h*w, C) and K hypernetworks.

    Element ``(y, x, i, j, i2, j2)`` of the last axis is the mask at image row ``4y + 2i + i2``,
    column ``4x + 2j + j2``: :func:`blocks_to_image` puts them in place, outside the graph (ONNX
    Runtime's eight-axis transpose took longer than numpy's).
    """
    feats = up(keys)  # (N, 16*h*w, C/8)
    return hyper @ feats.transpose(1, 2)


def blocks_to_image(blocks: np.ndarray, h: int = 64, w: int = 64) -> np.ndarray:
    """Masks (N, K, 16*h*w) in the decoder graph's block order -> (N, K, 4h, 4w) images.

    Examples
    --------
    >>> rows, cols = np.mgrid[0:8, 0:8]
    >>> img = (rows * 8 + cols).astype(np.float32)[None, None]
    >>> blocks = img.reshape(1, 1, 2, 2, 2, 2, 2, 2).transpose(0, 1, 2, 5, 3, 6, 4, 7)
    >>> bool(np.array_equal(blocks_to_image(blocks.reshape(1, 1, -1), 2, 2), img))
    True
    """
    n, k = blocks.shape[:2]
    b = blocks.reshape(n, k, h, w, 2, 2, 2, 2).transpose(0, 1, 2, 4, 6, 3, 5, 7)
    return np.ascontiguousarray(b).reshape(n, k, 4 * h, 4 * w)


def _decoder_parts(net):
    """The mask decoder as (image part, box part): the image part runs once per embedding."""
    import math

    import torch

    pe, dec = net.prompt_encoder, net.mask_decoder
    block0 = dec.transformer.layers[0]
    t2i0, i2t0 = block0.cross_attn_token_to_image, block0.cross_attn_image_to_token
    n_heads = t2i0.num_heads

    class ImagePart(torch.nn.Module):
        """(1, 256, 64, 64) embedding -> image tokens and block 0's projections of them."""

        def __init__(self) -> None:
            super().__init__()
            self.no_mask = pe.no_mask_embed
            self.t2i, self.i2t = t2i0, i2t0
            with torch.no_grad():
                self.register_buffer("key_pe", pe.get_dense_pe().flatten(2).permute(0, 2, 1))

        def forward(self, image_embed):
            src = image_embed + self.no_mask.weight.reshape(1, -1, 1, 1)  # no mask prompt
            keys = src.flatten(2).permute(0, 2, 1)
            k = keys + self.key_pe
            t2i_k = _heads(self.t2i.k_proj(k), n_heads).transpose(2, 3)  # (1, h, d, HW)
            t2i_v = _heads(self.t2i.v_proj(keys), n_heads)  # (1, h, HW, d)
            return keys, t2i_k, t2i_v, self.i2t.q_proj(k)

    class BoxPart(torch.nn.Module):
        """Boxes (N, 4) in the 256 frame + the image part -> all four masks and scores."""

        def __init__(self) -> None:
            super().__init__()
            self.pe, self.dec = pe, dec
            self.up = _Upscaling(dec.output_upscaling)
            with torch.no_grad():
                self.register_buffer("key_pe", pe.get_dense_pe().flatten(2).permute(0, 2, 1))

        def forward(self, keys, t2i_k, t2i_v, i2t_q, boxes):
            sparse, _ = self.pe(points=None, boxes=boxes.reshape(-1, 1, 4), masks=None)
            d = self.dec
            out = torch.cat([d.iou_token.weight, d.mask_tokens.weight], dim=0)
            tokens = torch.cat((out.unsqueeze(0).expand(sparse.size(0), -1, -1), sparse), dim=1)
            b, t, _ = tokens.shape
            # block 0 (no positional encoding in its self-attention), from the image part
            b0 = d.transformer.layers[0]
            queries = b0.norm1(b0.self_attn(q=tokens, k=tokens, v=tokens))
            q = _heads(t2i0.q_proj(queries + tokens), n_heads)
            attn = torch.softmax((q @ t2i_k) / math.sqrt(q.shape[-1]), dim=-1)
            mixed = (attn @ t2i_v).transpose(1, 2).reshape(b, t, -1)
            queries = b0.norm2(queries + t2i0.out_proj(mixed))
            queries = b0.norm3(queries + b0.mlp(queries))
            k = t2i0.internal_dim // n_heads
            kq = i2t0.k_proj(queries + tokens) / math.sqrt(k)
            logits = i2t_q @ _block_diagonal(kq, n_heads)  # (N, HW, h*T)
            keys = b0.norm4(keys + _image_to_tokens(i2t0, logits, queries))
            # the other blocks, folded the same way
            for blk in d.transformer.layers[1:]:
                att = blk.self_attn
                qs = queries + tokens
                queries = blk.norm1(queries + att(q=qs, k=qs, v=queries))
                keys_pe = keys + self.key_pe
                t2i = blk.cross_attn_token_to_image
                att_out = _tokens_to_image(t2i, queries + tokens, keys, keys_pe)
                queries = blk.norm2(queries + att_out)
                queries = blk.norm3(queries + blk.mlp(queries))
                i2t = blk.cross_attn_image_to_token
                logits = _image_to_tokens_logits(i2t, keys_pe, queries + tokens)
                keys = blk.norm4(keys + _image_to_tokens(i2t, logits, queries))
            tr = d.transformer
            att_out = _tokens_to_image(
                tr.final_attn_token_to_image, queries + tokens, keys, keys + self.key_pe
            )
            hs = tr.norm_final_attn(queries + att_out)
            # upscaling and the hypernetworks of MaskDecoder.predict_masks, channels last
            hyper = torch.stack(
                [mlp(hs[:, 1 + i, :]) for i, mlp in enumerate(d.output_hypernetworks_mlps)], dim=1
            )
            masks = _upscale_masks(self.up, keys, hyper)
            return masks, d.iou_prediction_head(hs[:, 0, :])

    return ImagePart().eval(), BoxPart().eval()


def remove_old_recipes(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the ONNX files of earlier export recipes in ``folder``; return what was removed.

    Files of the current recipes stay, whatever weights they were built from (another
    checkpoint's files are still good); only files no version of this code will read again go.
    """
    removed = []
    current = {
        "encoder": _ENCODER_RECIPE,
        "box-decoder": _DECODER_RECIPE,
        "decoder-image-part": _DECODER_RECIPE,
    }
    for path in Path(folder).glob("medsam-lite-*.onnx"):
        m = _FILE.match(path.name)
        if m is None or m["recipe"] == current[m["part"]]:
            continue
        try:
            path.unlink()
            removed.append(path)
        except OSError:  # in use elsewhere or read-only: harmless, it is only never read
            pass
    return removed


def image_part_path(decoder: str | os.PathLike[str]) -> Path:
    """The file of the decoder's image part, beside the box decoder file from :func:`build_onnx`."""
    p = Path(decoder)
    return p.with_name(p.name.replace("box-decoder", "decoder-image-part"))


def _export(module, args, path: Path, *, inputs, outputs, dynamic) -> None:
    import torch

    def write(tmp: Path) -> None:
        import warnings

        # the tracer warns about every Python-side shape check of the model: noise for users
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                args,
                str(tmp),
                input_names=inputs,
                output_names=outputs,
                dynamic_axes=dynamic,
                opset_version=_OPSET,
                dynamo=False,
            )

    with atomic_path(path) as tmp:
        write(tmp)


def build_onnx(net, *, folder: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """Export LiteMedSAM's encoder and box decoder to ONNX unless already built; return the paths.

    Parameters
    ----------
    net : LiteMedSAM torch module (on any device; exported from a CPU copy)
    folder : path-like, optional
        Where the files go; default :func:`onnx_dir`.

    Returns
    -------
    (encoder path, decoder path)
    """
    import copy

    import torch

    folder = Path(folder) if folder is not None else onnx_dir()
    folder.mkdir(parents=True, exist_ok=True)
    tag = weights_hash(net)
    enc = folder / f"medsam-lite-encoder-{_ENCODER_RECIPE}-{tag}.onnx"
    dec = folder / f"medsam-lite-box-decoder-{_DECODER_RECIPE}-{tag}.onnx"
    img = image_part_path(dec)
    if enc.is_file() and dec.is_file() and img.is_file():
        return enc, dec
    remove_old_recipes(folder)
    cpu = copy.deepcopy(net).to("cpu").eval()
    log.info("building the ONNX files of medsam-lite in %s (once)", folder)
    if not enc.is_file():
        _export(
            cpu.image_encoder,
            (torch.zeros(1, 3, 256, 256),),
            enc,
            inputs=["image"],
            outputs=["image_embed"],
            dynamic=None,
        )
    image_part, box_part = _decoder_parts(cpu)
    if not img.is_file():
        _export(
            image_part,
            (torch.zeros(1, 256, 64, 64),),
            img,
            inputs=["image_embed"],
            outputs=list(_IMAGE_PART),
            dynamic=None,
        )
    if not dec.is_file():
        with torch.no_grad():
            parts = image_part(torch.zeros(1, 256, 64, 64))
        boxes = torch.tensor([[10.0, 20.0, 200.0, 120.0], [30.0, 40.0, 90.0, 100.0]])
        _export(
            box_part,
            (*parts, boxes),
            dec,
            inputs=[*_IMAGE_PART, "boxes"],
            outputs=["mask_blocks", "iou_predictions"],
            dynamic={"boxes": {0: "n"}, "mask_blocks": {0: "n"}, "iou_predictions": {0: "n"}},
        )
    return enc, dec


#: outputs of the decoder's image part, inputs of the box graph
_IMAGE_PART = ("keys", "t2i_k", "t2i_v", "i2t_q")


class OnnxLiteMedSAM:
    """ONNX Runtime sessions for LiteMedSAM's encoder and box decoder, one set per thread count.

    Parameters
    ----------
    encoder, decoder : path-like
        Files from :func:`build_onnx` (the decoder's image part lies beside the decoder).
    """

    def __init__(self, encoder: str | os.PathLike[str], decoder: str | os.PathLike[str]) -> None:
        self.encoder_path = str(encoder)
        self.decoder_path = str(decoder)
        self.image_part_path = str(image_part_path(decoder))
        self._sessions: dict[int, tuple] = {}
        self._lock = threading.Lock()
        # the image part of the last embedding decoded: (a copy of the embedding, its outputs)
        self._image_part: tuple[np.ndarray, dict] | None = None

    def _sessions_for(self, threads: int):
        with self._lock:
            if threads not in self._sessions:
                import onnxruntime as ort

                so = ort.SessionOptions()
                so.intra_op_num_threads = int(threads)
                so.inter_op_num_threads = 1
                so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                so.log_severity_level = 3
                prov = ["CPUExecutionProvider"]
                self._sessions[threads] = tuple(
                    ort.InferenceSession(path, so, providers=prov)
                    for path in (self.encoder_path, self.image_part_path, self.decoder_path)
                )
            return self._sessions[threads]

    def encode(self, x: np.ndarray, *, threads: int) -> np.ndarray:
        """(1, 3, 256, 256) float32 in 0..1 -> (1, 256, 64, 64) image embedding."""
        enc, _, _ = self._sessions_for(threads)
        return enc.run(None, {"image": np.ascontiguousarray(x, dtype=np.float32)})[0]

    def image_part(self, image_embed: np.ndarray, *, threads: int) -> dict:
        """The decoder's inputs that depend on the image alone, computed once per embedding."""
        emb = np.ascontiguousarray(image_embed, dtype=np.float32)
        with self._lock:
            kept = self._image_part
        if kept is not None and kept[0].shape == emb.shape and np.array_equal(kept[0], emb):
            return kept[1]
        _, part, _ = self._sessions_for(threads)
        outs = dict(zip(_IMAGE_PART, part.run(None, {"image_embed": emb}), strict=True))
        with self._lock:
            self._image_part = (emb.copy(), outs)
        return outs

    def decode(
        self,
        image_embed: np.ndarray,
        boxes: np.ndarray,
        *,
        threads: int,
        multimask: bool | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (N, 4) XYXY in the 256 frame -> logits (N, K, 256, 256) and scores (N, K).

        With ``multimask=None`` all four outputs (K = 4): index 0 is the single-mask output, 1..3
        the multimask candidates (as in SAM); ``False`` gives index 0 only, ``True`` 1..3.
        The boxes are decoded one per call: a batch took longer per box (up to 2x), as every
        box runs the whole decoder on its own copy of the image tokens.
        """
        feeds = dict(self.image_part(image_embed, threads=threads))
        _, _, dec = self._sessions_for(threads)
        pick = slice(None) if multimask is None else slice(1, None) if multimask else slice(0, 1)
        lows, ious = [], []
        for box in np.asarray(boxes, np.float32).reshape(-1, 4):
            feeds["boxes"] = box[None]
            blocks, iou = dec.run(None, feeds)
            lows.append(blocks_to_image(blocks[:, pick]))
            ious.append(iou[:, pick])
        return np.concatenate(lows), np.concatenate(ious)
