"""Checked chunk reads: a corruption matrix of codecs x damage, and region assembly."""

from __future__ import annotations

import os
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr

from conftest import random_genotypes
from zarrgeno.errors import BadDataError
from zarrgeno.io.chunks import ChunkLayout, decode_into, read_chunk, row_blocks
from zarrgeno.rewrite.blockcopy import read_region

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


# Object arrays: vlen chunks are bounds-checked before numcodecs decodes them.

STRINGS = np.array(["S1", "", "long sample name ü", "x" * 300, "rs1", "A"], dtype=object)
OBJECT_CODECS = {
    "vlen-utf8": (numcodecs.VLenUTF8(), STRINGS),
    "vlen-bytes": (numcodecs.VLenBytes(), np.array([s.encode() for s in STRINGS], dtype=object)),
    "vlen-array": (
        numcodecs.VLenArray("<i4"),
        np.array([np.arange(n, dtype="<i4") for n in (0, 1, 2, 5, 3, 1)], dtype=object),
    ),
}


def _object_array(codec_name: str, compressor=None, filters=()) -> zarr.Array:
    codec, values = OBJECT_CODECS[codec_name]
    arr = zarr.create(
        shape=values.shape,
        chunks=(3,),
        dtype=object,
        object_codec=codec,
        compressor=compressor,
        filters=list(filters) or None,
        store=zarr.MemoryStore(),
        path="2L/samples",
    )
    arr[:] = values
    return arr


@pytest.mark.parametrize("compressor", [None, CODECS["blosc-lz4"], CODECS["zstd"]])
@pytest.mark.parametrize("codec_name", sorted(OBJECT_CODECS))
def test_object_chunks_decode_as_zarr_reads_them(codec_name: str, compressor) -> None:
    arr = _object_array(codec_name, compressor, filters=[numcodecs.CRC32()])
    layout = ChunkLayout.of(arr)
    assert [f.codec_id for f in layout.filters] == [codec_name, "crc32"]
    for i in range(2):
        got = read_chunk(arr.store, layout, (i,))
        assert got.dtype == object and got.shape == (3,)
        for a, b in zip(got, arr[3 * i : 3 * i + 3], strict=True):
            np.testing.assert_array_equal(a, b)


def _vlen(count: int, *items: bytes, lengths: list[int] | None = None) -> bytes:
    """A vlen chunk: an item count, then (length, bytes) per item; ``lengths`` may lie."""
    sizes = lengths if lengths is not None else [len(b) for b in items]
    body = b"".join(s.to_bytes(4, "little") + b for s, b in zip(sizes, items, strict=True))
    return count.to_bytes(4, "little") + body


#: Crafted vlen chunks of a 3-item chunk, and the start of the error each must give.
CRAFTED_VLEN = {
    # numcodecs allocates the header's count first: 2**28 objects is 2 GB.
    "huge count": (_vlen(2**28, b"a", b"b", b"c"), "vlen header says 268435456 items"),
    "count too small": (_vlen(2, b"a", b"b"), "vlen header says 2 items, the chunk holds 3"),
    "count too large": (_vlen(4, b"a", b"b", b"c"), "vlen header says 4 items"),
    "length past the end": (
        _vlen(3, b"a", b"b", b"c", lengths=[1, 1, 50]),
        "vlen item 2 has length 50, past the end",
    ),
    "negative length": (
        _vlen(3, b"a", b"b", b"c", lengths=[1, 2**32 - 1, 1]),
        "vlen item 1 has a negative length",
    ),
    "huge length": (
        _vlen(3, b"a", b"b", b"c", lengths=[2**31 - 1, 1, 1]),
        "vlen item 0 has length 2147483647",
    ),
    "truncated item header": (_vlen(3, b"a", b"b") + b"\x01\x00", "vlen item 2 of 3 is past"),
    "trailing bytes": (_vlen(3, b"a", b"b", b"c") + b"junk", "4 bytes after the last vlen item"),
    "shorter than header": (b"\x03\x00", "vlen chunk of 2 bytes is shorter than its header"),
    "empty": (b"", "vlen chunk of 0 bytes"),
}


@pytest.mark.hostile
@pytest.mark.parametrize("compressor", [None, CODECS["blosc-lz4"], CODECS["zlib"]])
@pytest.mark.parametrize("case", sorted(CRAFTED_VLEN))
def test_crafted_vlen_chunk_is_named_before_numcodecs_sees_it(case: str, compressor) -> None:
    arr = _object_array("vlen-utf8", compressor)
    layout = ChunkLayout.of(arr)
    key = layout.key((1,))
    crafted, message = CRAFTED_VLEN[case]
    raw = compressor.encode(crafted) if compressor is not None else crafted
    with pytest.raises(BadDataError) as info:
        read_chunk({key: raw}, layout, (1,))
    # Blosc cannot decode its own frame of zero bytes: refused, by Blosc, before vlen.
    expected = f"chunk {key}: " if case == "empty" and compressor else f"chunk {key}: {message}"
    assert str(info.value).startswith(expected), info.value
    assert "\n" not in str(info.value)


@pytest.mark.hostile
def test_vlen_array_item_lengths_must_be_whole_items() -> None:
    arr = _object_array("vlen-array")
    layout = ChunkLayout.of(arr)
    key = layout.key((0,))
    crafted = _vlen(3, b"\x01\x00\x00\x00", b"\x01\x00\x00", b"")
    with pytest.raises(BadDataError, match="vlen item 1 of 3 bytes is not a whole number"):
        read_chunk({key: crafted}, layout, (0,))


@pytest.mark.hostile
def test_object_chunk_decompression_bomb_is_capped() -> None:
    arr = _object_array("vlen-utf8", CODECS["zlib"])
    layout = ChunkLayout.of(arr)
    key = layout.key((0,))
    bomb = numcodecs.Zlib(9).encode(_vlen(3, b"a", b"b", b"x" * 50_000_000))
    assert len(bomb) < 100_000
    with pytest.raises(BadDataError, match=f"chunk {key}: zlib chunk decodes to more than"):
        read_chunk({key: bomb}, layout, (0,))


@pytest.mark.hostile
def test_invalid_utf8_in_a_vlen_utf8_chunk_is_bad_data() -> None:
    arr = _object_array("vlen-utf8")
    layout = ChunkLayout.of(arr)
    key = layout.key((0,))
    with pytest.raises(BadDataError, match=f"chunk {key}: cannot decode"):
        read_chunk({key: _vlen(3, b"a", b"\xff\xfe", b"c")}, layout, (0,))


@pytest.mark.hostile
def test_crafted_sample_names_chunk_fails_the_command_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from conftest import build_store
    from zarrgeno.cli import app

    path = tmp_path / "s.zarr"
    build_store(str(path))
    root = zarr.open_group(str(path), mode="a")
    del root["samples"]
    root.create_dataset(
        "samples",
        data=np.array([f"S{i}" for i in range(7)], dtype=object),
        object_codec=numcodecs.VLenUTF8(),
        compressor=None,
    )
    (path / "samples" / "0").write_bytes(_vlen(2**28, b"S0"))
    runner = CliRunner()
    assert runner.invoke(app, ["info", str(path)]).exit_code == 0  # no chunk is read
    for args in (["stats", str(path)], ["verify", str(path)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 4, result.output
        assert "chunk samples/0: vlen header says 268435456 items" in result.stderr
        assert "Traceback" not in result.output


def test_read_whole_reads_scalars_and_edge_chunks_as_zarr_does() -> None:
    from zarrgeno.io.chunks import read_whole

    store = zarr.MemoryStore()
    scalar = zarr.create(shape=(), dtype=object, object_codec=numcodecs.VLenUTF8(), store=store)
    scalar[...] = "only value"
    assert ChunkLayout.of(scalar).key(()) == "0"  # zarr's key for the one chunk of a 0-d array
    assert read_whole(store, ChunkLayout.of(scalar))[()] == "only value"
    names = _object_array("vlen-utf8")  # 6 strings in chunks of 3
    np.testing.assert_array_equal(read_whole(names.store, ChunkLayout.of(names)), STRINGS)
    grid = zarr.array(np.arange(35).reshape(7, 5), chunks=(3, 2), store=zarr.MemoryStore())
    np.testing.assert_array_equal(read_whole(grid.store, ChunkLayout.of(grid)), grid[...])


def test_decode_into_fills_the_given_buffer_whole_or_as_a_prefix() -> None:
    gt = random_genotypes(250, 7, seed=4)
    arr = zarr.array(gt, chunks=(100, 7, 2), store=zarr.MemoryStore(), path="gt")
    layout = ChunkLayout.of(arr)
    assert layout.decodes_into
    whole = np.empty(layout.chunks, dtype="i1")
    got = read_chunk(arr.store, layout, (1, 0, 0), buffer=lambda: whole)
    assert got is whole
    np.testing.assert_array_equal(whole, gt[100:200])
    edge = np.empty((50, 7, 2), dtype="i1")  # the part of the edge chunk inside the array
    decode_into(layout, "gt/2.0.0", arr.store["gt/2.0.0"], edge)
    np.testing.assert_array_equal(edge, gt[200:250])
    with pytest.raises(ValueError, match="cannot decode into a int16 buffer"):
        decode_into(layout, "gt/0.0.0", arr.store["gt/0.0.0"], whole.view("i2"))


@pytest.mark.hostile
def test_decode_into_checks_the_header_and_names_the_chunk() -> None:
    arr = zarr.array(random_genotypes(200, 7, seed=5), chunks=(100, 7, 2), store=zarr.MemoryStore())
    layout = ChunkLayout.of(arr)
    out = np.empty(layout.chunks, dtype="i1")
    raw = arr.store["1.0.0"]
    with pytest.raises(BadDataError, match=r"chunk 1\.0\.0: Blosc header says .* compressed"):
        decode_into(layout, "1.0.0", raw[:-7], out)
    corrupt = raw[:16] + bytes(len(raw) - 16)  # a sound header over zeroed blocks
    with pytest.raises(BadDataError, match=r"chunk 1\.0\.0: cannot decode \(\w+"):
        read_chunk({"1.0.0": corrupt}, layout, (1, 0, 0), buffer=lambda: out)


def test_read_chunk_buffer_is_only_for_plain_blosc_and_fills_absent_chunks() -> None:
    gt = random_genotypes(200, 7, seed=6)
    plain = zarr.array(gt, chunks=(100, 7, 2), store=zarr.MemoryStore(), fill_value=None)
    layout = ChunkLayout.of(plain)
    out = np.full(layout.chunks, 9, dtype="i1")
    del plain.store["0.0.0"]
    got = read_chunk(plain.store, layout, (0, 0, 0), allow_missing=True, buffer=lambda: out)
    assert got is out and (out == 0).all()  # a null fill value reads as 0
    zstd = zarr.array(gt, chunks=(100, 7, 2), store=zarr.MemoryStore(), compressor=CODECS["zstd"])
    asked: list[int] = []
    got = read_chunk(zstd.store, ChunkLayout.of(zstd), (1, 0, 0), buffer=lambda: asked.append(1))
    assert not asked and not ChunkLayout.of(zstd).decodes_into
    np.testing.assert_array_equal(got, gt[100:200])


def test_row_blocks_cut_each_chunk_row_to_the_array_and_name_missing_chunks() -> None:
    values = np.arange(7 * 6, dtype="i8").reshape(7, 6)
    arr = zarr.array(values, chunks=(3, 4), store=zarr.MemoryStore(), fill_value=-1)
    layout = ChunkLayout.of(arr)
    blocks = list(row_blocks(arr.store, layout))
    assert [b.shape for b in blocks] == [(3, 6), (3, 6), (1, 6)]
    np.testing.assert_array_equal(np.concatenate(blocks), values)
    del arr.store["1.1"]
    with pytest.raises(BadDataError, match=r"chunk 1\.1 is missing"):
        list(row_blocks(arr.store, layout))
    filled = np.concatenate(list(row_blocks(arr.store, layout, allow_missing=True)))
    assert (filled[3:6, 4:] == -1).all()
    np.testing.assert_array_equal(filled[:, :4], values[:, :4])
