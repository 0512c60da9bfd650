"""Model weights: the cache folder, downloads and loading with clear errors.

The cache folder is ``$SEGFLOW_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/napari-segflow``,
else ``~/.cache/napari-segflow``. Checkpoints live in its ``checkpoints/`` subfolder and
embedding files (when enabled) in ``embeddings/``.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from napari_segflow.core.atomic import atomic_path

__all__ = [
    "CACHE_ENV",
    "CheckpointError",
    "cache_dir",
    "checkpoint_dir",
    "download",
    "load_state_dict",
]

log = logging.getLogger(__name__)

CACHE_ENV = "SEGFLOW_CACHE_DIR"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or made for another model."""


def cache_dir() -> Path:
    """The napari-segflow cache folder (not created here).

    Examples
    --------
    >>> import os
    >>> os.environ["SEGFLOW_CACHE_DIR"] = "/tmp/segflow-cache"
    >>> str(cache_dir())
    '/tmp/segflow-cache'
    >>> del os.environ["SEGFLOW_CACHE_DIR"]
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "napari-segflow"


def checkpoint_dir() -> Path:
    """Where downloaded checkpoints are kept: ``cache_dir() / "checkpoints"``."""
    return cache_dir() / "checkpoints"


def download(
    url: str,
    dest: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
    timeout: float = 30,
) -> Path:
    """Fetch ``url`` to ``dest`` atomically; ``progress(done_bytes, total_bytes)`` as it goes.

    Without a ``progress`` callback a tqdm bar is shown on stderr when tqdm is installed.
    Raises ``OSError`` (including ``urllib.error.URLError``) when offline.
    """
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (fixed https URLs)
        total = int(resp.headers.get("Content-Length") or 0)
        bar = None
        if progress is None:
            try:
                from tqdm import tqdm

                bar = tqdm(total=total or None, unit="B", unit_scale=True, desc=dest.name)
            except ImportError:  # a bar is a nicety
                bar = None
        done = 0
        try:
            with atomic_path(dest) as tmp, open(tmp, "wb") as fh:
                while chunk := resp.read(1 << 20):
                    fh.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
                    if bar is not None:
                        bar.update(len(chunk))
                if total and done != total:
                    raise OSError(f"download of {url} stopped at {done} of {total} bytes")
        finally:
            if bar is not None:
                bar.close()
    return dest


def load_state_dict(path, *, model_name: str) -> dict:
    """Load a PyTorch checkpoint's weights; a :class:`CheckpointError` when it can't be read."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{model_name} checkpoint {p} does not exist")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for damaged files
        raise CheckpointError(
            f"{p} is not a readable {model_name} checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); delete it and fetch it again"
        ) from None
    if isinstance(blob, dict):
        for k in ("model", "state_dict"):
            if k in blob and isinstance(blob[k], dict):
                blob = blob[k]
                break
    if not isinstance(blob, dict) or not blob:
        raise CheckpointError(f"{p} holds no weights for {model_name}")
    return blob
