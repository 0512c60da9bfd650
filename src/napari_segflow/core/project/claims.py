"""Who works on which image, without a shared writable database: one claim file per image.

A claim is ``claims/<stem>@<generation>.json``, made by the claimer and never changed again.
It is created complete and exclusively: the content goes into a private temporary file which
is then hard-linked under the claim's name. ``link`` fails when the name exists, atomically,
also on NFS (the classic NFS lock); where a file system has no hard links the claim falls back
to ``open(O_CREAT | O_EXCL)``. Exactly one of two annotators racing for an image wins.

The holder of an image is the author of its highest generation. Releasing an image (opened but
never saved) and taking over a stale claim each add the next generation, so nobody ever
deletes or rewrites a file somebody else made:

- ``claim``: generation 0, or the next one after a release;
- ``release``: the holder adds ``{"released": true}``;
- ``take_over``: another person adds a claim on top of a holder's claim that went stale (a
  crashed window whose annotator does not come back). The project decides staleness.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from napari_segflow.core.atomic import create_once

__all__ = ["CLAIM_DIR", "Claim", "ClaimTaken", "add_claim", "current_claim"]

CLAIM_DIR = "claims"


class ClaimTaken(Exception):
    """The generation was created by somebody else first."""


@dataclass(frozen=True)
class Claim:
    """The newest claim file of an image."""

    generation: int
    annotator: str | None
    released: bool
    time: float
    host: str
    pid: int

    @property
    def holder(self) -> str | None:
        return None if self.released else self.annotator


def _path(root: Path, stem: str, generation: int) -> Path:
    return root / CLAIM_DIR / f"{stem}@{generation}.json"


def _read(path: Path, generation: int) -> Claim:
    # a claim is complete the moment its name exists (link of a finished file); an O_EXCL
    # fallback file may still be empty for a few milliseconds, so read again briefly
    for _ in range(50):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            break
        except ValueError:
            time.sleep(0.01)
    else:
        doc = {}
    return Claim(
        generation,
        doc.get("annotator"),
        bool(doc.get("released", False)),
        float(doc.get("time", 0.0)),
        str(doc.get("host", "")),
        int(doc.get("pid", 0)),
    )


def current_claim(root: str | os.PathLike[str], stem: str) -> Claim | None:
    """The newest claim of ``stem`` (one ``stat`` per generation), or None."""
    root = Path(root)
    g = 0
    while _path(root, stem, g).exists():
        g += 1
    return None if g == 0 else _read(_path(root, stem, g - 1), g - 1)


def add_claim(
    root: str | os.PathLike[str],
    stem: str,
    generation: int,
    *,
    annotator: str,
    released: bool = False,
) -> Claim:
    """Create generation ``generation`` of ``stem``'s claim; :class:`ClaimTaken` when it exists."""
    root = Path(root)
    target = _path(root, stem, generation)
    target.parent.mkdir(parents=True, exist_ok=True)
    now = time.time()
    doc = {
        "annotator": annotator,
        "released": released,
        "time": now,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    if not create_once(target, json.dumps(doc).encode()):
        raise ClaimTaken(str(target))
    return Claim(generation, annotator, released, now, doc["host"], doc["pid"])
