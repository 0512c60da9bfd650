"""One way to get a Dask client for the batch jobs: given, at an address, or a local cluster."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


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
            dashboard_address=None,
        )
        own = Client(cluster)
    try:
        yield own
    finally:
        own.close()
        if cluster is not None:
            cluster.close()
