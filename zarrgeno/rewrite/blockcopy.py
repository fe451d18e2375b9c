"""The copy kernel: read a region chunk by chunk, and copy a block into whole target chunks.

:func:`copy_block` is what every rechunk and recompression task runs (through the stage
functions :func:`copy_first` and :func:`copy_second`, which look it up here at call time);
:func:`read_region` is also how ``zarrgeno verify`` reads. Chunks are read through
zarrgeno.io.chunks's checks, into reused per-thread buffers (zarrgeno.rewrite.buffers), and a task
stops at its next chunk once zarrgeno.rewrite.executors has set ``CANCEL``. A region's chunks
are announced, in reading order, to a store that fetches ahead (a remote source:
zarrgeno.io.readahead), so that their requests overlap. The memory model in
zarrgeno.rewrite.arrayplan counts the buffers this module holds.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

import numcodecs.compat
import numpy as np

from zarrgeno.errors import BadDataError
from zarrgeno.io.chunks import ChunkLayout, forget_shards, read_chunk
from zarrgeno.io.readahead import fetch_ahead
from zarrgeno.io.shards import encode_shard_array
from zarrgeno.rewrite.buffers import thread_buffer
from zarrgeno.rewrite.executors import CANCEL, Cancelled


@dataclass(frozen=True)
class CopyStep:
    """What the tasks of one stage share: read ``source``, write whole chunks of ``target``.

    Picklable (directory stores pickle as paths), so dask.distributed workers can run
    :func:`copy_block` with it.
    """

    source_store: MutableMapping[str, bytes]
    source: ChunkLayout
    target_store: MutableMapping[str, bytes]
    target: ChunkLayout
    allow_missing: bool = False


def region_chunks(layout: ChunkLayout, region: tuple[slice, ...]) -> Iterator[tuple[int, ...]]:
    """Grid indexes of the stored chunks ``region`` overlaps, in the order
    :func:`read_region` reads them."""
    chunks = layout.chunks
    ranges = [
        range(r.start // c, math.ceil(r.stop / c)) for r, c in zip(region, chunks, strict=True)
    ]
    return itertools.product(*ranges)


def fetch_regions(store: Any, layout: ChunkLayout, regions: Iterable[tuple[slice, ...]]) -> None:
    """Announce the chunks of ``regions``, in the order they will be read, to a store that
    fetches ahead (a remote one keeps a bounded window of them in flight); a local store
    reads on demand."""
    fetch_ahead(store, layout, (i for region in regions for i in region_chunks(layout, region)))


def read_region(
    store: Any,
    layout: ChunkLayout,
    region: tuple[slice, ...],
    out: np.ndarray,
    *,
    allow_missing: bool = False,
) -> None:
    """Decode ``region`` of an array into ``out``, one stored chunk at a time.

    Chunks go through zarrgeno.io.chunks's checks (Blosc headers, missing chunks are
    errors unless ``allow_missing``), decoding into ``out`` where they can (see
    :func:`_read_chunk`). A store that fetches ahead is told the region's chunks first
    (those announced already, by the caller for a whole run, keep their place).
    """
    chunks = layout.chunks
    fetch_regions(store, layout, (region,))
    for index in region_chunks(layout, region):
        if CANCEL.is_set():
            raise Cancelled
        src, dst = [], []
        for i, r, c in zip(index, region, chunks, strict=True):
            lo, hi = max(i * c, r.start), min((i + 1) * c, r.stop)
            src.append(slice(lo - i * c, hi - i * c))
            dst.append(slice(lo - r.start, hi - r.start))
        try:
            _read_chunk(store, layout, index, out[tuple(dst)], tuple(src), allow_missing)
        except BadDataError as exc:
            raise BadDataError(f"{exc} ({describe_chunk(layout, index)})") from None


def describe_chunk(layout: ChunkLayout, index: tuple[int, ...]) -> str:
    """``variants 300-600, samples 0-50`` for genotype-like arrays, ``elements a-b`` for 1-D."""
    spans = [
        f"{i * c}-{min((i + 1) * c, n)}"
        for i, c, n in zip(index, layout.chunks, layout.shape, strict=True)
    ]
    if len(spans) == 1:
        return f"elements {spans[0]}"
    return f"variants {spans[0]}, samples {spans[1]}" if spans else "the value"


def _read_chunk(
    store: Any,
    layout: ChunkLayout,
    index: tuple[int, ...],
    target: np.ndarray,
    src: tuple[slice, ...],
    allow_missing: bool,
) -> None:
    """Chunk ``index``'s part ``src`` into ``target``, through zarrgeno.io.chunks.read_chunk.

    When the part is a contiguous prefix of the chunk (the whole chunk, or the part of an
    edge chunk inside the array) landing on a contiguous ``target``, a Blosc chunk decodes
    straight into ``target``; otherwise into a reused per-thread buffer, then copied.
    """
    prefix = (
        target.flags.c_contiguous
        and target.dtype == layout.dtype
        and src[0].start == 0
        and all(
            s.start == 0 and s.stop == c for s, c in zip(src[1:], layout.chunks[1:], strict=True)
        )
    )

    def buffer() -> np.ndarray:
        return target if prefix else thread_buffer("decode", layout.chunks, layout.dtype)

    chunk = read_chunk(store, layout, index, allow_missing=allow_missing, buffer=buffer)
    if chunk is not target:
        target[...] = chunk[src]


def encode_chunk(layout: ChunkLayout, chunk: np.ndarray) -> bytes:
    """Encode one whole, contiguous chunk with the layout's filters and compressor, as zarr does."""
    data: Any = chunk
    for codec in layout.filters:
        data = codec.encode(data)
    if layout.compressor is not None:
        data = layout.compressor.encode(data)
    return data if isinstance(data, bytes) else numcodecs.compat.ensure_bytes(data)


def copy_block(key: tuple[slice, ...], *, config: CopyStep) -> None:
    """Copy the block ``key`` of the source into whole chunks of the target.

    The block starts on a target-chunk boundary; at the array's edge it is padded with the
    fill value up to whole chunks. It is read one source chunk at a time and written one
    target chunk at a time, so a task holds its block, one decoded source chunk and one
    encoded target chunk (rechunker's own copy function holds the block twice at the edge
    and every encoded chunk of the block at once). Buffers are reused per thread.
    """
    layout = config.target
    # A sharded target is written a whole shard at a time (its index needs every inner chunk).
    chunks = layout.shard.shard_shape if layout.shard is not None else layout.chunks
    start = tuple(k.start for k in key)
    region = tuple(k.stop - k.start for k in key)
    if any(s % c for s, c in zip(start, chunks, strict=True)):
        raise AssertionError(f"block {key} does not start on a chunk of {chunks}")
    grid = tuple(math.ceil(n / c) for n, c in zip(region, chunks, strict=True))
    padded = tuple(g * c for g, c in zip(grid, chunks, strict=True))
    block = thread_buffer("block", padded, layout.dtype)
    fill = layout.fill_value
    if fill is None and not layout.dtype.hasobject:  # object padding stays None, as zarr's
        fill = 0
    for axis, (n, p) in enumerate(zip(region, padded, strict=True)):
        if p > n:
            block[(slice(None),) * axis + (slice(n, None),)] = fill
    view = block[tuple(slice(0, n) for n in region)]
    read_region(config.source_store, config.source, key, view, allow_missing=config.allow_missing)
    forget_shards()  # a whole source shard kept while reading is not kept while writing
    first = tuple(s // c for s, c in zip(start, chunks, strict=True))
    for index in np.ndindex(*grid):
        if CANCEL.is_set():
            raise Cancelled
        part = block[tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, chunks, strict=True))]
        coords = [f + i for f, i in zip(first, index, strict=True)]
        if layout.shard is not None:
            shard = encode_shard_array(
                layout.shard, part, lambda chunk: encode_chunk(layout, chunk), fill
            )
            if shard is not None:  # None: every inner chunk is the fill value (none written)
                config.target_store[layout.shard_key(coords)] = shard
            continue
        if not part.flags.c_contiguous:
            copy = thread_buffer("chunk", chunks, layout.dtype)
            np.copyto(copy, part)
            part = copy
        config.target_store[layout.shard_key(coords)] = encode_chunk(layout, part)


def copy_first(key: tuple[slice, ...], *, config: tuple[CopyStep, ...]) -> None:
    """Stage function of a direct copy, or of the copy into the temporary array."""
    copy_block(key, config=config[0])


def copy_second(key: tuple[slice, ...], *, config: tuple[CopyStep, ...]) -> None:
    """Stage function of the copy from the temporary array into the target."""
    copy_block(key, config=config[1])
