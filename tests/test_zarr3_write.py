"""Zarr format 3 metadata written by zarrgeno (zarrgeno.io.zarr3_write): read back by
zarrgeno's own parser, equal to what zarr-python 3 writes for the same array, and what
format 3 cannot say as zarrgeno reads it refused by name."""

from __future__ import annotations

import json
import math
from typing import Any

import numcodecs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from zarr3venv import needs_zarr3, run_json

from zarrgeno.errors import BadDataError, UsageError
from zarrgeno.io.shards import parse_sharded
from zarrgeno.io.zarr3_meta import parse_array
from zarrgeno.io.zarr3_write import array_document, dumps, group_document

DTYPES = ["|i1", "<i2", ">i4", "<i8", "|u1", "<u2", "<u4", ">u8", "<f2", "<f4", ">f8",
          "<c8", "<c16", "|b1", "|S7", "|O"]  # fmt: skip
COMPRESSORS: list[Any] = [
    None,
    numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE),
    numcodecs.Blosc(cname="zstd", clevel=9, shuffle=numcodecs.Blosc.NOSHUFFLE, blocksize=256),
    numcodecs.Blosc(cname="zlib", clevel=1, shuffle=numcodecs.Blosc.AUTOSHUFFLE),
    numcodecs.Zstd(level=-3),
    numcodecs.Zstd(level=7, checksum=True),
    numcodecs.GZip(level=9),
]


def _fill(dtype: np.dtype, draw: st.DrawFn) -> Any:
    """A fill value as format 2's .zarray holds it (None: the data type's default)."""
    if draw(st.booleans()):
        return None
    kind = dtype.kind
    if kind in "iu":
        info = np.iinfo(dtype)
        return draw(st.integers(int(info.min), int(info.max)))
    if kind == "b":
        return draw(st.booleans())
    if kind == "f":
        return draw(st.sampled_from(["NaN", "Infinity", "-Infinity", 0.0, -1.5, 2.0]))
    if kind == "c":
        return [draw(st.sampled_from([0.0, 1.5, "NaN"])), draw(st.sampled_from([0.0, -2.0]))]
    if kind == "S":
        return draw(st.sampled_from(["", "QUI=", "QUFBQUFBQQ=="]))  # "", "AB", "AAAAAAA"
    return draw(st.sampled_from(["", ".", "x"]))


@st.composite
def descriptions(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any], list[int] | None]:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    ndim = draw(st.integers(1, 3))
    shape = [draw(st.integers(0, 50)) for _ in range(ndim)]
    chunks = [draw(st.integers(1, 20)) for _ in range(ndim)]
    zarray = {
        "zarr_format": 2,
        "shape": shape,
        "chunks": chunks,
        "dtype": dtype.str,
        "fill_value": _fill(dtype, draw),
        "order": "C",
        "filters": [{"id": "vlen-utf8"}] if dtype.hasobject else None,
        "compressor": draw(st.sampled_from(COMPRESSORS)),
        "dimension_separator": ".",
    }
    names = [f"dim{i}" for i in range(ndim)]
    attrs = {"_ARRAY_DIMENSIONS": names, "note": "x"} if draw(st.booleans()) else {}
    shards = [c * draw(st.integers(1, 3)) for c in chunks] if draw(st.booleans()) else None
    return zarray, attrs, shards


def _expected_fill(fill: Any, dtype: np.dtype) -> Any:
    if fill is not None:
        return fill
    return {"O": "", "S": "", "b": False, "c": [0.0, 0.0]}.get(dtype.kind, 0)


@settings(deadline=None)
@given(descriptions())
def test_documents_read_back_through_zarrgenos_parser(
    case: tuple[dict[str, Any], dict[str, Any], list[int] | None],
) -> None:
    zarray, attrs, shards = case
    document = json.loads(dumps(array_document(zarray, attrs, shards=shards)))
    if shards is None:
        parsed = parse_array(document, "a", "s")
    else:
        sharded = parse_sharded(document, "a", "s")
        assert list(sharded.spec.shard_shape) == shards
        parsed = sharded.inner
    got = parsed.zarray
    dtype = np.dtype(zarray["dtype"])
    assert got["shape"] == zarray["shape"] and got["chunks"] == zarray["chunks"]
    assert np.dtype(got["dtype"]) == dtype
    assert got["filters"] == zarray["filters"]
    assert got["fill_value"] == _expected_fill(zarray["fill_value"], dtype)
    codec = zarray["compressor"]
    if codec is None:
        assert got["compressor"] is None
    else:
        config = codec.get_config()
        if config["id"] == "blosc" and config["shuffle"] == -1:  # resolved as numcodecs does
            config["shuffle"] = 2 if dtype.itemsize == 1 or dtype.hasobject else 1
        assert got["compressor"] == config
    assert parsed.attributes == attrs
    assert parsed.key_prefix == "c" and parsed.separator == "/"


def test_group_document() -> None:
    assert json.loads(dumps(group_document({"a": 1}))) == {
        "attributes": {"a": 1},
        "zarr_format": 3,
        "node_type": "group",
    }


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"order": "F"}, UsageError, "order F is not written in Zarr format 3"),
        ({"filters": [{"id": "delta", "dtype": "<i2"}]}, UsageError, r"filters \['delta'\]"),
        ({"compressor": {"id": "lz4"}}, UsageError, "compressor lz4 has no Zarr format 3"),
        ({"dtype": "<U1"}, UsageError, "data type <U1 has no Zarr format 3 equivalent"),
        (
            {"dtype": "|O", "filters": [{"id": "json2"}]},
            UsageError,
            "an object array needs the vlen-utf8",
        ),
        ({"fill_value": 40000}, BadDataError, "fill value 40000 does not fit <i2"),
        ({"fill_value": 1.5}, BadDataError, "fill value 1.5 of <i2 is not an integer"),
        ({"chunks": [4]}, UsageError, r"chunks \[4\] do not fit shape \[10, 6\]"),
    ],
)
def test_what_format_3_cannot_say_is_refused(
    change: dict[str, Any], error: type[Exception], message: str
) -> None:
    zarray = {"shape": [10, 6], "chunks": [4, 3], "dtype": "<i2", "fill_value": -1, **change}
    with pytest.raises(error, match=r"^GT: " + message):
        array_document(zarray, where="GT")


def test_bad_dimension_names_and_shards_are_refused() -> None:
    zarray = {"shape": [10, 6], "chunks": [4, 3], "dtype": "|i1", "fill_value": -1}
    with pytest.raises(BadDataError, match=r"^GT: _ARRAY_DIMENSIONS \['variants'\] must name"):
        array_document(zarray, {"_ARRAY_DIMENSIONS": ["variants"]}, where="GT")
    with pytest.raises(UsageError, match=r"^GT: shard shape \(8, 4\) is not a multiple"):
        array_document(zarray, shards=[8, 4], where="GT")


# -- live: the same documents as zarr-python 3's own

ZARR_PYTHON_DOCUMENTS = """
import sys, json, warnings, numpy as np, zarr
from zarr.codecs import BloscCodec, ZstdCodec, GzipCodec
cases = json.loads(sys.argv[1])
codecs = {"blosc": BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle"),
          "zstd": ZstdCodec(level=3), "gzip": GzipCodec(level=5), "none": None}
out = {}
for name, case in cases.items():
    dtype = str if case["dtype"] == "|O" else case["dtype"]
    fill = case["fill"]
    if fill is not None and np.dtype(case["dtype"]).kind == "S":
        fill = fill.encode()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # null_terminated_bytes is not in the spec
        arr = zarr.create_array(
            store={}, shape=case["shape"], chunks=case["chunks"], shards=case["shards"],
            dtype=dtype, fill_value=fill, compressors=codecs[case["codec"]],
            dimension_names=case["dims"], attributes=case["attrs"],
        )
    out[name] = json.loads(json.dumps(arr.metadata.to_dict()))
print(json.dumps(out))
"""

LIVE_CASES: dict[str, dict[str, Any]] = {
    "gt": dict(dtype="|i1", shape=[45, 7, 2], chunks=[8, 4, 2], shards=[16, 8, 2], fill=-1,
               codec="blosc", dims=["variants", "samples", "ploidy"], attrs={"a": 1}),
    "pos": dict(dtype="<i4", shape=[45], chunks=[10], shards=None, fill=None, codec="zstd",
                dims=["variants"], attrs={}),
    "qual": dict(dtype="<f4", shape=[45], chunks=[10], shards=[20], fill="NaN", codec="gzip",
                 dims=None, attrs={}),
    "ids": dict(dtype="|O", shape=[45], chunks=[10], shards=None, fill=None, codec="zstd",
                dims=["variants"], attrs={}),
    "names": dict(dtype="|S24", shape=[6], chunks=[4], shards=None, fill=None, codec="none",
                  dims=None, attrs={}),
    "mask": dict(dtype="|b1", shape=[45, 7], chunks=[10, 7], shards=None, fill=None,
                 codec="blosc", dims=None, attrs={}),
}  # fmt: skip


def _ours(case: dict[str, Any]) -> dict[str, Any]:
    codec = {
        "blosc": numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE),
        "zstd": numcodecs.Zstd(level=3),
        "gzip": numcodecs.GZip(level=5),
        "none": None,
    }[case["codec"]]
    zarray = {
        "shape": case["shape"],
        "chunks": case["chunks"],
        "dtype": case["dtype"],
        "fill_value": case["fill"],
        "compressor": codec,
        "filters": [numcodecs.VLenUTF8()] if case["dtype"] == "|O" else None,
    }
    attrs = dict(case["attrs"])
    if case["dims"]:
        attrs["_ARRAY_DIMENSIONS"] = case["dims"]
    return json.loads(dumps(array_document(zarray, attrs, shards=case["shards"])))


@needs_zarr3
def test_documents_equal_zarr_pythons() -> None:
    theirs = run_json(ZARR_PYTHON_DOCUMENTS, json.dumps(LIVE_CASES))
    for name, case in LIVE_CASES.items():
        assert _ours(case) == theirs[name], name
    assert math.prod(theirs["gt"]["chunk_grid"]["configuration"]["chunk_shape"]) == 16 * 8 * 2
