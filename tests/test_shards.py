"""Zarr format 3 shards (zarrgeno.io.shards): encoded and decoded as zarr-python 3 does,
hostile shards refused by name, and both directions checked live against zarr-python 3 in
the oracle venv (tests/zarr3venv.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from zarr3store import write_array, write_group
from zarr3venv import needs_zarr3, run_json, run_python

from zarrgeno.errors import BadDataError
from zarrgeno.io.chunks import ChunkLayout
from zarrgeno.io.shards import (
    EMPTY,
    ShardSpec,
    decode_index,
    decode_shard,
    encode_index,
    encode_shard,
    encode_shard_array,
    morton_order,
    parse_sharded,
    read_index,
    shard_problem,
    shard_raw_cap,
)

DATA = Path(__file__).parent / "data"
BLOSC = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE)


def reference_morton(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """zarr-python 3.0's original loop: decode Morton codes 0, 1, 2... keeping those inside."""
    bits = [(c - 1).bit_length() for c in shape]
    order: list[tuple[int, ...]] = []
    z = 0
    while len(order) < math.prod(shape):
        out, bit_in = [0] * len(shape), 0
        for bit in range(max(bits, default=0)):
            for dim, used in enumerate(bits):
                if bit < used:
                    out[dim] |= ((z >> bit_in) & 1) << bit
                    bit_in += 1
        if all(o < c for o, c in zip(out, shape, strict=True)):
            order.append(tuple(out))
        z += 1
    return order


@settings(deadline=None)  # the reference loop is slow by design
@given(st.lists(st.integers(1, 9), min_size=1, max_size=4))
def test_morton_order_is_zarr_pythons_loop(shape: list[int]) -> None:
    expected = reference_morton(tuple(shape))
    assert [tuple(c) for c in morton_order(shape).tolist()] == expected


def _layout(spec: ShardSpec, dtype: str, compressor: Any, fill: Any) -> ChunkLayout:
    return ChunkLayout(
        "a", spec.shard_shape, spec.chunk_shape, np.dtype(dtype), compressor, (), fill
    )


def _encoder(compressor: Any) -> Any:
    if compressor is None:
        return lambda chunk: chunk.tobytes()
    return lambda chunk: bytes(compressor.encode(chunk))


@st.composite
def shards(draw: st.DrawFn) -> tuple[ShardSpec, np.ndarray]:
    ndim = draw(st.integers(1, 3))
    chunk = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    per = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    spec = ShardSpec(
        tuple(c * p for c, p in zip(chunk, per, strict=True)),
        chunk,
        index_location=draw(st.sampled_from(["end", "start"])),
        index_endian=draw(st.sampled_from(["little", "big"])),
        index_crc32c=draw(st.booleans()),
    )
    # an edge shard is smaller than the shard shape; some inner chunks hold only the fill
    shape = tuple(draw(st.integers(1, s)) for s in spec.shard_shape)
    seed = draw(st.integers(0, 2**16))
    data = np.random.default_rng(seed).choice(np.array([-1, -1, 0, 1], dtype="i2"), size=shape)
    return spec, data


@settings(deadline=None)  # a shared machine: no test is timed
@given(shards(), st.sampled_from([None, "blosc", "zstd"]))
def test_shards_round_trip(case: tuple[ShardSpec, np.ndarray], codec: str | None) -> None:
    spec, data = case
    compressor = {"blosc": BLOSC, "zstd": numcodecs.Zstd(level=1), None: None}[codec]
    raw = encode_shard_array(spec, data, _encoder(compressor), -1)
    if raw is None:
        assert (data == -1).all()
        return
    layout = _layout(spec, "i2", compressor, -1)
    assert len(raw) <= shard_raw_cap(spec, layout)
    out = decode_shard(raw, spec, layout, "a/c/0")
    region = tuple(slice(0, n) for n in data.shape)
    np.testing.assert_array_equal(out[region], data)
    padding = np.ones(spec.shard_shape, dtype=bool)
    padding[region] = False
    assert (out[padding] == -1).all()
    index = read_index(raw, spec, "a/c/0")
    stored = len(list(index.stored()))
    assert len(raw) == spec.index_nbytes + sum(stop - start for _, start, stop in index.stored())
    assert stored == int((index.table[:, 0] != np.uint64(EMPTY)).sum())


def test_empty_inner_chunks_read_as_fill_value() -> None:
    spec = ShardSpec((4, 4), (2, 2))
    data = np.full((4, 4), 7, dtype="i4")
    data[0:2, 0:2] = [[1, 2], [3, 4]]
    raw = encode_shard_array(spec, data, _encoder(None), 7)
    assert raw is not None
    index = read_index(raw, spec, "k")
    assert index.chunk_range((0, 0)) == (0, 16)
    assert index.chunk_range((1, 1)) is None
    np.testing.assert_array_equal(decode_shard(raw, spec, _layout(spec, "i4", None, 7), "k"), data)
    assert encode_shard_array(spec, np.full((3, 4), 7, dtype="i4"), _encoder(None), 7) is None


def test_ranged_reads_of_index_and_one_inner_chunk() -> None:
    spec = ShardSpec((6, 4), (3, 2))
    data = np.arange(24, dtype="<u2").reshape(6, 4)
    raw = encode_shard_array(spec, data, _encoder(numcodecs.Zstd(level=3)), 0)
    assert raw is not None
    start, stop = spec.index_range(len(raw))
    assert stop - start == spec.index_nbytes == 4 * 16 + 4
    index = decode_index(raw[start:stop], spec, "k", len(raw))
    begin, end = index.chunk_range((1, 0)) or (0, 0)
    chunk = np.frombuffer(numcodecs.Zstd().decode(raw[begin:end]), dtype="<u2").reshape(3, 2)
    np.testing.assert_array_equal(chunk, data[3:6, 0:2])


# -- hostile shards: each refused with BadDataError naming the shard and the problem


def _one_shard() -> tuple[ShardSpec, bytes]:
    spec = ShardSpec((4, 2), (2, 2))
    raw = encode_shard(spec, {(0, 0): b"A" * 8, (1, 0): b"B" * 8})
    assert raw is not None
    return spec, raw


def _with_table(spec: ShardSpec, table: list[tuple[int, int]], data: bytes = b"x" * 16) -> bytes:
    return data + encode_index(spec, np.array(table, dtype=np.uint64))


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ([(0, 8), (20, 8)], r"inner chunk \(1, 0\) lies outside the shard's data"),
        ([(0, 8), (2**64 - 2, 8)], r"inner chunk \(1, 0\) lies outside"),
        ([(0, 8), (4, 8)], r"inner chunks \(0, 0\) and \(1, 0\) overlap"),
        ([(0, 8), (EMPTY, 8)], r"index entry \(1, 0\) is half empty"),
        ([(0, 0), (8, 8)], r"inner chunk \(0, 0\) has no bytes"),
    ],
)
def test_hostile_index_entries_are_refused(table: list[tuple[int, int]], message: str) -> None:
    spec = ShardSpec((4, 2), (2, 2))
    raw = _with_table(spec, table)
    with pytest.raises(BadDataError, match=r"^shard GT/c/0/0: " + message):
        read_index(raw, spec, "GT/c/0/0")


def test_index_checksum_mismatch_is_refused() -> None:
    spec, raw = _one_shard()
    bad = bytearray(raw)
    bad[-5] ^= 1  # the last byte of the index body
    with pytest.raises(BadDataError, match=r"shard k: index checksum \(crc32c\) does not match"):
        read_index(bytes(bad), spec, "k")


def test_wrong_index_length_and_short_shard_are_refused() -> None:
    spec, raw = _one_shard()
    start, stop = spec.index_range(len(raw))
    with pytest.raises(BadDataError, match=r"shard k: index is 35 bytes, expected 36"):
        decode_index(raw[start + 1 : stop], spec, "k", len(raw))
    with pytest.raises(BadDataError, match=r"shard k: 20 bytes, shorter than its index"):
        read_index(raw[-20:], spec, "k")


def test_corrupt_inner_chunk_names_shard_and_inner_chunk() -> None:
    spec = ShardSpec((4, 2), (2, 2))
    raw = encode_shard(spec, {(0, 0): b"garbage!", (1, 0): b"more garbage"})
    assert raw is not None
    with pytest.raises(BadDataError, match=r"chunk GT/c/0/0 \(inner chunk 0,0\): cannot decode"):
        decode_shard(raw, spec, _layout(spec, "i2", numcodecs.Zstd(), 0), "GT/c/0/0")


def _sharded_meta(**config: Any) -> dict[str, Any]:
    meta = json.loads((DATA / "malariagen_v3_sharded.zarr/2L/calldata/GT/zarr.json").read_text())
    meta["codecs"][0]["configuration"].update(config)
    return meta


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        (_sharded_meta(chunk_shape=[8, 4, 2]), r"shard shape \(16, 6, 2\) is not a multiple"),
        (_sharded_meta(index_location="middle"), r"index_location 'middle' must be end or start"),
        (_sharded_meta(index_codecs=[{"name": "crc32c"}]), r"index codecs \['crc32c'\]"),
        (
            _sharded_meta(codecs=[{"name": "sharding_indexed", "configuration": {}}]),
            "nested sharding is not supported",
        ),
        (_sharded_meta(codecs=[{"name": "bytes"}, {"name": "lz4"}]), "codec lz4 is not supported"),
        (
            _sharded_meta(chunk_shape=[8, 3, 2])
            | {
                "chunk_grid": {
                    "name": "regular",
                    "configuration": {"chunk_shape": [8 << 11, 3 << 10, 2]},
                }
            },
            r"a shard of 2097152 inner",
        ),
    ],
)
def test_hostile_sharding_metadata_is_refused(meta: dict[str, Any], message: str) -> None:
    with pytest.raises(BadDataError, match=r"^s/2L/calldata/GT: .*" + message):
        parse_sharded(meta, "2L/calldata/GT", "s")


def test_shard_shape_problems() -> None:
    assert shard_problem((16, 6), (8, 3)) is None
    assert "differ in dimensions" in (shard_problem((16,), (8, 3)) or "")
    assert "positive integers" in (shard_problem((16, 0), (8, 3)) or "")
    assert "more than" in (shard_problem((1 << 11, 1 << 10), (1, 1)) or "")
    assert shard_problem((1 << 10, 1 << 10), (1, 1)) is None


def test_committed_zarr_python_shard_decodes() -> None:
    """The fixture's shards (zarr-python 3, blosc lz4 bitshuffle) read as zarr 3 reads them."""
    root = DATA / "malariagen_v3_sharded.zarr/2L/calldata/GT"
    array = parse_sharded(json.loads((root / "zarr.json").read_text()), "2L/calldata/GT", "s")
    zarray = array.inner.zarray
    layout = ChunkLayout(
        "GT",
        tuple(zarray["shape"]),
        tuple(zarray["chunks"]),
        np.dtype(zarray["dtype"]),
        numcodecs.get_codec(zarray["compressor"]),
        (),
        -1,
    )
    parts = [
        decode_shard((root / "c" / str(i) / "0/0").read_bytes(), array.spec, layout, f"c/{i}/0/0")
        for i in range(2)
    ]
    values = np.concatenate(parts)[:23, :5]
    assert values.shape == (23, 5, 2)
    assert (values[3] == -1).all()  # the fixture's all-missing variant
    assert set(np.unique(values)) <= {-1, 0, 1}


# -- live: zarr-python 3 writes, zarrgeno reads; zarrgeno writes, zarr-python 3 reads

WRITE_SHARDED = """
import sys, numpy as np, zarr
from zarr.codecs import BloscCodec, ZstdCodec, GzipCodec
out = sys.argv[1]
rng = np.random.default_rng(3)
data = rng.choice(np.array([0, 1, 2, -1], dtype="i2"), size=(37, 11, 2))
data[8:16, 0:6] = -1       # whole inner chunks of fill: not written
data[16:32, 6:11] = -1     # and a whole shard
np.save(f"{out}/data.npy", data)
codecs = {
    "blosc": BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle"),
    "zstd": ZstdCodec(level=3),
    "gzip": GzipCodec(level=5),
    "none": None,
}
for name, codec in codecs.items():
    for location in ("end", "start"):
        arr = zarr.create_array(
            store=f"{out}/{name}-{location}", shape=data.shape, dtype="i2", chunks=(4, 3, 2),
            shards={"shape": (16, 6, 2), "index_location": location},
            compressors=[codec] if codec else None, fill_value=-1,
        )
        arr[:] = data
"""


def _read_sharded(path: Path, name: str) -> np.ndarray:
    """Every value of the sharded array at ``path``, through zarrgeno's decoder alone."""
    array = parse_sharded(json.loads((path / "zarr.json").read_text()), "", name)
    zarray = array.inner.zarray
    shape = tuple(zarray["shape"])
    spec = array.spec
    compressor = numcodecs.get_codec(zarray["compressor"]) if zarray["compressor"] else None
    layout = ChunkLayout(
        "", shape, spec.chunk_shape, np.dtype(zarray["dtype"]), compressor, (), zarray["fill_value"]
    )
    grid = [math.ceil(n / s) for n, s in zip(shape, spec.shard_shape, strict=True)]
    out = np.full([g * s for g, s in zip(grid, spec.shard_shape, strict=True)], -9, layout.dtype)
    for index in np.ndindex(*grid):
        key = array.shard_key(index)
        file = path / key
        region = tuple(
            slice(i * s, (i + 1) * s) for i, s in zip(index, spec.shard_shape, strict=True)
        )
        if file.exists():
            out[region] = decode_shard(file.read_bytes(), spec, layout, key)
        else:
            out[region] = layout.fill_value
    return out[tuple(slice(0, n) for n in shape)]


@needs_zarr3
def test_zarrgeno_reads_zarr_python_shards(tmp_path: Path) -> None:
    run_python(WRITE_SHARDED, tmp_path)
    data = np.load(tmp_path / "data.npy")
    for name in ("blosc", "zstd", "gzip", "none"):
        for location in ("end", "start"):
            store = tmp_path / f"{name}-{location}"
            np.testing.assert_array_equal(_read_sharded(store, name), data, err_msg=name)
    assert not (tmp_path / "zstd-end/c/1/1/0").exists()  # the all-fill shard


@needs_zarr3
def test_uncompressed_shards_are_byte_for_byte_zarr_pythons(tmp_path: Path) -> None:
    run_python(WRITE_SHARDED, tmp_path)
    data = np.load(tmp_path / "data.npy")
    spec = ShardSpec((16, 6, 2), (4, 3, 2))
    for location in ("end", "start"):
        spec = ShardSpec((16, 6, 2), (4, 3, 2), index_location=location)
        for file in sorted((tmp_path / f"none-{location}/c").rglob("*")):
            if file.is_dir():
                continue
            index = [int(p) for p in file.relative_to(tmp_path / f"none-{location}/c").parts]
            region = tuple(
                slice(i * s, (i + 1) * s) for i, s in zip(index, (16, 6, 2), strict=False)
            )
            ours = encode_shard_array(spec, data[region], _encoder(None), -1)
            assert ours == file.read_bytes(), file


READ_BACK = """
import sys, json, numpy as np, zarr
root = zarr.open_group(sys.argv[1], mode="r", zarr_format=3)
report = {}
for name, arr in root.arrays():
    values = arr[:]
    if values.dtype.kind == "T":  # numpy's StringDType: as objects, which zarr 2.18 writes
        values = values.astype(object)
    np.save(f"{sys.argv[1]}/{name}.npy", values, allow_pickle=True)
    report[name] = {"chunks": list(arr.chunks), "shards": list(arr.shards) if arr.shards else None,
                    "dtype": str(arr.dtype), "fill": repr(arr.fill_value),
                    "dims": list(arr.metadata.dimension_names or [])}
print(json.dumps(report))
"""


def _written_arrays() -> dict[str, dict[str, Any]]:
    rng = np.random.default_rng(9)
    gt = rng.choice(np.array([0, 1, -1], dtype="i1"), size=(45, 7, 2))
    gt[16:32] = -1
    floats = rng.random((30, 4)).astype("<f4")
    floats[::7] = np.nan
    return {
        "gt": dict(data=gt, chunks=(8, 4, 2), shards=(16, 8, 2), compressor=BLOSC, fill_value=-1,
                   attributes={"_ARRAY_DIMENSIONS": ["variants", "samples", "ploidy"]}),
        "gt_plain": dict(data=gt, chunks=(8, 4, 2), compressor=numcodecs.Zstd(level=3),
                         fill_value=-1),
        "pos_be": dict(data=np.arange(45, dtype=">i4") * 100, chunks=(10,), shards=(20,),
                       compressor=numcodecs.GZip(level=5), fill_value=0),
        "qual": dict(data=floats, chunks=(5, 4), shards=(10, 4), compressor=numcodecs.Zstd(level=1),
                     fill_value=float("nan")),
        "flag": dict(data=rng.random(30) < 0.5, chunks=(7,), compressor=None, fill_value=False),
        "names": dict(data=np.array([b"AR0001", b"AR00000002-LONGEST-24BYT", b""], dtype="|S24"),
                      chunks=(2,), compressor=BLOSC, fill_value=None),
        "ids": dict(data=np.array(["rs1", "", "rs3", "é", "x" * 300], dtype=object), chunks=(2,),
                    shards=(4,), compressor=numcodecs.Zstd(level=1), fill_value=None),
        "index": dict(data=np.arange(24, dtype="<u8").reshape(4, 6), chunks=(4, 6), fill_value=0,
                      compressor=numcodecs.Blosc(cname="zstd", clevel=9, shuffle=0)),
    }  # fmt: skip


@needs_zarr3
def test_zarr_python_reads_what_zarrgeno_writes(tmp_path: Path) -> None:
    arrays = _written_arrays()
    write_group(tmp_path, "", {"note": "written by zarrgeno"})
    for name, spec in arrays.items():
        write_array(tmp_path, name, **spec)
    report = run_json(READ_BACK, tmp_path)
    assert sorted(report) == sorted(arrays)
    for name, spec in arrays.items():
        values = np.load(tmp_path / f"{name}.npy", allow_pickle=True)
        expected = spec["data"]
        if expected.dtype.kind == "f":
            np.testing.assert_array_equal(values, expected)  # NaN equal to NaN
        else:
            assert values.tolist() == expected.tolist(), name
        assert tuple(report[name]["chunks"]) == spec["chunks"], name
        shards = spec.get("shards")
        assert report[name]["shards"] == (list(shards) if shards else None), name
    assert report["gt"]["dims"] == ["variants", "samples", "ploidy"]
    assert report["qual"]["fill"] == "np.float32(nan)"
    assert not (tmp_path / "gt/c/1/0/0").exists()  # a shard of fill only is not written
