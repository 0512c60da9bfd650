"""How many local worker processes a pre-labelling run starts when the user does not say.

A worker holds its own copy of the model (about 1.1 GB resident with LiteMedSAM under torch)
and pays for starting a process and loading the model before its first image. On a machine
with few cores that never pays back: on 2 cores, 1 worker ran 1.55x and 2 workers 1.50x slower
than the serial loop (docs/prelabel.md). So the default is serial below 4 cores, and above that
one single-threaded worker per two cores, as many as memory holds, and no more than a quarter
of the images (each worker should amortise its start-up over several images).
"""

from __future__ import annotations

import os

from napari_segflow.core.segment.threads import available_cores

__all__ = ["WORKER_BYTES", "available_memory", "default_workers"]

#: Resident memory one worker needs (model, sessions, one image in flight), with headroom.
WORKER_BYTES = 1_500_000_000


def available_memory() -> int | None:
    """Bytes of memory available now (Linux ``MemAvailable``), or None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def default_workers(
    n_images: int,
    *,
    cores: int | None = None,
    memory: int | None = None,
    threads: int = 1,
) -> int:
    """Local workers for ``n_images`` images: 0 (serial) unless several workers clearly pay.

    Parameters
    ----------
    n_images : int
        Images still to do.
    cores : int, optional
        CPU cores to use; default the cores this process may run on.
    memory : int, optional
        Bytes available; default :func:`available_memory`.
    threads : int
        Threads per worker.

    Examples
    --------
    >>> default_workers(100, cores=2, memory=8 << 30)
    0
    >>> default_workers(100, cores=16, memory=64 << 30)
    8
    >>> default_workers(100, cores=16, memory=4 << 30)
    2
    >>> default_workers(6, cores=16, memory=64 << 30)
    0
    """
    cores = available_cores() if cores is None else int(cores)
    if memory is None:
        memory = available_memory()
    if cores < 4:
        return 0
    n = cores // (2 * max(1, int(threads)))
    if memory is not None:
        n = min(n, int(memory // WORKER_BYTES))
    n = min(n, int(n_images) // 4)
    return n if n >= 2 else 0
