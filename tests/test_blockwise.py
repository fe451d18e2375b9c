"""Counting a Blosc chunk a few blocks at a time (while in cache) gives the whole-chunk counts.

The compiled kernel decodes a Blosc chunk of int8 calls block by block into a small buffer
and counts the whole rows there (a row split across two blocks is carried over); a chunk it
cannot take that way (another compressor, bit shuffle, wider items) is decoded whole. Both
paths must give identical counts, and a bad chunk must be refused either way.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr
from hostile import assert_refused, run_cli
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from kernelpaths import kernel_path  # noqa: F401  (autouse: both compiled paths)
from test_stats_reference import genotype_arrays

import zarrgeno.stats.reader
from zarrgeno.errors import BadDataError
from zarrgeno.io.chunks import blockwise_blosc, check_blosc_header
from zarrgeno.io.decompress import lz4_block_decoder
from zarrgeno.stats.api import genotype_stats
from zarrgeno.stats.kernels import count_blosc, count_calls

LZ4 = lz4_block_decoder()
pytestmark = pytest.mark.skipif(LZ4 is None, reason="numcodecs' Blosc exports no LZ4 decoder")
GT = "2L/calldata/GT"


def blosc(
    cname: str = "lz4", clevel: int = 5, shuffle: int = 1, blocksize: int = 0
) -> numcodecs.Blosc:
    return numcodecs.Blosc(cname=cname, clevel=clevel, shuffle=shuffle, blocksize=blocksize)


def handmade_blosc(data: bytes, blocksize: int, stored: frozenset[int] = frozenset()) -> bytes:
    """A Blosc chunk (format 2, LZ4, byte shuffle, one-byte items) with blocks of any size,
    as other writers may make them (numcodecs' Blosc makes none under 64 KiB); the blocks
    in ``stored`` are kept as they are, as Blosc keeps a block that does not compress."""
    blocksize = min(blocksize, len(data))  # Blosc refuses a block larger than the chunk
    blocks = [data[k : k + blocksize] for k in range(0, len(data), blocksize)]
    bodies = []
    for k, block in enumerate(blocks):
        body = block if k in stored else numcodecs.LZ4().encode(block)[4:]
        if body == block or len(body) >= len(block):  # Blosc stores what does not shrink
            body = block
        bodies.append(struct.pack("<i", len(body)) + body)
    offsets, at = [], 16 + 4 * len(blocks)
    for body in bodies:
        offsets.append(at)
        at += len(body)
    header = struct.pack("<BBBBIII", 2, 1, 0x21, 1, len(data), blocksize, at)
    return header + struct.pack(f"<{len(offsets)}I", *offsets) + b"".join(bodies)


@settings(max_examples=30, deadline=None)
@given(gt=genotype_arrays(max_variants=400, max_samples=30), data=st.data())
def test_small_blocks_split_rows_and_stored_blocks(gt: np.ndarray, data: st.DataObject) -> None:
    """Blocks far smaller than a row or not a multiple of it, some stored as they are: the
    same counts as numcodecs' decode of the same chunk."""
    n, s, _ = gt.shape
    blocksize = data.draw(st.sampled_from([1, 7, 16, 100, 128, 999, 4096]))
    nblocks = max(1, -(-gt.nbytes // blocksize))
    stored = frozenset(data.draw(st.sets(st.integers(0, nblocks - 1), max_size=5)))
    assume(gt.nbytes > 0)  # numcodecs decodes no empty Blosc chunk
    raw = handmade_blosc(gt.tobytes(), blocksize, stored)
    decoded = np.frombuffer(numcodecs.Blosc().decode(raw), dtype="i1").reshape(gt.shape)
    np.testing.assert_array_equal(decoded, gt)
    block = blockwise_blosc(raw)
    assert block is not None
    rows = data.draw(st.integers(0, n))
    want = count_calls(gt[:rows])
    got = count_blosc(raw, LZ4, block, rows, s, "chunk x", columns=(0, s))
    np.testing.assert_array_equal(got.variant, want.variant)
    np.testing.assert_array_equal(got.sample, want.sample)
    assert got.partial == want.partial


@pytest.mark.parametrize("semantics", ["tutorial", "sgkit"])
@settings(max_examples=80, deadline=None)
@given(
    gt=genotype_arrays(max_variants=3000, max_samples=60),
    clevel=st.integers(0, 9),
    cname=st.sampled_from(["lz4", "lz4hc"]),
    shuffle=st.sampled_from([0, 1]),
    blocksize=st.sampled_from([0, 128, 256, 1000, 4096, 2**16]),
    data=st.data(),
)
def test_blockwise_counts_equal_whole_chunk_counts(
    gt: np.ndarray,
    clevel: int,
    cname: str,
    shuffle: int,
    blocksize: int,
    data: st.DataObject,
    semantics: str,
) -> None:
    """Any block size (rows split across blocks), level (0: stored as is), a prefix of the
    rows (the part of an edge chunk inside the array), a column window (its samples)."""
    n, s, _ = gt.shape
    raw = blosc(cname, clevel, shuffle, blocksize).encode(gt)
    block = blockwise_blosc(raw)
    assert block is not None
    rows = data.draw(st.integers(0, n))
    c0 = data.draw(st.integers(0, s))
    c1 = data.draw(st.integers(c0, s))
    want = count_calls(gt[:rows], semantics=semantics, columns=(c0, c1))
    got = count_blosc(raw, LZ4, block, rows, s, "chunk x", semantics=semantics, columns=(c0, c1))
    np.testing.assert_array_equal(got.variant, want.variant)
    np.testing.assert_array_equal(got.sample, want.sample)
    assert got.partial == want.partial
    into = np.full((3, rows), 7, dtype=np.uint16)  # added to what it holds
    count_blosc(
        raw, LZ4, block, rows, s, "chunk x", semantics=semantics, columns=(c0, c1), into=into
    )
    np.testing.assert_array_equal(into, want.variant + 7)


@pytest.mark.parametrize("clevel", [0, 5])
def test_a_chunk_at_an_odd_address_counts_the_same(clevel: int) -> None:
    gt = np.random.default_rng(5).choice(np.array([-1, 0, 1], dtype="i1"), size=(900, 9, 2))
    raw = blosc(clevel=clevel).encode(gt)
    odd = memoryview(b"x" + raw)[1:]
    block = blockwise_blosc(raw)
    assert block is not None
    got = count_blosc(odd, LZ4, block, 900, 9, "chunk x", columns=(0, 9))
    np.testing.assert_array_equal(got.variant, count_calls(gt).variant)


def test_only_lz4_one_byte_blosc_is_taken_block_by_block() -> None:
    calls = np.zeros((5000, 10, 2), dtype="i1")
    assert blockwise_blosc(blosc(clevel=0).encode(calls)) == 0  # stored as is
    assert blockwise_blosc(blosc(blocksize=2**16).encode(calls)) == 2**16
    for codec in (blosc("zstd"), blosc("blosclz"), blosc(shuffle=2), blosc("zlib")):
        assert blockwise_blosc(codec.encode(calls)) is None
    assert blockwise_blosc(blosc().encode(calls.astype("i2"))) is None  # two-byte items


def _damaged(raw: bytes, at: int, value: bytes) -> bytes:
    out = bytearray(raw)
    out[at : at + len(value)] = value
    return bytes(out)


def test_a_bad_block_is_refused_naming_the_chunk() -> None:
    """Block offsets and sizes are checked against the chunk, LZ4 data against its block."""
    rng = np.random.default_rng(1)
    gt = rng.choice(np.array([-1, 0, 1], dtype="i1"), size=(4000, 20, 2))
    raw = handmade_blosc(gt.tobytes(), 4096)
    nblocks = -(-gt.nbytes // 4096)
    first = struct.unpack_from("<i", raw, 16)[0]
    where = "chunk 2L/calldata/GT/0.0.0"
    good = count_blosc(raw, LZ4, 4096, 4000, 20, where, columns=(0, 20))
    np.testing.assert_array_equal(good.sample, count_calls(gt).sample)
    bad = {
        "offset past the end": _damaged(raw, 16 + 4 * 3, struct.pack("<I", len(raw))),
        "offset into the offsets": _damaged(raw, 16, struct.pack("<I", 20)),
        "size past the end": _damaged(raw, first, struct.pack("<i", len(raw))),
        "negative size": _damaged(raw, first, struct.pack("<i", -5)),
        "garbage LZ4": _damaged(raw, first + 4, b"\xff" * 64),
        "short LZ4": _damaged(raw, first, struct.pack("<i", 10)),
    }
    short = 16 + 4 * nblocks - 2  # the offsets run past the chunk's end
    bad["few offsets"] = _damaged(raw, 12, struct.pack("<I", short))[:short]
    for name, chunk in bad.items():
        assert blockwise_blosc(chunk) == 4096, name
        with pytest.raises(BadDataError, match=re.escape(f"{where}: cannot decode")):
            count_blosc(chunk, LZ4, 4096, 4000, 20, where, columns=(0, 20))
        check_blosc_header(chunk, gt.nbytes, where)  # the header alone cannot tell


def _store(path: Path, gt: np.ndarray, chunks: tuple[int, int], codec: numcodecs.Blosc) -> Path:
    root = zarr.open_group(str(path), mode="w")
    root.create_dataset(GT, data=gt, chunks=(*chunks, 2), compressor=codec)
    return path


def _stats(store: Path, blockwise: bool, **options: object) -> tuple[object, ...]:
    before = zarrgeno.stats.reader.BLOCKWISE
    zarrgeno.stats.reader.BLOCKWISE = blockwise
    try:
        c = genotype_stats(str(store), **options).contig("2L")  # type: ignore[arg-type]
    finally:
        zarrgeno.stats.reader.BLOCKWISE = before
    assert c.variant_counts is not None
    return (
        c.complete_data,
        c.more_anc_hom,
        c.n_partial_het,
        c.samples.counts.tolist(),
        c.variant_counts.tolist(),
    )


@pytest.mark.parametrize("backend", ["sequential", "threads"])
@pytest.mark.parametrize(
    "codec",
    [blosc(blocksize=1000), blosc(clevel=0), blosc("zstd"), blosc(shuffle=2)],
    ids=["lz4-split-rows", "memcpyed", "zstd", "bitshuffle"],
)
def test_whole_stores_count_the_same_either_way(
    tmp_path: Path, backend: str, codec: numcodecs.Blosc
) -> None:
    """Edge chunks on both axes, a mixture of chunk kinds, both backends that read by units."""
    rng = np.random.default_rng(7)
    gt = rng.choice(np.array([-1, 0, 0, 0, 1, 2], dtype="i1"), size=(2345, 23, 2))
    gt[::5] = 0
    store = _store(tmp_path / "s.zarr", gt, (700, 10), codec)
    for semantics in ("tutorial", "sgkit"):
        options = {"backend": backend, "semantics": semantics}
        assert _stats(store, True, **options) == _stats(store, False, **options)
    region = {"backend": backend, "variants": (350, 2000)}  # units starting inside a chunk
    assert _stats(store, True, **region) == _stats(store, False, **region)


def test_a_missing_chunk_follows_the_policy(tmp_path: Path) -> None:
    gt = np.ones((3000, 12, 2), dtype="i1")
    store = _store(tmp_path / "s.zarr", gt, (1000, 12), blosc())
    (store / "2L" / "calldata" / "GT" / "1.0.0").unlink()
    with pytest.raises(BadDataError, match=re.escape("1.0.0 is missing")):
        genotype_stats(str(store))
    assert _stats(store, True, allow_missing=True) == _stats(store, False, allow_missing=True)


@pytest.mark.hostile
@pytest.mark.parametrize("cut", ["truncated", "bad-block"])
def test_the_command_refuses_a_bad_chunk(tmp_path: Path, cut: str) -> None:
    gt = np.random.default_rng(3).choice(np.array([-1, 0, 1], dtype="i1"), size=(3000, 12, 2))
    store = _store(tmp_path / "s.zarr", gt, (1000, 12), blosc())
    chunk = store / "2L" / "calldata" / "GT" / "1.0.0"
    raw = chunk.read_bytes()
    if cut == "truncated":
        chunk.write_bytes(raw[:-100])
        says = "compressed bytes but the chunk has"
    else:
        first = struct.unpack_from("<i", raw, 16)[0]
        chunk.write_bytes(_damaged(raw, first + 4, b"\xff" * 64))
        says = "cannot decode"
    assert_refused(run_cli("stats", store), 4, says=("chunk 2L/calldata/GT/1.0.0", says))
