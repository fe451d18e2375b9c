"""`zarrgeno consolidate` and what `info` says about consolidated metadata."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from conftest import build_store
from zarrgeno.cli import app
from zarrgeno.errors import BadDataError, MissingInputError, UsageError
from zarrgeno.io.consolidate import consolidate_store
from zarrgeno.io.inspection import inspect_store
from zarrgeno.io.store import open_store
from zarrgeno.io.validation import consolidated_mismatches

runner = CliRunner()


def test_writes_what_zarr_would(dir_store, tmp_path: Path) -> None:
    path, written = dir_store
    twin = tmp_path / "twin.zarr"
    shutil.copytree(path, twin)
    zarr.consolidate_metadata(str(twin))
    report = consolidate_store(path)
    assert (report.before, report.written, report.n_arrays, report.n_groups) == (
        "absent",
        True,
        3,
        5,
    )
    ours = json.loads((path / ".zmetadata").read_text())
    assert ours == json.loads((twin / ".zmetadata").read_text())
    _, group = open_store(path)
    assert isinstance(group.store, zarr.storage.ConsolidatedMetadataStore)
    np.testing.assert_array_equal(group["X/calldata/GT"][:], written["X"])
    again = consolidate_store(path)
    assert (again.before, again.written) == ("agreed", False)


def test_info_reports_presence_and_agreement(dir_store) -> None:
    path, _ = dir_store
    assert inspect_store(path).consolidated_agrees is None
    assert "no consolidated metadata" in runner.invoke(app, ["info", str(path), "--summary"]).stdout
    consolidate_store(path)
    assert inspect_store(path).consolidated_agrees is True
    root = zarr.open_group(str(path), mode="a")
    root.attrs["release"] = "v3"  # written to .zattrs only: .zmetadata is now stale
    root.create_dataset("2L/variants/POS", data=np.arange(1000, dtype="i4"), chunks=(300,))
    info = inspect_store(path)
    assert info.consolidated_agrees is False
    assert info.consolidated_mismatches == (
        (".zattrs", "differs"),
        ("2L/variants/.zgroup", "not consolidated"),
        ("2L/variants/POS/.zarray", "not consolidated"),
    )
    result = runner.invoke(app, ["info", str(path), "--summary"])
    assert "consolidated metadata, disagrees on 3 documents" in result.stdout
    assert (
        "2L/variants/POS/.zarray: missing from .zmetadata (zarr will not see it)" in result.stdout
    )
    assert f"Rewrite it with: zarrgeno consolidate {path}" in result.stdout
    data = json.loads(runner.invoke(app, ["info", str(path), "--json"]).stdout)
    assert data["consolidated_agrees"] is False and len(data["consolidated_mismatches"]) == 3

    result = runner.invoke(app, ["consolidate", str(path)])
    assert result.exit_code == 0, result.output
    assert "replaced one that disagreed on 3 documents" in result.stdout
    assert inspect_store(path).consolidated_agrees is True
    _, group = open_store(path)
    assert "2L/variants/POS" in group and group.attrs["release"] == "v3"


def test_stale_entries_of_removed_arrays(dir_store) -> None:
    path, _ = dir_store
    consolidate_store(path)
    shutil.rmtree(path / "X")
    assert consolidated_mismatches(zarr.storage.DirectoryStore(str(path))) == [
        ("X/.zgroup", "stale"),
        ("X/calldata/.zgroup", "stale"),
        ("X/calldata/GT/.zarray", "stale"),
    ]
    report = consolidate_store(path)
    assert report.before == "disagreed" and len(report.mismatches) == 3
    assert [a.path for a in inspect_store(path).arrays] == ["2L/calldata/GT", "samples"]


@pytest.mark.hostile
def test_disagreeing_zarray_blocks_opening_until_reconsolidated(dir_store) -> None:
    path, _ = dir_store
    consolidate_store(path)
    meta = json.loads((path / "2L/calldata/GT/.zarray").read_text())
    meta["fill_value"] = 0
    (path / "2L/calldata/GT/.zarray").write_text(json.dumps(meta))
    result = runner.invoke(app, ["info", str(path)])
    assert result.exit_code == 4
    assert f"re-consolidate it with `zarrgeno consolidate {path}`" in result.stderr
    report = consolidate_store(path)
    assert report.mismatches == (("2L/calldata/GT/.zarray", "differs"),)
    assert inspect_store(path).arrays[0].fill_value == 0


@pytest.mark.hostile
def test_unreadable_zmetadata_is_replaced(dir_store) -> None:
    path, _ = dir_store
    (path / ".zmetadata").write_text("{not json")
    assert runner.invoke(app, ["info", str(path)]).exit_code == 4
    result = runner.invoke(app, ["consolidate", str(path), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["before"] == "invalid"
    assert inspect_store(path).consolidated_agrees is True


@pytest.mark.hostile
def test_hostile_array_metadata_is_refused_and_nothing_written(dir_store) -> None:
    path, _ = dir_store
    meta = json.loads((path / "X/calldata/GT/.zarray").read_text())
    meta["compressor"] = {"id": "pickle"}
    (path / "X/calldata/GT/.zarray").write_text(json.dumps(meta))
    with pytest.raises(BadDataError, match="pickle"):
        consolidate_store(path)
    assert not (path / ".zmetadata").exists()


@pytest.mark.hostile
def test_refusals(dir_store, tmp_path: Path) -> None:
    path, _ = dir_store
    with pytest.raises(UsageError, match="local stores only"):
        consolidate_store("https://example.org/store.zarr")
    archive = tmp_path / "store.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in path.rglob("*"):
            if f.is_file():
                zf.write(f, f.relative_to(path).as_posix())
    with pytest.raises(UsageError, match="zip"):
        consolidate_store(archive)
    with pytest.raises(MissingInputError):
        consolidate_store(tmp_path / "nothing")
    result = runner.invoke(app, ["consolidate", str(tmp_path / "nothing")])
    assert result.exit_code == 3 and not (tmp_path / "nothing").exists()
    (tmp_path / "plain").mkdir()
    with pytest.raises(MissingInputError, match=r"no \.zgroup"):
        consolidate_store(tmp_path / "plain")


def test_memory_store_and_help() -> None:
    store = zarr.MemoryStore()
    build_store(store)
    assert consolidate_store(store).written and ".zmetadata" in store
    assert runner.invoke(app, ["consolidate", "--help"]).stdout.count("Example:") == 1


@pytest.mark.fault
def test_part_file_of_a_killed_run_is_removed(dir_store) -> None:
    """``.zmetadata`` is written as a part file named after the process and renamed: the
    one a killed run left is removed by the next run, so only Zarr's keys remain."""
    path, _ = dir_store
    dead = path / ".zmetadata.part-999999999-1"  # no such process
    dead.write_text("{half")
    live = path / f".zmetadata.part-{os.getppid()}-1"  # a run still going: not touched
    live.write_text("{half")
    consolidate_store(path)
    assert not dead.exists() and live.exists()
    assert json.loads((path / ".zmetadata").read_text())["zarr_consolidated_format"] == 1
    live.unlink()
    assert {p.name for p in path.iterdir() if p.is_file()} == {".zgroup", ".zattrs", ".zmetadata"}
