"""Counting a Blosc chunk a few blocks at a time (while in cache) gives the whole-chunk counts.

The compiled kernel decodes a Blosc chunk of int8 calls block by block into a small buffer
and counts the whole rows there (a row split across two blocks is carried over); a chunk it
cannot take that way (another compressor, bit shuffle, wider items) is decoded whole. Both
paths must give identical counts (and QC counts: histograms, per-sample classes, missing
bits, per-cohort counts, a site filter's rows), and a bad chunk must be refused either way.
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
from zarrgeno.stats.cohorts import CohortSpec
from zarrgeno.stats.kernels import count_blosc, count_blosc_qc, count_calls, count_calls_qc

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


@pytest.mark.parametrize("semantics", ["tutorial", "sgkit"])
@settings(max_examples=60, deadline=None)
@given(
    gt=genotype_arrays(max_variants=3000, max_samples=60),
    clevel=st.integers(0, 9),
    blocksize=st.sampled_from([0, 128, 1000, 4096, 2**16]),
    k=st.sampled_from([2, 4]),
    n_cohorts=st.integers(1, 4),
    masked=st.sampled_from(["none", "scattered", "runs"]),
    data=st.data(),
)
def test_blockwise_qc_equals_whole_chunk_qc(
    gt: np.ndarray,
    clevel: int,
    blocksize: int,
    k: int,
    n_cohorts: int,
    masked: str,
    data: st.DataObject,
    semantics: str,
) -> None:
    """Every QC partial of a prefix of the rows and a column window, with per-cohort
    counts and a site filter's rows (single rows the kernel gathers, runs it counts where
    they lie), added to what the targets hold, equals the whole-chunk QC pass's."""
    n, s, _ = gt.shape
    raw = blosc(clevel=clevel, blocksize=blocksize).encode(gt)
    block = blockwise_blosc(raw)
    assert block is not None
    rows = data.draw(st.integers(0, n))
    c0 = data.draw(st.integers(0, s))
    c1 = data.draw(st.integers(c0, s))
    width = c1 - c0
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    codes = rng.integers(-1, n_cohorts, size=width).astype(np.int32)
    mask = None
    if masked == "scattered":
        mask = rng.random(rows) < 0.5
    elif masked == "runs":
        mask = np.repeat(rng.random(-(-rows // 40)) < 0.5, 40)[:rows]

    _assert_qc_either_way(gt, raw, rows, (c0, c1), k, codes, n_cohorts, mask, semantics)


def _assert_qc_either_way(
    gt: np.ndarray,
    raw: bytes,
    rows: int,
    columns: tuple[int, int],
    k: int,
    codes: np.ndarray,
    n_cohorts: int,
    mask: np.ndarray | None,
    semantics: str,
) -> None:
    """count_blosc_qc of ``raw`` (``gt`` encoded) equals count_calls_qc of ``gt``."""
    s, width = gt.shape[1], columns[1] - columns[0]
    block = blockwise_blosc(raw)
    assert block is not None

    def qc(blockwise: bool) -> list[object]:
        hist = np.full((rows, 1 + k * (k + 1) // 2), 3, dtype=np.uint32)
        out = np.full((rows, n_cohorts, k), 2, dtype=np.uint16)
        bits = np.full((rows, (width + 7) // 8), 0xA5, dtype=np.uint8)
        into = np.full((3, rows), 7, dtype=np.uint32)
        options = {"hist": hist, "semantics": semantics, "columns": columns, "into": into,
                   "bits": bits, "cohorts": (codes, n_cohorts, out), "mask": mask}  # fmt: skip
        if blockwise:
            counts, block_qc = count_blosc_qc(raw, LZ4, block, rows, s, "chunk x", **options)
        else:
            counts, block_qc = count_calls_qc(gt[:rows], **options)  # type: ignore[arg-type]
        assert counts.variant is into and block_qc.bits is bits
        return [into, counts.sample, counts.partial, block_qc.sample, bits, block_qc.beyond,
                hist, out]  # fmt: skip

    for got, want in zip(qc(True), qc(False), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("semantics", ["tutorial", "sgkit"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("blocksize", [0, 1000, 2**16])
def test_qc_pieces_land_at_their_rows(blocksize: int, masked: bool, semantics: str) -> None:
    """A chunk of several in-cache pieces (about 1 MB of calls, 256 KiB a piece): each
    piece's histograms, bits, counts and per-cohort counts go to its own rows."""
    rng = np.random.default_rng(11)
    gt = rng.choice(np.array([-1, 0, 0, 0, 1, 2, 3, 5], dtype="i1"), size=(12_001, 41, 2))
    gt[::7] = 1
    raw = blosc(blocksize=blocksize).encode(gt)
    codes = rng.integers(-1, 3, size=38).astype(np.int32)
    mask = np.repeat(rng.random(400) < 0.5, 37)[:11_999] if masked else None
    if mask is not None:
        mask[rng.integers(0, 11_999, 2000)] ^= True  # single rows among the runs
    _assert_qc_either_way(gt, raw, 11_999, (2, 40), 4, codes, 3, mask, semantics)


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
        hist = np.zeros((4000, 11), dtype=np.uint32)
        with pytest.raises(BadDataError, match=re.escape(f"{where}: cannot decode")):
            count_blosc_qc(chunk, LZ4, 4096, 4000, 20, where, hist=hist, columns=(0, 20))
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


def _qc_store(path: Path, gt: np.ndarray, codec: numcodecs.Blosc) -> Path:
    """A store of ``gt`` with sample names and a site filter (about 60% of sites pass)."""
    _store(path, gt, (700, 10), codec)
    root = zarr.open_group(str(path), mode="a")
    names = np.array([f"S{j:02d}" for j in range(gt.shape[1])], dtype=object)
    root.create_dataset("samples", data=names, object_codec=numcodecs.VLenUTF8())
    passing = np.random.default_rng(2).random(len(gt)) < 0.6
    passing[100:400] = True  # a long run the kernel counts where it lies
    root.create_dataset("2L/variants/FILTER_PASS", data=passing, chunks=(700,))
    return path


def _qc_stats(store: Path, blockwise: bool, **options: object) -> tuple[object, ...]:
    before = zarrgeno.stats.reader.BLOCKWISE
    zarrgeno.stats.reader.BLOCKWISE = blockwise
    try:
        result = genotype_stats(str(store), qc=True, **options)  # type: ignore[arg-type]
    finally:
        zarrgeno.stats.reader.BLOCKWISE = before
    assert result.qc is not None
    c, v = result.contig("2L"), result.qc.contig("2L").variants
    assert c.variant_counts is not None and v is not None
    cohorts = None
    if result.qc.cohorts is not None:
        cohorts = result.qc.cohorts.contig("2L").counts.tolist()
    return (c.n_partial_het, c.samples.counts.tolist(), c.variant_counts.tolist(),
            v.hist.tolist(), result.qc.to_dict(), cohorts)  # fmt: skip


@pytest.mark.parametrize("backend", ["sequential", "threads"])
@pytest.mark.parametrize(
    "codec",
    [blosc(blocksize=1000), blosc(clevel=0), blosc("zstd")],
    ids=["lz4-split-rows", "memcpyed", "zstd"],
)
def test_whole_stores_count_the_same_qc_either_way(
    tmp_path: Path, backend: str, codec: numcodecs.Blosc
) -> None:
    """The QC pass (F needs the missing bits), with cohorts, with a site filter, on a
    region whose units start inside a chunk: the same results either way."""
    rng = np.random.default_rng(8)
    gt = rng.choice(np.array([-1, 0, 0, 0, 1, 2, 3], dtype="i1"), size=(2345, 23, 2))
    gt[::5] = 0
    store = _qc_store(tmp_path / "s.zarr", gt, codec)
    meta = tmp_path / "meta.csv"
    meta.write_text("sample_id,country\n" + "".join(f"S{j:02d},c{j % 3}\n" for j in range(23)))
    cohorts = CohortSpec(meta, ("country",))
    for options in (
        {"semantics": "tutorial"},
        {"semantics": "sgkit", "cohorts": cohorts},
        {"site_filter": "FILTER_PASS", "cohorts": cohorts},
        {"variants": (350, 2000)},
    ):
        options["backend"] = backend
        assert _qc_stats(store, True, **options) == _qc_stats(store, False, **options), options


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
