"""A bounded window of reads ahead of their use: the keys a reader will want next are
fetched on a pool of threads, at most ``window`` of them in flight or waiting to be taken,
so that a remote store's latency is paid once per window rather than once per chunk.

A key is fetched once: taken from the window when it is there, or by its reader when it
is not (then it leaves the queue). The window never holds more than ``window`` bodies,
each within its key's size bound, so its memory is ``window`` times that bound at most.

The functions below are how a reader of one array uses a store that fetches ahead (a remote
one; a local store has no ``read_ahead`` and reads on demand): :func:`fetch_ahead` announces
chunks, :func:`window_bytes` is what the memory model counts for them, and
:func:`reads_stopped` drops what was fetched and never read.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zarrgeno.io.chunks import ChunkLayout


class ReadAhead:
    """Fetches keys announced with :meth:`want`, ``window`` at a time, for :meth:`take`.

    ``fetch(key, limit)`` returns a key's bytes or raises; its error reaches whoever takes
    the key. Thread-safe; the pool's threads are started on the first fetch.
    """

    def __init__(self, fetch: Callable[[str, int], bytes], window: int, name: str = "read-ahead"):
        if window < 1:
            raise ValueError("the read-ahead window must be at least 1")
        self.window = window
        self._fetch = fetch
        self._name = name
        self._lock = threading.Lock()
        self._queued: OrderedDict[str, int] = OrderedDict()  # key -> size bound, in order
        self._issued: dict[str, Future[bytes]] = {}
        self._pool: ThreadPoolExecutor | None = None
        #: The most requests that were in flight or waiting to be taken at once.
        self.peak = 0

    def want(self, keys: Iterable[str], limit: int) -> None:
        """Fetch ``keys`` (each up to ``limit`` bytes) in this order, as the window allows;
        keys already queued or fetched are not asked for twice."""
        with self._lock:
            for key in keys:
                if key not in self._issued and key not in self._queued:
                    self._queued[key] = limit
            self._fill()

    def take(self, key: str) -> Future[bytes] | None:
        """The fetch of ``key`` when the window has it (its result, or its error, may still
        be on the way); else None, and the key leaves the queue: the caller reads it."""
        with self._lock:
            future = self._issued.pop(key, None)
            if future is None:
                self._queued.pop(key, None)
            self._fill()
            return future

    def _fill(self) -> None:
        while self._queued and len(self._issued) < self.window:
            key, limit = self._queued.popitem(last=False)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.window, thread_name_prefix=self._name)
            self._issued[key] = self._pool.submit(self._fetch, key, limit)
        self.peak = max(self.peak, len(self._issued))

    def clear(self) -> None:
        """Forget every key queued and every body fetched but not taken (the end of a run,
        or its failure): their memory is freed, and nothing more is asked for."""
        with self._lock:
            self._queued.clear()
            issued, self._issued = self._issued, {}
        for future in issued.values():
            future.cancel()

    def close(self) -> None:
        """:meth:`clear`, then stop the pool without waiting for requests in flight."""
        self.clear()
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def _fetches_ahead(store: Any, layout: ChunkLayout) -> bool:
    """True when ``store`` fetches chunks of ``layout`` ahead: a remote store, and an array
    that is not sharded (a shard is read whole when one of its chunks is needed)."""
    return getattr(store, "read_ahead", None) is not None and layout.shard is None


def window_bytes(store: Any, layout: ChunkLayout) -> int:
    """Bytes ``store`` may hold in chunks of ``layout`` fetched ahead: its window of stored
    chunks, each within the size bound; 0 when it reads on demand (a local store)."""
    if not _fetches_ahead(store, layout):
        return 0
    return int(store.options.fetch_concurrency) * layout.raw_cap


def fetch_ahead(store: Any, layout: ChunkLayout, indexes: Iterable[Sequence[int]]) -> None:
    """Announce the chunks at grid ``indexes``, in the order they will be read, to a store
    that fetches ahead; nothing for one that reads on demand."""
    if _fetches_ahead(store, layout):
        store.read_ahead([layout.key(index) for index in indexes], layout.raw_cap)


@contextmanager
def reads_stopped(*stores: Any) -> Iterator[None]:
    """Within the block, chunks may be fetched ahead; after it, those never read are
    dropped, and on Ctrl-C or an error the requests in flight are cancelled."""
    try:
        yield
    except BaseException:
        for store in stores:
            getattr(store, "abandon", lambda: None)()
        raise
    finally:
        for store in stores:
            getattr(store, "forget_read_ahead", lambda: None)()
