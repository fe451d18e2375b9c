"""Metadata that cannot crash, bomb or block a store needlessly, tried as a user would.

Every document zarr will read is read first with a size cap and a nesting cap; an array
whose documents are refused is hidden and named, and stops only the commands that need it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import zarr
from hostile import Tree, assert_refused, run_cli

from conftest import build_store
from zarrgeno.io.bounded import MAX_METADATA_ENV
from zarrgeno.io.documents import MAX_JSON_DEPTH, json_depth

DEEP = 100_000


def _deep(levels: int = DEEP) -> bytes:
    return b'{"a": ' + b"[" * levels + b"]" * levels + b"}"


def _store(tmp_path: Path, *, consolidated: bool = False) -> Path:
    path = tmp_path / "store.zarr"
    build_store(str(path))
    root = zarr.open_group(str(path), mode="a")
    root.create_dataset("2L/variants/ID", data=np.arange(1000), chunks=(300,))
    if consolidated:
        zarr.consolidate_metadata(str(path))
    return path


def _sparse(path: Path, size: int) -> None:
    """A document of ``size`` bytes that takes no disk space (zeros after a JSON start)."""
    with open(path, "wb") as f:
        f.write(b'{"a": "')
        f.truncate(size)


@pytest.mark.hostile
def test_a_huge_root_zattrs_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = _store(tmp_path)
    _sparse(path / ".zattrs", 200 * 10**6)
    tree = Tree(path)
    result = run_cli("verify", path, "--max-mem", "100MB")
    assert_refused(result, 4, says=(".zattrs holds more than 67,108,864 bytes",), max_rss_mb=100)
    tree.assert_unchanged()


@pytest.mark.hostile
def test_a_huge_array_zattrs_refuses_that_array_only(tmp_path: Path) -> None:
    path = _store(tmp_path)
    _sparse(path / "2L" / "variants" / "ID" / ".zattrs", 200 * 10**6)
    stats = run_cli("stats", path)
    assert stats.code == 0 and stats.peak_rss_mb < 300, stats
    info = run_cli("info", path, "--summary")
    assert info.code == 0, info
    assert "refused: 2L/variants/ID: metadata .zattrs holds more than" in info.out
    verify = run_cli("verify", path, "--max-mem", "100MB")
    assert_refused(verify, 4, says="store.zarr/2L/variants/ID: metadata .zattrs", max_rss_mb=100)


@pytest.mark.hostile
def test_the_metadata_cap_follows_the_environment(tmp_path: Path) -> None:
    path = _store(tmp_path)
    (path / ".zattrs").write_text(json.dumps({"description": "x" * 5000}))
    assert run_cli("info", path).code == 0
    small = run_cli("info", path, env={MAX_METADATA_ENV: "4096"})
    assert_refused(small, 4, says=".zattrs holds more than 4,096 bytes")


@pytest.mark.parametrize(
    ("key", "command", "says"),
    [
        (".zattrs", "info", ".zattrs is nested 100001 levels deep"),
        ("2L/calldata/GT/.zarray", "stats", "2L/calldata/GT: .zarray is nested 100001 levels"),
        ("2L/calldata/GT/.zattrs", "stats", "2L/calldata/GT: .zattrs is nested 100001 levels"),
        ("2L/.zgroup", "info", "2L/.zgroup is nested 100001 levels deep"),
    ],
)
@pytest.mark.hostile
def test_deeply_nested_metadata_is_refused_in_one_line(
    tmp_path: Path, key: str, command: str, says: str
) -> None:
    path = _store(tmp_path)
    (path / key).write_bytes(_deep())
    tree = Tree(path)
    assert_refused(run_cli(command, path), 4, says=says)
    tree.assert_unchanged()


@pytest.mark.hostile
def test_deeply_nested_consolidated_metadata_is_refused(tmp_path: Path) -> None:
    path = _store(tmp_path, consolidated=True)
    doc = json.loads((path / ".zmetadata").read_text())
    doc["metadata"][".zattrs"]["deep"] = "PLACEHOLDER"
    text = json.dumps(doc).replace('"PLACEHOLDER"', _deep().decode())
    (path / ".zmetadata").write_text(text)
    assert_refused(run_cli("info", path), 4, says=".zmetadata is nested 100004 levels deep")


def test_nesting_at_the_cap_opens_and_consolidates(tmp_path: Path) -> None:
    path = _store(tmp_path)
    value: object = 1
    for _ in range(MAX_JSON_DEPTH - 1):
        value = [value]
    (path / ".zattrs").write_text(json.dumps({"deep": value}))
    assert json_depth((path / ".zattrs").read_bytes()) == MAX_JSON_DEPTH
    assert run_cli("consolidate", path).code == 0
    assert run_cli("info", path, "--summary").code == 0  # .zmetadata holds it 2 levels down
    (path / ".zmetadata").unlink()
    (path / ".zattrs").write_text(json.dumps({"deep": [value]}))
    assert_refused(run_cli("info", path), 4, says=f"nested {MAX_JSON_DEPTH + 1} levels deep")


@pytest.mark.hostile
def test_a_refused_array_stops_only_the_commands_that_need_it(tmp_path: Path) -> None:
    path = _store(tmp_path)
    meta_path = path / "2L" / "variants" / "ID" / ".zarray"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "filters": [{"id": "pickle"}]}))
    tree = Tree(path)
    for args in (
        ["stats", path],
        ["info", path, "2L/calldata/GT"],
        ["verify", path, "--array", "X/calldata/GT"],
    ):
        result = run_cli(*args)
        assert result.code == 0, result
    info = run_cli("info", path, "--json")
    assert json.loads(info.out)["refused"] == [
        {"array": "2L/variants/ID", "reason": json.loads(info.out)["refused"][0]["reason"]}
    ]
    says = "store.zarr/2L/variants/ID: filter 'pickle' is not allowed"
    assert_refused(run_cli("verify", path), 4, says=says)
    assert_refused(run_cli("info", path, "2L/variants/ID"), 4, says=says)
    target = tmp_path / "copy.zarr"
    for command in ("rechunk", "--chunks", "100,7,2"), ("recompress", "--compressor", "zstd:3"):
        assert_refused(run_cli(command[0], path, target, *command[1:]), 4, says=says)
        assert not target.exists()
    tree.assert_unchanged()


@pytest.mark.hostile
def test_every_refused_array_a_command_needs_is_named_at_once(tmp_path: Path) -> None:
    path = _store(tmp_path)
    for array in ("2L/calldata/GT", "X/calldata/GT"):
        (path / array / ".zarray").write_bytes(b"not json")
    (path / "2L" / "variants" / "ID" / ".zarray").write_bytes(_deep(100))
    stats = run_cli("stats", path)
    assert_refused(stats, 4, says="store.zarr: 2 arrays refused: 2L/calldata/GT (.zarray is not")
    assert "X/calldata/GT (.zarray is not valid JSON" in stats.err
    assert "variants/ID" not in stats.err  # stats does not need it
    verify = run_cli("verify", path)
    assert_refused(verify, 4, says="3 arrays refused: 2L/calldata/GT (")
    assert "2L/variants/ID (.zarray is nested 101 levels deep" in verify.err


@pytest.mark.hostile
def test_a_huge_zarray_is_refused_without_being_read(tmp_path: Path) -> None:
    path = _store(tmp_path)
    _sparse(path / "2L" / "variants" / "ID" / ".zarray", 10**9)
    result = run_cli("stats", path)
    assert result.code == 0 and result.peak_rss_mb < 300, result
    assert os.path.getsize(path / "2L" / "variants" / "ID" / ".zarray") == 10**9


GT_BLOSC = {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0}
BAD_ARRAYS = {
    "fill NaN for int8": ({"fill_value": "NaN"}, "stats", "fill_value 'NaN' does not fit"),
    "fill text": ({"fill_value": "minus one"}, "stats", "fill_value 'minus one' does not fit"),
    "fill 1000 for int8": ({"fill_value": 1000}, "stats", "fill_value 1000 does not fit"),
    "fill dict": ({"fill_value": {"a": 1}}, "stats", "fill_value {'a': 1} does not fit"),
    "10**12 chunks, stats": (
        {"shape": [10**12, 7, 2], "chunks": [1, 7, 2]},
        "stats",
        "makes 1,000,000,000,000 chunks",
    ),
    "10**12 chunks, verify": (
        {"shape": [10**12, 7, 2], "chunks": [1, 7, 2]},
        "verify",
        "makes 1,000,000,000,000 chunks",
    ),
    "delta dtype zzz": ({"filters": [{"id": "delta", "dtype": "zzz"}]}, "stats", "'zzz'"),
    "delta keyword": (
        {"filters": [{"id": "delta", "dtype": "|i1", "level": 1}]},
        "stats",
        "unexpected keyword argument 'level'",
    ),
    "blosc typesize 0": ({"compressor": {**GT_BLOSC, "typesize": 0}}, "rechunk", "typesize"),
    "blosc shuffle 9": ({"compressor": {**GT_BLOSC, "shuffle": 9}}, "rechunk", "shuffle must"),
    "blosc clevel 99": ({"compressor": {**GT_BLOSC, "clevel": 99}}, "rechunk", "clevel must"),
    "scale 0": (
        {"filters": [{"id": "fixedscaleoffset", "offset": 0, "scale": 0, "dtype": "|i1"}]},
        "rechunk",
        "fixedscaleoffset scale must be a non-zero finite number",
    ),
}


@pytest.mark.hostile
@pytest.mark.parametrize("case", sorted(BAD_ARRAYS))
def test_bad_fill_values_grids_and_codec_configs_are_refused(tmp_path: Path, case: str) -> None:
    changes, command, says = BAD_ARRAYS[case]
    path = _store(tmp_path)
    meta_path = path / "2L" / "calldata" / "GT" / ".zarray"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), **changes}))
    tree = Tree(path)
    args = [command, path] + (
        [tmp_path / "out.zarr", "--chunks", "100,7,2"] if command == "rechunk" else []
    )
    result = run_cli(*args)
    assert_refused(result, 4, says=("store.zarr/2L/calldata/GT: ", says))
    assert "Warning" not in result.err, result
    assert not (tmp_path / "out.zarr").exists()
    tree.assert_unchanged()


@pytest.mark.hostile
@pytest.mark.parametrize("command", ["rechunk", "recompress"])
def test_a_store_with_transform_filters_is_copied_with_its_filters(
    tmp_path: Path, command: str
) -> None:
    import numcodecs

    path = tmp_path / "filters.zarr"
    root = zarr.open_group(str(path), mode="w")
    gt = np.random.default_rng(0).choice(np.array([0, 1, -1], dtype="i1"), size=(1000, 7, 2))
    shuffle = numcodecs.Shuffle(elementsize=1)
    root.create_dataset("2L/calldata/GT", data=gt, chunks=(300, 5, 2), filters=[shuffle])
    scaled = numcodecs.FixedScaleOffset(offset=0, scale=100, dtype="<f8", astype="u1")
    af = np.round(np.linspace(0, 1, 1000), 2)
    root.create_dataset("2L/variants/AF", data=af, chunks=(300,), filters=[scaled])
    target = tmp_path / "copy.zarr"
    arrays = ["--array", "2L/calldata/GT", "--array", "2L/variants/AF"]
    options = ["--chunks", "100,7,2"] if command == "rechunk" else ["--compressor", "zstd:3"]
    result = run_cli(
        command,
        path,
        target,
        *(arrays[:2] if command == "rechunk" else arrays),
        *options,
        "--verify",
    )
    assert result.code == 0, result
    copy = zarr.open_group(str(target), mode="r")
    assert copy["2L/calldata/GT"].filters == [shuffle]
    assert copy["2L/variants/AF"].filters == [scaled]
    assert np.array_equal(copy["2L/calldata/GT"][:], gt)
    assert np.array_equal(copy["2L/variants/AF"][:], af)


@pytest.mark.hostile
def test_a_refused_array_of_a_consolidated_store_is_listed_by_info(tmp_path: Path) -> None:
    path = _store(tmp_path, consolidated=True)
    (path / "2L" / "variants" / "ID" / ".zarray").write_bytes(b"not json")
    info = run_cli("info", path, "--summary")
    assert info.code == 0, info
    assert "refused: 2L/variants/ID: .zarray is not valid JSON" in info.out
    assert run_cli("stats", path).code == 0


@pytest.mark.hostile
def test_download_names_every_refused_array_and_deep_metadata(tmp_path: Path) -> None:
    from httpserver import StoreServer

    path = _store(tmp_path / "srv", consolidated=True)
    doc = json.loads((path / ".zmetadata").read_text())
    for array in ("2L/variants/ID", "X/calldata/GT"):
        doc["metadata"][f"{array}/.zarray"]["filters"] = [{"id": "pickle"}]
    (path / ".zmetadata").write_text(json.dumps(doc))
    dest = tmp_path / "mirror"
    with StoreServer(path.parent) as server:
        result = run_cli("download", server.url("store.zarr"), dest, "--retries", "0")
        assert_refused(result, 4, says=("2 arrays refused: 2L/variants/ID (filter 'pickle'",))
        assert "X/calldata/GT (filter 'pickle'" in result.err
        (path / ".zmetadata").write_bytes(_deep())
        result = run_cli("download", server.url("store.zarr"), dest, "--retries", "0")
        assert_refused(result, 4, says=".zmetadata is nested 100001 levels deep")
    assert not dest.exists()
