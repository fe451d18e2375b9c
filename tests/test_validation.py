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
from zarrgeno.store import find_genotypes, open_store
from zarrgeno.validation import UNSAFE_PICKLE_ENV, validate_array_meta

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
    result = CliRunner().invoke(app, ["info", str(path)])
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


@pytest.mark.hostile
def test_hostile_consolidated_entry(tmp_path: Path) -> None:
    path = tmp_path / "store.zarr"
    build_store(str(path))
    zarr.consolidate_metadata(str(path))
    doc = json.loads((path / ".zmetadata").read_text())
    doc["metadata"]["2L/calldata/GT/.zarray"]["dimension_separator"] = "/../x/"
    (path / ".zmetadata").write_text(json.dumps(doc))
    with pytest.raises(BadDataError, match="dimension_separator"):
        open_store(path)


@pytest.mark.hostile
def test_not_json(tmp_path: Path) -> None:
    path = tmp_path / "store.zarr"
    build_store(str(path))
    (path / "X" / "calldata" / "GT" / ".zarray").write_bytes(b"\x00\xff not json")
    with pytest.raises(BadDataError, match="not valid JSON"):
        open_store(path)


@pytest.mark.hostile
def test_genotypes_must_be_int8() -> None:
    store = zarr.MemoryStore()
    root = zarr.open_group(store, mode="w")
    root.zeros("2L/calldata/GT", shape=(10, 3, 2), dtype="i4")
    with pytest.raises(BadDataError, match="must be int8, got int32"):
        find_genotypes(open_store(store)[1])


@pytest.mark.hostile
def test_unsafe_pickle_environment_refused(monkeypatch: pytest.MonkeyPatch, memory_store) -> None:
    monkeypatch.setenv(UNSAFE_PICKLE_ENV, "1")
    with pytest.raises(UsageError, match=UNSAFE_PICKLE_ENV):
        open_store(memory_store[0])
