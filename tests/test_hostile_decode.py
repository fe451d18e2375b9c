"""Decompression bombs: every compressor is decoded with a cap before memory is taken.

Each test runs the command as a user would (a separate process, peak RSS of its tree):
a chunk of a few KB that decodes to hundreds of MB or more must be refused with exit 4
naming the chunk, within the memory budget.
"""

from __future__ import annotations

import bz2
import lzma
import struct
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr
from hostile import Tree, assert_refused, run_cli

from zarrgeno.errors import BadDataError
from zarrgeno.io.chunks import ChunkLayout, decode_chunk
from zarrgeno.io.decompress import ZSTD_BLOCK_MAX, CorruptError, zstd_bound

#: What a bomb decodes to: far above the budget the commands run with below.
BOMB_BYTES = 1200 * 2**20
BUDGET = "200MB"
#: The budget plus the interpreter's baseline (numpy, zarr, numcodecs, dask imported).
MAX_RSS_MB = 300


def zstd_rle_frame(size: int, *, content_size: bool = True) -> bytes:
    """A Zstd frame of RLE blocks (4 bytes each) that decodes to ``size`` zero bytes.

    With ``content_size`` the frame header states ``size`` (as numcodecs and the zstd
    library write it); without, the frame has a window descriptor and no size.
    """
    # Single segment with an 8-byte content size, or a 2 MiB window and no size.
    header = bytes([0xE0]) + struct.pack("<Q", size) if content_size else bytes([0x00, 0x58])
    blocks = []
    left = size
    while left:
        n = min(left, ZSTD_BLOCK_MAX)
        left -= n
        blocks.append(((1 if not left else 0) | (1 << 1) | (n << 3)).to_bytes(3, "little") + b"\0")
    return struct.pack("<I", 0xFD2FB528) + header + b"".join(blocks)


def _repeated(stream: bytes, times: int) -> bytes:
    """Concatenated streams: ``bz2.decompress`` and ``lzma.decompress`` decode them all."""
    return stream * times


def bz2_bomb() -> bytes:
    return _repeated(bz2.compress(bytes(100 * 2**20), 9), BOMB_BYTES // (100 * 2**20))


def lzma_bomb() -> bytes:
    return _repeated(lzma.compress(bytes(100 * 2**20), preset=1), BOMB_BYTES // (100 * 2**20))


BOMBS = {
    "zstd": (numcodecs.Zstd(level=3), lambda: zstd_rle_frame(BOMB_BYTES)),
    "bz2": (numcodecs.BZ2(level=9), bz2_bomb),
    "lzma": (numcodecs.LZMA(), lzma_bomb),
}


def _store(tmp_path: Path, codec: numcodecs.abc.Codec) -> Path:
    path = tmp_path / "bombed.zarr"
    root = zarr.open_group(str(path), mode="w")
    gt = np.zeros((40_000, 7, 2), dtype="i1")
    root.create_dataset("2L/calldata/GT", data=gt, chunks=(10_000, 7, 2), compressor=codec)
    return path


@pytest.mark.hostile
@pytest.mark.parametrize("name", sorted(BOMBS))
def test_a_decompression_bomb_is_refused_within_the_budget(tmp_path: Path, name: str) -> None:
    codec, make = BOMBS[name]
    path = _store(tmp_path, codec)
    bomb = make()
    assert len(bomb) < 200_000  # a few KB that would decode to 1.2 GiB
    (path / "2L" / "calldata" / "GT" / "1.0.0").write_bytes(bomb)
    tree = Tree(path)
    result = run_cli("verify", path, "--max-mem", BUDGET, "--json")
    # verify reports bad chunks in its output and exits 4; stats stops at the first one.
    assert result.code == 4, result
    assert "2L/calldata/GT/1.0.0" in result.out + result.err, result
    assert result.peak_rss_mb <= MAX_RSS_MB, str(result)
    assert "Traceback" not in result.err, result
    stats = run_cli("stats", path)
    assert_refused(stats, 4, says=("chunk 2L/calldata/GT/1.0.0", name), max_rss_mb=MAX_RSS_MB)
    tree.assert_unchanged()


def _layout(codec: numcodecs.abc.Codec) -> ChunkLayout:
    return ChunkLayout("a", (1000,), (1000,), np.dtype("i1"), codec, (), 0)


@pytest.mark.parametrize(
    "codec",
    [numcodecs.Zstd(), numcodecs.BZ2(), numcodecs.LZMA(), numcodecs.LZMA(format=lzma.FORMAT_ALONE)],
    ids=repr,
)
def test_good_chunks_still_decode(codec: numcodecs.abc.Codec) -> None:
    data = np.arange(1000, dtype="i1")
    raw = codec.encode(data)
    assert np.array_equal(decode_chunk(_layout(codec), "a/0", raw), data)


def test_a_raw_lzma_stream_decodes_with_its_filters() -> None:
    codec = numcodecs.LZMA(format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}])
    data = np.arange(1000, dtype="i1")
    assert np.array_equal(decode_chunk(_layout(codec), "a/0", codec.encode(data)), data)


@pytest.mark.hostile
def test_a_zstd_frame_without_a_content_size_is_sized_by_its_blocks() -> None:
    assert zstd_bound(zstd_rle_frame(300_000, content_size=False)) == 300_000
    frame = zstd_rle_frame(BOMB_BYTES, content_size=False)
    with pytest.raises(BadDataError, match="may decode to 1,258,291,200 bytes"):
        decode_chunk(_layout(numcodecs.Zstd()), "a/0", frame)


@pytest.mark.hostile
def test_several_zstd_frames_count_together() -> None:
    one = numcodecs.Zstd().encode(bytes(600))
    assert zstd_bound(one + one) == 1200
    with pytest.raises(BadDataError, match=r"may decode to 1,200 bytes .*, more than 1,000"):
        decode_chunk(_layout(numcodecs.Zstd()), "a/0", one + one)


@pytest.mark.hostile
@pytest.mark.parametrize("cut", [3, 6, 20])
def test_a_truncated_zstd_frame_is_corrupt(cut: int) -> None:
    frame = zstd_rle_frame(300_000)
    with pytest.raises(CorruptError):
        zstd_bound(frame[:cut])
    with pytest.raises(BadDataError, match=r"cannot decode \(zstd: "):
        decode_chunk(_layout(numcodecs.Zstd()), "a/0", frame[:cut])


@pytest.mark.hostile
def test_trailing_garbage_after_a_bz2_stream_is_ignored_as_numcodecs_does() -> None:
    data = np.arange(1000, dtype="i1")
    raw = numcodecs.BZ2().encode(data) + b"not bz2"
    assert np.array_equal(decode_chunk(_layout(numcodecs.BZ2()), "a/0", raw), data)
