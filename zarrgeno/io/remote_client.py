"""Requests to one remote store: the fsspec file system for a URL (gs://, s3://,
https://...) built with zarrgeno's timeouts, the classification of a failed request as
missing (404), transient (retried with back-off) or fatal, the one-line reason shown for
it, and :class:`RemoteClient`, which gets, sizes and lists keys with those retries so that
callers see a value, a ``FileNotFoundError`` or a :class:`StoreIOError`, never a silent
empty result.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

import fsspec
import fsspec.asyn

from zarrgeno.errors import StoreIOError, UsageError
from zarrgeno.io.remote_options import RemoteOptions

T = TypeVar("T")

REMOTE_EXTRA = "pip install 'zarrgeno[remote]'"
HTTP_PROTOCOLS = ("http", "https")
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
            return s3fs.S3FileSystem(config_kwargs=config, **extra)
        return fsspec.filesystem(protocol, **extra)
    except ImportError as exc:
        if protocol in ("gs", "gcs", "s3", "s3a"):
            raise UsageError(f"{protocol}:// stores need {exc.name}: {REMOTE_EXTRA}") from None
        raise UsageError(f"{protocol}:// stores need a missing package: {exc}") from None
    except ValueError as exc:
        raise UsageError(f"cannot read {url}: {exc}") from None


class TruncatedBody(OSError):
    """The server sent fewer bytes than its Content-Length announced."""


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
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | ConnectionError | OSError):
        return "retry"
    return "fatal"


def describe(exc: BaseException, options: RemoteOptions) -> str:
    """A short human reason for a failed request."""
    status = _status(exc)
    if status is not None:
        reason = getattr(exc, "message", "") or ""
        return f"HTTP {status} {reason}".rstrip()
    name = type(exc).__name__
    if isinstance(exc, TruncatedBody):
        return str(exc)
    if name == "ConnectionTimeoutError":
        return f"no connection within {options.connect_timeout:g} s"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"timed out (no data for {options.read_timeout:g} s)"
    host, error = getattr(exc, "host", None), getattr(exc, "os_error", None)
    if host is not None and error is not None:  # aiohttp.ClientConnectorError
        reason = getattr(error, "strerror", None) or str(error)
        return f"cannot connect to {host}:{getattr(exc, 'port', '')} ({reason})"
    if name == "ServerDisconnectedError":
        return "the server closed the connection"
    if name == "ClientPayloadError":
        return "the response body was cut short"
    text = str(exc).strip()
    return f"{name}: {text}" if text else name


class RemoteClient:
    """Requests to one remote store with timeouts and retries; safe to share between threads.

    Every failure that is not a 404 is retried with back-off and, when the retries are
    spent, raised as :class:`StoreIOError`: callers see a value, a ``FileNotFoundError``
    (the key does not exist) or an error, never a silent empty result.
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

    @property
    def is_http(self) -> bool:
        return self.protocol in HTTP_PROTOCOLS

    def path(self, key: str) -> str:
        """The file system path of ``key`` (a ``/``-separated key relative to the root)."""
        return f"{self.root}/{key}" if key else self.root

    def name(self, key: str) -> str:
        """``key`` as a URL, for messages."""
        return f"{self.url}/{key}" if key else self.url

    def call(self, what: str, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``func(*args)`` with retries; 404 re-raised as FileNotFoundError."""
        attempt = 0
        while True:
            try:
                return func(*args, **kwargs)
            except Exception as exc:
                kind = classify(exc)
                if kind == "missing":
                    raise FileNotFoundError(what) from None
                if kind == "fatal" or attempt >= self.retries:
                    tries = f" after {attempt + 1} attempts" if attempt else ""
                    raise StoreIOError(f"{what}: {describe(exc, self.options)}{tries}") from None
            attempt += 1
            with self._lock:
                self.retried += 1
            time.sleep(self.options.delay(attempt))

    def _sync(self, coro_func: Callable[..., Any], *args: Any) -> Any:
        return fsspec.asyn.sync(self.fs.loop, coro_func, *args)

    def get(self, key: str) -> bytes:
        """The bytes of ``key``; the whole body or an error."""
        where, name = self.path(key), self.name(key)
        if self.is_http:
            return self.call(name, self._sync, _http_get, self.fs, where)
        return bytes(self.call(name, self.fs.cat_file, where))

    def size(self, key: str) -> int | None:
        """Size in bytes of file ``key`` (None if the server does not say); 404 raises."""
        where, name = self.path(key), self.name(key)
        if self.is_http:
            return self.call(name, self._sync, _http_head, self.fs, where)
        info = self.call(name, self.fs.info, where)
        if info.get("type") == "directory":
            raise FileNotFoundError(name)
        return info.get("size")

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
            # A web server redirects a directory without its slash: ask for the page itself.
            page = f"{where}/" if self.is_http else where
            entries = self.call(self.name(key), self.fs.ls, page, detail=True)
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
                found = self.call(self.name(key), self.fs.find, where, detail=True)
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


def _request_options(fs: Any) -> dict[str, Any]:
    """The file system's request options, asking for the stored bytes (no transcoding)."""
    options = dict(fs.kwargs)
    options["headers"] = {**options.get("headers", {}), "Accept-Encoding": "identity"}
    return options


async def _http_get(fs: Any, url: str) -> bytes:
    session = await fs.set_session()
    async with session.get(fs.encode_url(url), **_request_options(fs)) as response:
        if response.status in (404, 410):
            raise FileNotFoundError(url)
        response.raise_for_status()
        body = await response.read()
        expected = response.content_length
        if expected is not None and len(body) != expected:
            raise TruncatedBody(f"body truncated ({len(body)} of {expected} bytes)")
        return body


async def _http_head(fs: Any, url: str) -> int | None:
    session = await fs.set_session()
    options = {"allow_redirects": True, **_request_options(fs)}
    async with session.head(fs.encode_url(url), **options) as response:
        if response.status in (404, 410):
            raise FileNotFoundError(url)
        response.raise_for_status()
        return response.content_length
