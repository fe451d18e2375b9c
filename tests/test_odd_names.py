"""Stores whose paths have spaces, non-ASCII letters, '::' or '.zip' in a directory name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import build_store
from zarrgeno.cli import app

pytestmark = pytest.mark.hostile

runner = CliRunner()
NAMES = ["my store.zarr", "génotypes-ü.zarr", "run::2.zarr", "looks like.zip", "-dash.zarr"]


@pytest.mark.parametrize("name", NAMES)
def test_commands_accept_odd_store_names(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    build_store(str(path))
    location = str(path)
    info = runner.invoke(app, ["info", "--json", "--", location])
    assert info.exit_code == 0, info.output
    assert json.loads(info.stdout)["location"] == location
    stats = runner.invoke(app, ["stats", "--backend", "sequential", "--json", "--", location])
    assert stats.exit_code == 0, stats.output
    assert [c["total_pos"] for c in json.loads(stats.stdout)["contigs"]] == [1000, 450]
    verify = runner.invoke(app, ["verify", "--", location])
    assert verify.exit_code == 0, verify.output
    target = tmp_path / f"copy of {name}"
    rechunk = runner.invoke(
        app, ["rechunk", "--chunks", "500,7,2", "--max-mem", "50MB", "--", location, str(target)]
    )
    assert rechunk.exit_code == 0, rechunk.output
    same = runner.invoke(app, ["verify", "--", location, str(target)])
    assert same.exit_code == 0, same.output


@pytest.mark.parametrize("name", NAMES)
def test_simulate_and_recompress_write_odd_names(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    made = runner.invoke(
        app, ["simulate", "--contig", "X", "--scale", "0.0001", "--json", "--", str(path)]
    )
    assert made.exit_code == 0, made.output
    assert (path / "X" / "calldata" / "GT" / ".zarray").is_file()
    target = tmp_path / f"zstd {name}"
    done = runner.invoke(
        app, ["recompress", "--compressor", "zstd:3", "--", str(path), str(target)]
    )
    assert done.exit_code == 0, done.output
    assert (
        json.loads((target / "X" / "calldata" / "GT" / ".zarray").read_text())["compressor"]["id"]
        == "zstd"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, f"zstd {name}"])
