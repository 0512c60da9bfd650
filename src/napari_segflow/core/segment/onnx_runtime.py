"""ONNX Runtime for the bundled LiteMedSAM: its image encoder and box decoder as ONNX graphs.

On the CPU, ONNX Runtime runs LiteMedSAM's encoder about twice as fast as torch eager and its
box decoder almost twice as fast, with the same masks (docs/segmentation.md, "Speed"). The ONNX
files are built from the weights the model was loaded with, at first use, and kept in the cache
folder under a name that carries a hash of those weights and of the export recipe: other weights
or another recipe give other files, and nothing is ever downloaded.

Only the box decoder is exported (the prompt encoder with boxes, then the mask decoder), which is
all LiteMedSAM uses: clicks edit its box prediction in numpy (``medsam_lite.apply_clicks``).
The decoder graph takes any number of boxes against one image embedding, so all the objects of an
image decode in one call.

Nothing here imports torch or onnxruntime at module level.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path

import numpy as np

from napari_segflow.core.atomic import atomic_path

__all__ = ["OnnxLiteMedSAM", "onnx_available", "onnx_dir", "weights_hash"]

log = logging.getLogger(__name__)

#: Changes whenever the export below changes, so that old files are not reused.
_RECIPE = "lite-medsam-onnx-v1-opset17"
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
    """Short SHA-256 of a network's weights (names, shapes, dtypes and values) and the recipe.

    Examples
    --------
    >>> import torch
    >>> a = torch.nn.Linear(2, 1)
    >>> weights_hash(a) == weights_hash(a), len(weights_hash(a))
    (True, 16)
    """
    h = hashlib.sha256(_RECIPE.encode())
    for name, t in net.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def _box_decoder(net):
    import torch

    class BoxDecoder(torch.nn.Module):
        """Boxes (N, 4) in the 256 frame + one image embedding -> all four masks and scores."""

        def __init__(self, net) -> None:
            super().__init__()
            self.pe = net.prompt_encoder
            self.dec = net.mask_decoder

        def forward(self, image_embed, boxes):
            sparse, dense = self.pe(points=None, boxes=boxes.reshape(-1, 1, 4), masks=None)
            low, iou = self.dec.predict_masks(
                image_embeddings=image_embed,
                image_pe=self.pe.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
            )
            return low, iou

    return BoxDecoder(net).eval()


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
    enc = folder / f"medsam-lite-encoder-{tag}.onnx"
    dec = folder / f"medsam-lite-box-decoder-{tag}.onnx"
    if enc.is_file() and dec.is_file():
        return enc, dec
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
    if not dec.is_file():
        _export(
            _box_decoder(cpu),
            (
                torch.zeros(1, 256, 64, 64),
                torch.tensor([[10.0, 20.0, 200.0, 120.0], [30.0, 40.0, 90.0, 100.0]]),
            ),
            dec,
            inputs=["image_embed", "boxes"],
            outputs=["low_res_masks", "iou_predictions"],
            dynamic={"boxes": {0: "n"}, "low_res_masks": {0: "n"}, "iou_predictions": {0: "n"}},
        )
    return enc, dec


class OnnxLiteMedSAM:
    """ONNX Runtime sessions for LiteMedSAM's encoder and box decoder, one pair per thread count.

    Parameters
    ----------
    encoder, decoder : path-like
        Files from :func:`build_onnx`.
    """

    def __init__(self, encoder: str | os.PathLike[str], decoder: str | os.PathLike[str]) -> None:
        self.encoder_path = str(encoder)
        self.decoder_path = str(decoder)
        self._sessions: dict[int, tuple] = {}
        self._lock = threading.Lock()

    def _pair(self, threads: int):
        with self._lock:
            if threads not in self._sessions:
                import onnxruntime as ort

                so = ort.SessionOptions()
                so.intra_op_num_threads = int(threads)
                so.inter_op_num_threads = 1
                so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                so.log_severity_level = 3
                prov = ["CPUExecutionProvider"]
                self._sessions[threads] = (
                    ort.InferenceSession(self.encoder_path, so, providers=prov),
                    ort.InferenceSession(self.decoder_path, so, providers=prov),
                )
            return self._sessions[threads]

    def encode(self, x: np.ndarray, *, threads: int) -> np.ndarray:
        """(1, 3, 256, 256) float32 in 0..1 -> (1, 256, 64, 64) image embedding."""
        enc, _ = self._pair(threads)
        return enc.run(None, {"image": np.ascontiguousarray(x, dtype=np.float32)})[0]

    def decode(
        self, image_embed: np.ndarray, boxes: np.ndarray, *, threads: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (N, 4) XYXY in the 256 frame -> logits (N, 4, 256, 256) and scores (N, 4).

        Index 0 is the single-mask output, 1..3 the multimask candidates (as in SAM).
        """
        _, dec = self._pair(threads)
        low, iou = dec.run(
            None,
            {
                "image_embed": np.ascontiguousarray(image_embed, dtype=np.float32),
                "boxes": np.ascontiguousarray(np.reshape(boxes, (-1, 4)), dtype=np.float32),
            },
        )
        return low, iou
