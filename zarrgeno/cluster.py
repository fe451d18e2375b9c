"""Connect to a dask.distributed scheduler, or start a local cluster bound to 127.0.0.1."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

from zarrgeno.errors import ClusterError, UsageError

if TYPE_CHECKING:
    from distributed import Client

_ADDRESS = re.compile(
    r"^(?:(?P<scheme>[a-z0-9+.-]+)://)?(?P<host>\[[0-9a-fA-F:.]+\]|[^:/\s]+):(?P<port>\d+)$"
)

#: Scheduler settings of the local cluster: one queued task per worker thread at a time
#: (dask's default is 1.1), so that when a worker dies only the task it was running is
#: blamed, and a task that keeps killing workers is told apart from its neighbours.
LOCAL_SCHEDULER_CONFIG = {"distributed.scheduler.worker-saturation": 1.0}


def normalize_address(scheduler: str) -> str:
    """``host:port`` or ``tcp://host:port`` -> ``tcp://host:port``; anything else is a UsageError.

    >>> normalize_address("127.0.0.1:8786")
    'tcp://127.0.0.1:8786'
    """
    match = _ADDRESS.match(scheduler.strip())
    if match is None or match["scheme"] not in (None, "tcp"):
        raise UsageError(
            f"scheduler address {scheduler!r} is not of the form tcp://HOST:PORT "
            "(e.g. tcp://127.0.0.1:8786, as printed by `dask scheduler`)"
        )
    port = int(match["port"])
    if not 0 < port < 65536:
        raise UsageError(f"scheduler address {scheduler!r}: port {port} is out of range")
    return f"tcp://{match['host']}:{port}"


def default_workers(threads_per_worker: int = 1) -> int:
    """Worker processes so that processes x threads fills, but never exceeds, the cores."""
    return max(1, (os.cpu_count() or 1) // max(1, threads_per_worker))


@contextmanager
def dask_client(
    scheduler: str | None = None,
    *,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    timeout: float = 10.0,
) -> Iterator[Client]:
    """A ``distributed.Client`` for the duration of a ``with`` block, closed afterwards.

    With ``scheduler`` (``tcp://HOST:PORT``) it connects to a running ``dask scheduler``;
    an unreachable address raises :class:`ClusterError` naming it within ``timeout``
    seconds. Without it a ``LocalCluster`` of ``n_workers`` processes (default: one per
    ``threads_per_worker`` cores) is started, listening on 127.0.0.1 only, and shut down
    on exit. Worker processes run tasks in non-main threads, so Blosc decompresses
    single-threaded inside them and processes x threads never exceeds the cores.
    """
    if timeout <= 0:
        raise UsageError(f"the scheduler timeout must be positive, got {timeout}")
    if threads_per_worker < 1:
        raise UsageError(f"--threads-per-worker must be at least 1, got {threads_per_worker}")
    if n_workers is not None and n_workers < 1:
        raise UsageError(f"--workers must be at least 1, got {n_workers}")
    import dask
    from distributed import Client, LocalCluster

    with ExitStack() as stack:
        if scheduler is not None:
            address = normalize_address(scheduler)
            try:
                client = Client(address, timeout=timeout, set_as_default=True)
            except Exception as exc:
                # Refused, timed out, or something that is not a dask scheduler answering
                # (a proxy's reply decoded as a huge frame shows up as MemoryError).
                raise ClusterError(
                    f"cannot reach a dask scheduler at {address} within {timeout:g} s "
                    f"({type(exc).__name__}); is `dask scheduler` running there?"
                ) from None
        else:
            workers = n_workers if n_workers is not None else default_workers(threads_per_worker)
            try:
                with dask.config.set(LOCAL_SCHEDULER_CONFIG):
                    cluster = LocalCluster(
                        n_workers=workers,
                        threads_per_worker=threads_per_worker,
                        processes=True,
                        host="127.0.0.1",
                        # Port 0: a free port, so two runs never fight over 8787.
                        dashboard_address="127.0.0.1:0",
                        silence_logs=logging.ERROR,
                    )
            except (OSError, TimeoutError, RuntimeError) as exc:
                raise ClusterError(f"could not start a local dask cluster: {exc}") from None
            stack.callback(_quietly_close, cluster)
            try:
                client = Client(cluster, timeout=timeout, set_as_default=True)
            except (OSError, TimeoutError) as exc:
                raise ClusterError(f"could not connect to the local dask cluster: {exc}") from None
        stack.callback(_quietly_close, client)
        yield client


def _quietly_close(obj: object) -> None:
    """Close a client or cluster; a failure while shutting down must not hide the result."""
    try:
        obj.close()  # type: ignore[attr-defined]
    except (OSError, TimeoutError, RuntimeError):
        logging.getLogger(__name__).debug("error while closing %r", obj, exc_info=True)


def dashboard_link(client: Client) -> str | None:
    """The cluster's dashboard URL, or None when it has none (bokeh not installed)."""
    try:
        link = client.dashboard_link
    except (AttributeError, KeyError):
        return None
    return link or None


def scheduler_address(client: Client) -> str:
    """The address the client is connected to."""
    return str(client.scheduler.address)
