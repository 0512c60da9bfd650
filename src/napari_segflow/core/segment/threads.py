"""How many CPU threads one model call uses: a process-wide setting with a default from the machine.

On a busy machine, more threads per call make each call slower, not faster: with two cores
shared with another busy process, LiteMedSAM's box decode took 130 ms with one torch thread and
267-720 ms (median) with two, and an embedding 3.1 s against 4-6.5 s (docs/segmentation.md,
"Speed"). Small machines therefore default to one thread; larger ones to half their cores, at
most four (the encoder stops scaling there, and napari itself needs cores to stay fluid).

``$SEGFLOW_THREADS`` overrides the default; :func:`set_threads` overrides both.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "THREADS_ENV",
    "available_cores",
    "default_threads",
    "get_threads",
    "set_threads",
    "using_threads",
]

THREADS_ENV = "SEGFLOW_THREADS"
_threads: int | None = None


def available_cores() -> int:
    """CPU cores this process may run on (its affinity, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_threads(cores: int | None = None) -> int:
    """Threads per model call when nothing is set: 1 up to 3 cores, else half the cores, at most 4.

    Examples
    --------
    >>> [default_threads(c) for c in (1, 2, 4, 8, 64)]
    [1, 1, 2, 4, 4]
    """
    n = available_cores() if cores is None else int(cores)
    return 1 if n < 4 else min(4, n // 2)


def get_threads() -> int:
    """The current setting: :func:`set_threads`, else ``$SEGFLOW_THREADS``, else the default."""
    if _threads is not None:
        return _threads
    env = os.environ.get(THREADS_ENV, "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n >= 1:
            return n
    return default_threads()


def set_threads(n: int | None) -> int:
    """Set the threads per model call (``None``: back to the default); returns the new value.

    Torch's own thread count follows when torch is already imported.
    """
    global _threads
    if n is not None:
        n = int(n)
        if n < 1:
            raise ValueError(f"threads must be >= 1, got {n}")
    _threads = n
    value = get_threads()
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(value)
    return value


@contextmanager
def using_threads(n: int | None) -> Iterator[int]:
    """Run a block with ``n`` threads per model call, then restore the previous setting.

    Examples
    --------
    >>> with using_threads(3) as n:
    ...     n, get_threads()
    (3, 3)
    """
    global _threads
    before = _threads
    value = set_threads(n)
    try:
        yield value
    finally:
        set_threads(before)
