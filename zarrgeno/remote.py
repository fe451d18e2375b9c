"""Remote stores: fsspec file systems with timeouts, retries with back-off and a chunk cache."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import fsspec
import fsspec.asyn
import zarr.errors
import zarr.storage

from zarrgeno.errors import StoreIOError, UsageError

T = TypeVar("T")

TIMEOUT_ENV = "ZARRGENO_HTTP_TIMEOUT"
RETRIES_ENV = "ZARRGENO_HTTP_RETRIES"
BACKOFF_ENV = "ZARRGENO_HTTP_BACKOFF"
CACHE_ENV = "ZARRGENO_CACHE"
REMOTE_EXTRA = "pip install 'zarrgeno[remote]'"
#: Zarr v2 metadata documents; never cached, so a re-consolidated remote store is seen at once.
METADATA_NAMES = (".zarray", ".zgroup", ".zattrs", ".zmetadata")
HTTP_PROTOCOLS = ("http", "https")
#: Statuses worth another try: request timeout, throttling and every server-side error.
_RETRY_STATUS = frozenset({408, 425, 429})


@dataclass(frozen=True)
class RemoteOptions:
    """How remote stores are read: timeouts, retries and an optional local chunk cache.

    ``connect_timeout`` bounds opening a connection, ``read_timeout`` the longest silence
    while waiting for data. A failed request is tried ``retries`` more times, waiting
    ``backoff`` seconds, then twice as long each time (at most ``max_backoff``, with jitter).
    """

    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    retries: int = 4
    backoff: float = 0.5
    max_backoff: float = 10.0
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if not (self.connect_timeout > 0 and self.read_timeout > 0):
            raise UsageError("timeouts must be positive numbers of seconds")
        if self.retries < 0 or self.backoff < 0 or self.max_backoff < 0:
            raise UsageError("retries and back-off must not be negative")
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", str(Path(self.cache_dir).expanduser().absolute()))

    @classmethod
    def from_env(cls, **overrides: Any) -> RemoteOptions:
        """Defaults, then ``$ZARRGENO_HTTP_TIMEOUT`` (``READ`` or ``CONNECT,READ`` seconds),
        ``$ZARRGENO_HTTP_RETRIES``, ``$ZARRGENO_HTTP_BACKOFF``, ``$ZARRGENO_CACHE``, then
        ``overrides`` whose value is not None."""
        values: dict[str, Any] = {}
        text = os.environ.get(TIMEOUT_ENV, "").strip()
        if text:
            parts = [_number(TIMEOUT_ENV, p) for p in text.split(",")]
            if len(parts) > 2:
                raise UsageError(f"{TIMEOUT_ENV}={text!r}: give READ or CONNECT,READ seconds")
            values["connect_timeout"], values["read_timeout"] = parts[0], parts[-1]
        if os.environ.get(RETRIES_ENV, "").strip():
            retries = _number(RETRIES_ENV, os.environ[RETRIES_ENV])
            if retries != int(retries):
                raise UsageError(f"{RETRIES_ENV} must be a whole number")
            values["retries"] = int(retries)
        if os.environ.get(BACKOFF_ENV, "").strip():
            values["backoff"] = _number(BACKOFF_ENV, os.environ[BACKOFF_ENV])
        if os.environ.get(CACHE_ENV, "").strip():
            values["cache_dir"] = os.environ[CACHE_ENV].strip()
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_timeout(self, seconds: float | None) -> RemoteOptions:
        """Both timeouts set to ``seconds`` (unchanged when None)."""
        if seconds is None:
            return self
        return replace(self, connect_timeout=seconds, read_timeout=seconds)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1, 2, ...): doubling, jittered."""
        return min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1)


def _number(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{name}={text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"{name}={text!r} must be a finite, non-negative number")
    return value


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


def is_metadata_key(key: str) -> bool:
    return key.rsplit("/", 1)[-1] in METADATA_NAMES


class ChunkCache:
    """Chunk bytes kept on local disk, one directory per remote store.

    A file appears under its final name only when complete (written beside it, then
    renamed), so a killed run never leaves a partial chunk to be read later. The cache is
    keyed by URL and assumes the remote store does not change: delete it when it does.
    """

    def __init__(self, directory: str, url: str):
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", url.split("://", 1)[-1]).strip("_")[-60:]
        digest = hashlib.sha256(url.encode()).hexdigest()[:12]
        self.root = Path(directory) / f"{slug}-{digest}"

    def _file(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def get(self, key: str) -> bytes | None:
        try:
            return self._file(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as exc:
            raise StoreIOError(f"cache {self.root}: {exc.strerror or exc}") from None

    def has(self, key: str) -> bool:
        return self._file(key).is_file()

    def put(self, key: str, data: bytes) -> None:
        final = self._file(key)
        part = final.with_name(f"{final.name}.part-{os.getpid()}-{threading.get_ident()}")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            part.write_bytes(data)
            os.replace(part, final)
        except OSError as exc:
            part.unlink(missing_ok=True)
            raise StoreIOError(f"cache {self.root}: {exc.strerror or exc}") from None


class RemoteStore(zarr.storage.BaseStore):
    """A read-only zarr store over a remote location, built on :class:`RemoteClient`.

    Unlike ``zarr.storage.FSStore``, which reads a timeout or any ``OSError`` as a missing
    chunk (that is, as the fill value), only a 404 is a missing key here; every other
    failure is retried and then raised as :class:`StoreIOError`. Picklable: a worker
    process that unpickles it opens its own connections.
    """

    _readable = True
    _writeable = False
    _erasable = False
    _listable = True

    def __init__(
        self,
        url: str,
        options: RemoteOptions | None = None,
        storage_options: dict[str, Any] | None = None,
    ):
        self.url = url.rstrip("/")
        self.options = options or RemoteOptions.from_env()
        self.storage_options = dict(storage_options or {})
        self._client: RemoteClient | None = None
        self._pool: ThreadPoolExecutor | None = None
        cache_dir = self.options.cache_dir
        self.cache = ChunkCache(cache_dir, self.url) if cache_dir else None
        self._lock = threading.Lock()
        # zarr asks for the same metadata documents and listings many times while it walks
        # a hierarchy; each is fetched once per store object (None: known to be absent).
        self._meta: dict[str, bytes | None] = {}
        self._dirs: dict[str, list[tuple[str, bool, int | None]]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "options": self.options, "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], state["options"], state["storage_options"])  # type: ignore[misc]

    @property
    def client(self) -> RemoteClient:
        with self._lock:
            if self._client is None:
                self._client = RemoteClient(self.url, self.options, self.storage_options)
            return self._client

    def __repr__(self) -> str:
        return f"RemoteStore({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemoteStore) and (self.url, self.options) == (
            other.url,
            other.options,
        )

    def _metadata(self, key: str) -> bytes | None:
        if key not in self._meta:
            try:
                self._meta[key] = self.client.get(key)
            except FileNotFoundError:
                self._meta[key] = None
        return self._meta[key]

    def __getitem__(self, key: str) -> bytes:
        key = key.strip("/")
        if is_metadata_key(key):
            data = self._metadata(key)
            if data is None:
                raise KeyError(key)
            return data
        cacheable = self.cache is not None
        if cacheable:
            cached = self.cache.get(key)  # type: ignore[union-attr]
            if cached is not None:
                return cached
        try:
            data = self.client.get(key)
        except FileNotFoundError:
            raise KeyError(key) from None
        if cacheable:
            self.cache.put(key, data)  # type: ignore[union-attr]
        return data

    def getitems(self, keys: Sequence[str], *, contexts: Any = None) -> dict[str, bytes]:
        """Fetch ``keys`` concurrently; missing keys are left out, as zarr expects."""

        def fetch(key: str) -> tuple[str, bytes | None]:
            try:
                return key, self[key]
            except KeyError:
                return key, None

        keys = list(keys)
        if len(keys) <= 1:
            pairs = [fetch(k) for k in keys]
        else:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(8, thread_name_prefix="zarrgeno-remote")
            pairs = list(self._pool.map(fetch, keys))
        return {k: v for k, v in pairs if v is not None}

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        key = key.strip("/")
        if is_metadata_key(key):
            return self._metadata(key) is not None
        if self.cache is not None and self.cache.has(key):
            return True
        return self.client.exists(key)

    def keys(self) -> Iterator[str]:  # type: ignore[override]
        return iter(sorted(self.client.find()))

    def __iter__(self) -> Iterator[str]:
        return self.keys()

    def __len__(self) -> int:
        return len(self.client.find())

    def listdir(self, path: str = "") -> list[str]:
        """Names in directory ``path``; nested chunk keys flattened as zarr expects."""
        path = (path or "").strip("/")
        if path not in self._dirs:
            self._dirs[path] = self.client.ls(path)
        children = self._dirs[path]
        names = [name for name, _, _ in children]
        if ".zarray" not in names:
            return names
        meta = json.loads(self[f"{path}/.zarray" if path else ".zarray"])
        if meta.get("dimension_separator") != "/":
            return names
        out = [name for name, is_dir, _ in children if not (is_dir and name.isdigit())]
        for name, is_dir, _ in children:
            if is_dir and name.isdigit():
                sub = f"{path}/{name}" if path else name
                out.extend(f"{name}.{k.replace('/', '.')}" for k in self.client.find(sub))
        return sorted(out)

    def getsize(self, path: str = "") -> int:
        """Stored bytes below ``path`` (sizes the listing lacks are asked for one by one)."""
        path = (path or "").strip("/")
        files = self.client.find(path)
        if not files and path:
            try:
                return self.client.size(path) or 0
            except FileNotFoundError:
                return 0
        unknown = [k for k, size in files.items() if size is None]
        if unknown:
            with ThreadPoolExecutor(8, thread_name_prefix="zarrgeno-size") as pool:
                files.update(zip(unknown, pool.map(self.client.size, unknown), strict=True))
        return sum(size or 0 for size in files.values())

    def __setitem__(self, key: str, value: Any) -> None:
        raise zarr.errors.ReadOnlyError()

    def __delitem__(self, key: str) -> None:
        raise zarr.errors.ReadOnlyError()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None


def open_remote_store(
    url: str,
    options: RemoteOptions | None = None,
    storage_options: dict[str, Any] | None = None,
) -> RemoteStore:
    """A read-only :class:`RemoteStore` for ``url``; the file system is built at once, so
    a missing optional package is reported here rather than on the first read."""
    store = RemoteStore(url, options, storage_options)
    store.client  # noqa: B018 - build the file system now
    return store
