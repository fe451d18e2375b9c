"""`zarrgeno info`: the tree, zarr's .info fields, the summary table and --json."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import zarr
from typer.testing import CliRunner

from zarrgeno.cli import app
from zarrgeno.io.inspection import inspect_store

runner = CliRunner()


def test_info_fields_match_zarr(dir_store) -> None:
    path, _ = dir_store
    result = inspect_store(str(path))
    group = zarr.open_group(str(path), mode="r")
    for arr in result.arrays:
        ours = "\n".join(f"{k:<18} : {v}" for k, v in arr.info_items())
        assert ours == repr(group[arr.path].info).rstrip("\n")


def test_info_fields_match_zarr_with_filters(tmp_path: Path) -> None:
    """zarr lists filters (a checksum, an object codec) before the compressor."""
    import numcodecs
    import numpy as np

    root = zarr.open_group(str(tmp_path / "f.zarr"), mode="w")
    root.create_dataset("gt", data=np.zeros((20, 3, 2), "i1"), filters=[numcodecs.CRC32()])
    root.create_dataset(
        "names", data=np.array(["a", "bb", "ccc"], dtype=object), object_codec=numcodecs.VLenUTF8()
    )
    group = zarr.open_group(str(tmp_path / "f.zarr"), mode="r")
    for arr in inspect_store(str(tmp_path / "f.zarr")).arrays:
        ours = "\n".join(f"{k:<18} : {v}" for k, v in arr.info_items())
        assert ours == repr(group[arr.path].info).rstrip("\n")
        assert "Filter [0]" in ours
    names = inspect_store(str(tmp_path / "f.zarr"), "names").to_dict()["arrays"][0]
    assert (names["dtype"], names["filter_ids"]) == ("object", ["vlen-utf8"])


def test_info_numbers(memory_store) -> None:
    store, written = memory_store
    result = inspect_store(store)
    by_path = {a.path: a for a in result.arrays}
    gt = by_path["2L/calldata/GT"]
    assert gt.is_genotype and not by_path["samples"].is_genotype
    assert gt.shape == (1000, 7, 2) and gt.chunks == (300, 5, 2)
    assert gt.nbytes == written["2L"].nbytes == 14000
    assert gt.nchunks == gt.nchunks_initialized == 4 * 2
    chunk_bytes = sum(len(v) for k, v in store.items() if k.startswith("2L/calldata/GT/"))
    assert gt.nbytes_stored == chunk_bytes
    assert result.nbytes == sum(a.nbytes for a in result.arrays)
    assert result.to_dict()["totals"]["nchunks"] == 8 + 4 + 1


def test_consolidated_sizes_come_from_the_chunk_store(dir_store) -> None:
    path, _ = dir_store
    plain = inspect_store(str(path))
    zarr.consolidate_metadata(str(path))
    consolidated = inspect_store(str(path))
    assert consolidated.consolidated and not plain.consolidated
    assert [a.nbytes_stored for a in consolidated.arrays] == [a.nbytes_stored for a in plain.arrays]


def test_info_reads_no_chunk(memory_store) -> None:
    store, _ = memory_store

    class Spy(zarr.MemoryStore):
        reads: typing.ClassVar[list[str]] = []

        def __getitem__(self, key: str) -> bytes:
            Spy.reads.append(key)
            return super().__getitem__(key)

    spy = Spy()
    spy.update(store)
    inspect_store(spy)
    assert Spy.reads and all(k.rsplit("/", 1)[-1].startswith(".z") for k in Spy.reads)


def test_cli_info_text(dir_store) -> None:
    path, _ = dir_store
    result = runner.invoke(app, ["info", str(path)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "└── GT (1000, 7, 2) int8" in out
    assert "Chunks initialized : 8/8" in out
    assert "No. bytes          : 14000 (13.7K)" in out
    assert "2L/calldata/GT *" in out and "total (3 arrays)" in out


def test_cli_info_path_and_json(dir_store) -> None:
    path, _ = dir_store
    result = runner.invoke(app, ["info", str(path), "X/calldata/GT", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [a["path"] for a in data["arrays"]] == ["X/calldata/GT"]
    arr = data["arrays"][0]
    assert arr["shape"] == [450, 7, 2] and arr["nbytes"] == 6300
    assert arr["compressor_spec"] == "blosc:lz4:5:shuffle"
    assert arr["nchunks_initialized"] == 4 and arr["fill_value"] == -1


def test_cli_info_env_default(dir_store, monkeypatch) -> None:
    path, _ = dir_store
    monkeypatch.setenv("ZARRGENO_STORE", str(path))
    result = runner.invoke(app, ["info", "--summary"])
    assert result.exit_code == 0, result.output
    assert str(path) in result.stdout


def test_cli_info_errors(tmp_path: Path, dir_store) -> None:
    missing = runner.invoke(app, ["info", str(tmp_path / "absent")])
    assert missing.exit_code == 3
    assert missing.stderr.strip().splitlines() == [
        f"Error: no store at {tmp_path / 'absent'}; create one with "
        f"`zarrgeno simulate {tmp_path / 'absent'}`"
    ]
    assert not (tmp_path / "absent").exists()
    bad_path = runner.invoke(app, ["info", str(dir_store[0]), "3R/calldata/GT"])
    assert bad_path.exit_code == 3 and "no array or group '3R/calldata/GT'" in bad_path.stderr
    assert "Traceback" not in bad_path.output


def test_cli_version_and_help() -> None:
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.stdout.startswith("zarrgeno ")
    helptext = runner.invoke(app, ["info", "--help"])
    assert helptext.exit_code == 0 and "Example: zarrgeno info" in helptext.stdout


def test_cli_info_json_whole_store(dir_store) -> None:
    path, _ = dir_store
    result = runner.invoke(app, ["info", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    by_path = {a["path"]: a for a in data["arrays"]}
    assert by_path["samples"]["dtype"] == "|S24" and by_path["samples"]["fill_value"] == ""
    assert data["totals"]["nbytes"] == 14000 + 6300 + 7 * 24
