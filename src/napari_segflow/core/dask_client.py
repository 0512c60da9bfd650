"""One way to get a Dask client for the batch jobs: given, at an address, or a local cluster."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

#: Loggers whose shutdown messages are noise once the results are in: a worker's heartbeat
#: to a scheduler that is closing ends in ``CommClosedError`` and a logged traceback.
_NOISY = ("distributed", "tornado")


def _noisy_loggers() -> list[logging.Logger]:
    names = [n for n in list(logging.root.manager.loggerDict) if n.split(".")[0] in _NOISY]
    return [logging.getLogger(n) for n in sorted({*names, *_NOISY})]


def _silence_for_shutdown() -> None:
    """Run on each worker and nanny just before close (their logging, their process)."""
    for logger in _noisy_loggers():
        logger.setLevel(logging.CRITICAL)


@contextlib.contextmanager
def _quiet_here() -> Iterator[None]:
    """Shutdown noise of an in-process scheduler silenced while closing, levels restored after."""
    loggers = _noisy_loggers()
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def close_quietly(client: Any, cluster: Any = None) -> None:
    """Close ``client``, then the ``cluster`` it runs on, without shutdown noise.

    The workers of a cluster we started are told to stop logging first (the work is done and
    gathered by then); the client is closed before the cluster so that nothing waits on a
    scheduler that is already gone.
    """
    if cluster is not None:
        with contextlib.suppress(Exception):
            client.run(_silence_for_shutdown)
            client.run(_silence_for_shutdown, nanny=True)
    with _quiet_here():
        client.close()
        if cluster is not None:
            cluster.close()


@contextlib.contextmanager
def dask_client(
    client: Any = None,
    *,
    scheduler: str | None = None,
    workers: int = 1,
    processes: bool = True,
) -> Iterator[Any]:
    """Yield ``client`` as given, else a client of the cluster at ``scheduler``, else a new
    ``LocalCluster`` of ``workers`` single-threaded workers. What this opens, it closes.
    """
    if client is not None:
        yield client
        return
    from distributed import Client, LocalCluster

    cluster = None
    if scheduler is not None:
        own = Client(scheduler)
    else:
        cluster = LocalCluster(
            n_workers=int(workers),
            threads_per_worker=1,
            processes=processes,
            # ":0", not None: None still serves health routes on 8787 and warns when another
            # run holds that port
            dashboard_address=":0",
        )
        own = Client(cluster)
    try:
        yield own
    finally:
        close_quietly(own, cluster)
