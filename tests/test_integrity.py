"""`zarrgeno verify STORE`: every missing, unreadable or corrupt chunk, listed with counts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from conftest import build_store, random_genotypes
from zarrgeno.cli import app
from zarrgeno.io.integrity import check_store

runner = CliRunner()


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def test_clean_store(dir_store) -> None:
    path, _ = dir_store
    report = check_store(str(path))
    assert report.ok and report.nchunks == 8 + 4 + 1
    result = runner.invoke(app, ["verify", str(path)])
    assert result.exit_code == 0, result.output
    assert "all chunks read and decoded: 13 checked" in result.stdout


@pytest.mark.hostile
def test_every_bad_chunk_is_listed(tmp_path: Path) -> None:
    path = tmp_path / "store.zarr"
    build_store(str(path))
    gt = path / "2L" / "calldata" / "GT"
    (gt / "0.0.0").unlink()  # missing
    (gt / "1.1.0").write_bytes((gt / "1.1.0").read_bytes()[:20])  # truncated
    (gt / "2.0.0").unlink()
    (gt / "2.0.0").symlink_to(tmp_path / "gone")  # dangling symlink: missing
    (path / "X" / "calldata" / "GT" / "1.0.0").write_bytes(bytes(64))  # zeros
    before = _digest(path)
    result = runner.invoke(app, ["verify", str(path), "--json"])
    assert result.exit_code == 4
    data = json.loads(result.stdout)
    kinds = sorted((p["key"], p["kind"]) for p in data["problems"])
    assert kinds == [
        ("2L/calldata/GT/0.0.0", "missing"),
        ("2L/calldata/GT/1.1.0", "corrupt"),
        ("2L/calldata/GT/2.0.0", "missing"),
        ("X/calldata/GT/1.0.0", "corrupt"),
    ]
    counts = {a["path"]: (a["missing"], a["corrupt"]) for a in data["arrays"]}
    assert counts == {"2L/calldata/GT": (2, 1), "X/calldata/GT": (0, 1), "samples": (0, 0)}
    assert result.stderr.startswith("Error: 4 bad chunk(s) of 13 in")
    assert _digest(path) == before  # reading never modifies


@pytest.mark.hostile
def test_checksum_catches_a_bit_flip_that_decodes(tmp_path: Path) -> None:
    path = tmp_path / "crc.zarr"
    root = zarr.open_group(str(path), mode="w")
    root.create_dataset(
        "2L/calldata/GT",
        data=random_genotypes(200, 4, seed=5),
        chunks=(100, 4, 2),
        compressor=None,
        filters=[numcodecs.CRC32()],
    )
    chunk = path / "2L" / "calldata" / "GT" / "1.0.0"
    raw = bytearray(chunk.read_bytes())
    raw[10] ^= 0x01  # uncompressed: decodes fine, only the checksum can tell
    chunk.write_bytes(bytes(raw))
    report = check_store(str(path))
    assert [(p.key, p.kind) for p in report.problems] == [("2L/calldata/GT/1.0.0", "corrupt")]
    assert report.arrays[0].checksummed
    assert np.asarray(zarr.open_group(str(path), mode="r")["2L/calldata/GT"][:100]).shape == (
        100,
        4,
        2,
    )


def test_selected_array_and_unknown_array(dir_store) -> None:
    path, _ = dir_store
    report = check_store(str(path), arrays=["X/calldata/GT"])
    assert [a.path for a in report.arrays] == ["X/calldata/GT"] and report.nchunks == 4
    result = runner.invoke(app, ["verify", str(path), "--array", "3R/calldata/GT"])
    assert result.exit_code == 3 and "no array 3R/calldata/GT" in result.stderr
