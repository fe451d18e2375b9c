"""Remote stores as zarr sees them: :class:`RemoteStore`, a read-only zarr store over a
URL that reads through :class:`~zarrgeno.io.remote_client.RemoteClient` (timeouts, a
deadline, retries, only a 404 is a missing key, bodies read up to a bound) and the optional
chunk cache, fetching chunks concurrently and each metadata document once. The options,
the client and the cache live in ``zarrgeno.io.remote_options``,
``zarrgeno.io.remote_client`` and ``zarrgeno.io.remote_cache``; their public names are
importable from here too.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import CancelledError, ThreadPoolExecutor
from typing import Any

import zarr.errors
import zarr.storage

from zarrgeno.errors import BadDataError
from zarrgeno.io.bounded import metadata_limit, too_large
from zarrgeno.io.documents import CONSOLIDATED_DEPTH, load_document, parse_document
from zarrgeno.io.readahead import ReadAhead
from zarrgeno.io.remote_cache import ChunkCache
from zarrgeno.io.remote_client import (
    HTTP_PROTOCOLS,
    REMOTE_EXTRA,
    DeadlineExceeded,
    RemoteClient,
    TruncatedBody,
    classify,
    describe,
    make_filesystem,
    protocol_of,
)
from zarrgeno.io.remote_options import (
    BACKOFF_ENV,
    CACHE_ENV,
    DEADLINE_ENV,
    RETRIES_ENV,
    TIMEOUT_ENV,
    RemoteOptions,
)

__all__ = [
    "BACKOFF_ENV",
    "CACHE_ENV",
    "DEADLINE_ENV",
    "HTTP_PROTOCOLS",
    "METADATA_NAMES",
    "REMOTE_EXTRA",
    "RETRIES_ENV",
    "TIMEOUT_ENV",
    "ChunkCache",
    "DeadlineExceeded",
    "RemoteClient",
    "RemoteOptions",
    "RemoteStore",
    "TruncatedBody",
    "classify",
    "describe",
    "is_metadata_key",
    "make_filesystem",
    "open_remote_store",
    "protocol_of",
]

#: Metadata documents (Zarr v2's and format 3's ``zarr.json``); never put in the chunk cache,
#: so a re-consolidated remote store is seen by the next run.
METADATA_NAMES = (".zarray", ".zgroup", ".zattrs", ".zmetadata", "zarr.json")
#: The node documents a v2 ``.zmetadata`` holds: with one, they are answered from it.
_CONSOLIDATED = (".zarray", ".zgroup", ".zattrs")
#: The most bytes a chunk read through zarr's own path (``store[key]``, no layout known)
#: may hold: Blosc's 2 GiB chunk limit, twice over, as :func:`zarrgeno.io.chunks.read_raw`
#: allows without a layout. zarrgeno's own reads pass each array's bound instead.
_ANY_CHUNK = 2**32


def is_metadata_key(key: str) -> bool:
    return key.rsplit("/", 1)[-1] in METADATA_NAMES


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

    @property
    def trusts_consolidated(self) -> bool:
        """True when node documents are answered from ``.zmetadata``: validation then
        takes them from there (as zarr does) rather than fetching every array's to compare
        (see :func:`zarrgeno.io.validation.validate_store`)."""
        return self.from_consolidated

    def __init__(
        self,
        url: str,
        options: RemoteOptions | None = None,
        storage_options: dict[str, Any] | None = None,
        *,
        from_consolidated: bool = True,
    ):
        self.url = url.rstrip("/")
        self.from_consolidated = from_consolidated
        self.options = options or RemoteOptions.from_env()
        self.storage_options = dict(storage_options or {})
        self._client: RemoteClient | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: ReadAhead | None = None
        cache_dir = self.options.cache_dir
        self.cache = ChunkCache(cache_dir, self.url) if cache_dir else None
        self._lock = threading.Lock()
        self._meta_lock = threading.RLock()
        # zarr asks for the same metadata documents and listings many times while it walks
        # a hierarchy; each is fetched once per store object (None: known to be absent).
        self._meta: dict[str, bytes | None] = {}
        self._dirs: dict[str, list[tuple[str, bool, int | None]]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "options": self.options,
            "storage_options": self.storage_options,
            "from_consolidated": self.from_consolidated,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["url"],
            state["options"],
            state["storage_options"],
            from_consolidated=state.get("from_consolidated", True),
        )

    def per_node(self) -> RemoteStore:
        """This store with every node document fetched from its own key rather than
        answered from ``.zmetadata``, over the same connections: what a comparison of the
        two (``info``, ``consolidate``) reads."""
        twin = RemoteStore(self.url, self.options, self.storage_options, from_consolidated=False)
        twin._client = self.client
        return twin

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
        """Metadata document ``key`` (None: absent), each fetched at most once. The
        consolidated metadata is asked for first: when there is one, the node documents
        are answered from it (as zarr reads them) and ``zarr.json`` is known to be absent,
        so opening a store costs one request, not one per array and group."""
        with self._meta_lock:
            if key not in self._meta:
                consolidated = self.from_consolidated and key != ".zmetadata"
                entries = self._consolidated() if consolidated else None
                leaf = key.rsplit("/", 1)[-1]
                if entries is not None and leaf in _CONSOLIDATED:
                    entry = entries.get(key)
                    self._meta[key] = None if entry is None else json.dumps(entry).encode()
                elif entries is not None and leaf == "zarr.json":
                    self._meta[key] = None  # a v2 store: .zmetadata is v2's alone
                else:
                    self._meta[key] = self._fetch_metadata(key)
            return self._meta[key]

    def _fetch_metadata(self, key: str) -> bytes | None:
        try:
            return self.client.get_metadata(key)
        except FileNotFoundError:
            return None

    def _consolidated(self) -> dict[str, Any] | None:
        """The entries of ``.zmetadata`` when it is consolidated metadata format 1; None
        when absent or not (then each document is fetched and validation refuses it)."""
        if ".zmetadata" not in self._meta:
            self._meta[".zmetadata"] = self._fetch_metadata(".zmetadata")
        data = self._meta[".zmetadata"]
        if data is None or len(data) > metadata_limit():
            return None
        try:  # nesting checked before parsing, as every document zarrgeno reads
            doc = parse_document(data, self.url, depth=CONSOLIDATED_DEPTH)
        except BadDataError:
            return None
        entries = doc.get("metadata") if isinstance(doc, dict) else None
        if doc.get("zarr_consolidated_format") != 1 or not isinstance(entries, dict):
            return None
        return entries

    def __getitem__(self, key: str) -> bytes:
        return self.read_bounded(key, metadata_limit() if is_metadata_key(key) else _ANY_CHUNK)

    def read_bounded(self, key: str, limit: int) -> bytes:
        """The bytes of ``key``, read up to ``limit`` and refused past it, naming the URL
        (the protocol of :func:`zarrgeno.io.bounded.read_bounded`): ``KeyError`` when the
        server has no such key. A metadata document is read up to the metadata cap
        whatever ``limit``, and once; a chunk is kept in the cache only when whole."""
        key = key.strip("/")
        if is_metadata_key(key):
            data = self._metadata(key)
            if data is None:
                raise KeyError(key)
            if len(data) > limit:
                raise too_large("metadata", self.client.name(key), limit)
            return data
        ahead = self._ahead.take(key) if self._ahead is not None else None
        if ahead is not None:
            try:
                data = ahead.result()
            except FileNotFoundError:
                raise KeyError(key) from None
            except CancelledError:  # the window was closed before its turn: read it here
                data = None
            if data is not None and len(data) <= limit:
                return data
        try:
            return self._fetch_chunk(key, limit)
        except FileNotFoundError:
            raise KeyError(key) from None

    def _fetch_chunk(self, key: str, limit: int) -> bytes:
        """Chunk ``key`` from the cache, or from the server (then kept in the cache);
        ``FileNotFoundError`` when the server has no such key."""
        if self.cache is not None:
            cached = self.cache.get(key, limit)
            if cached is not None:
                return cached
        data = self.client.get(key, limit, "chunk")
        if self.cache is not None:
            self.cache.put(key, data)
        return data

    def read_ahead(self, keys: Sequence[str], limit: int) -> None:
        """Start fetching chunk ``keys`` (each up to ``limit`` bytes) in this order, at most
        ``options.fetch_concurrency`` in flight or waiting; :meth:`read_bounded` takes them
        from there. A key read before its turn is fetched by its reader, once."""
        with self._lock:
            if self._ahead is None:
                self._ahead = ReadAhead(
                    self._fetch_chunk, self.options.fetch_concurrency, "zarrgeno-fetch"
                )
        self._ahead.want(keys, limit)

    def forget_read_ahead(self) -> None:
        """Drop the chunks fetched ahead and not read, and the keys still to fetch."""
        if self._ahead is not None:
            self._ahead.clear()

    def abandon(self) -> None:
        """Stop reading now (Ctrl-C, a failure elsewhere in the run): the requests in flight
        are cancelled, later ones fail at once; the next open of the URL starts afresh."""
        self.forget_read_ahead()
        if self._client is not None:
            self._client.abandon()

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
                    self._pool = ThreadPoolExecutor(
                        self.options.fetch_concurrency, thread_name_prefix="zarrgeno-remote"
                    )
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

    def __bool__(self) -> bool:
        # zarr tests ``chunk_store or store``: without this, that lists the whole store.
        return True

    def listdir(self, path: str = "") -> list[str]:
        """Names in directory ``path``; nested chunk keys flattened as zarr expects."""
        path = (path or "").strip("/")
        if path not in self._dirs:
            self._dirs[path] = self.client.ls(path)
        children = self._dirs[path]
        names = [name for name, _, _ in children]
        if ".zarray" not in names:
            return names
        meta = load_document(self, f"{path}/.zarray" if path else ".zarray", self.url)
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
        if self._ahead is not None:
            self._ahead.close()


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
