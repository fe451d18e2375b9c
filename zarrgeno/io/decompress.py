"""Decompression with an output cap, for the compressors whose chunks do not state their size.

numcodecs decodes Zstd, BZ2 and LZMA chunks whole: a 38 KB Zstd frame that says 1.2 GiB,
or a 914-byte bz2 stream of zeros, takes gigabytes before any size check can run. Here
each is decoded, or sized, without taking more than ``cap`` bytes:

- zlib, gzip, bz2 and lzma stream through Python's decompressor objects with
  ``max_length``; bz2 and lzma follow concatenated streams as ``bz2.decompress`` and
  ``lzma.decompress`` (what numcodecs calls) do, and lzma uses the format and filters that
  numcodecs' LZMA encodes with;
- a Zstd chunk's frames are walked first (:func:`zstd_bound`): a frame's content size, or
  for a frame without one the most its blocks can decode to, must fit ``cap`` before
  numcodecs may decode it.

Every failure is :class:`CapError` (too large) or :class:`CorruptError` (not a valid stream);
the caller names the chunk.
"""

from __future__ import annotations

import bz2
import ctypes
import functools
import lzma
import struct
import zlib
from collections.abc import Callable
from typing import Any

_ZSTD_MAGIC = 0xFD2FB528
_SKIPPABLE = 0x184D2A50  # skippable frames: 0x184D2A50 to 0x184D2A5F
#: A compressed Zstd block decodes to at most this (the format's Block_Maximum_Size).
ZSTD_BLOCK_MAX = 128 * 1024
_FCS_SIZES = (0, 2, 4, 8)
_DICT_SIZES = (0, 1, 2, 4)
_LE32 = struct.Struct("<I")


class CapError(ValueError):
    """The chunk decodes, or may decode, to more bytes than allowed."""


class CorruptError(ValueError):
    """The chunk is not a valid stream of its compressor."""


def _frame_bound(raw: memoryview, pos: int) -> tuple[int, int]:
    """``(most bytes the Zstd frame at pos decodes to, position after it)``."""
    end = len(raw)
    if pos + 5 > end:
        raise CorruptError("truncated zstd frame header")
    fhd = raw[pos + 4]
    pos += 5
    if fhd & 0x08:
        raise CorruptError("reserved bit set in a zstd frame header")
    single = bool(fhd & 0x20)
    window = 0
    if not single:
        if pos >= end:
            raise CorruptError("truncated zstd frame header")
        descriptor = raw[pos]
        pos += 1
        base = 1 << (10 + (descriptor >> 3))
        window = base + (base >> 3) * (descriptor & 7)
    pos += _DICT_SIZES[fhd & 3]
    fcs_size = _FCS_SIZES[fhd >> 6] or (1 if single else 0)
    if pos + fcs_size > end:
        raise CorruptError("truncated zstd frame header")
    content: int | None = None
    if fcs_size:
        content = int.from_bytes(raw[pos : pos + fcs_size], "little")
        content += 256 if fcs_size == 2 else 0
        pos += fcs_size
    block_max = min(window if not single else content or 0, ZSTD_BLOCK_MAX)
    blocks = 0
    while True:
        if pos + 3 > end:
            raise CorruptError("truncated zstd block")
        header = int.from_bytes(raw[pos : pos + 3], "little")
        pos += 3
        kind, size = (header >> 1) & 3, header >> 3
        if kind == 3:
            raise CorruptError("reserved zstd block type")
        if kind == 1:  # RLE: one stored byte, repeated size times
            stored, decoded = 1, size
        else:  # raw: size bytes as is; compressed: size bytes, at most block_max decoded
            stored, decoded = size, size if kind == 0 else block_max
        if pos + stored > end:
            raise CorruptError("truncated zstd block")
        pos += stored
        blocks += decoded
        if header & 1:
            break
    pos += 4 if fhd & 0x04 else 0  # content checksum
    if pos > end:
        raise CorruptError("truncated zstd frame checksum")
    return (blocks if content is None else min(content, blocks)), pos


def zstd_bound(raw: bytes | memoryview) -> int:
    """The most bytes a Zstd chunk (one or more frames) can decode to, read from its headers.

    A frame's content size when it states one (the decoder holds it to that), else what
    its blocks allow: a raw or RLE block states its size, a compressed block decodes to at
    most 128 KiB. Only block headers are read, never the compressed data.

    >>> import numcodecs
    >>> zstd_bound(numcodecs.Zstd().encode(bytes(1000)))
    1000
    """
    view = memoryview(raw).cast("B")
    pos, total = 0, 0
    while pos < len(view):
        if pos + 4 > len(view):
            raise CorruptError("trailing bytes after the last zstd frame")
        (magic,) = _LE32.unpack_from(view, pos)
        if magic & 0xFFFFFFF0 == _SKIPPABLE:
            if pos + 8 > len(view):
                raise CorruptError("truncated skippable zstd frame")
            pos += 8 + _LE32.unpack_from(view, pos + 4)[0]
            continue
        if magic != _ZSTD_MAGIC:
            raise CorruptError("not a zstd frame")
        bound, pos = _frame_bound(view, pos)
        total += bound
    if pos > len(view):
        raise CorruptError("truncated skippable zstd frame")
    return total


def _streams(
    make: Callable[[], Any], raw: bytes | memoryview, cap: int, error: type[Exception]
) -> bytes:
    """Decode concatenated streams (as ``bz2.decompress`` and ``lzma.decompress`` do: data
    after a complete stream that is not a stream is ignored), taking at most ``cap + 1``."""
    out = bytearray()
    data = bytes(raw)
    first = True
    while data:
        stream = make()
        try:
            out += stream.decompress(data, cap + 1 - len(out))
        except error as exc:
            if first:
                raise CorruptError(str(exc)) from None
            break  # trailing garbage after a complete stream
        if len(out) > cap:
            raise CapError(f"decodes to more than {cap:,} bytes")
        if not stream.eof:
            raise CorruptError("the compressed data ended before the end-of-stream marker")
        data, first = stream.unused_data, False
    return bytes(out)


def decode_bz2(raw: bytes | memoryview, cap: int) -> bytes:
    """A bz2 chunk (numcodecs' BZ2), refused past ``cap`` decoded bytes."""
    return _streams(bz2.BZ2Decompressor, raw, cap, OSError)


def decode_lzma(raw: bytes | memoryview, cap: int, config: dict[str, Any]) -> bytes:
    """An LZMA chunk encoded with numcodecs' LZMA ``config`` (its ``format`` and, for raw
    streams, ``filters``), refused past ``cap`` decoded bytes."""
    fmt = config.get("format", lzma.FORMAT_XZ)
    filters = config.get("filters") if fmt == lzma.FORMAT_RAW else None
    return _streams(lambda: lzma.LZMADecompressor(fmt, filters=filters), raw, cap, lzma.LZMAError)


def decode_zlib(raw: bytes | memoryview, cap: int, *, gzip: bool = False) -> bytes:
    """One zlib (or gzip) stream, refused past ``cap`` decoded bytes."""
    stream = zlib.decompressobj(31 if gzip else 15)
    try:
        out = stream.decompress(bytes(raw), cap + 1)
    except zlib.error as exc:
        raise CorruptError(str(exc)) from None
    if len(out) > cap:
        raise CapError(f"decodes to more than {cap:,} bytes")
    if not stream.eof:
        raise CorruptError("the compressed data ended before the end of the stream")
    return out


@functools.cache
def lz4_block_decoder() -> int | None:
    """The address of ``LZ4_decompress_safe`` in numcodecs' Blosc extension (the LZ4 its
    Blosc decodes with), for the compiled kernel that decodes Blosc chunks a block at a
    time; None when that extension does not export it (a numcodecs built against a shared
    Blosc), and then chunks are decoded whole by numcodecs."""
    import numcodecs.blosc

    try:
        function = ctypes.CDLL(numcodecs.blosc.__file__).LZ4_decompress_safe
    except (OSError, AttributeError, TypeError):
        return None
    return ctypes.cast(function, ctypes.c_void_p).value or None
