"""Connect to a dask.distributed scheduler (tcp:// or tls://), or start a local cluster
bound to 127.0.0.1."""

from __future__ import annotations

import logging
import os
import re
import ssl
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from zarrgeno.errors import (
    BadDataError,
    ClusterError,
    MissingInputError,
    StoreIOError,
    UsageError,
)
from zarrgeno.runtime.cores import usable_cores
from zarrgeno.runtime.mainguard import check_main_guard

if TYPE_CHECKING:
    from distributed import Client, Security

_ADDRESS = re.compile(
    r"^(?:(?P<scheme>[a-z0-9+.-]+)://)?(?P<host>\[[0-9a-fA-F:.]+\]|[^:/\s]+):(?P<port>\d+)$"
)

#: Scheduler settings of the local cluster: one queued task per worker thread at a time
#: (dask's default is 1.1), so that when a worker dies only the task it was running is
#: blamed, and a task that keeps killing workers is told apart from its neighbours.
LOCAL_SCHEDULER_CONFIG = {"distributed.scheduler.worker-saturation": 1.0}


#: The client's TLS settings: Security attribute, zarrgeno option, dask configuration key.
TLS_SETTINGS = (
    ("tls_ca_file", "--tls-ca-file", "distributed.comm.tls.ca-file"),
    ("tls_client_cert", "--tls-cert", "distributed.comm.tls.client.cert"),
    ("tls_client_key", "--tls-key", "distributed.comm.tls.client.key"),
)
_WHAT = {"tls_ca_file": "CA file", "tls_client_cert": "certificate", "tls_client_key": "key"}


def normalize_address(scheduler: str) -> str:
    """``host:port``, ``tcp://host:port`` or ``tls://host:port`` -> the address with its
    scheme (tcp when none); anything else is a UsageError.

    >>> normalize_address("127.0.0.1:8786")
    'tcp://127.0.0.1:8786'
    >>> normalize_address("tls://10.0.0.5:8786")
    'tls://10.0.0.5:8786'
    """
    match = _ADDRESS.match(scheduler.strip())
    if match is None or match["scheme"] not in (None, "tcp", "tls"):
        raise UsageError(
            f"scheduler address {scheduler!r} is not of the form tcp://HOST:PORT "
            "or tls://HOST:PORT (e.g. tcp://127.0.0.1:8786, as printed by `dask scheduler`)"
        )
    port = int(match["port"])
    if not 0 < port < 65536:
        raise UsageError(f"scheduler address {scheduler!r}: port {port} is out of range")
    return f"{match['scheme'] or 'tcp'}://{match['host']}:{port}"


def tls_security(
    scheduler: str | None,
    *,
    ca_file: str | os.PathLike[str] | None = None,
    cert: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None,
) -> Security | None:
    """The ``--tls-ca-file``, ``--tls-cert`` and ``--tls-key`` options as a
    ``distributed.Security``: dask's configuration with these files instead of its own.

    None when no option is given (a ``tls://`` scheduler then uses dask's configuration
    alone). The options need a ``tls://`` ``scheduler``: given with a tcp:// address or
    with none (a local cluster, which stays on 127.0.0.1 without TLS) they are a UsageError.
    """
    values = (ca_file, cert, key)
    given = {attr: str(v) for (attr, _, _), v in zip(TLS_SETTINGS, values, strict=True) if v}
    if not given:
        return None
    flags = ", ".join(flag for (attr, flag, _) in TLS_SETTINGS if attr in given)
    flags += " applies" if len(given) == 1 else " apply"
    if scheduler is None:
        raise UsageError(
            f"{flags} to a running tls:// --scheduler; without --scheduler zarrgeno "
            "starts a local cluster on 127.0.0.1, which does not use TLS"
        )
    address = normalize_address(scheduler)
    if not address.startswith("tls://"):
        raise UsageError(
            f"{flags} to tls:// scheduler addresses, not {address} "
            f"(a TLS scheduler prints tls://HOST:PORT)"
        )
    from distributed import Security

    return Security(**given)


def check_security(address: str | None, security: Security | None) -> Security | None:
    """The ``Security`` to connect to ``address`` with, checked before any connection.

    None for a tcp:// address or a local cluster (``security`` with either is a
    UsageError). For a tls:// address: ``security``, else dask's configuration
    (``distributed.comm.tls.*``, e.g. ``DASK_DISTRIBUTED__COMM__TLS__CA_FILE``). It must
    name a CA file and a client certificate (a UsageError otherwise); a file that does not
    exist is a MissingInputError naming it, one that does not load a BadDataError.
    """
    if address is None or not address.startswith("tls://"):
        if security is not None:
            where = f"{address} is not a tls:// address" if address else "no scheduler is given"
            raise UsageError(
                f"TLS settings (security=, --tls-*) apply to a tls:// scheduler; {where}"
            )
        return None
    if security is None:
        from distributed import Security

        security = Security()
    missing = [flag for (attr, flag, _) in TLS_SETTINGS[:2] if not getattr(security, attr, None)]
    if missing:
        raise UsageError(
            f"{address} is a TLS scheduler but no {' or '.join(missing)} is set: pass "
            "--tls-ca-file, --tls-cert and --tls-key (the files `dask worker` uses), or set "
            "distributed.comm.tls.ca-file, .client.cert and .client.key in the dask "
            "configuration (e.g. DASK_DISTRIBUTED__COMM__TLS__CA_FILE=ca.pem)"
        )
    for attr, flag, config in TLS_SETTINGS:
        value = getattr(security, attr, None)
        if not value or "\n" in str(value):  # unset, or PEM text held in memory
            continue
        path = Path(str(value))
        if not path.is_file():
            problem = "is not a file" if path.exists() else "does not exist"
            raise MissingInputError(
                f"TLS {_WHAT[attr]} {path} {problem} ({flag} or dask config {config})"
            )
    _check_loads(security)
    return security


def _check_loads(security: Security) -> None:
    """A CA file, certificate or key that OpenSSL cannot load is a BadDataError naming it."""
    ca, cert, key = (getattr(security, attr, None) for attr, _, _ in TLS_SETTINGS)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    steps: tuple[tuple[str, Callable[[], object]], ...] = (
        (f"CA file {ca}", lambda: context.load_verify_locations(cafile=ca)),
        (
            f"certificate {cert}" + (f" with key {key}" if key else ""),
            lambda: context.load_cert_chain(str(cert), key or None),
        ),
    )
    if any("\n" in str(v) for v in (ca, cert, key) if v):  # PEM text: dask writes it out
        steps = (("settings", lambda: security.get_connection_args("client")),)
    for what, load in steps:
        try:
            load()
        except (ssl.SSLError, OSError, ValueError) as exc:
            if isinstance(exc, ssl.SSLError):
                hint = ""
                if what.startswith("certificate") and not key:
                    hint = " (with no --tls-key, the certificate file must hold the key too)"
                raise BadDataError(
                    f"cannot load the TLS {what}: {exc.reason or exc}{hint}"
                ) from None
            if isinstance(exc, OSError):
                raise StoreIOError(f"cannot read the TLS {what}: {exc.strerror or exc}") from None
            raise BadDataError(f"cannot load the TLS {what}: {exc}") from None


def default_workers(threads_per_worker: int = 1) -> int:
    """Worker processes so that processes x threads fills, but never exceeds, the cores."""
    return max(1, usable_cores() // max(1, threads_per_worker))


@contextmanager
def dask_client(
    scheduler: str | None = None,
    *,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    timeout: float = 10.0,
    security: Security | None = None,
    dashboard: bool = True,
) -> Iterator[Client]:
    """A ``distributed.Client`` for the duration of a ``with`` block, closed afterwards.

    With ``scheduler`` (``tcp://HOST:PORT`` or ``tls://HOST:PORT``) it connects to a
    running ``dask scheduler``; an unreachable address, or a failed TLS handshake, raises
    :class:`ClusterError` naming it within ``timeout`` seconds. A tls:// scheduler is
    reached with ``security`` (a ``distributed.Security``), by default dask's configuration
    (see :func:`check_security`). Without ``scheduler`` a ``LocalCluster`` of ``n_workers``
    processes (default: one per ``threads_per_worker`` cores) is started, listening on
    127.0.0.1 only and without TLS, and shut down on exit. Worker processes run tasks in
    non-main threads, so Blosc decompresses single-threaded inside them and processes x
    threads never exceeds the cores. ``dashboard=False`` starts the local cluster without
    its dashboard (importing bokeh for it costs most of a second of CPU).
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
            security = check_security(address, security)
            try:
                client = Client(address, timeout=timeout, set_as_default=True, security=security)
            except Exception as exc:
                # Refused, timed out, a TLS handshake refused, or something that is not a
                # dask scheduler answering (a proxy's reply decoded as a huge frame shows
                # up as MemoryError).
                raise ClusterError(_connect_failure(address, timeout, exc)) from None
        else:
            check_security(None, security)
            check_main_guard("a local dask cluster")
            workers = n_workers if n_workers is not None else default_workers(threads_per_worker)
            try:
                with dask.config.set(LOCAL_SCHEDULER_CONFIG):
                    cluster = LocalCluster(
                        n_workers=workers,
                        threads_per_worker=threads_per_worker,
                        processes=True,
                        host="127.0.0.1",
                        # Port 0: a free port, so two runs never fight over 8787.
                        dashboard_address="127.0.0.1:0" if dashboard else None,
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


def _connect_failure(address: str, timeout: float, exc: BaseException) -> str:
    """One line on why connecting to ``address`` failed; TLS failures say so."""
    reason = _tls_failure(exc)
    if reason is not None:
        return (
            f"TLS handshake with the dask scheduler at {address} failed ({reason}); "
            "--tls-ca-file must be the CA that signed the scheduler's certificate, "
            "and the scheduler must trust the CA of --tls-cert"
        )
    if address.startswith("tcp://") and type(exc).__name__ == "CommClosedError":
        # Something accepted the connection, then dropped dask's plain-text handshake.
        return (
            f"the dask scheduler at {address} closed the connection ({type(exc).__name__}); "
            f"if it is a TLS scheduler, use tls://{address[len('tcp://') :]}"
        )
    return (
        f"cannot reach a dask scheduler at {address} within {timeout:g} s "
        f"({type(exc).__name__}); is `dask scheduler` running there?"
    )


_SSL_REASON = re.compile(r"\[SSL: \w+\] ([^(]+)")


def _tls_failure(exc: BaseException) -> str | None:
    """Why a TLS handshake failed, when it is the cause of ``exc``; else None.

    dask wraps it: an ``ssl.SSLError`` as the cause, or only the text of one in a
    ``FatalCommClosedError`` (dask raises that for TLS failures alone, e.g. when the
    scheduler answers a client certificate it does not trust with an alert).
    """
    cause: BaseException | None = exc
    seen = set()
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ssl.SSLError):
            if isinstance(cause, ssl.SSLEOFError):
                return f"the scheduler closed the connection, {type(cause).__name__}"
            return getattr(cause, "verify_message", None) or cause.reason or str(cause)
        if type(cause).__name__ == "FatalCommClosedError" and cause.__cause__ is None:
            match = _SSL_REASON.search(str(cause))
            return match[1].strip() if match else "refused"
        cause = cause.__cause__ or cause.__context__
    return None


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
