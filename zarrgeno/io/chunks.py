"""The one checked chunk path: store key -> raw bytes -> size checks -> decoded chunk.

Every read of array data (stats, rewrite, verify, the small index arrays) goes through
:func:`read_stored` (:func:`read_raw` of a chunk's key, or of an inner chunk's bytes in a
Zarr format 3 shard) and :func:`decode_chunk` (or :func:`decode_into`, the Blosc fast
decode into a reused buffer); errors name the chunk key, and a missing chunk follows one
policy.
"""

from __future__ import annotations

import math
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import product
from typing import Any, Literal

import numcodecs.blosc
import numpy as np
import zarr.storage
from numcodecs.abc import Codec

from zarrgeno.errors import BadDataError, StoreIOError
from zarrgeno.io.bounded import directory_path, open_regular, read_bounded, too_large
from zarrgeno.io.compression import OBJECT_CODEC_IDS
from zarrgeno.io.decompress import (
    CapError,
    CorruptError,
    decode_bz2,
    decode_lzma,
    decode_zlib,
    zstd_bound,
)
from zarrgeno.io.shardindex import ShardIndex, ShardSpec, decode_index, inner_key, read_index

_CHECKSUMS = ("crc32", "adler32", "fletcher32")
_SAME_SIZE = ("delta", "shuffle")
# version, versionlz, flags, typesize, nbytes, blocksize, cbytes
_BLOSC_HEADER = struct.Struct("<BBBBIII")
_LE32 = struct.Struct("<I")
#: Average encoded bytes per item allowed in an object chunk (strings: IDs, alleles, INFO
#: text). A compressor may decode an object chunk to at most this many bytes per item, so a
#: crafted chunk of 65536 items allocates at most 256 MiB, never gigabytes.
VLEN_ITEM_BYTES = 4096
#: Blosc cannot hold a chunk above this (zarrgeno.io.validation refuses bigger chunks).
_MAX_CHUNK_BYTES = 2**31 - 16
#: The most bytes any stored chunk may hold when its layout is not known to the reader.
_MAX_RAW_BYTES = 2 * _MAX_CHUNK_BYTES


@dataclass(frozen=True)
class ChunkLayout:
    """What zarrgeno needs to find and decode one array's chunks, taken from its metadata."""

    path: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype
    compressor: Codec | None
    filters: tuple[Codec, ...]
    fill_value: Any
    separator: str = "."
    order: Literal["C", "F"] = "C"
    #: ``"c"`` for Zarr format 3's default chunk keys (``GT/c/3/1/0``), else empty.
    key_prefix: str = ""
    #: The shards of a sharded format-3 array (``chunks`` are then its inner chunks, and
    #: :meth:`key` names an inner chunk within its shard's key); None when not sharded.
    shard: ShardSpec | None = None

    @classmethod
    def of(cls, arr: Any) -> ChunkLayout:
        """Take the layout from an open ``zarr.Array``.

        On a Zarr format 3 store (:class:`zarrgeno.io.zarr3.V3Store`) the keys are the
        store's own, so messages name the files that are really there.
        """
        encoding = getattr(arr.chunk_store, "key_encoding", None)
        native = encoding(arr.path) if encoding is not None else None
        sharding = getattr(arr.chunk_store, "shard_spec", None)
        return cls(
            path=arr.path,
            shape=tuple(arr.shape),
            chunks=tuple(arr.chunks),
            dtype=arr.dtype,
            compressor=arr.compressor,
            filters=tuple(arr.filters or ()),
            fill_value=arr.fill_value,
            separator=native[1] if native else getattr(arr, "_dimension_separator", None) or ".",
            order=arr.order,
            key_prefix=native[0] if native else "",
            shard=sharding(arr.path) if sharding is not None else None,
        )

    @property
    def chunk_nbytes(self) -> int:
        return math.prod(self.chunks) * self.dtype.itemsize

    @property
    def object_filters(self) -> tuple[Codec, ...]:
        """The object codec (first filter) of an object array, which any copy must keep."""
        if self.dtype.hasobject and self.filters[:1]:
            return self.filters[:1]
        return ()

    @property
    def items(self) -> int:
        """Items in one whole chunk."""
        return math.prod(self.chunks)

    @property
    def decode_cap(self) -> int:
        """Most bytes the compressor may decode to when the exact size is not known."""
        if self.dtype.hasobject:  # length-prefixed items of any length (check_vlen)
            return min(_MAX_CHUNK_BYTES, 4 + self.items * (4 + VLEN_ITEM_BYTES)) + 64
        return 2 * self.chunk_nbytes + 4096

    @property
    def raw_cap(self) -> int:
        """Most bytes a stored chunk of this layout may hold: what its codec may decode
        to, plus any codec's worst-case expansion. A longer chunk file, zip entry or HTTP
        body is corrupt or hostile, and is not read past this."""
        encoded = self.encoded_nbytes
        size = encoded if encoded is not None else self.decode_cap
        return size + size // 64 + 65536

    @property
    def encoded_nbytes(self) -> int | None:
        """Bytes the compressor must decode to: the chunk plus checksum trailers.

        ``None`` when a filter changes the size unpredictably (an object codec does); then
        :attr:`decode_cap` applies instead.
        """
        size = self.chunk_nbytes
        for codec in self.filters:
            if codec.codec_id in _CHECKSUMS:
                size += 4
            elif codec.codec_id not in _SAME_SIZE:
                return None
        return size

    @property
    def missing_value(self) -> Any:
        """What an absent (allowed) chunk reads as: the fill value, 0 for a null numeric one.

        zarr-python 3, which leaves such chunks out, reads a null fill value that way.
        """
        if self.fill_value is None and not self.dtype.hasobject:
            return 0
        return self.fill_value

    @property
    def decodes_into(self) -> bool:
        """True when a chunk decodes straight into a caller's buffer (:func:`decode_into`):
        a Blosc compressor, no filters, C order, a numeric dtype (plain Ag1000G/VCF Zarr)."""
        codec = self.compressor
        return (
            codec is not None
            and codec.codec_id == "blosc"
            and not self.filters
            and self.order == "C"
            and not self.dtype.hasobject
        )

    def key(self, index: Sequence[int]) -> str:
        """The store key of the chunk at grid ``index``, e.g. ``2L/calldata/GT/3.1.0``; of a
        sharded array, its shard's key and its place in it (what messages name:
        ``2L/calldata/GT/c/1/0/0 (inner chunk 1,0,0)``)."""
        if self.shard is not None:
            shard, inner = self.shard.locate(index)
            return inner_key(self.shard_key(shard), inner)
        return self.shard_key(index)

    def shard_key(self, index: Sequence[int]) -> str:
        """The store key of the stored object at ``index`` of the stored grid: a chunk, or
        (sharded) a shard."""
        name = self.separator.join(str(int(i)) for i in index)
        if self.key_prefix:
            name = self.key_prefix + (self.separator + name if name else "")
        elif not name:
            name = "0"  # zarr's 0-d key
        return f"{self.path}/{name}" if self.path else name

    def grid(self) -> tuple[int, ...]:
        """Number of chunks along each axis (none along an empty one, whose chunk length
        may be 0)."""
        return tuple(
            math.ceil(s / c) if s else 0 for s, c in zip(self.shape, self.chunks, strict=True)
        )


def check_blosc_header(
    raw: bytes | memoryview, expected_nbytes: int, where: str, *, exact: bool = True
) -> None:
    """Refuse a Blosc chunk whose header disagrees with its length or with the chunk size.

    numcodecs trusts the header: a truncated or crafted chunk makes it read past the buffer
    (heap bytes as genotypes) or crash the process, so this runs before every Blosc decode.
    """
    size = len(raw)
    if size < _BLOSC_HEADER.size:
        raise BadDataError(f"{where}: Blosc chunk of {size} bytes is shorter than its header")
    _version, _vlz, _flags, _typesize, nbytes, _block, cbytes = _BLOSC_HEADER.unpack_from(raw)
    if cbytes != size:
        raise BadDataError(
            f"{where}: Blosc header says {cbytes} compressed bytes but the chunk has {size} "
            "(truncated or corrupt)"
        )
    if nbytes != expected_nbytes if exact else nbytes > expected_nbytes:
        raise BadDataError(
            f"{where}: Blosc header says {nbytes} decoded bytes, the array needs "
            f"{expected_nbytes} (corrupt chunk)"
        )


def _bounded_decode(
    codec: Codec, raw: bytes | memoryview, limit: int, where: str, exact: bool
) -> Any:
    """Decode ``raw`` with ``codec``, never taking more than about ``limit`` bytes.

    Blosc and LZ4 state the decoded size (checked here); Zstd's frames are sized from
    their headers before numcodecs decodes them; zlib, gzip, bz2 and lzma stream with a
    cap (:mod:`zarrgeno.io.decompress`).
    """
    codec_id = codec.codec_id
    try:
        if codec_id == "blosc":
            check_blosc_header(raw, limit, where, exact=exact)
        elif codec_id == "lz4":
            # numcodecs' LZ4 prefixes the decoded size; a lie would allocate it.
            size = struct.unpack_from("<I", raw)[0] if len(raw) >= 4 else -1
            if size < 0 or (size != limit if exact else size > limit):
                raise BadDataError(f"{where}: LZ4 size prefix disagrees with the chunk size")
        elif codec_id == "zstd":
            bound = zstd_bound(raw)
            if bound > limit:
                raise CapError(
                    f"may decode to {bound:,} bytes (its frame headers say), more than {limit:,}"
                )
        elif codec_id in ("zlib", "gzip"):
            return decode_zlib(raw, limit, gzip=codec_id == "gzip")
        elif codec_id == "bz2":
            return decode_bz2(raw, limit)
        elif codec_id == "lzma":
            return decode_lzma(raw, limit, codec.get_config())
        else:  # validation allows no other compressor
            raise BadDataError(f"{where}: compressor {codec_id!r} is not allowed")
    except CapError as exc:
        raise BadDataError(f"{where}: {codec_id} chunk {exc} (corrupt or hostile)") from None
    except CorruptError as exc:
        raise BadDataError(f"{where}: cannot decode ({codec_id}: {exc})") from None
    return codec.decode(raw)


def check_vlen(data: Any, n_items: int, where: str, *, itemsize: int = 1) -> bool:
    """Refuse a vlen-utf8/-bytes/-array chunk whose length prefixes disagree with its size.

    The layout is a little-endian uint32 item count, then per item a uint32 byte length and
    the bytes. numcodecs trusts the count (it allocates that many objects first: a crafted
    header of 2**28 items took 2 GB before failing) and reads a negative length as valid, so
    every prefix is checked against the chunk's item count and the buffer's end first.
    ``itemsize`` is the item dtype's size for vlen-array (each length must be a multiple).
    Returns True when every item repeats the first one (a column such as ``CHROM``), which
    one comparison proves.
    """
    buf = memoryview(data).cast("B")
    size = len(buf)
    if size < 4:
        raise BadDataError(f"{where}: vlen chunk of {size} bytes is shorter than its header")
    (count,) = _LE32.unpack_from(buf, 0)
    if count != n_items:
        raise BadDataError(
            f"{where}: vlen header says {count} items, the chunk holds {n_items} (corrupt chunk)"
        )
    if count and _repeats_first_item(buf, count):
        return True
    pos = 4
    unpack = _LE32.unpack_from
    for i in range(count):
        if pos + 4 > size:
            raise BadDataError(f"{where}: vlen item {i} of {count} is past the end of the chunk")
        (length,) = unpack(buf, pos)
        pos += 4
        if length > size - pos:
            said = "a negative length" if length >= 2**31 else f"length {length}"
            raise BadDataError(
                f"{where}: vlen item {i} has {said}, past the end of the chunk "
                f"({size - pos} bytes left)"
            )
        if length % itemsize:
            raise BadDataError(
                f"{where}: vlen item {i} of {length} bytes is not a whole number of items"
            )
        pos += length
    if pos != size:
        raise BadDataError(f"{where}: {size - pos} bytes after the last vlen item (corrupt chunk)")
    return False


def _repeats_first_item(buf: memoryview, count: int) -> bool:
    """True when a vlen chunk is its first item, prefix and bytes, ``count`` times over."""
    if len(buf) < 8:
        return False
    (length,) = _LE32.unpack_from(buf, 4)
    item = bytes(buf[4 : 8 + length])
    return len(item) == 4 + length and len(buf) == 4 + count * len(item) and buf[4:] == item * count


def _decode_filter(codec: Codec, data: Any, layout: ChunkLayout, where: str) -> Any:
    if codec.codec_id in OBJECT_CODEC_IDS:
        item = np.dtype(getattr(codec, "dtype", "u1")) if codec.codec_id == "vlen-array" else None
        repeats = check_vlen(data, layout.items, where, itemsize=item.itemsize if item else 1)
        if repeats and codec.codec_id in ("vlen-utf8", "vlen-bytes"):
            # One string repeated (a CHROM column): decode it once; strings are immutable.
            buf = memoryview(data).cast("B")
            (length,) = _LE32.unpack_from(buf, 4)
            first = codec.decode(_LE32.pack(1) + bytes(buf[4 : 8 + length]))[0]
            return np.full(layout.items, first, dtype=object)
    return codec.decode(data)


def decode_chunk(layout: ChunkLayout, key: str, raw: bytes | memoryview) -> np.ndarray:
    """Decode ``raw`` into a full chunk of ``layout``; every failure names array and key."""
    where = f"chunk {key}"
    limit = layout.chunk_nbytes
    encoded = layout.encoded_nbytes
    try:
        data: Any = raw
        if layout.compressor is not None:
            cap = encoded if encoded is not None else layout.decode_cap
            data = _bounded_decode(layout.compressor, raw, cap, where, encoded is not None)
        for codec in reversed(layout.filters):
            data = _decode_filter(codec, data, layout, where)
        if layout.dtype.hasobject:
            array = np.asarray(data)
        else:
            array = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    except BadDataError:
        raise
    except Exception as exc:  # any codec failure (RuntimeError, OSError, LZMAError...) is bad data
        raise BadDataError(f"{where}: cannot decode ({type(exc).__name__}: {exc})") from None
    if layout.dtype.hasobject:
        if array.dtype != object or array.size != layout.items:
            raise BadDataError(f"{where}: decodes to {array.size} items, expected {layout.items}")
        return array.reshape(layout.chunks, order=layout.order)
    if array.nbytes != limit:
        raise BadDataError(f"{where}: decodes to {array.nbytes} bytes, expected {limit}")
    return array.view(layout.dtype).reshape(layout.chunks, order=layout.order)


def decode_into(layout: ChunkLayout, key: str, raw: bytes | memoryview, out: np.ndarray) -> None:
    """Decode Blosc chunk ``raw`` straight into ``out``, skipping numcodecs' allocations.

    Only for a layout that :attr:`ChunkLayout.decodes_into`. ``out`` is C-contiguous with
    the layout's dtype and holds the whole chunk or its first ``out.size`` items (a prefix
    along the first axis: the part of an edge chunk inside the array). The header is checked
    against the chunk size first, as for :func:`decode_chunk`, and a failure names the key.
    """
    codec = layout.compressor
    assert codec is not None and layout.decodes_into, f"{key}: not a plain Blosc chunk"
    check_blosc_header(raw, layout.chunk_nbytes, f"chunk {key}")
    if not out.flags.c_contiguous or out.dtype != layout.dtype or out.size > layout.items:
        raise ValueError(f"chunk {key}: cannot decode into a {out.dtype} buffer of {out.shape}")
    try:
        if out.size == layout.items:
            codec.decode(raw, out=out)
        else:
            codec.decode_partial(raw, 0, out.size, out=out)
    except Exception as exc:  # numcodecs raises RuntimeError and friends
        raise BadDataError(f"chunk {key}: cannot decode ({type(exc).__name__}: {exc})") from None


@contextmanager
def blosc_threads(use: bool | None) -> Iterator[None]:
    """Within the block, Blosc uses its own threads (True), never (False) or only when
    called from the main thread (None, numcodecs' default); the previous setting comes back.

    Blosc's threads also make compression nondeterministic: each thread writes the blocks
    it compressed where the output has room, so one chunk gives other bytes another time.
    """
    previous = numcodecs.blosc.use_threads
    numcodecs.blosc.use_threads = use
    try:
        yield
    finally:
        numcodecs.blosc.use_threads = previous


class MissingChunkError(BadDataError):
    """A chunk absent from the store where absent chunks are not allowed."""


def read_raw(
    store: Mapping[str, bytes],
    key: str,
    *,
    allow_missing: bool = False,
    reuse: bool = False,
    limit: int | None = None,
) -> bytes | memoryview | None:
    """Fetch a chunk's bytes; a missing chunk is an error unless ``allow_missing``.

    zarr reads a missing chunk file, a dangling symlink or a directory at a chunk path as the
    fill value without a word; zarrgeno refuses by default, because for a genotype store that
    is data loss, not sparsity. With ``reuse``, a local chunk file may come back as a view of
    this thread's reusable buffer (see :func:`_read_file_reused`): valid until this thread
    reads the next chunk. Only a regular file is read (a FIFO would block forever), and no
    more than ``limit`` bytes (:attr:`ChunkLayout.raw_cap`; by default what any chunk
    zarrgeno accepts may need): see :func:`zarrgeno.io.bounded.read_bounded`.
    """
    cap = _MAX_RAW_BYTES if limit is None else limit
    if reuse:
        view = _read_file_reused(store, key, cap)
        if view:
            return view
    try:
        return read_bounded(store, key, cap)
    except KeyError:
        if allow_missing:
            _refuse_damage(store, key)
            return None
        raise MissingChunkError(
            f"chunk {key} is missing (pass --allow-missing if the store was written without "
            "empty chunks)"
        ) from None
    except IsADirectoryError:
        raise BadDataError(f"chunk {key} is a directory, not a chunk file") from None
    except (BadDataError, StoreIOError):
        raise
    except OSError as exc:
        raise StoreIOError(f"chunk {key}: {exc.strerror or exc}") from None


_RAW = threading.local()


def _read_file_reused(store: Mapping[str, bytes], key: str, limit: int) -> memoryview | None:
    """A local chunk file's bytes in this thread's reusable buffer, or None to take
    :func:`read_raw`'s path (not a plain ``DirectoryStore``, or no file there).

    ``f.read()`` allocates a new multi-megabyte bytes object per chunk; glibc serves each
    with a fresh ``mmap`` whenever the dynamic mmap threshold is off, as in dask workers
    (the nanny sets ``MALLOC_TRIM_THRESHOLD_``), and every page of it then faults. Reading
    into one grown buffer costs one copy from the page cache and nothing else. The view is
    overwritten by this thread's next read, so it is decoded at once. A FIFO, device or
    socket, or a file larger than ``limit``, is refused before a byte is read.
    """
    if type(store) is not zarr.storage.DirectoryStore:  # a subclass may read otherwise
        return None
    path = directory_path(store, key)
    assert path is not None
    try:
        fd = open_regular(path, key, "chunk")
    except (KeyError, PermissionError):
        return None  # read_raw names what is wrong, as for any other store
    except BadDataError as exc:
        if "is a directory" in str(exc):
            return None
        raise
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise too_large("chunk", key, limit)
        buf: bytearray | None = getattr(_RAW, "buf", None)
        if buf is None or len(buf) < size + 1:
            buf = _RAW.buf = bytearray(max(size + 1, 2 * len(buf or b"")))
        view = memoryview(buf)
        filled = 0
        with open(fd, "rb", buffering=0, closefd=False) as f:
            while filled <= size:  # one byte more than stat says: a file that grew
                n = f.readinto(view[filled:])
                if not n:
                    break
                filled += n
    except OSError as exc:
        raise StoreIOError(f"chunk {key}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if filled > size:  # it grew while being read: read it the ordinary way
        return None
    return view[:filled]


def _refuse_damage(store: Mapping[str, bytes], key: str) -> None:
    """A directory or a dangling symlink at a chunk path is damage, never an absent chunk.

    zarr's ``DirectoryStore`` reports both as missing keys; a writer that leaves out
    fill-value chunks leaves no file at all, so these are refused even when absent chunks
    are allowed. (A format-3 view reads through its ``base`` store.)
    """
    base = getattr(store, "base", store)
    if not isinstance(base, zarr.storage.DirectoryStore):
        return
    path = os.path.join(base.path, *key.split("/"))
    if os.path.isdir(path):
        raise BadDataError(f"chunk {key} is a directory, not a chunk file")
    if os.path.islink(path):
        raise BadDataError(f"chunk {key} is a dangling symlink")


def read_stored(
    store: Mapping[str, bytes],
    layout: ChunkLayout,
    index: Sequence[int],
    *,
    allow_missing: bool = False,
    reuse: bool = False,
) -> bytes | memoryview | None:
    """The stored bytes of the chunk at grid ``index`` (None: absent, and allowed).

    A chunk is its key's bytes (:func:`read_raw`); an inner chunk of a sharded array is
    read from its shard (:func:`_read_inner`).
    """
    if layout.shard is None:
        key = layout.key(index)
        return read_raw(store, key, allow_missing=allow_missing, reuse=reuse, limit=layout.raw_cap)
    return _read_inner(store, layout, index, allow_missing)


#: Shard indexes kept after a ranged read of a local shard (decoded and checked), by file
#: identity: the next inner chunk of the same shard needs no second read of its index.
_INDEXES: OrderedDict[tuple[Any, ...], ShardIndex] = OrderedDict()
_INDEX_LOCK = threading.Lock()
#: The most bytes of decoded shard indexes kept (16 bytes per inner chunk).
INDEX_CACHE_BYTES = 64 * 2**20


def _cached_index(identity: tuple[Any, ...], load: Callable[[], ShardIndex]) -> ShardIndex:
    with _INDEX_LOCK:
        index = _INDEXES.get(identity)
        if index is not None:
            _INDEXES.move_to_end(identity)
            return index
    index = load()
    with _INDEX_LOCK:
        _INDEXES[identity] = index
        total = sum(i.table.nbytes for i in _INDEXES.values())
        while total > INDEX_CACHE_BYTES and len(_INDEXES) > 1:
            _, dropped = _INDEXES.popitem(last=False)
            total -= dropped.table.nbytes
    return index


def _pread(fd: int, size: int, offset: int, key: str) -> bytes:
    """``size`` bytes at ``offset`` of an open file; a short read means the file shrank."""
    parts, done = [], 0
    while done < size:
        block = os.pread(fd, size - done, offset + done)
        if not block:
            raise BadDataError(f"{key}: ends before byte {offset + size} (truncated)")
        parts.append(block)
        done += len(block)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _read_inner(
    store: Mapping[str, bytes], layout: ChunkLayout, index: Sequence[int], allow_missing: bool
) -> bytes | None:
    """An inner chunk's bytes, from its shard.

    A shard in a local directory takes one ranged read of its index (checked, and kept:
    :func:`_cached_index`) and one ranged read per inner chunk, so a reader holds one inner
    chunk at a time. Any other store (a ``.zip``, a URL, memory) is read one whole shard
    at a time, kept by the reading thread while it reads that shard's inner chunks: a
    request per inner chunk would cost a round trip each. The shard may hold at most its
    index and every inner chunk at its largest (the layout's ``raw_cap``).
    """
    spec = layout.shard
    assert spec is not None
    position, inner = spec.locate(index)
    key = layout.shard_key(position)
    name = inner_key(key, inner)
    cap = spec.index_nbytes + spec.n_chunks * layout.raw_cap
    base = getattr(store, "base", store) if hasattr(store, "shard_spec") else store
    path = directory_path(base, key)
    try:
        if path is not None:
            data = _read_inner_file(path, key, name, inner, spec, cap, layout.raw_cap)
            if data is None:
                _not_in_shard(name, allow_missing)
            return data
        shard, table = _whole_shard(store, key, spec, cap)
    except KeyError:
        if allow_missing:
            _refuse_damage(store, key)
            return None
        raise MissingChunkError(
            f"shard {key} is missing (pass --allow-missing if the store was written without "
            "empty chunks)"
        ) from None
    found = table.chunk_range(inner)
    if found is None:
        _not_in_shard(name, allow_missing)
        return None
    start, stop = found
    if stop - start > layout.raw_cap:
        raise too_large("chunk", name, layout.raw_cap)
    return bytes(memoryview(shard)[start:stop])


def _not_in_shard(name: str, allow_missing: bool) -> None:
    """An inner chunk the shard's index says was not written: refused unless allowed."""
    if allow_missing:
        return
    raise MissingChunkError(
        f"chunk {name} is not stored in its shard (pass --allow-missing if the store was "
        "written without empty chunks)"
    )


def _read_inner_file(
    path: str,
    key: str,
    name: str,
    inner: tuple[int, ...],
    spec: ShardSpec,
    cap: int,
    chunk_cap: int,
) -> bytes | None:
    fd = open_regular(path, key, "shard")  # KeyError when absent
    try:
        stat = os.fstat(fd)
        size = stat.st_size
        if size > cap:
            raise too_large("shard", key, cap)
        start, stop = spec.index_range(size)

        def load() -> ShardIndex:
            raw = _pread(fd, stop - start, start, f"shard {key}") if start >= 0 else b""
            return decode_index(raw, spec, key, size)

        identity = (path, stat.st_dev, stat.st_ino, stat.st_mtime_ns, size)
        found = _cached_index(identity, load).chunk_range(inner)
        if found is None:
            return None  # not written: the caller's missing-chunk policy applies
        lo, hi = found
        if hi - lo > chunk_cap:
            raise too_large("chunk", name, chunk_cap)
        return _pread(fd, hi - lo, lo, f"chunk {name}")
    except OSError as exc:
        raise StoreIOError(f"shard {key}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


_SHARD = threading.local()


def _whole_shard(
    store: Mapping[str, bytes], key: str, spec: ShardSpec, cap: int
) -> tuple[bytes | memoryview, ShardIndex]:
    """The shard at ``key`` read whole, with its checked index; this thread keeps the last
    one (and the store it came from, so that another store's shard of the same key is
    never mistaken for it)."""
    kept = getattr(_SHARD, "kept", None)
    if kept is not None and kept[0] is store and kept[1] == key:
        return kept[2], kept[3]
    _SHARD.kept = None
    try:
        shard = read_bounded(store, key, cap, what="shard")
    except IsADirectoryError:
        raise BadDataError(f"shard {key} is a directory, not a shard file") from None
    except OSError as exc:
        raise StoreIOError(f"shard {key}: {exc.strerror or exc}") from None
    table = read_index(shard, spec, key)
    _SHARD.kept = (store, key, shard, table)
    return shard, table


def forget_shards() -> None:
    """Drop the shard this thread keeps (when its reads are done: a task's end)."""
    _SHARD.kept = None


def read_chunk(
    store: Mapping[str, bytes],
    layout: ChunkLayout,
    index: Sequence[int],
    *,
    allow_missing: bool = False,
    buffer: Callable[[], np.ndarray] | None = None,
) -> np.ndarray:
    """Read and decode the chunk at grid ``index``; the fill value only when allowed.

    With ``buffer``, a layout that :attr:`~ChunkLayout.decodes_into` decodes the chunk
    into ``buffer()`` (see :func:`decode_into` for what it may be) and fills it for an
    absent chunk; the buffer is asked for only then. Other layouts give a new array.
    """
    key = layout.key(index)
    fast = buffer is not None and layout.decodes_into  # decoded at once: reuse a buffer
    raw = read_stored(store, layout, index, allow_missing=allow_missing, reuse=fast)
    if buffer is None or not layout.decodes_into:
        if raw is None:
            return np.full(layout.chunks, layout.missing_value, dtype=layout.dtype)
        return decode_chunk(layout, key, raw)
    return decode_stored(layout, key, raw, buffer())


def decode_stored(
    layout: ChunkLayout, key: str, raw: bytes | memoryview | None, out: np.ndarray
) -> np.ndarray:
    """``out`` holding chunk ``raw`` (:func:`decode_into`), or the fill value for an absent
    chunk (``raw`` None, allowed)."""
    if raw is None:
        out.fill(layout.missing_value)
    else:
        decode_into(layout, key, raw, out)
    return out


def read_checked(
    store: Mapping[str, bytes],
    layout: ChunkLayout,
    index: Sequence[int],
    *,
    allow_missing: bool = False,
) -> bytes | memoryview | None:
    """The stored bytes of a chunk that :attr:`~ChunkLayout.decodes_into`, its Blosc header
    checked against the chunk size, for a caller that decodes them itself (None: absent,
    and allowed). A local chunk comes back as a view of this thread's reusable read buffer
    (see :func:`read_raw`): valid until this thread reads the next chunk."""
    assert layout.decodes_into, f"{layout.path}: not a plain Blosc array"
    raw = read_stored(store, layout, index, allow_missing=allow_missing, reuse=True)
    if raw is not None:
        check_blosc_header(raw, layout.chunk_nbytes, f"chunk {layout.key(index)}")
    return raw


#: Blosc header flags: stored as is (no compression), bit shuffle; compressor code 1 (LZ4).
_BLOSC_MEMCPYED, _BLOSC_BITSHUFFLE, _BLOSC_LZ4 = 0x02, 0x04, 1
#: Largest Blosc block decoded a block at a time (larger ones gain nothing from the cache).
BLOCKWISE_MAX = 4 * 2**20


def blockwise_blosc(raw: bytes | memoryview) -> int | None:
    """The block size of a checked Blosc chunk (:func:`check_blosc_header`) that can be
    decoded a block at a time (format 1 or 2, one-byte items, LZ4 blocks of at most
    :data:`BLOCKWISE_MAX` bytes or stored as is (then 0), no bit shuffle: a byte shuffle
    of one-byte items changes nothing); None for any other.

    >>> import numcodecs
    >>> codec = numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE, blocksize=2**16)
    >>> blockwise_blosc(codec.encode(np.arange(2**18, dtype="i1")))
    65536
    >>> blockwise_blosc(numcodecs.Blosc("zstd").encode(np.arange(2**18, dtype="i1"))) is None
    True
    """
    version, _vlz, flags, typesize, nbytes, blocksize, cbytes = _BLOSC_HEADER.unpack_from(raw)
    if version not in (1, 2) or typesize != 1 or flags & _BLOSC_BITSHUFFLE:
        return None
    if flags & _BLOSC_MEMCPYED:
        return 0 if cbytes == nbytes + _BLOSC_HEADER.size else None
    if flags >> 5 != _BLOSC_LZ4 or not 0 < blocksize <= min(nbytes, BLOCKWISE_MAX):
        return None  # what Blosc refuses is left to it
    return int(blocksize)


def row_blocks(
    store: Mapping[str, bytes], layout: ChunkLayout, *, allow_missing: bool = False
) -> Iterator[np.ndarray]:
    """The array one row of chunks at a time, each cut to the array's bounds.

    Block ``i`` is items ``i * chunks[0]`` up to the next chunk boundary along the first
    axis, the whole of every other axis; a 0-d array is one block.
    """
    if not layout.shape:
        yield read_chunk(store, layout, (), allow_missing=allow_missing)
        return
    grid, rows = layout.grid(), layout.chunks[0]
    for i in range(grid[0]):
        block = np.empty(
            (min(rows, layout.shape[0] - i * rows), *layout.shape[1:]), dtype=layout.dtype
        )
        for rest in product(*(range(n) for n in grid[1:])):
            chunk = read_chunk(store, layout, (i, *rest), allow_missing=allow_missing)
            spans = [(0, block.shape[0])] + [
                (k * c, min((k + 1) * c, n))
                for k, c, n in zip(rest, layout.chunks[1:], layout.shape[1:], strict=True)
            ]
            block[tuple(slice(lo, hi) for lo, hi in spans)] = chunk[
                tuple(slice(0, hi - lo) for lo, hi in spans)
            ]
        yield block


def read_whole(
    store: Mapping[str, bytes], layout: ChunkLayout, *, allow_missing: bool = False
) -> np.ndarray:
    """Read a whole small array (sample names, contig ids, a scalar) through these checks.

    zarr's own reads trust every header, so zarrgeno never lets zarr decode array data.
    """
    if not layout.shape:
        return next(row_blocks(store, layout, allow_missing=allow_missing))
    out = np.empty(layout.shape, dtype=layout.dtype)
    start = 0
    for block in row_blocks(store, layout, allow_missing=allow_missing):
        out[start : start + len(block)] = block
        start += len(block)
    return out


def read_rows(store: Mapping[str, bytes], layout: ChunkLayout, start: int, stop: int) -> np.ndarray:
    """Items ``start:stop`` of a 1-D array (positions), through the checked chunk path.

    Decodes only the chunks that cover the range; a missing chunk is an error.
    """
    (size,) = layout.chunks
    start, stop = max(0, start), min(stop, layout.shape[0])
    out = np.empty(max(0, stop - start), dtype=layout.dtype)
    for k in range(start // size, -(-stop // size)) if stop > start else ():
        lo, hi = max(start, k * size), min(stop, (k + 1) * size)
        chunk = read_chunk(store, layout, (k,))
        out[lo - start : hi - start] = chunk[lo - k * size : hi - k * size]
    return out


def take_rows(store: Mapping[str, bytes], layout: ChunkLayout, rows: np.ndarray) -> np.ndarray:
    """Items at ``rows`` (sorted or not) of a 1-D array, decoding each chunk they touch once."""
    (size,) = layout.chunks
    rows = np.asarray(rows, dtype=np.int64)
    out = np.empty(rows.shape, dtype=layout.dtype)
    for k in np.unique(rows // size):
        hit = rows // size == k
        out[hit] = read_chunk(store, layout, (int(k),))[rows[hit] - int(k) * size]
    return out
