"""Embedding cache: an in-memory LRU bounded in bytes, plus an optional folder on disk.

Embeddings cost seconds on a CPU; a click costs milliseconds. The key is a hash of the pixels,
the model name and the preprocessing, so a changed window or model never reuses a stale entry.
Disk files are written atomically (temporary file + rename), so concurrent writers of the same
key each leave a complete file. Each file carries a checksum of its tensors; a file that cannot
be read back, whose checksum does not match (flipped bytes), that holds NaN or infinite values,
or that the model's own check refuses (wrong tensor shapes) is deleted and recomputed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from napari_segflow.core.atomic import atomic_path
from napari_segflow.core.segment.protocol import Embedding

__all__ = ["DEFAULT_MEMORY_BYTES", "EmbeddingCache", "embedding_key"]

log = logging.getLogger(__name__)

DEFAULT_MEMORY_BYTES = 512 * 1024**2
_FORMAT = 2  # bump when the stored layout changes; old files then simply miss


def features_digest(features) -> str:
    """Checksum of a ``{name: tensor}`` mapping: names, dtypes, shapes and bytes."""
    import torch

    h = hashlib.blake2b(digest_size=20)
    for name in sorted(features):
        t = features[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def embedding_key(image: np.ndarray, *, model: str, preprocessing: str) -> str:
    """Hash of the pixels (values, dtype, shape), the model name and the preprocessing.

    Examples
    --------
    >>> a = np.zeros((4, 4), np.uint8)
    >>> embedding_key(a, model="m", preprocessing="minmax") == embedding_key(
    ...     a.copy(), model="m", preprocessing="minmax")
    True
    >>> embedding_key(a, model="m", preprocessing="minmax") == embedding_key(
    ...     a, model="m", preprocessing="window:40:400")
    False
    """
    a = np.ascontiguousarray(image)
    h = hashlib.blake2b(digest_size=20)
    h.update(f"v{_FORMAT}|{model}|{preprocessing}|{a.dtype.str}|{a.shape}|".encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _nbytes(features) -> int:
    return int(sum(t.element_size() * t.nelement() for t in features.values()))


class EmbeddingCache:
    """LRU of :class:`Embedding` objects bounded by ``max_bytes``, backed by ``directory``.

    Parameters
    ----------
    max_bytes : int
        Memory budget; the least recently used embeddings are dropped beyond it. 0 disables
        the memory level.
    directory : path-like, optional
        Folder for one ``<key>.pt`` file per embedding. None keeps everything in memory.
    """

    def __init__(
        self,
        max_bytes: int = DEFAULT_MEMORY_BYTES,
        directory: str | os.PathLike[str] | None = None,
    ) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self.directory = None if directory is None else Path(directory)
        self._items: OrderedDict[str, Embedding] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    # memory -----------------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        """Bytes held in memory now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def clear(self) -> None:
        """Forget the in-memory entries (files on disk stay)."""
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def _remember(self, emb: Embedding) -> None:
        if emb.nbytes > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(emb.key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[emb.key] = emb
            self._bytes += emb.nbytes
            while self._bytes > self.max_bytes and self._items:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.nbytes

    # disk -------------------------------------------------------------------------------
    def path_for(self, key: str) -> Path | None:
        """The file an embedding with ``key`` is stored in (None without a directory)."""
        return None if self.directory is None else self.directory / f"{key}.pt"

    def discard(self, key: str) -> None:
        """Forget ``key`` in memory and delete its file (a bad entry is then recomputed)."""
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
        path = self.path_for(key)
        if path is not None:
            try:
                path.unlink()
            except OSError:
                pass

    def _load(self, key: str, device, validate=None) -> Embedding | None:
        path = self.path_for(key)
        if path is None or not path.is_file():
            return None
        import torch

        try:
            blob = torch.load(path, map_location=device, weights_only=True)
            if blob.get("format") != _FORMAT or blob.get("key") != key:
                raise ValueError("format or key mismatch")
            feats = dict(blob["features"])
            if not feats or not all(isinstance(t, torch.Tensor) for t in feats.values()):
                raise ValueError("no tensors")
            if blob.get("checksum") != features_digest(feats):
                raise ValueError("checksum mismatch")
            if not all(bool(torch.isfinite(t).all()) for t in feats.values()):
                raise ValueError("NaN or infinite values")
            if validate is not None:
                problem = validate(feats)
                if problem:
                    raise ValueError(problem)
            emb = Embedding(
                model=str(blob["model"]),
                image_shape=(int(blob["image_shape"][0]), int(blob["image_shape"][1])),
                key=key,
                features=feats,
                nbytes=_nbytes(feats),
            )
        except Exception as exc:  # any damage means "recompute", never a crash
            log.warning("embedding cache file %s is unreadable (%s); recomputing", path, exc)
            try:
                path.unlink()
            except OSError:
                pass
            return None
        return emb

    def _store(self, emb: Embedding) -> None:
        path = self.path_for(emb.key)
        if path is None:
            return
        import torch

        blob = {
            "format": _FORMAT,
            "key": emb.key,
            "model": emb.model,
            "image_shape": list(emb.image_shape),
            "features": {k: v.detach().cpu().contiguous() for k, v in emb.features.items()},
        }
        blob["checksum"] = features_digest(blob["features"])
        try:
            with atomic_path(path) as tmp:
                torch.save(blob, tmp)
        except OSError as exc:  # a full or read-only disk must not break segmentation
            log.warning("could not write embedding cache file %s (%s)", path, exc)

    # public -----------------------------------------------------------------------------
    def get(
        self,
        key: str,
        *,
        device="cpu",
        validate: Callable[[dict], str | None] | None = None,
    ) -> tuple[Embedding | None, str]:
        """Look ``key`` up; returns ``(embedding or None, "memory" | "disk" | "miss")``.

        ``validate(features)`` returns a problem (e.g. a wrong tensor shape) or None; a disk
        file it refuses is deleted and reported as a miss, so it is recomputed.
        """
        with self._lock:
            emb = self._items.get(key)
            if emb is not None:
                self._items.move_to_end(key)
                return emb, "memory"
        emb = self._load(key, device, validate)
        if emb is not None:
            self._remember(emb)
            return emb, "disk"
        return None, "miss"

    def put(self, emb: Embedding) -> None:
        """Keep ``emb`` in memory (within budget) and write it to disk when a folder is set."""
        self._remember(emb)
        self._store(emb)
