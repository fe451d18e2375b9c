"""The stats side of the chunk path: a picklable reader of one genotype array's chunks.

It finds chunks (grid, keys, what a message names) and owns the reusable decode buffers;
reading, checking and decoding each chunk is :func:`zarrgeno.io.chunks.read_chunk`'s.
"""

from __future__ import annotations

import sys
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from zarrgeno.errors import BadDataError, MissingInputError
from zarrgeno.io.chunks import (
    ChunkLayout,
    blockwise_blosc,
    decode_stored,
    read_checked,
    read_chunk,
)
from zarrgeno.io.decompress import lz4_block_decoder
from zarrgeno.io.store import StoreRef
from zarrgeno.stats.fastpath import FIELD_MAX

#: Opened arrays per process, by reader token; a new run makes new tokens, so never stale.
_OPENED: OrderedDict[str, zarr.Array] = OrderedDict()
_OPENED_LOCK = threading.Lock()
_OPENED_MAX = 16
_BUFFERS = threading.local()
#: Decoded chunk buffers a reader keeps for reuse by dask blocks.
POOL_SIZE = 3

#: Whether :meth:`ChunkReader.stored_pieces` may hand out chunks still compressed, for the
#: kernel to decode a few blocks at a time (False: every chunk decoded whole; benchmarks
#: compare the two).
BLOCKWISE = True

#: Told ``(key, i, j)`` before each chunk this process reads, when set (see reporting_reads).
_report_read: Callable[[str, int, int], None] | None = None


@contextmanager
def reporting_reads(report: Callable[[str, int, int], None]) -> Iterator[None]:
    """Within the block, ``report(key, i, j)`` is called before each chunk is read.

    A worker process rerun alone reports its reads, so that if a chunk kills it (a
    decoder crash, memory) the parent can name the chunk it was reading.
    """
    global _report_read
    previous, _report_read = _report_read, report
    try:
        yield
    finally:
        _report_read = previous


def _open_array(ref: StoreRef, path: str, token: str) -> zarr.Array:
    with _OPENED_LOCK:
        if token in _OPENED:
            _OPENED.move_to_end(token)
            return _OPENED[token]
    group = ref.open()
    try:
        array = group[path]
    except KeyError:
        raise MissingInputError(f"{ref.name}: no array {path}") from None
    if not isinstance(array, zarr.Array):
        raise BadDataError(f"{ref.name}: {path} is a group, not an array")
    with _OPENED_LOCK:
        _OPENED[token] = array
        while len(_OPENED) > _OPENED_MAX:
            _OPENED.popitem(last=False)
    return array


@dataclass(frozen=True)
class ChunkPiece:
    """Part of one stored chunk: ``data[rows, :, :]`` holds variants ``start:stop``.

    ``data`` is the whole decoded chunk width; samples ``sample0 + c0`` .. ``sample0 + c1``
    of the array are its columns ``c0:c1`` (the edge chunk is stored padded).
    """

    start: int
    stop: int
    sample0: int
    c0: int
    c1: int
    data: np.ndarray


@dataclass(frozen=True)
class StoredPiece:
    """Part of one stored chunk, still compressed: variants ``start:stop`` are the first
    ``stop - start`` rows of the Blosc chunk ``raw`` (checked header, ``blocksize``-byte LZ4
    blocks, or 0: stored as is) of ``stride`` samples; its columns ``c0:c1`` are samples
    ``sample0 + c0`` .. ``sample0 + c1``. ``raw`` may be this thread's reusable read buffer:
    count it before the next read. ``lz4``: the decoder's address."""

    start: int
    stop: int
    sample0: int
    c0: int
    c1: int
    raw: bytes | memoryview
    blocksize: int
    stride: int
    lz4: int
    key: str


class ChunkReader:
    """Decodes one genotype array's chunks straight from the store; picklable.

    A reader carries a :class:`StoreRef` and an array path, never data: a worker process
    or dask worker that unpickles it opens the store itself, once per process. Whole
    chunks are decoded into a per-thread buffer that is reused, so reading a chunk costs
    one store read and one decompression, nothing else.
    """

    def __init__(
        self, ref: StoreRef, path: str, *, allow_missing: bool = False, token: str | None = None
    ) -> None:
        self.ref = ref
        self.path = path
        self.allow_missing = allow_missing
        self.token = token or uuid.uuid4().hex
        array = self.array
        self.layout = ChunkLayout.of(array)
        self.shape: tuple[int, ...] = tuple(array.shape)
        #: The chunks as stored; ``chunks`` is what a read returns: one stored chunk's
        #: variants and samples, always spanning the whole ploidy axis.
        self.stored_chunks: tuple[int, ...] = tuple(array.chunks)
        self.chunks: tuple[int, ...] = self.stored_chunks[:2] + self.shape[2:]
        # sgkit's dask auto-chunking can split the ploidy axis (chunks (10000, 41, 1)):
        # then a read assembles the chunks along it (see _read_across_ploidy).
        self._whole_ploidy = self.stored_chunks[2:] == self.shape[2:]
        self.dtype = array.dtype
        self.ndim = len(self.shape)
        self._pool: list[np.ndarray] = []
        self._pool_lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_pool", "_pool_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pool, self._pool_lock = [], threading.Lock()

    def __repr__(self) -> str:
        return f"ChunkReader({self.ref.name!r}, {self.path!r})"

    @property
    def array(self) -> zarr.Array:
        return _open_array(self.ref, self.path, self.token)

    def _pooled(self) -> np.ndarray:
        """A chunk buffer nobody references any more, or a new one.

        Blocks handed to dask are views of these buffers; a view keeps its buffer's
        reference count up, so a buffer back at the pool's own references is free to
        reuse. Reusing saves a fresh multi-megabyte allocation (page faults, zeroing) per
        chunk. The pool is per reader, so it goes away with the run.
        """
        with self._pool_lock:
            for buf in self._pool:
                # references: the pool's list, the loop variable, getrefcount's argument
                if sys.getrefcount(buf) <= 3:
                    return buf
            buf = np.empty(self.chunks, dtype=self.dtype)
            if len(self._pool) < POOL_SIZE:
                self._pool.append(buf)
            return buf

    def share_buffers(self, other: ChunkReader) -> None:
        """Reuse ``other``'s pool of chunk buffers (same chunk shape and dtype), so that the
        arrays of one run keep POOL_SIZE buffers between them rather than each."""
        if (self.chunks, self.dtype) != (other.chunks, other.dtype):
            raise ValueError(f"{self!r} and {other!r} have chunks of different shapes")
        self._pool, self._pool_lock = other._pool, other._pool_lock

    def _buffer(self, shared: bool) -> np.ndarray:
        if not shared:
            return self._pooled()
        buffers = getattr(_BUFFERS, "by_shape", None)
        if buffers is None:
            buffers = _BUFFERS.by_shape = {}
        key = (self.chunks, self.dtype.str)
        buf = buffers.get(key)
        if buf is None:
            buffers.clear()  # one buffer per thread: the shape of the array being read
            buf = buffers[key] = np.empty(self.chunks, dtype=self.dtype)
        return buf

    def read_chunk(self, i: int, j: int, *, shared: bool = False) -> np.ndarray:
        """Chunk ``(i, j, 0)`` decoded at its full stored shape (edge chunks are padded).

        The bytes go through the checked chunk path (:mod:`zarrgeno.io.chunks`): a
        missing chunk is an error unless the reader allows it, and a Blosc header that
        disagrees with the chunk size is refused before numcodecs decodes it. With
        ``shared``, the result lives in this thread's reusable buffer and is overwritten
        by the next shared read. The result always has shape ``chunks``: when the ploidy
        axis is stored in several chunks, they are read and assembled.
        """
        if not self._whole_ploidy:
            return self._read_across_ploidy(i, j, shared)
        index = (i, j) + (0,) * (self.ndim - 2)
        return self._read_stored(index, i, j, lambda: self._buffer(shared))

    def _read_across_ploidy(self, i: int, j: int, shared: bool) -> np.ndarray:
        """Chunks ``(i, j, k)`` for every ``k``, copied side by side into one contiguous
        ``chunks``-shaped block (what the counting kernel takes); a stored chunk longer
        than the ploidy axis gives its first ``ploidy`` entries."""
        out = self._buffer(shared)
        step, ploidy = self.stored_chunks[2], self.shape[2]
        for k in range(-(-ploidy // step)):
            lo, hi = k * step, min(ploidy, (k + 1) * step)
            chunk = self._read_stored((i, j, k), i, j, self._stored_buffer)
            out[:, :, lo:hi] = chunk[:, :, : hi - lo]
        return out

    def _stored_buffer(self) -> np.ndarray:
        """This thread's buffer for one stored chunk along the ploidy axis, reused: it is
        copied out at once."""
        buf = getattr(_BUFFERS, "stored", None)
        if buf is None or buf.shape != self.stored_chunks or buf.dtype != self.dtype:
            buf = _BUFFERS.stored = np.empty(self.stored_chunks, dtype=self.dtype)
        return buf

    def _read_stored(
        self, index: tuple[int, ...], i: int, j: int, buffer: Callable[[], np.ndarray]
    ) -> np.ndarray:
        """Stored chunk ``index`` at its stored shape, through the checked chunk path; a
        plain Blosc chunk decodes straight into ``buffer()``."""
        if _report_read is not None:
            _report_read(self.layout.key(index), i, j)
        return read_chunk(
            self.array.chunk_store,
            self.layout,
            index,
            allow_missing=self.allow_missing,
            buffer=buffer,
        )

    def _stored_keys(self, i: int, j: int) -> list[str]:
        """The store keys of chunk ``(i, j)``: one, or one per stored chunk of the ploidy axis."""
        if self._whole_ploidy:
            return [self.chunk_key(i, j)]
        parts = -(-self.shape[2] // self.stored_chunks[2])
        return [self.layout.key((i, j, k)) for k in range(parts)]

    def read_ahead(self, indexes: Iterable[tuple[int, int]]) -> None:
        """Start fetching chunks ``(i, j)`` in this order when the store fetches ahead (a
        remote store: a bounded window of requests in flight, see
        :meth:`zarrgeno.io.remote.RemoteStore.read_ahead`); a local store reads on demand."""
        store = self.array.chunk_store
        fetch = getattr(store, "read_ahead", None)
        if fetch is None or self.layout.shard is not None:
            return
        fetch([key for i, j in indexes for key in self._stored_keys(i, j)], self.layout.raw_cap)

    def read_ahead_bytes(self, window: int | None = None) -> int:
        """The most bytes chunks fetched ahead may hold for this reader: ``window`` bodies
        (default the store's window) within the stored-chunk bound; 0 for a store that
        reads on demand."""
        store = self.array.chunk_store
        if getattr(store, "read_ahead", None) is None or self.layout.shard is not None:
            return 0
        if window is None:
            window = int(store.options.fetch_concurrency)
        return window * self.layout.raw_cap

    def stop_reads(self, *, abandon: bool = False) -> None:
        """Drop the chunks fetched ahead and not read (the end of a run); with ``abandon``
        (Ctrl-C, a failure) also cancel the requests in flight. An array this process has
        not opened (or no longer keeps) has nothing in flight: it is not opened for this."""
        with _OPENED_LOCK:
            array = _OPENED.get(self.token)
        store = array.chunk_store if array is not None else None
        stop = getattr(store, "abandon" if abandon else "forget_read_ahead", None)
        if stop is not None:
            stop()

    def pieces(self, start: int, stop: int, *, shared: bool = True) -> Iterator[ChunkPiece]:
        """Every stored chunk covering variants ``start:stop``, all samples, in order."""
        for i, j in self.chunk_indexes(start, stop):
            yield self.piece(i, j, start, stop, shared=shared)

    def stored_pieces(self, start: int, stop: int) -> Iterator[ChunkPiece | StoredPiece]:
        """:meth:`pieces` (shared buffers), with each chunk that the counting kernel can
        decode a few blocks at a time (:meth:`stored_piece`) left compressed."""
        for i, j in self.chunk_indexes(start, stop):
            yield self.stored_piece(i, j, start, stop)

    def stored_piece(self, i: int, j: int, start: int, stop: int) -> ChunkPiece | StoredPiece:
        """Chunk ``(i, j)``'s rows within variants ``start:stop``: a :class:`StoredPiece`
        when they are its first rows and it is a Blosc chunk of int8 diploid calls that the
        kernel decodes a block at a time (:func:`zarrgeno.io.chunks.blockwise_blosc`), of at
        most FIELD_MAX samples; else :meth:`piece`. The bytes are read once either way, and
        the header checks and the missing-chunk policy are the same."""
        cn, cs = self.chunks[0], self.chunks[1]
        lo, hi = max(start, i * cn), min(stop, (i + 1) * cn)
        lz4 = lz4_block_decoder()
        if not (
            BLOCKWISE
            and lz4 is not None
            and lo == i * cn
            and self._whole_ploidy
            and self.layout.decodes_into
            and self.dtype == np.int8
            and self.shape[2:] == (2,)
            and cs <= FIELD_MAX
        ):
            return self.piece(i, j, start, stop)
        index = (i, j, 0)
        if _report_read is not None:
            _report_read(self.layout.key(index), i, j)
        store = self.array.chunk_store
        raw = read_checked(store, self.layout, index, allow_missing=self.allow_missing)
        c1 = min(cs, self.shape[1] - j * cs)
        blocksize = None if raw is None else blockwise_blosc(raw)
        if raw is None or blocksize is None:
            data = decode_stored(self.layout, self.layout.key(index), raw, self._buffer(True))
            return ChunkPiece(lo, hi, j * cs, 0, c1, data[: hi - lo])
        key = self.layout.key(index)
        return StoredPiece(lo, hi, j * cs, 0, c1, raw, blocksize, cs, lz4, key)

    def chunk_indexes(self, start: int, stop: int) -> list[tuple[int, int]]:
        """Grid indexes ``(i, j)`` of the stored chunks covering variants ``start:stop``
        and all samples, in reading order."""
        cn, cs = self.chunks[0], self.chunks[1]
        return [
            (i, j)
            for i in range(start // cn, -(-stop // cn))
            for j in range(-(-self.shape[1] // cs))
        ]

    def piece(self, i: int, j: int, start: int, stop: int, *, shared: bool = True) -> ChunkPiece:
        """Chunk ``(i, j)``'s rows within variants ``start:stop``, read and decoded."""
        cn, cs = self.chunks[0], self.chunks[1]
        lo, hi = max(start, i * cn), min(stop, (i + 1) * cn)
        data = self.read_chunk(i, j, shared=shared)
        return ChunkPiece(
            start=lo,
            stop=hi,
            sample0=j * cs,
            c0=0,
            c1=min(cs, self.shape[1] - j * cs),
            data=data[lo - i * cn : hi - i * cn],
        )

    def chunk_key(self, i: int, j: int) -> str:
        """The store key of chunk ``(i, j)``, e.g. ``2L/calldata/GT/3.1.0``."""
        return self.layout.key((i, j) + (0,) * (self.ndim - 2))

    def describe_chunk(self, i: int, j: int) -> str:
        """``chunk KEY (variants A-B[, samples C-D])``: what a message names."""
        cn, cs = self.chunks[0], self.chunks[1]
        n_variants, n_samples = self.shape[0], self.shape[1]
        where = f"variants {i * cn:,}-{min(n_variants, (i + 1) * cn):,}"
        if n_samples > cs:
            where += f", samples {j * cs:,}-{min(n_samples, (j + 1) * cs):,}"
        return f"chunk {self.chunk_key(i, j)} ({where})"

    def describe_chunks(self, start: int, stop: int) -> str:
        """The stored chunks of variants ``start:stop``, all samples, as a message names
        them: ``chunk KEY (...)`` or ``chunks KEY to I.J.K (N chunks, variants A-B)``."""
        indexes = self.chunk_indexes(start, stop)
        if len(indexes) == 1:
            return self.describe_chunk(*indexes[0])
        first, last = self.chunk_key(*indexes[0]), self.chunk_key(*indexes[-1])
        prefix = f"{self.layout.path}/" if self.layout.path else ""
        cn = self.chunks[0]
        rows = indexes[0][0] * cn, min(self.shape[0], (indexes[-1][0] + 1) * cn)
        return (
            f"chunks {first} to {last.removeprefix(prefix)} "
            f"({len(indexes)} chunks, variants {rows[0]:,}-{rows[1]:,})"
        )

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        """Block access for ``dask.array.from_array``: a block inside one stored chunk is a
        view of that chunk, decoded directly; any other slice is assembled from the
        checked chunks it overlaps."""
        if not (isinstance(key, tuple) and len(key) == self.ndim):
            raise TypeError(f"ChunkReader takes {self.ndim} slices, got {key!r}")
        bounds = [k.indices(n) for k, n in zip(key, self.shape, strict=True)]
        if any(step != 1 for _, _, step in bounds):
            raise TypeError("ChunkReader takes slices with step 1")
        (a, b, _), (c, d, _) = bounds[0], bounds[1]
        rest = tuple(slice(lo, hi) for lo, hi, _ in bounds[2:])
        cn, cs = self.chunks[0], self.chunks[1]
        if b > a and d > c and a // cn == (b - 1) // cn and c // cs == (d - 1) // cs:
            i, j = a // cn, c // cs
            chunk = self.read_chunk(i, j)
            return chunk[(slice(a - i * cn, b - i * cn), slice(c - j * cs, d - j * cs), *rest)]
        out = np.empty((max(0, b - a), max(0, d - c), *self.shape[2:]), dtype=self.dtype)
        for i in range(a // cn, -(-b // cn)) if b > a else ():
            for j in range(c // cs, -(-d // cs)) if d > c else ():
                r0, r1 = max(a, i * cn), min(b, (i + 1) * cn)
                s0, s1 = max(c, j * cs), min(d, (j + 1) * cs)
                chunk = self.read_chunk(i, j)
                out[r0 - a : r1 - a, s0 - c : s1 - c] = chunk[
                    r0 - i * cn : r1 - i * cn, s0 - j * cs : s1 - j * cs
                ]
        return out[(slice(None), slice(None), *rest)]
