"""Checked chunk reads: a corruption matrix of codecs x damage, and region assembly."""

from __future__ import annotations

import os
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr

from conftest import random_genotypes
from zarrgeno.blockcopy import read_region
from zarrgeno.chunkio import ChunkLayout, read_chunk
from zarrgeno.errors import BadDataError

CODECS = {
    "blosc-lz4": numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE),
    "blosc-zstd": numcodecs.Blosc("zstd", 3, numcodecs.Blosc.BITSHUFFLE),
    "zstd": numcodecs.Zstd(3),
    "lz4": numcodecs.LZ4(),
    "zlib": numcodecs.Zlib(5),
    "gzip": numcodecs.GZip(5),
    "bz2": numcodecs.BZ2(5),
    "lzma": numcodecs.LZMA(),
}


def _array(tmp_path: Path, codec: numcodecs.abc.Codec, filters=None) -> zarr.Array:
    gt = random_genotypes(400, 9, seed=1)
    store = zarr.DirectoryStore(str(tmp_path / "s.zarr"))
    return zarr.array(
        gt,
        chunks=(100, 9, 2),
        compressor=codec,
        filters=filters,
        store=store,
        fill_value=-1,
        path="2L/calldata/GT",
    )


def _damage(kind: str, raw: bytes, rng: np.random.Generator) -> bytes:
    if kind == "empty":
        return b""
    if kind == "truncated":
        return raw[: len(raw) // 2]
    if kind == "zeros":
        return bytes(len(raw))
    if kind == "random":
        return rng.integers(0, 256, len(raw), dtype=np.uint8).tobytes()
    if kind == "crafted header":
        # 16 bytes whose Blosc header claims a large chunk: numcodecs alone reads past the end.
        return (
            bytes([2, 1, 1, 1])
            + (2**20).to_bytes(4, "little")
            + (2**16).to_bytes(4, "little")
            + ((2**20).to_bytes(4, "little"))
        )
    raise AssertionError(kind)


@pytest.mark.hostile
@pytest.mark.parametrize("kind", ["empty", "truncated", "zeros", "random", "crafted header"])
@pytest.mark.parametrize("name", sorted(CODECS))
def test_damaged_chunk_is_an_error_naming_the_chunk(tmp_path: Path, name: str, kind: str) -> None:
    arr = _array(tmp_path, CODECS[name])
    layout = ChunkLayout.of(arr)
    key = layout.key((2, 0, 0))
    path = tmp_path / "s.zarr" / key
    expected = arr[200:300]
    path.write_bytes(_damage(kind, path.read_bytes(), np.random.default_rng(0)))
    store = zarr.DirectoryStore(str(tmp_path / "s.zarr"))
    try:
        got = read_chunk(store, layout, (2, 0, 0))
    except BadDataError as exc:
        assert key in str(exc)
    else:  # only acceptable if the damage happened to decode to the true data
        np.testing.assert_array_equal(got, expected)


@pytest.mark.hostile
@pytest.mark.parametrize("name", sorted(CODECS))
def test_checksum_filter_catches_every_bit_flip(tmp_path: Path, name: str) -> None:
    arr = _array(tmp_path, CODECS[name], filters=[numcodecs.CRC32()])
    layout = ChunkLayout.of(arr)
    key = layout.key((1, 0, 0))
    store = zarr.DirectoryStore(str(tmp_path / "s.zarr"))
    raw = bytearray(store[key])
    np.testing.assert_array_equal(read_chunk(store, layout, (1, 0, 0)), arr[100:200])
    silent = 0
    for bit in np.random.default_rng(2).choice(
        len(raw) * 8, size=min(48, len(raw) * 8), replace=False
    ):
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 1 << (bit % 8)
        try:
            got = read_chunk({key: bytes(flipped)}, layout, (1, 0, 0))
        except BadDataError:
            continue
        silent += not np.array_equal(got, arr[100:200])
    assert silent == 0


@pytest.mark.hostile
def test_missing_dangling_and_directory_chunks(tmp_path: Path) -> None:
    arr = _array(tmp_path, CODECS["blosc-lz4"])
    layout = ChunkLayout.of(arr)
    root = tmp_path / "s.zarr"
    store = zarr.DirectoryStore(str(root))
    (root / layout.key((0, 0, 0))).unlink()
    with pytest.raises(BadDataError, match=r"chunk 2L/calldata/GT/0\.0\.0 is missing"):
        read_chunk(store, layout, (0, 0, 0))
    filled = read_chunk(store, layout, (0, 0, 0), allow_missing=True)
    assert (filled == -1).all()
    dangling = root / layout.key((1, 0, 0))
    dangling.unlink()
    os.symlink(tmp_path / "nowhere", dangling)
    with pytest.raises(BadDataError, match="missing"):
        read_chunk(store, layout, (1, 0, 0))
    directory = root / layout.key((2, 0, 0))
    directory.unlink()
    directory.mkdir()
    with pytest.raises(BadDataError, match=r"2L/calldata/GT/2\.0\.0"):
        read_chunk(store, layout, (2, 0, 0))


def test_read_region_assembles_split_samples() -> None:
    gt = random_genotypes(250, 7, seed=3)
    arr = zarr.array(gt, chunks=(100, 5, 2), store=zarr.MemoryStore(), path="gt")
    layout = ChunkLayout.of(arr)
    for start, stop in [(0, 100), (100, 130), (230, 250), (50, 150)]:
        out = np.empty((stop - start, 7, 2), dtype="i1")
        read_region(arr.store, layout, (slice(start, stop), slice(0, 7), slice(0, 2)), out)
        np.testing.assert_array_equal(out, gt[start:stop])


def test_nested_separator_keys() -> None:
    store = zarr.MemoryStore()
    arr = zarr.open_array(
        store,
        mode="w",
        shape=(20, 3, 2),
        chunks=(10, 3, 2),
        dtype="i1",
        dimension_separator="/",
        path="gt",
    )
    arr[:] = 1
    layout = ChunkLayout.of(arr)
    assert layout.key((1, 0, 0)) == "gt/1/0/0"
    assert (read_chunk(store, layout, (1, 0, 0)) == 1).all()
