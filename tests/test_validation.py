"""Hostile and broken metadata is refused before zarr opens anything."""

from __future__ import annotations

import json
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
