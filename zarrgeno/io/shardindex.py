"""Zarr format 3 shard indexes (codec ``sharding_indexed``): the layout and the checked index.

Below :mod:`zarrgeno.io.chunks` (which reads inner chunks through it) and
:mod:`zarrgeno.io.shards` (which encodes and decodes whole shards): pure, numpy and
crc32c only. A shard's index is one ``(offset, nbytes)`` pair of uint64 per inner chunk
(C order; ``2**64 - 1`` twice for an inner chunk that was not written), followed by its
crc32c checksum, at the end of the shard or at its start.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import google_crc32c
import numpy as np

from zarrgeno.errors import BadDataError

#: The index entry of an inner chunk that was not written (offset and nbytes alike).
EMPTY = 2**64 - 1
INDEX_LOCATIONS = ("end", "start")
#: The most inner chunks one shard may hold: its index is then 16 MiB. A larger claim in
#: metadata is refused before any index is read.
MAX_INNER_CHUNKS = 1 << 20
_CRC_BYTES = 4


@dataclass(frozen=True)
class ShardSpec:
    """The layout of every shard of one array (shard and inner chunk shapes, index codecs)."""

    shard_shape: tuple[int, ...]
    chunk_shape: tuple[int, ...]
    index_location: str = "end"
    #: ``"little"`` or ``"big"``: the byte order of the index's uint64 pairs.
    index_endian: str = "little"
    #: True when the index ends with its crc32c checksum (zarr-python 3 always writes one).
    index_crc32c: bool = True

    @property
    def chunks_per_shard(self) -> tuple[int, ...]:
        return tuple(s // c for s, c in zip(self.shard_shape, self.chunk_shape, strict=True))

    @property
    def n_chunks(self) -> int:
        return math.prod(self.chunks_per_shard)

    @property
    def index_nbytes(self) -> int:
        """Encoded size of one shard's index."""
        return 16 * self.n_chunks + (_CRC_BYTES if self.index_crc32c else 0)

    def index_range(self, shard_nbytes: int) -> tuple[int, int]:
        """``(start, stop)`` of the index in a shard of ``shard_nbytes`` bytes (a ranged read)."""
        if self.index_location == "start":
            return 0, self.index_nbytes
        return shard_nbytes - self.index_nbytes, shard_nbytes

    def locate(self, chunk_index: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The shard that holds the inner chunk at ``chunk_index`` of the array's inner chunk
        grid, and the chunk's place in it.

        >>> ShardSpec((16, 6, 2), (8, 3, 2)).locate((3, 1, 0))
        ((1, 0, 0), (1, 1, 0))
        """
        per = self.chunks_per_shard
        return (
            tuple(int(i) // p for i, p in zip(chunk_index, per, strict=True)),
            tuple(int(i) % p for i, p in zip(chunk_index, per, strict=True)),
        )


def shard_problem(shard_shape: Sequence[int], chunk_shape: Sequence[int]) -> str | None:
    """What makes ``shard_shape`` unusable with inner chunks of ``chunk_shape``, or None.

    >>> shard_problem((16, 6, 2), (8, 4, 2))
    'shard shape (16, 6, 2) is not a multiple of the inner chunk shape (8, 4, 2)'
    """
    shard, chunks = tuple(shard_shape), tuple(chunk_shape)
    if len(shard) != len(chunks):
        return f"shard shape {shard} and inner chunk shape {chunks} differ in dimensions"
    if not all(type(n) is int and n > 0 for n in (*shard, *chunks)):
        return f"shard shape {shard} and inner chunk shape {chunks} must be positive integers"
    if any(s % c for s, c in zip(shard, chunks, strict=True)):
        return f"shard shape {shard} is not a multiple of the inner chunk shape {chunks}"
    n = math.prod(s // c for s, c in zip(shard, chunks, strict=True))
    if n > MAX_INNER_CHUNKS:
        return f"a shard of {n} inner chunks is more than {MAX_INNER_CHUNKS}"
    return None


def morton_order(chunks_per_shard: Sequence[int]) -> np.ndarray:
    """Inner chunk coordinates, shape ``(n, ndim)``, in the order zarr-python 3 writes them.

    Morton (Z) order: the bits of the coordinates interleaved, the first dimension's lowest;
    a dimension drops out once its ``(c - 1).bit_length()`` bits are used up.

    >>> morton_order((2, 3)).tolist()
    [[0, 0], [1, 0], [0, 1], [1, 1], [0, 2], [1, 2]]
    """
    shape = tuple(int(c) for c in chunks_per_shard)
    if not shape:
        return np.zeros((1, 0), dtype=np.intp)
    coords = np.indices(shape, dtype=np.uint64).reshape(len(shape), -1).T
    bits = [(c - 1).bit_length() for c in shape]
    code = np.zeros(len(coords), dtype=np.uint64)
    out_bit = 0
    for bit in range(max(bits, default=0)):
        for dim, used in enumerate(bits):
            if bit < used:
                code |= ((coords[:, dim] >> np.uint64(bit)) & np.uint64(1)) << np.uint64(out_bit)
                out_bit += 1
    return coords[np.argsort(code, kind="stable")].astype(np.intp)


def _index_dtype(spec: ShardSpec) -> np.dtype:
    return np.dtype("<u8" if spec.index_endian == "little" else ">u8")


def _crc32c(data: bytes | memoryview) -> bytes:
    """The crc32c codec's four bytes (little-endian) for ``data``."""
    return int(google_crc32c.value(bytes(data))).to_bytes(_CRC_BYTES, "little")


@dataclass(frozen=True)
class ShardIndex:
    """One shard's decoded, checked index: ``table[i] = (offset, nbytes)`` of inner chunk ``i``
    (C order of the inner chunk grid), ``EMPTY`` for one that was not written."""

    spec: ShardSpec
    table: np.ndarray

    def chunk_range(self, inner: Sequence[int]) -> tuple[int, int] | None:
        """``(start, stop)`` of the inner chunk at ``inner`` in the shard, or None if empty."""
        i = int(np.ravel_multi_index(tuple(inner), self.spec.chunks_per_shard))
        offset, nbytes = (int(v) for v in self.table[i])
        return None if offset == EMPTY else (offset, offset + nbytes)

    def stored(self) -> Iterator[tuple[tuple[int, ...], int, int]]:
        """``(inner, start, stop)`` of every written inner chunk, in C order."""
        for i in np.flatnonzero(self.table[:, 0] != EMPTY):
            inner = np.unravel_index(int(i), self.spec.chunks_per_shard)
            offset, nbytes = (int(v) for v in self.table[i])
            yield tuple(int(x) for x in inner), offset, offset + nbytes


def decode_index(
    raw: bytes | memoryview, spec: ShardSpec, key: str, shard_nbytes: int
) -> ShardIndex:
    """Decode and check the index bytes of the shard at ``key`` (``shard_nbytes`` long).

    Refused, naming the shard: an index of the wrong length, a crc32c mismatch, an entry
    half empty, an inner chunk of no bytes or outside the shard's data, two that overlap.
    """
    where = f"shard {key}"
    raw = memoryview(raw).cast("B")
    if shard_nbytes < spec.index_nbytes:
        raise BadDataError(
            f"{where}: {shard_nbytes} bytes, shorter than its index ({spec.index_nbytes} bytes)"
        )
    if len(raw) != spec.index_nbytes:
        raise BadDataError(f"{where}: index is {len(raw)} bytes, expected {spec.index_nbytes}")
    body = raw[: 16 * spec.n_chunks]
    if spec.index_crc32c and _crc32c(body) != bytes(raw[len(body) :]):
        raise BadDataError(f"{where}: index checksum (crc32c) does not match; the shard is corrupt")
    table = np.frombuffer(body, dtype=_index_dtype(spec)).reshape(-1, 2).astype(np.uint64)
    empty = table == np.uint64(EMPTY)
    half = np.flatnonzero(empty[:, 0] != empty[:, 1])
    if half.size:
        raise BadDataError(f"{where}: index entry {_inner(spec, half[0])} is half empty")
    stored = np.flatnonzero(~empty[:, 0])
    if spec.index_location == "start":
        low, high = spec.index_nbytes, shard_nbytes
    else:
        low, high = 0, shard_nbytes - spec.index_nbytes
    offsets, sizes = table[stored, 0], table[stored, 1]
    # offset <= high first, so that high - offset cannot wrap around
    outside = (
        (offsets < low) | (offsets > high) | (sizes > np.uint64(high) - np.minimum(offsets, high))
    )
    for what, bad in (("has no bytes", sizes == 0), ("lies outside the shard's data", outside)):
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise BadDataError(
                f"{where}: inner chunk {_inner(spec, stored[i])} {what} (bytes "
                f"{offsets[i]}+{sizes[i]}; the data is bytes {low}-{high})"
            )
    order = np.argsort(offsets, kind="stable")
    ends = offsets[order] + sizes[order]
    clash = np.flatnonzero(offsets[order][1:] < ends[:-1])
    if clash.size:
        a, b = stored[order[clash[0]]], stored[order[clash[0] + 1]]
        raise BadDataError(f"{where}: inner chunks {_inner(spec, a)} and {_inner(spec, b)} overlap")
    return ShardIndex(spec, table)


def _inner(spec: ShardSpec, flat: Any) -> tuple[int, ...]:
    return tuple(int(x) for x in np.unravel_index(int(flat), spec.chunks_per_shard))


def read_index(shard: bytes | memoryview, spec: ShardSpec, key: str) -> ShardIndex:
    """The checked index of a whole shard read at once."""
    start, stop = spec.index_range(len(shard))
    return decode_index(memoryview(shard)[max(start, 0) : stop], spec, key, len(shard))


def encode_index(spec: ShardSpec, table: np.ndarray) -> bytes:
    """The index bytes of ``table`` (``(n_chunks, 2)`` uint64), as the index codecs encode it."""
    body = np.ascontiguousarray(table, dtype=_index_dtype(spec)).tobytes()
    return body + (_crc32c(body) if spec.index_crc32c else b"")


def inner_key(key: str, inner: Sequence[int]) -> str:
    """How messages name one inner chunk: ``2L/calldata/GT/c/0/0/0 (inner chunk 1,0,0)``."""
    return f"{key} (inner chunk {','.join(str(int(i)) for i in inner)})"
