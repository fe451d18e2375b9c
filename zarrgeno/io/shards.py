"""Zarr format 3 shards (codec ``sharding_indexed``), laid out and checked as zarr-python 3 does.

A shard holds the encoded inner chunks one after another, in Morton order, and an index:
one ``(offset, nbytes)`` pair of uint64 per inner chunk (C order; ``2**64 - 1`` twice for
an inner chunk that was not written, which reads as the fill value), encoded by the index
codecs (``bytes``, then ``crc32c``: four bytes of checksum) at the end of the shard, or at
its start (then the offsets count the index). Pure: the caller reads and writes the bytes,
either the whole shard or one ranged read of the index and one per inner chunk.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from zarrgeno.errors import BadDataError
from zarrgeno.io.chunks import ChunkLayout, decode_chunk
from zarrgeno.io.shardindex import (
    EMPTY,
    INDEX_LOCATIONS,
    MAX_INNER_CHUNKS,
    ShardIndex,
    ShardSpec,
    decode_index,
    encode_index,
    inner_key,
    morton_order,
    read_index,
    shard_problem,
)
from zarrgeno.io.zarr3_meta import V3Array, _named, parse_array, where_of

__all__ = [
    "EMPTY",
    "INDEX_LOCATIONS",
    "MAX_INNER_CHUNKS",
    "ShardIndex",
    "ShardSpec",
    "ShardedArray",
    "decode_index",
    "decode_shard",
    "encode_index",
    "encode_shard",
    "encode_shard_array",
    "inner_key",
    "is_sharded",
    "morton_order",
    "parse_sharded",
    "read_index",
    "shard_problem",
    "shard_raw_cap",
]


def _inner_slices(spec: ShardSpec, inner: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(i * c, (i + 1) * c) for i, c in zip(inner, spec.chunk_shape, strict=True))


def shard_raw_cap(spec: ShardSpec, layout: ChunkLayout) -> int:
    """The most bytes a stored shard may hold: its index and every inner chunk at its
    largest (``layout``: one inner chunk's); a longer shard is corrupt or hostile, and is
    not read past this."""
    return spec.index_nbytes + spec.n_chunks * layout.raw_cap


def decode_shard(
    shard: bytes | memoryview, spec: ShardSpec, layout: ChunkLayout, key: str
) -> np.ndarray:
    """The whole shard at ``key`` as an array of ``spec.shard_shape``; inner chunks that were
    not written read as the layout's fill value. ``layout`` describes one inner chunk.

    This holds the whole decoded shard in memory; a reader within a memory budget reads
    the index (:meth:`ShardSpec.index_range`, :func:`decode_index`) and then one inner
    chunk at a time (:meth:`ShardIndex.chunk_range`).
    """
    if tuple(layout.chunks) != spec.chunk_shape:
        raise ValueError(f"layout chunks {layout.chunks} are not the inner chunks of {spec}")
    index = read_index(shard, spec, key)
    out = np.full(spec.shard_shape, layout.missing_value, dtype=layout.dtype)
    view = memoryview(shard)
    for inner, start, stop in index.stored():
        chunk = decode_chunk(layout, inner_key(key, inner), view[start:stop])
        out[_inner_slices(spec, inner)] = chunk
    return out


def encode_shard(spec: ShardSpec, chunks: Mapping[tuple[int, ...], bytes]) -> bytes | None:
    """A shard of the encoded inner ``chunks`` (by inner coordinates; absent ones are empty),
    byte for byte as zarr-python 3 lays it out; None when no chunk is given (write nothing)."""
    table = np.full((spec.n_chunks, 2), EMPTY, dtype=np.uint64)
    parts: list[bytes] = []
    offset = spec.index_nbytes if spec.index_location == "start" else 0
    for inner in morton_order(spec.chunks_per_shard):
        data = chunks.get(tuple(int(i) for i in inner))
        if not data:
            continue
        flat = int(np.ravel_multi_index(tuple(inner), spec.chunks_per_shard))
        table[flat] = (offset, len(data))
        parts.append(bytes(data))
        offset += len(data)
    if not parts:
        return None
    index = encode_index(spec, table)
    return index + b"".join(parts) if spec.index_location == "start" else b"".join(parts) + index


def _all_fill(chunk: np.ndarray, fill: Any) -> bool:
    if chunk.dtype.kind in "fc":
        return bool(np.array_equal(chunk, np.full_like(chunk, fill), equal_nan=True))
    return bool(np.all(chunk == fill))


def encode_shard_array(
    spec: ShardSpec,
    data: np.ndarray,
    encode: Callable[[np.ndarray], bytes],
    fill_value: Any,
    *,
    write_empty_chunks: bool = False,
) -> bytes | None:
    """Encode one shard's values (``data``: at most ``spec.shard_shape``, less at the array's
    edge, padded with ``fill_value``), each inner chunk by ``encode``.

    As zarr-python 3 does by default, an inner chunk that holds only the fill value is not
    written (unless ``write_empty_chunks``), and a shard of such chunks is None.
    """
    if data.ndim != len(spec.shard_shape) or any(
        n > s for n, s in zip(data.shape, spec.shard_shape, strict=True)
    ):
        raise ValueError(f"data of shape {data.shape} does not fit a shard of {spec.shard_shape}")
    full = data
    if data.shape != spec.shard_shape:
        full = np.full(spec.shard_shape, fill_value, dtype=data.dtype)
        full[tuple(slice(0, n) for n in data.shape)] = data
    chunks: dict[tuple[int, ...], bytes] = {}
    for inner in itertools.product(*(range(n) for n in spec.chunks_per_shard)):
        chunk = np.ascontiguousarray(full[_inner_slices(spec, inner)])
        if write_empty_chunks or not _all_fill(chunk, fill_value):
            chunks[inner] = encode(chunk)
    return encode_shard(spec, chunks)


@dataclass(frozen=True)
class ShardedArray:
    """A sharded format-3 array: its inner chunks seen as a format-2 array (``inner``, with
    ``inner.zarray["chunks"]`` the inner chunk shape), and the shards' layout."""

    inner: V3Array
    spec: ShardSpec

    def shard_key(self, shard_index: Sequence[int]) -> str:
        """The store key of the shard at ``shard_index`` (``2L/calldata/GT/c/1/0/0``)."""
        return self.inner.native_key(tuple(str(int(i)) for i in shard_index))


def is_sharded(meta: Mapping[str, Any]) -> bool:
    """True when a format-3 array document's first codec is ``sharding_indexed``."""
    codecs = meta.get("codecs")
    if not isinstance(codecs, list) or not codecs:
        return False
    first = codecs[0]
    return (first.get("name") if isinstance(first, dict) else first) == "sharding_indexed"


def parse_sharded(meta: dict[str, Any], path: str, name: str) -> ShardedArray:
    """Validate a sharded format-3 array document (``sharding_indexed`` its only codec).

    The inner chunks' codecs, data type and fill value are checked as
    :func:`zarrgeno.io.zarr3_meta.parse_array` checks an unsharded array's; the index codecs
    must be ``bytes`` and optionally ``crc32c``; the shard shape a multiple of the inner one.
    """
    where = where_of(name, path)
    codecs = meta.get("codecs")
    if not isinstance(codecs, list) or len(codecs) != 1:
        raise BadDataError(f"{where}: a sharded array must have sharding_indexed as only codec")
    codec, config = _named(codecs[0], where, "codec")
    if codec != "sharding_indexed":
        raise BadDataError(f"{where}: codec {codec} is not sharding_indexed")
    _, grid = _named(meta.get("chunk_grid"), where, "chunk_grid")
    shard, inner = grid.get("chunk_shape"), config.get("chunk_shape")
    shape = meta.get("shape")
    if not isinstance(inner, list) or not isinstance(shard, list) or not isinstance(shape, list):
        raise BadDataError(f"{where}: sharding_indexed needs chunk_shape lists")
    if len(inner) != len(shape):
        raise BadDataError(f"{where}: inner chunk_shape {inner} does not match shape {shape}")
    problem = shard_problem(shard, inner)
    if problem:
        raise BadDataError(f"{where}: {problem}")
    location = config.get("index_location", "end")
    if location not in INDEX_LOCATIONS:
        raise BadDataError(f"{where}: index_location {location!r} must be end or start")
    endian, crc = _index_codecs(config.get("index_codecs"), where)
    inner_codecs = config.get("codecs")
    if isinstance(inner_codecs, list) and any(
        _named(c, where, "codec")[0] == "sharding_indexed" for c in inner_codecs
    ):
        raise BadDataError(f"{where}: nested sharding is not supported")
    unsharded = {
        **meta,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": inner}},
        "codecs": inner_codecs,
    }
    spec = ShardSpec(tuple(shard), tuple(inner), location, endian, crc)
    return ShardedArray(parse_array(unsharded, path, name), spec)


def _index_codecs(codecs: Any, where: str) -> tuple[str, bool]:
    """``(endian, crc32c)`` of index codecs ``[bytes]`` or ``[bytes, crc32c]``."""
    if not isinstance(codecs, list) or not codecs:
        raise BadDataError(f"{where}: sharding_indexed index_codecs must be a non-empty list")
    names = [_named(c, where, "index codec") for c in codecs]
    kinds = [n for n, _ in names]
    if kinds not in (["bytes"], ["bytes", "crc32c"]):
        raise BadDataError(
            f"{where}: index codecs {kinds} are not supported (bytes, then optionally crc32c)"
        )
    endian = names[0][1].get("endian", "little")
    if endian not in ("little", "big"):
        raise BadDataError(f"{where}: index codec bytes endian {endian!r} must be little or big")
    return endian, len(kinds) == 2
