"""Hostile and broken metadata is refused before zarr opens anything."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import zarr
from typer.testing import CliRunner

from conftest import build_store
from zarrgeno.cli import app
from zarrgeno.errors import BadDataError, UsageError
from zarrgeno.io.screened import refused_arrays
from zarrgeno.io.store import find_genotypes, open_store
from zarrgeno.io.validation import UNSAFE_PICKLE_ENV, validate_array_meta
from zarrgeno.io.zarr3_meta import parse_array
from zarrgeno.stats.api import plan_stats

GOOD: dict[str, Any] = {
    "zarr_format": 2,
    "shape": [1000, 7, 2],
    "chunks": [300, 5, 2],
    "dtype": "|i1",
    "compressor": {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0},
    "fill_value": -1,
    "order": "C",
    "filters": None,
}


def _with(**changes: Any) -> dict[str, Any]:
    meta = dict(GOOD)
    for key, value in changes.items():
        if value is ...:
            meta.pop(key)
        else:
            meta[key] = value
    return meta


HOSTILE = {
    "traversal separator": (_with(dimension_separator="/../../x/"), "dimension_separator"),
    "object dtype": (_with(dtype="|O"), "not allowed"),
    "pickle filter": (_with(filters=[{"id": "pickle"}]), "filter 'pickle' is not allowed"),
    "unknown compressor": (_with(compressor={"id": "evil"}), "compressor 'evil' is not allowed"),
    "zero chunk": (_with(chunks=[0, 5, 2]), "positive integers"),
    "negative shape": (_with(shape=[-1, 7, 2]), "non-negative"),
    "wrong arity": (_with(chunks=[300, 5]), "do not match"),
    "huge shape": (_with(shape=[2**40, 2**20, 2]), "implausibly large"),
    "huge chunk": (_with(chunks=[2**31, 1, 1], shape=[2**32, 1, 1]), "exceeds 2 GiB"),
    "float chunk": (_with(chunks=[300.5, 5, 2]), "positive integers"),
    "zarr v3": (_with(zarr_format=3), "zarr_format 3 is not 2"),
    "structured dtype": (_with(dtype=[["a", "<i4"]]), "not supported"),
    "bad order": (_with(order="Z"), "order"),
    "object pickle": (_with(dtype="|O", filters=[{"id": "pickle"}]), "filter 'pickle' is not"),
    "object json2": (_with(dtype="|O", filters=[{"id": "json2"}]), "filter 'json2' is not"),
    "object msgpack2": (_with(dtype="|O", filters=[{"id": "msgpack2"}]), "'msgpack2' is not"),
    "object codec second": (
        _with(dtype="|O", filters=[{"id": "crc32"}, {"id": "vlen-utf8"}]),
        "without one object codec as its first filter",
    ),
    "two object codecs": (
        _with(dtype="|O", filters=[{"id": "vlen-utf8"}, {"id": "vlen-bytes"}]),
        "without one object codec",
    ),
    "object codec on int8": (
        _with(filters=[{"id": "vlen-utf8"}]),
        "filter vlen-utf8 is an object codec, but dtype '|i1' is not object",
    ),
    "vlen-array of objects": (
        _with(dtype="|O", filters=[{"id": "vlen-array", "dtype": "|O"}]),
        "vlen-array dtype '|O' must be a numeric dtype",
    ),
    "vlen-array bad dtype": (
        _with(dtype="|O", filters=[{"id": "vlen-array", "dtype": "nonsense"}]),
        "must be a numeric dtype",
    ),
    "fill NaN for int8": (_with(fill_value="NaN"), "fill_value 'NaN' does not fit dtype 'int8'"),
    "fill text for int8": (_with(fill_value="x"), "fill_value 'x' does not fit dtype 'int8'"),
    "fill 1000 for int8": (_with(fill_value=1000), "fill_value 1000 does not fit dtype 'int8'"),
    "fill dict": (_with(fill_value={"a": 1}), "fill_value {'a': 1} does not fit"),
    "fill list for float": (_with(dtype="<f4", fill_value=[1]), "does not fit dtype 'float32'"),
    "fill 1e300 for float32": (_with(dtype="<f4", fill_value=1e300), "does not fit"),
    "fill huge int for float": (_with(dtype="<f8", fill_value=10**400), "does not fit"),
    "fill not base64": (_with(dtype="|S4", fill_value="@@@"), "does not fit dtype '|S4'"),
    "fill too long bytes": (_with(dtype="|S1", fill_value="YWJj"), "does not fit"),
    "fill complex half": (_with(dtype="<c8", fill_value=[1.0]), "does not fit"),
    "fill bool 2": (_with(dtype="|b1", fill_value=2), "does not fit dtype 'bool'"),
    "10**12 chunks": (
        _with(shape=[10**12, 7, 2], chunks=[1, 7, 2]),
        "makes 1,000,000,000,000 chunks (at most 1,048,576)",
    ),
    "delta dtype zzz": (_with(filters=[{"id": "delta", "dtype": "zzz"}]), "'zzz' is not a numeric"),
    "delta unknown keyword": (
        _with(filters=[{"id": "delta", "dtype": "i1", "bogus": 1}]),
        "unexpected keyword argument 'bogus'",
    ),
    "blosc typesize 0": (_with(compressor={**GOOD["compressor"], "typesize": 0}), "typesize"),
    "blosc shuffle 9": (_with(compressor={**GOOD["compressor"], "shuffle": 9}), "shuffle must"),
    "blosc clevel 99": (_with(compressor={**GOOD["compressor"], "clevel": 99}), "clevel must"),
    "blosc cname x": (_with(compressor={**GOOD["compressor"], "cname": "x"}), "cname must"),
    "zstd level text": (_with(compressor={"id": "zstd", "level": "x"}), "level must be"),
    "lzma raw without filters": (_with(compressor={"id": "lzma", "format": 3}), "needs filters"),
    "lzma bad filter": (
        _with(compressor={"id": "lzma", "format": 3, "filters": [{"id": 99}]}),
        "lzma filters",
    ),
    "lzma huge dictionary": (
        _with(compressor={"id": "lzma", "filters": [{"id": 33, "dict_size": 2**40}]}),
        "dict_size",
    ),
    "fixedscaleoffset scale 0": (
        _with(filters=[{"id": "fixedscaleoffset", "offset": 0, "scale": 0, "dtype": "<f8"}]),
        "scale must be a non-zero finite number",
    ),
    "shuffle elementsize 0": (_with(filters=[{"id": "shuffle", "elementsize": 0}]), "elementsize"),
    "quantize digits -1": (
        _with(dtype="<f8", filters=[{"id": "quantize", "digits": -1, "dtype": "<f8"}]),
        "digits",
    ),
}

#: Fill values as zarr 2 encodes them, and codec configs as numcodecs writes them: these open.
GOOD_VALUES = {
    "null fill": _with(fill_value=None),
    "float NaN": _with(dtype="<f4", fill_value="NaN"),
    "float -Infinity": _with(dtype="<f8", fill_value="-Infinity"),
    "float 0.5": _with(dtype="<f2", fill_value=0.5),
    "int as float": _with(fill_value=-1.0),
    "complex": _with(dtype="<c16", fill_value=["NaN", 1.5]),
    "bytes base64": _with(dtype="|S3", fill_value="YWJj"),
    "bytes empty": _with(dtype="|S24", fill_value=""),
    "bytes zero": _with(dtype="|S24", fill_value=0),
    "unicode": _with(dtype="<U3", fill_value="abc"),
    "bool": _with(dtype="|b1", fill_value=False),
    "datetime": _with(dtype="<M8[ns]", fill_value=0),
    "object text": _with(dtype="|O", fill_value="", filters=[{"id": "vlen-utf8"}]),
    "zstd": _with(compressor={"id": "zstd", "level": 3, "checksum": False}),
    "lzma xz": _with(compressor={"id": "lzma", "format": 1, "check": -1, "preset": 6}),
    "lzma raw": _with(compressor={"id": "lzma", "format": 3, "filters": [{"id": 33}]}),
    "shuffle": _with(filters=[{"id": "shuffle", "elementsize": 1}]),
    "fixedscaleoffset": _with(
        dtype="<f8",
        filters=[
            {"id": "fixedscaleoffset", "offset": 0, "scale": 10, "dtype": "<f8", "astype": "|u1"}
        ],
    ),
    "delta": _with(filters=[{"id": "delta", "dtype": "|i1"}]),
    "crc32": _with(filters=[{"id": "crc32"}]),
}

#: Object arrays as scikit-allel, bio2zarr and zarr users write them: these open.
SAFE_OBJECTS = {
    "vlen-utf8": _with(dtype="|O", fill_value=0, filters=[{"id": "vlen-utf8"}]),
    "vlen-bytes, no compressor": _with(
        dtype="|O", compressor=None, fill_value=None, filters=[{"id": "vlen-bytes"}]
    ),
    "vlen-array": _with(dtype="|O", filters=[{"id": "vlen-array", "dtype": "<i4"}]),
    "vlen-utf8 + crc32": _with(dtype="|O", filters=[{"id": "vlen-utf8"}, {"id": "crc32"}]),
}


@pytest.mark.hostile
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_array_metadata(case: str) -> None:
    meta, message = HOSTILE[case]
    with pytest.raises(BadDataError, match="x/GT") as info:
        validate_array_meta(meta, "x/GT")
    assert message in str(info.value)


def test_good_metadata_passes() -> None:
    validate_array_meta(GOOD, "x/GT")
    validate_array_meta(_with(dimension_separator="/"), "x/GT")


@pytest.mark.parametrize("case", sorted(GOOD_VALUES))
def test_good_fill_values_and_codec_configs_pass(case: str) -> None:
    validate_array_meta(GOOD_VALUES[case], "x/GT")


@pytest.mark.parametrize("case", sorted(SAFE_OBJECTS))
def test_safe_object_codecs_open(case: str) -> None:
    validate_array_meta(SAFE_OBJECTS[case], "2L/samples")


def test_object_dtype_without_codec_is_refused_by_name() -> None:
    with pytest.raises(BadDataError) as info:
        validate_array_meta(_with(dtype="|O"), "2L/samples")
    assert str(info.value) == (
        "2L/samples: dtype '|O' is not allowed without one object codec as its first filter "
        "(zarrgeno reads vlen-utf8, vlen-bytes, vlen-array)"
    )


@pytest.mark.hostile
def test_every_refused_array_is_named_on_one_line(tmp_path: Path) -> None:
    path = _hostile_dir(tmp_path, HOSTILE["object dtype"][0])
    (path / "X" / "calldata" / "GT" / ".zarray").write_text(json.dumps(HOSTILE["pickle filter"][0]))
    with pytest.raises(BadDataError) as info:
        plan_stats(path)
    message = str(info.value)
    assert message.startswith(f"{path}: 2 arrays refused: 2L/calldata/GT (dtype '|O' is not")
    assert ", X/calldata/GT (filter 'pickle' is not allowed" in message
    result = CliRunner().invoke(app, ["stats", str(path)])
    assert result.exit_code == 4, result.output
    assert result.stderr.count("\n") == 1 and "2 arrays refused" in result.stderr


@pytest.mark.hostile
def test_refused_consolidated_entries_are_all_named(tmp_path: Path) -> None:
    path = _consolidated_with(
        tmp_path,
        {"2L/calldata/GT": {"dtype": "|O"}, "X/calldata/GT": {"filters": [{"id": "pickle"}]}},
    )
    with pytest.raises(BadDataError, match=r"2 arrays refused: 2L/calldata/GT \(dtype"):
        plan_stats(path)
    assert refused_arrays(open_store(path)[1]).keys() == {"2L/calldata/GT", "X/calldata/GT"}


def _hostile_dir(tmp_path: Path, meta: dict[str, Any]) -> Path:
    path = tmp_path / "hostile store"
    build_store(str(path))
    (path / "2L" / "calldata" / "GT" / ".zarray").write_text(json.dumps(meta))
    return path


@pytest.mark.hostile
@pytest.mark.parametrize("case", ["traversal separator", "pickle filter", "object dtype"])
def test_cli_refuses_hostile_store_and_touches_nothing(tmp_path: Path, case: str) -> None:
    path = _hostile_dir(tmp_path, HOSTILE[case][0])
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    result = CliRunner().invoke(app, ["stats", str(path)])
    assert result.exit_code == 4, result.output
    assert result.stderr.count("\n") == 1 and "2L/calldata/GT" in result.stderr
    assert "Traceback" not in result.output
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before


@pytest.mark.hostile
def test_consolidated_metadata_must_agree(tmp_path: Path) -> None:
    path = tmp_path / "store.zarr"
    build_store(str(path))
    zarr.consolidate_metadata(str(path))
    open_store(path)  # agreeing metadata opens
    gt_meta = path / "2L" / "calldata" / "GT" / ".zarray"
    gt_meta.write_text(json.dumps(_with(chunks=[100, 5, 2])))
    with pytest.raises(BadDataError, match="consolidated metadata disagrees"):
        open_store(path)


def _consolidated_with(tmp_path: Path, changes: dict[str, dict[str, Any]]) -> Path:
    """A consolidated store whose .zmetadata entries (only) carry ``changes`` by array."""
    path = tmp_path / "store.zarr"
    build_store(str(path))
    zarr.consolidate_metadata(str(path))
    doc = json.loads((path / ".zmetadata").read_text())
    for array, change in changes.items():
        doc["metadata"][f"{array}/.zarray"].update(change)
    (path / ".zmetadata").write_text(json.dumps(doc))
    return path


@pytest.mark.hostile
def test_hostile_consolidated_entry(tmp_path: Path) -> None:
    path = _consolidated_with(tmp_path, {"2L/calldata/GT": {"dimension_separator": "/../x/"}})
    with pytest.raises(BadDataError, match="dimension_separator"):
        plan_stats(path)
    assert "2L/calldata/GT" not in open_store(path)[1]  # zarr never sees it


@pytest.mark.hostile
def test_not_json(tmp_path: Path) -> None:
    path = tmp_path / "store.zarr"
    build_store(str(path))
    (path / "X" / "calldata" / "GT" / ".zarray").write_bytes(b"\x00\xff not json")
    with pytest.raises(BadDataError, match=r"X/calldata/GT: \.zarray is not valid JSON"):
        plan_stats(path)
    (path / ".zattrs").write_bytes(b"[1, 2")  # a group's document refuses the whole store
    with pytest.raises(BadDataError, match=r"\.zattrs is not valid JSON"):
        open_store(path)


@pytest.mark.hostile
def test_genotypes_must_be_signed_integers() -> None:
    store = zarr.MemoryStore()
    root = zarr.open_group(store, mode="w")
    root.zeros("2L/calldata/GT", shape=(10, 3, 2), dtype="u4")
    with pytest.raises(BadDataError, match=r"must be a signed integer .*, got uint32"):
        find_genotypes(open_store(store)[1])


@pytest.mark.hostile
def test_unsafe_pickle_environment_refused(monkeypatch: pytest.MonkeyPatch, memory_store) -> None:
    monkeypatch.setenv(UNSAFE_PICKLE_ENV, "1")
    with pytest.raises(UsageError, match=UNSAFE_PICKLE_ENV):
        open_store(memory_store[0])


def _v3(data_type: str, fill: Any) -> dict[str, Any]:
    return {
        "zarr_format": 3,
        "node_type": "array",
        "shape": [10, 3, 2],
        "data_type": data_type,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [5, 3, 2]}},
        "chunk_key_encoding": {"name": "default"},
        "fill_value": fill,
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
    }


@pytest.mark.parametrize(
    ("data_type", "fill", "v2"),
    [("float32", "0x7fc00000", "NaN"), ("float64", "0x3ff0000000000000", 1.0)],
)
def test_a_format3_hex_float_fill_value_reads_as_format2_writes_it(
    data_type: str, fill: str, v2: Any
) -> None:
    zarray = parse_array(_v3(data_type, fill), "a", "store").zarray
    assert zarray["fill_value"] == v2
    validate_array_meta(zarray, "store/a")


@pytest.mark.hostile
@pytest.mark.parametrize(("data_type", "fill"), [("int8", 1000), ("float16", 1e300)])
def test_a_format3_fill_value_out_of_range_is_refused(data_type: str, fill: Any) -> None:
    with pytest.raises(BadDataError, match=re.escape(f"fill_value {fill!r} does not fit")):
        validate_array_meta(parse_array(_v3(data_type, fill), "a", "store").zarray, "store/a")
