"""Requests to one remote store: the fsspec file system for a URL (gs://, s3://,
https://...) built with zarrgeno's timeouts, the classification of a failed request as
missing (404), transient (retried with back-off) or fatal, the one-line reason shown for
it, and :class:`RemoteClient`, which gets, sizes and lists keys with those retries, each
request within its deadline and each body read only up to the size its key may have, so
that callers see a value, a ``FileNotFoundError`` or an error, never a silent empty
result, a hang or a body without end.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import re
import sys
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import fsspec

from zarrgeno.errors import (
    BadDataError,
    RemoteStoppedError,
    StoreIOError,
    UsageError,
    ZarrgenoError,
)
from zarrgeno.io.bounded import metadata_limit, too_large
from zarrgeno.io.remote_options import RemoteOptions

T = TypeVar("T")

REMOTE_EXTRA = "pip install 'zarrgeno[remote]'"
HTTP_PROTOCOLS = ("http", "https")
#: The protocols zarrgeno reads stores over, each with its timeouts, deadline and size
#: bounds (``file://`` is a local path; ``memory://`` serves stores built in Python).
PROTOCOLS = (*HTTP_PROTOCOLS, "gs", "gcs", "s3", "s3a", "file", "memory")
SUPPORTED = "https://, http://, gs://, s3:// and file://"
#: Statuses worth another try: request timeout, throttling and every server-side error.
_RETRY_STATUS = frozenset({408, 425, 429})


def protocol_of(url: str) -> str:
    """The fsspec protocol of ``url`` (``https``, ``gs``, ``s3``, ``memory``...)."""
    return url.split("://", 1)[0].lower() if "://" in url else "file"


def _quiet_libraries() -> None:
    """File-system libraries log each failed try with a traceback; zarrgeno reports the
    failure itself, in one line, so their records go nowhere unless logging is set up."""
    for name in ("fsspec", "gcsfs", "s3fs", "aiobotocore", "botocore", "aiohttp"):
        logger = logging.getLogger(name)
        if not logger.handlers:
            logger.addHandler(logging.NullHandler())


def make_filesystem(
    url: str, options: RemoteOptions, storage_options: dict[str, Any] | None = None
) -> fsspec.AbstractFileSystem:
    """An fsspec file system for ``url`` with ``options``' connect and read timeouts.

    ``gs://`` is read anonymously (public buckets such as Ag1000G's); ``s3://`` uses your
    AWS credentials when there are any and reads anonymously otherwise.
    """
    protocol = protocol_of(url)
    if protocol not in PROTOCOLS:
        raise UsageError(f"{url}: {protocol}:// is not supported; zarrgeno reads {SUPPORTED} URLs")
    extra = dict(storage_options or {})
    _quiet_libraries()
    try:
        if protocol in HTTP_PROTOCOLS or protocol in ("gs", "gcs"):
            import aiohttp

            timeout = aiohttp.ClientTimeout(
                total=None,
                connect=options.connect_timeout,
                sock_connect=options.connect_timeout,
                sock_read=options.read_timeout,
            )
            if protocol in HTTP_PROTOCOLS:
                from fsspec.implementations.http import HTTPFileSystem

                return HTTPFileSystem(client_kwargs={"timeout": timeout}, **extra)
            # The plain JSON-API client: gcsfs' default class first asks a gRPC control
            # plane for the bucket type, which waits 60 s when that service is unreachable.
            from gcsfs.core import GCSFileSystem

            extra.setdefault("token", "anon")
            return GCSFileSystem(requests_timeout=timeout, **extra)
        if protocol in ("s3", "s3a"):
            import s3fs

            if "anon" not in extra and "key" not in extra:
                import botocore.session

                extra["anon"] = botocore.session.get_session().get_credentials() is None
            config = {
                "connect_timeout": options.connect_timeout,
                "read_timeout": options.read_timeout,
                # zarrgeno retries itself, so that every protocol backs off the same way.
                "retries": {"max_attempts": 1, "mode": "standard"},
            }
            fs = s3fs.S3FileSystem(config_kwargs=config, **extra)
            # s3fs retries some failures itself (5 tries); zarrgeno's retries are the only ones.
            fs.retries = 1
            return fs
        return fsspec.filesystem(protocol, **extra)
    except ImportError as exc:
        package = (exc.name or "gcsfs or s3fs").split(".")[0]  # gcsfs, not gcsfs.core
        raise UsageError(f"{protocol}:// stores need {package}: {REMOTE_EXTRA}") from None
    except ValueError as exc:
        raise UsageError(f"cannot read {url}: {exc}") from None


class TruncatedBody(OSError):
    """The server sent fewer bytes than its Content-Length announced."""


class InvalidAnswer(OSError):
    """The server's answer is not valid HTTP (a garbled status line, bytes past the
    Content-Length of the answer before): retried, on a new connection."""


class HTTPStatusError(OSError):
    """An HTTP error status (4xx, 5xx other than 404 and 410)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status} {message}".rstrip())
        self.status, self.message = status, message


class DeadlineExceeded(TimeoutError):
    """A request that was not answered in full within the deadline."""

    def __init__(self, deadline: float, received: int | None) -> None:
        got = f" ({received:,} bytes of the body received)" if received is not None else ""
        super().__init__(
            f"no complete answer within the {deadline:g} s deadline{got}; on a slow link, "
            "raise ZARRGENO_HTTP_DEADLINE"
        )


@dataclass
class _Meter:
    """Bytes of a body received so far: what a request that ran out of time had."""

    received: int = 0


def _status(exc: BaseException) -> int | None:
    for attr in ("status", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and 100 <= value < 600:
            return value
    return None


def classify(exc: BaseException) -> str:
    """``"missing"`` (404: the key does not exist), ``"retry"`` (a transient network or
    server failure) or ``"fatal"`` (permission, bad request, anything else)."""
    status = _status(exc)
    if isinstance(exc, FileNotFoundError) or status in (404, 410):
        return "missing"
    if status is not None:
        return "retry" if status >= 500 or status in _RETRY_STATUS else "fatal"
    if isinstance(exc, PermissionError):
        return "fatal"
    try:
        import aiohttp

        if isinstance(exc, aiohttp.ClientError):
            return "retry"
    except ImportError:  # pragma: no cover - aiohttp is a dependency
        pass
    if _is_botocore_network_error(exc):  # s3://: refused, reset or cut-short connections
        return "retry"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | ConnectionError | OSError):
        return "retry"
    return "fatal"


def _is_botocore_network_error(exc: BaseException) -> bool:
    """botocore's connection failures (``EndpointConnectionError``,
    ``ConnectionClosedError``...) are not ``OSError``; botocore is imported only when
    s3fs already has (the ``remote`` extra)."""
    exceptions = sys.modules.get("botocore.exceptions")
    if exceptions is None:
        return False
    return isinstance(exc, exceptions.ConnectionError | exceptions.HTTPClientError)


def describe(exc: BaseException, options: RemoteOptions) -> str:
    """A short human reason for a failed request."""
    status = _status(exc)
    if status is not None:
        reason = getattr(exc, "message", "") or ""
        return f"HTTP {status} {reason}".rstrip()
    name = type(exc).__name__
    if isinstance(exc, TruncatedBody | DeadlineExceeded | InvalidAnswer):
        return str(exc)
    if name == "ConnectionTimeoutError":
        return f"no connection within {options.connect_timeout:g} s"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"timed out (no data for {options.read_timeout:g} s)"
    host, error = getattr(exc, "host", None), getattr(exc, "os_error", None)
    if host is not None and error is not None:  # aiohttp.ClientConnectorError
        reason = getattr(error, "strerror", None) or str(error)
        return f"cannot connect to {host}:{getattr(exc, 'port', '')} ({reason})"
    if name == "EndpointConnectionError":  # s3:// (botocore): the URL's host does not answer
        url = str(getattr(exc, "kwargs", {}).get("endpoint_url", ""))
        return f"cannot connect to {urllib.parse.urlsplit(url).netloc or url}"
    if name == "ServerDisconnectedError":
        return "the server closed the connection"
    if name == "ClientPayloadError":
        return "the response body was cut short"
    text = (str(exc).strip().splitlines() or [""])[0][:200]  # one line, whatever the library
    return f"{name}: {text}" if text else name


class RemoteClient:
    """Requests to one remote store with timeouts and retries; safe to share between threads.

    Every failure that is not a 404 is retried with back-off, all within the deadline, and
    then raised as :class:`StoreIOError`: callers see a value, a ``FileNotFoundError`` (the
    key does not exist) or an error, never a silent empty result. Once one request has
    failed for good, the client stops: the requests in flight are abandoned and later ones
    raise :class:`~zarrgeno.errors.RemoteStoppedError` at once, so a server that does not
    answer costs one request's deadline, not one per key.
    """

    def __init__(self, url: str, options: RemoteOptions, storage_options: dict[str, Any]):
        self.url = url.rstrip("/")
        self.options = options
        self.protocol = protocol_of(url)
        self.fs = make_filesystem(url, options, storage_options)
        self.root = self.fs._strip_protocol(self.url).rstrip("/")
        # gcsfs retries every request itself (6 tries, back-off up to 32 s) and cannot be
        # told otherwise; retrying on top of it would multiply the wait on a dead network.
        self.retries = 0 if self.protocol in ("gs", "gcs") else options.retries
        self.retried = 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._failure = ""
        self._running: set[concurrent.futures.Future[Any]] = set()
        # The shared retry budget (see call): failures counted in the outage under way, the
        # time of the last one counted, when the next attempt may start, and whether one
        # request is probing the server now.
        self._changed = threading.Condition(threading.Lock())
        self._streak = 0
        self._last_failure = -math.inf
        self._resume_at = -math.inf
        self._probing = False

    @property
    def is_http(self) -> bool:
        return self.protocol in HTTP_PROTOCOLS

    def path(self, key: str) -> str:
        """The file system path of ``key`` (a ``/``-separated key relative to the root)."""
        return f"{self.root}/{key}" if key else self.root

    def name(self, key: str) -> str:
        """``key`` as a URL, for messages."""
        return f"{self.url}/{key}" if key else self.url

    def call(self, what: str, attempt: Callable[[float], T]) -> T:
        """``attempt(seconds_left)`` with retries, all within the deadline; 404 re-raised
        as FileNotFoundError, a verdict on the data (a body too large) as it is.

        Each request is tried at most ``retries`` more times, and so is the server as a
        whole: the failures of requests in flight together count once per round (see
        :meth:`_failed`), and during an outage one request at a time probes the server, so
        a window of 64 requests costs ``retries`` more rounds and back-offs, not 64 times
        as many."""
        start = time.monotonic()
        failures = 0
        while True:
            self._check_running()
            probe = self._gate(what, start)
            began = time.monotonic()
            left = self.options.deadline - (began - start)
            try:
                result = attempt(max(left, 0.001))
            except ZarrgenoError:
                self._release(probe)
                raise
            except Exception as exc:
                kind = classify(exc)
                if kind == "missing":  # an answer: the server is up
                    self._healthy(probe)
                    raise FileNotFoundError(what) from None
                failures += 1
                rounds = self._failed(began, kind, probe)
                wait = self.options.delay(failures)
                late = time.monotonic() - start + wait >= self.options.deadline
                attempts = max(failures, rounds)  # of this key, or of the server in a row
                if kind == "fatal" or attempts > self.retries or late:
                    tries = f" after {attempts} attempts" if attempts > 1 else ""
                    error = StoreIOError(f"{what}: {describe(exc, self.options)}{tries}")
                    self._stop(error)
                    raise error from None
                with self._lock:
                    self.retried += 1
                self._stopped.wait(wait)  # this key's own back-off; _gate adds the outage's
                continue
            except BaseException:  # Ctrl-C: another request takes over the probe
                self._release(probe)
                raise
            self._healthy(probe)
            return result

    def _gate(self, what: str, start: float) -> bool:
        """Wait until a request may go out: at once while the server answers; during an
        outage, after the back-off, one request at a time (the probe; True when this one
        is it). Bounded by this request's deadline and stopped with the client."""
        with self._changed:
            while True:
                self._check_running()
                if self._streak == 0:
                    return False
                now = time.monotonic()
                left = self.options.deadline - (now - start)
                if left <= 0:
                    error = StoreIOError(
                        f"{what}: no complete answer within the {self.options.deadline:g} s "
                        "deadline (the server is failing); on a slow link, raise "
                        "ZARRGENO_HTTP_DEADLINE"
                    )
                    self._stop_locked(error)
                    raise error
                if now >= self._resume_at and not self._probing:
                    self._probing = True
                    return True
                self._changed.wait(min(left, max(self._resume_at - now, 0.0) or left))

    def _failed(self, began: float, kind: str, probe: bool) -> int:
        """Count a failed attempt that began at ``began``: the rounds of failures of the
        outage so far (a success anywhere ends it).

        A failure counts once per round: an attempt already under way when another's
        failure was counted brings no news of the server and does not count again. So
        ``retries`` bounds the rounds of an outage, whatever the number of requests in
        flight, and each round waits the back-off once."""
        with self._changed:
            self._probing = self._probing and not probe
            now = time.monotonic()
            if began >= self._last_failure or kind == "fatal":
                self._streak += 1
                self._last_failure = now
                self._resume_at = now + self.options.delay(self._streak)
            self._changed.notify_all()
            return self._streak

    def _healthy(self, probe: bool) -> None:
        """The server answered: the outage, if any, is over."""
        if self._streak or probe:
            with self._changed:
                self._streak = 0
                self._probing = False
                self._changed.notify_all()

    def _release(self, probe: bool) -> None:
        """A probe that ended without news of the server lets another request probe."""
        if probe:
            with self._changed:
                self._probing = False
                self._changed.notify_all()

    @property
    def stopped(self) -> bool:
        """True once a request failed for good (or the client was stopped): later ones fail."""
        return self._stopped.is_set()

    def _check_running(self) -> None:
        if self._stopped.is_set():
            raise RemoteStoppedError(f"{self._failure}; stopped reading {self.url}")

    def _stop(self, error: StoreIOError) -> None:
        """Fail for good: abandon the requests in flight, make no more."""
        with self._changed:
            self._stop_locked(error)

    def _stop_locked(self, error: StoreIOError) -> None:
        with self._lock:
            self._failure = self._failure or str(error)
            self._stopped.set()
            running = list(self._running)
        self._changed.notify_all()
        for future in running:
            future.cancel()

    def abandon(self, why: str = "the run was stopped") -> None:
        """Stop now (Ctrl-C, or another part of the run failed): the requests in flight are
        cancelled and later ones fail at once, so that nothing waits for a slow server."""
        self._stop(StoreIOError(why))

    def _run(
        self, request: Callable[[], Awaitable[T]], seconds: float, meter: _Meter | None = None
    ) -> T:
        """Run the coroutine ``request()`` on the file system's event loop, given at most
        ``seconds``; abandoned when the client stops or this thread is interrupted."""
        future = asyncio.run_coroutine_threadsafe(
            _within(request, seconds, self.options.deadline, meter), self.fs.loop
        )
        with self._lock:
            self._running.add(future)
        try:
            if self._stopped.is_set():
                future.cancel()
            return future.result()
        except concurrent.futures.CancelledError:
            self._check_running()
            raise
        except BaseException:
            future.cancel()  # Ctrl-C: do not leave the request running
            raise
        finally:
            with self._lock:
                self._running.discard(future)

    def _async(self) -> bool:
        return bool(getattr(self.fs, "async_impl", False))

    def get(self, key: str, limit: int, what: str = "file") -> bytes:
        """The bytes of ``key``, the whole body or an error; :class:`BadDataError` (naming
        the URL) when it holds more than ``limit`` bytes, refused before reading when the
        server announces as much. ``what`` names the key in that message."""
        where, name = self.path(key), self.name(key)
        if self.is_http:
            meter = _Meter()
            return self.call(
                name,
                lambda left: self._run(
                    lambda: _http_get(self.fs, where, name, limit, what, meter), left, meter
                ),
            )
        # A ranged read: an honest server sends no more than the bound, plus one byte.
        data = self._fs_call(name, "cat_file", where, start=0, end=limit + 1)
        if len(data) > limit:
            raise too_large(what, name, limit)
        return bytes(data)

    def get_metadata(self, key: str) -> bytes:
        """The bytes of metadata document ``key``, up to the metadata size cap
        (:func:`zarrgeno.io.bounded.metadata_limit`)."""
        return self.get(key, metadata_limit(), "metadata")

    def size(self, key: str) -> int | None:
        """Size in bytes of file ``key`` (None if the server does not say); 404 raises."""
        where, name = self.path(key), self.name(key)
        if self.is_http:
            return self.call(name, lambda left: self._run(lambda: _http_head(self.fs, where), left))
        info = self._fs_call(name, "info", where)
        if info.get("type") == "directory":
            raise FileNotFoundError(name)
        return info.get("size")

    def _fs_call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """The file system's ``method(*args)`` with retries, within the deadline when the
        file system is asynchronous (gcsfs, s3fs)."""
        if self._async():
            coro = getattr(self.fs, f"_{method}")
            return self.call(what, lambda left: self._run(lambda: coro(*args, **kwargs), left))
        return self.call(what, lambda left: getattr(self.fs, method)(*args, **kwargs))

    def exists(self, key: str) -> bool:
        """True when file ``key`` exists; a server failure raises instead of answering no."""
        try:
            self.size(key)
        except FileNotFoundError:
            return False
        return True

    def ls(self, key: str) -> list[tuple[str, bool, int | None]]:
        """(name, is_directory, size) of each child of directory ``key``; [] if none."""
        where = self.path(key)
        try:
            if self.is_http:
                # A web server redirects a directory without its slash: ask for the page itself.
                page = f"{where}/"
                meter = _Meter()
                entries = self.call(
                    self.name(key),
                    lambda left: self._run(
                        lambda: _http_ls(self.fs, page, self.name(key), meter), left, meter
                    ),
                )
            else:
                entries = self._fs_call(self.name(key), "ls", where, detail=True)
        except FileNotFoundError:
            return []
        children = []
        for entry in entries:
            name = entry["name"]
            if self.is_http:
                name = urllib.parse.unquote(name)
            rel = name.rstrip("/")
            prefix = where.rstrip("/") + "/"
            if not rel.startswith(prefix):
                continue
            child = rel[len(prefix) :]
            if not child or "/" in child or child in (".", "..") or re.search(r"[?#]", child):
                continue  # sort links and parents of web server indexes
            is_dir = entry.get("type") == "directory"
            children.append((child, is_dir, None if is_dir else entry.get("size")))
        return sorted(set(children))

    def find(self, key: str = "") -> dict[str, int | None]:
        """Every file below ``key``: relative key -> size (None when the listing has none)."""
        if not self.is_http:
            where = self.path(key)
            try:
                found = self._fs_call(self.name(key), "find", where, detail=True)
            except FileNotFoundError:
                return {}
            base = self.root.rstrip("/") + "/" if self.root else ""
            return {
                name[len(base) :]: info.get("size")
                for name, info in found.items()
                if name.startswith(base) and info.get("type") != "directory"
            }
        out: dict[str, int | None] = {}
        stack = [key]
        while stack:  # web servers list one directory per page
            here = stack.pop()
            for child, is_dir, size in self.ls(here):
                full = f"{here}/{child}" if here else child
                if is_dir:
                    stack.append(full)
                else:
                    out[full] = size
        return out


async def _within(
    request: Callable[[], Awaitable[T]], seconds: float, deadline: float, meter: _Meter | None
) -> T:
    """``await request()``, given ``seconds``; :class:`DeadlineExceeded` past them."""
    scope = asyncio.timeout(seconds)
    try:
        async with scope:
            return await request()
    except TimeoutError:
        if scope.expired():
            raise DeadlineExceeded(deadline, meter.received if meter else None) from None
        raise


def _request_options(fs: Any) -> dict[str, Any]:
    """The file system's request options, asking for the stored bytes (no transcoding)."""
    options = dict(fs.kwargs)
    options["headers"] = {**options.get("headers", {}), "Accept-Encoding": "identity"}
    return options


@contextlib.asynccontextmanager
async def _response(request: Any, url: str) -> AsyncIterator[Any]:
    """The response of ``request`` (an aiohttp request context) once its status is a
    success: ``FileNotFoundError`` for 404 and 410, :class:`HTTPStatusError` for another
    error status, :class:`InvalidAnswer` when aiohttp cannot parse what the server sent."""
    import aiohttp

    try:
        async with request as response:
            if response.status in (404, 410):
                raise FileNotFoundError(url)
            if response.status >= 400:
                raise HTTPStatusError(response.status, response.reason or "")
            yield response
    except aiohttp.ClientResponseError as exc:  # raised by the parser, not for a status
        first = (str(exc.message).splitlines() or [""])[0].rstrip(": ")[:200]
        raise InvalidAnswer(f"the answer is not valid HTTP ({first})") from None


async def _http_get(fs: Any, url: str, name: str, limit: int, what: str, meter: _Meter) -> bytes:
    """The body at ``url``, read block by block and stopped past ``limit`` bytes."""
    session = await fs.set_session()
    async with _response(session.get(fs.encode_url(url), **_request_options(fs)), url) as answer:
        expected = answer.content_length
        if expected is not None and expected > limit:  # refused before reading the body
            raise BadDataError(
                f"{what} {name} holds more than {limit:,} bytes (its Content-Length says "
                f"{expected:,}; corrupt or hostile)"
            )
        meter.received = 0
        blocks = []
        async for block in answer.content.iter_any():
            meter.received += len(block)
            if meter.received > limit:  # a body without a length, or longer than it said
                raise too_large(what, name, limit)
            blocks.append(block)
        body = b"".join(blocks)
        if expected is not None and len(body) != expected:
            raise TruncatedBody(f"body truncated ({len(body)} of {expected} bytes)")
        return body


#: Links of a web server's directory page, as fsspec's HTTP file system finds them.
_HREF = re.compile(r"""<(?:a|A)\s+(?:[^>]*?\s+)?(?:href|HREF)=["'](?P<url>[^"']+)""")
_PLAIN = re.compile(r"(?P<url>http[s]?://[-a-zA-Z0-9@:%_+.~#?&/=]+)")


async def _http_ls(fs: Any, url: str, name: str, meter: _Meter) -> list[dict[str, Any]]:
    """The entries of the directory page at ``url`` (its size capped as a metadata
    document's): full URLs, ``directory`` when they end in a slash."""
    page = await _http_get(fs, url, name, metadata_limit(), "directory page", meter)
    text = page.decode("utf-8", errors="ignore")
    parts = urllib.parse.urlsplit(url)
    base = url.rstrip("/")
    found = set()
    for link in (*_PLAIN.findall(text), *_HREF.findall(text)):
        if link.startswith("/") and len(link) > 1:  # absolute on this server
            link = f"{parts.scheme}://{parts.netloc}{link}"
        if link.startswith("http"):
            if link.replace("https", "http").startswith(base.replace("https", "http") + "/"):
                found.add(link)
        elif link not in ("..", "../"):
            found.add(f"{base}/{link.lstrip('/')}")
    return [
        {"name": u, "size": None, "type": "directory" if u.endswith("/") else "file"}
        for u in sorted(found)
    ]


async def _http_head(fs: Any, url: str) -> int | None:
    session = await fs.set_session()
    options = {"allow_redirects": True, **_request_options(fs)}
    async with _response(session.head(fs.encode_url(url), **options), url) as answer:
        length: int | None = answer.content_length
        return length
