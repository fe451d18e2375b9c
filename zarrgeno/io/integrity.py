"""Check every chunk of a store: missing, unreadable or corrupt chunks, listed by key."""

from __future__ import annotations

import functools
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import product
from typing import Any, TypeVar

import zarr

from zarrgeno.errors import (
    BadDataError,
    MissingInputError,
    RemoteStoppedError,
    StoreIOError,
    UsageError,
)
from zarrgeno.io.chunks import ChunkLayout, MissingChunkError, decode_chunk, read_stored
from zarrgeno.io.readahead import fetch_ahead, reads_stopped, window_bytes
from zarrgeno.io.screened import refuse_needed
from zarrgeno.io.store import missing_chunks_allowed, open_store, skips_fill_chunks
from zarrgeno.sizes import format_size

T = TypeVar("T")
R = TypeVar("R")

MISSING, UNREADABLE, CORRUPT = "missing", "unreadable", "corrupt"
#: A missing chunk read as the fill value (allowed): counted, not a problem.
NOT_STORED = "not stored"
#: Python objects and small temporaries of one check, beyond its chunk buffers.
CHECK_ALLOWANCE = 8_000_000


def check_memory(layout: ChunkLayout) -> int:
    """Bytes one chunk check may hold at once: the stored bytes (at most about the chunk's
    size when the data does not compress), the decoded chunk, and one copy per filter."""
    return layout.chunk_nbytes * (2 + len(layout.filters)) + CHECK_ALLOWANCE


def _bounded_map(
    pool: ThreadPoolExecutor, func: Callable[[T], R], items: Iterable[T], window: int
) -> Iterator[R]:
    """``pool.map`` with at most ``window`` items in flight, results in order: the chunk
    grid is never enumerated ahead, however many chunks the array has."""
    pending: deque[Future[R]] = deque()
    for item in items:
        pending.append(pool.submit(func, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def fetched_ahead(
    store: Any, layout: ChunkLayout, indices: Iterable[tuple[int, ...]]
) -> Iterator[tuple[int, ...]]:
    """``indices`` as they are, each chunk announced to a store that fetches ahead (a
    remote one) a window before it is read, so that its requests overlap."""
    if not window_bytes(store, layout):
        yield from indices
        return
    window = int(store.options.fetch_concurrency)
    waiting: deque[tuple[int, ...]] = deque()
    for index in indices:
        fetch_ahead(store, layout, [index])
        waiting.append(index)
        if len(waiting) > window:
            yield waiting.popleft()
    yield from waiting


@dataclass(frozen=True)
class ChunkProblem:
    """One bad chunk: its array, store key, what is wrong and the error text."""

    array: str
    key: str
    kind: str
    message: str


@dataclass(frozen=True)
class ArrayIntegrity:
    """Counts for one array: chunks checked and bad chunks by kind."""

    path: str
    nchunks: int
    missing: int
    unreadable: int
    corrupt: int
    checksummed: bool
    #: Chunks absent from the store and read as the fill value (allowed; not a problem).
    not_stored: int = 0

    @property
    def ok(self) -> bool:
        return self.missing == self.unreadable == self.corrupt == 0


@dataclass(frozen=True)
class IntegrityReport:
    """Every chunk of the selected arrays, read and decoded once."""

    location: str
    arrays: tuple[ArrayIntegrity, ...]
    problems: tuple[ChunkProblem, ...]
    elapsed: float
    #: True when the store's writer leaves out fill-value chunks (:func:`skips_fill_chunks`).
    writer_skips_fill: bool = False

    @property
    def not_stored(self) -> int:
        return sum(a.not_stored for a in self.arrays)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def nchunks(self) -> int:
        return sum(a.nchunks for a in self.arrays)

    def to_dict(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "ok": self.ok,
            "nchunks": self.nchunks,
            "elapsed": round(self.elapsed, 3),
            "not_stored": self.not_stored,
            "writer_skips_fill": self.writer_skips_fill,
            "arrays": [
                {
                    "path": a.path,
                    "nchunks": a.nchunks,
                    "missing": a.missing,
                    "unreadable": a.unreadable,
                    "corrupt": a.corrupt,
                    "not_stored": a.not_stored,
                    "checksummed": a.checksummed,
                }
                for a in self.arrays
            ],
            "problems": [vars(p) for p in self.problems],
        }


def _check_one(
    store: Any, layout: ChunkLayout, allow_missing: bool, index: tuple[int, ...]
) -> ChunkProblem | str | None:
    """A problem, ``NOT_STORED`` for an allowed missing chunk, or None for a good one."""
    key = layout.key(index)
    try:
        raw = read_stored(store, layout, index, allow_missing=allow_missing)
        if raw is None:
            return NOT_STORED
        decode_chunk(layout, key, raw)
    except MissingChunkError:
        return ChunkProblem(layout.path, key, MISSING, f"chunk {key} is missing")
    except BadDataError as exc:
        return ChunkProblem(layout.path, key, CORRUPT, str(exc))
    except RemoteStoppedError:
        raise  # the server failed for good: no other chunk can be read from it
    except StoreIOError as exc:
        return ChunkProblem(layout.path, key, UNREADABLE, str(exc))
    return None


def _indices(layout: ChunkLayout) -> Iterator[tuple[int, ...]]:
    return product(*(range(n) for n in layout.grid()))


def check_store(
    source: Any = None,
    *,
    arrays: list[str] | None = None,
    threads: int = 2,
    progress: Callable[[int], None] | None = None,
    allow_missing: bool | None = None,
    max_mem: int | None = None,
) -> IntegrityReport:
    """Read and decode every chunk of every array (or of ``arrays``); list what is bad.

    zarr would read a missing chunk as the fill value and let numcodecs trust a lying
    header; here every chunk goes through zarrgeno's checked path, and checksum filters
    (CRC32, Adler32, Fletcher32) are verified by decoding. Threads overlap I/O and
    decompression (Blosc and zstd release the GIL); memory stays at a few chunks per thread.
    A missing chunk is a problem unless ``allow_missing`` (None: when the store's writer
    leaves out fill-value chunks, :func:`zarrgeno.io.store.skips_fill_chunks`); allowed, it is
    counted as not stored. With ``max_mem`` (bytes), fewer chunks are checked at once when
    their buffers would not fit (see :func:`check_memory`), and a budget that one chunk's
    check does not fit is refused before any chunk is read.
    """
    start = time.perf_counter()
    ref, group = open_store(source)
    refuse_needed(group, ref.name, arrays)  # every array, or those named
    store = ref.mapping_store() if ref.mapping is None else ref.mapping
    allowed = missing_chunks_allowed(allow_missing, group)
    found: list[zarr.Array] = []
    group.visitvalues(lambda v: found.append(v) if isinstance(v, zarr.Array) else None)
    by_path = {a.path: a for a in found}
    if arrays:
        unknown = [p for p in arrays if p.strip("/") not in by_path]
        if unknown:
            raise MissingInputError(f"no array {', '.join(unknown)} in {ref.name}")
        selected = [by_path[p] for p in dict.fromkeys(p.strip("/") for p in arrays)]
    else:
        selected = sorted(found, key=lambda a: a.path)
    layouts = [ChunkLayout.of(arr) for arr in selected]
    need = max((check_memory(layout) for layout in layouts), default=0)
    if max_mem is not None and need > max_mem:
        big = max(layouts, key=check_memory)
        raise UsageError(
            f"{big.path}: --max-mem {format_size(max_mem)} is too small to check chunks of "
            f"{big.chunks} ({big.dtype}); at least {format_size(need)} is needed"
        )
    # A remote store's window of chunks fetched ahead is part of the budget.
    ahead = max((window_bytes(store, layout) for layout in layouts), default=0)
    if max_mem is not None and need:
        threads = min(threads, max(0, max_mem - ahead) // need)
    threads = max(1, threads)
    results: list[ArrayIntegrity] = []
    problems: list[ChunkProblem] = []
    with ThreadPoolExecutor(max_workers=threads) as pool, reads_stopped(store):
        for arr, layout in zip(selected, layouts, strict=True):
            counts = {MISSING: 0, UNREADABLE: 0, CORRUPT: 0, NOT_STORED: 0}
            nchunks = 0
            check = functools.partial(_check_one, store, layout, allowed)
            indices = fetched_ahead(store, layout, _indices(layout))
            for problem in _bounded_map(pool, check, indices, 2 * threads):
                nchunks += 1
                if progress is not None:
                    progress(1)
                if problem == NOT_STORED:
                    counts[NOT_STORED] += 1
                elif isinstance(problem, ChunkProblem):
                    counts[problem.kind] += 1
                    problems.append(problem)
            checksummed = any(
                f.codec_id in ("crc32", "adler32", "fletcher32") for f in layout.filters
            )
            results.append(
                ArrayIntegrity(
                    arr.path,
                    nchunks,
                    counts[MISSING],
                    counts[UNREADABLE],
                    counts[CORRUPT],
                    checksummed,
                    counts[NOT_STORED],
                )
            )
    return IntegrityReport(
        ref.name,
        tuple(results),
        tuple(problems),
        time.perf_counter() - start,
        skips_fill_chunks(group),
    )


def total_chunks(source: Any = None, *, arrays: list[str] | None = None) -> int:
    """Number of chunks :func:`check_store` will read (for a progress bar's total)."""
    _, group = open_store(source)
    found: list[zarr.Array] = []
    group.visitvalues(lambda v: found.append(v) if isinstance(v, zarr.Array) else None)
    wanted = {p.strip("/") for p in arrays} if arrays else None
    return sum(a.nchunks for a in found if wanted is None or a.path in wanted)
