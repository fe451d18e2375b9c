"""Recompression: every allowed codec round-trips, checksums catch corruption, CLI forms."""

from __future__ import annotations

import json
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import SMALL_CHUNKS, build_store
from zarrgeno.cli import app
from zarrgeno.cli.rechunk import DEFAULT_RECOMPRESS_TARGET
from zarrgeno.errors import BadDataError
from zarrgeno.io.compression import BLOSC_CNAMES, SHUFFLES, format_codec, parse_compressor
from zarrgeno.rewrite.execute import execute_store
from zarrgeno.rewrite.recompress import plan_recompress, recompress
from zarrgeno.rewrite.verify import verify_stores

runner = CliRunner()
GT = "2L/calldata/GT"
SOURCE = zarr.MemoryStore()
GENOTYPES = build_store(SOURCE)


def _specs() -> st.SearchStrategy[str]:
    blosc = st.builds(
        "blosc:{}:{}:{}".format,
        st.sampled_from(BLOSC_CNAMES),
        st.integers(0, 9),
        st.sampled_from(sorted(SHUFFLES)),
    )
    levels = {
        "zstd": st.integers(-5, 22),
        "lz4": st.integers(1, 20),
        "zlib": st.integers(0, 9),
        "gzip": st.integers(0, 9),
        "bz2": st.integers(1, 9),
        "lzma": st.integers(0, 9),
    }
    others = [st.builds(f"{name}:{{}}".format, level) for name, level in levels.items()]
    return st.one_of(blosc, *others, st.sampled_from(["none", "lz4", "zstd", "gzip", "lzma"]))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=_specs(),
    checksum=st.sampled_from([None, "crc32", "adler32", "fletcher32"]),
    as_json=st.booleans(),
)
def test_every_allowed_codec_round_trips(spec: str, checksum: str | None, as_json: bool) -> None:
    codec = parse_compressor(spec)
    if as_json and codec is not None:
        spec = json.dumps(codec.get_config())
    target = zarr.MemoryStore()
    result = recompress(SOURCE, target, compressor=spec, checksum=checksum, verify=True)
    assert result.verified
    for contig, gt in GENOTYPES.items():
        arr = zarr.open_array(target, path=f"{contig}/calldata/GT", mode="r")
        np.testing.assert_array_equal(arr[:], gt)
        assert arr.chunks == SMALL_CHUNKS and arr.fill_value == -1
        assert format_codec(arr.compressor) == format_codec(codec)
        assert [f.codec_id for f in arr.filters or []] == ([checksum] if checksum else [])


def test_plan_keeps_chunks_and_needs_no_temp_store() -> None:
    plan = plan_recompress(SOURCE, compressor="blosc:zstd:7:bitshuffle", max_mem="50MB")
    for job in plan.jobs:
        assert job.plan.target_chunks == job.plan.source_chunks == SMALL_CHUNKS
        assert job.plan.intermediate_chunks is None and job.plan.temp_bytes == 0
        assert job.compressor_spec == "blosc:zstd:7:bitshuffle"


def _corrupt_payload(path: Path) -> None:
    """Flip one genotype byte inside an uncompressed, checksummed chunk file."""
    chunk = path / "2L" / "calldata" / "GT" / "1.0.0"
    data = bytearray(chunk.read_bytes())
    data[100] ^= 0x01
    chunk.write_bytes(bytes(data))


@pytest.mark.hostile
def test_checksum_filter_detects_later_corruption(tmp_path: Path) -> None:
    source = tmp_path / "src.zarr"
    build_store(str(source))
    out = tmp_path / "crc.zarr"
    result = runner.invoke(
        app, ["recompress", str(source), str(out), "--compressor", "none", "--checksum", "crc32"]
    )
    assert result.exit_code == 0, result.output
    assert [f.codec_id for f in zarr.open_array(str(out / GT)).filters] == ["crc32"]
    assert runner.invoke(app, ["verify", str(source), str(out)]).exit_code == 0
    _corrupt_payload(out)
    checked = runner.invoke(app, ["verify", str(source), str(out)])
    assert checked.exit_code == 4
    assert "2L/calldata/GT: cannot read the target" in checked.stderr
    assert "checksum do not match" in checked.stderr and "variants 300-600" in checked.stderr
    with pytest.raises(BadDataError, match=r"chunk 2L/calldata/GT/1\.0\.0"):
        verify_stores(source, out)


def test_without_a_checksum_the_same_corruption_is_a_silent_difference(tmp_path: Path) -> None:
    source = tmp_path / "src.zarr"
    build_store(str(source))
    out = tmp_path / "plain.zarr"
    execute_store(plan_recompress(source, compressor="none"), out)
    _corrupt_payload(out)
    with pytest.raises(BadDataError, match="contents differ in variants 300-600"):
        verify_stores(source, out)


def test_checksum_none_removes_one(tmp_path: Path) -> None:
    source = zarr.MemoryStore()
    root = zarr.open_group(source, mode="w")
    root.create_dataset(
        "x", data=np.arange(100, dtype="i2"), chunks=10, filters=[numcodecs.CRC32()], fill_value=0
    )
    target = zarr.MemoryStore()
    recompress(source, target, compressor="zlib:1", arrays=["x"], checksum="none", verify=True)
    assert zarr.open_array(target, path="x").filters is None
    kept = zarr.MemoryStore()
    recompress(source, kept, compressor="zlib:1", arrays=["x"])
    assert [f.codec_id for f in zarr.open_array(kept, path="x").filters] == ["crc32"]


def test_cli_forms(dir_store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, genotypes = dir_store
    monkeypatch.chdir(tmp_path)
    # One path is the source, as for rechunk; TARGET defaults to data/recompress.
    one = runner.invoke(app, ["recompress", str(path), "--compressor", "zstd:1"])
    assert one.exit_code == 0, one.output
    assert "zstd:1" in one.stdout and "copied" in one.stdout
    default = tmp_path / DEFAULT_RECOMPRESS_TARGET
    np.testing.assert_array_equal(zarr.open_group(str(default))[GT][:], genotypes["2L"])
    config = json.dumps({"id": "blosc", "cname": "zstd", "clevel": 7, "shuffle": 2})
    two = runner.invoke(
        app,
        [
            "recompress",
            str(path),
            str(tmp_path / "b"),
            "--compressor",
            config,
            "--verify",
            "--json",
        ],
    )
    assert two.exit_code == 0, two.output
    data = json.loads(two.stdout)
    assert data["verified"] and data["arrays"][0]["compressor"] == "blosc:zstd:7:bitshuffle"
    three = runner.invoke(app, ["recompress", str(path), "x", "y", "--compressor", "lz4"])
    assert three.exit_code == 2 and "unexpected extra argument" in three.stderr.lower()
    bad = runner.invoke(app, ["recompress", str(path), "c", "--compressor", "blosc:lz5"])
    assert bad.exit_code == 2 and "unknown Blosc cname 'lz5'" in bad.stderr
    missing = runner.invoke(app, ["recompress", str(path), "c"])
    assert missing.exit_code == 2 and not (tmp_path / "c").exists()
    plan = runner.invoke(app, ["recompress", str(path), "d", "--compressor", "gzip:9", "--plan"])
    assert plan.exit_code == 0 and "gzip:9" in plan.stdout and not (tmp_path / "d").exists()
    # With no path at all: $ZARRGENO_STORE, then data/recompress.
    monkeypatch.setenv("ZARRGENO_STORE", str(path))
    again = runner.invoke(app, ["recompress", "--compressor", "zstd:1", "--plan"])
    assert again.exit_code == 5 and "written by `zarrgeno recompress`" in again.stderr
