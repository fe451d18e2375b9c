"""Rechunking stores: round trips on every backend, metadata, the rest of the store, refusals."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from unittest import mock

import numcodecs
import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import SMALL_CHUNKS, build_store
from zarrgeno.cli import app
from zarrgeno.errors import StoreIOError, TargetExistsError, UsageError
from zarrgeno.io.compression import parse_compressor
from zarrgeno.io.mark import MARK_ATTR
from zarrgeno.io.writing import STAGING_TAG
from zarrgeno.rewrite import blockcopy
from zarrgeno.rewrite.execute import TEMP_DIR, execute_store
from zarrgeno.rewrite.storeplan import plan_store
from zarrgeno.rewrite.verify import verify_stores

runner = CliRunner()
GT = "2L/calldata/GT"


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` with a hash of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if STAGING_TAG in p.name or TEMP_DIR in p.name)


@pytest.mark.parametrize("backend", ["sequential", "dask"])
@pytest.mark.parametrize("spec", ["100,7,2", "-1,3,1", "1000,1,2", "7,7,2"])
def test_round_trip_in_memory(memory_store, backend: str, spec: str) -> None:
    store, genotypes = memory_store
    plan = plan_store(store, chunks=spec, max_mem="100MB", backend=backend, workers=2)
    target = zarr.MemoryStore()
    result = execute_store(plan, target, verify=True)
    assert result.verified and [a.path for a in result.arrays] == [
        "2L/calldata/GT",
        "X/calldata/GT",
    ]
    root = zarr.open_group(target, mode="r")
    for contig, gt in genotypes.items():
        arr = root[f"{contig}/calldata/GT"]
        np.testing.assert_array_equal(arr[:], gt)
        expected = tuple(
            n if int(c) == -1 else min(int(c), n)
            for c, n in zip(spec.split(","), gt.shape, strict=True)
        )
        assert arr.chunks == expected
        assert arr.fill_value == -1 and arr.dtype == np.int8
        assert arr.compressor == numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE)
    assert root.attrs["description"] == "test store"
    assert root["samples"][:].tolist() == [f"S{i:03d}".encode() for i in range(7)]


def test_intermediate_stage_writes_and_removes_its_temp_store(dir_store, tmp_path: Path) -> None:
    path, genotypes = dir_store
    with mock.patch("zarrgeno.rewrite.arrayplan.TASK_ALLOWANCE", 0):
        plan = plan_store(path, chunks="1000,1,1", max_mem="20kB", backend="dask", workers=2)
    job = plan.jobs[0].plan
    assert job.intermediate_chunks is not None and [s.name for s in job.stages] == [
        "to-temp",
        "from-temp",
    ]
    seen = []
    original = blockcopy.copy_block

    def spy(key, *, config):
        seen.append(TEMP_DIR in str(getattr(config.target_store, "path", "")))
        original(key, config=config)

    with mock.patch("zarrgeno.rewrite.blockcopy.copy_block", spy):
        with mock.patch("zarrgeno.rewrite.arrayplan.TASK_ALLOWANCE", 0):  # verify within 20 kB too
            execute_store(plan, tmp_path / "out", verify=True)
    assert any(seen) and not all(seen)  # the temp store was written, then the target
    assert not (tmp_path / "out" / TEMP_DIR).exists() and leftovers(tmp_path) == []
    np.testing.assert_array_equal(zarr.open_group(str(tmp_path / "out"))[GT][:], genotypes["2L"])


@st.composite
def _cases(draw: st.DrawFn) -> tuple:
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 40)) for _ in range(ndim))
    source = tuple(draw(st.integers(1, n + 3)) for n in shape)
    spec = ",".join(str(draw(st.one_of(st.just(-1), st.integers(1, n + 3)))) for n in shape)
    max_mem = draw(st.integers(200, 20_000))
    backend = draw(st.sampled_from(["sequential", "dask"]))
    dtype = draw(st.sampled_from(["i1", "<i4", "<f8"]))
    seed = draw(st.integers(0, 2**16))
    return shape, source, spec, max_mem, backend, dtype, seed


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_cases())
def test_any_shape_chunks_and_budget_gives_back_identical_data(case: tuple) -> None:
    shape, source, spec, max_mem, backend, dtype, seed = case
    store = zarr.MemoryStore()
    root = zarr.open_group(store, mode="w")
    data = np.random.default_rng(seed).integers(-1, 3, size=shape).astype(dtype)
    root.create_dataset("x", data=data, chunks=source, fill_value=-1)
    try:
        with mock.patch("zarrgeno.rewrite.arrayplan.TASK_ALLOWANCE", 0):
            plan = plan_store(
                store, chunks=spec, arrays=["x"], max_mem=max_mem, backend=backend, workers=2
            )
    except UsageError as exc:
        assert "is too small" in str(exc)  # the only refusal for a valid spec
        return
    target = zarr.MemoryStore()
    execute_store(plan, target)
    out = zarr.open_array(target, path="x", mode="r")
    np.testing.assert_array_equal(out[...], data)
    assert out.fill_value == -1 and out.dtype == data.dtype
    wanted = [
        n if int(c) == -1 else min(int(c), n) for c, n in zip(spec.split(","), shape, strict=True)
    ]
    assert list(out.chunks) == wanted
    verify_stores(store, target)


def test_consolidated_metadata_is_written_when_the_source_had_it(tmp_path: Path) -> None:
    plain, consolidated = tmp_path / "plain.zarr", tmp_path / "cons.zarr"
    build_store(str(plain))
    build_store(str(consolidated))
    zarr.consolidate_metadata(str(consolidated))
    for src, expect in ((plain, False), (consolidated, True)):
        out = tmp_path / f"{src.stem}-out"
        result = execute_store(plan_store(src, chunks="500,7,2"), out)
        assert (out / ".zmetadata").exists() is expect and result.consolidated is expect
        if expect:
            meta = json.loads((out / ".zmetadata").read_text())["metadata"]
            assert meta[f"{GT}/.zarray"]["chunks"] == [500, 7, 2]
            assert meta[f"{GT}/.zarray"]["fill_value"] == -1


def test_compressor_and_checksum_are_applied(memory_store) -> None:
    store, genotypes = memory_store
    plan = plan_store(
        store, chunks="500,7,2", compressor=parse_compressor("zstd:5"), checksum="crc32"
    )
    target = zarr.MemoryStore()
    execute_store(plan, target, verify=True)
    arr = zarr.open_array(target, path=GT, mode="r")
    assert arr.compressor == numcodecs.Zstd(level=5)
    assert [f.codec_id for f in arr.filters] == ["crc32"]
    np.testing.assert_array_equal(arr[:], genotypes["2L"])
    meta = json.loads(target[f"{GT}/.zarray"])
    assert meta["fill_value"] == -1 and meta["chunks"] == [500, 7, 2]


def test_other_arrays_are_copied_byte_for_byte_and_array_selects(dir_store, tmp_path) -> None:
    path, _genotypes = dir_store
    pos = zarr.open_group(str(path))["2L"].create_dataset(
        "variants/POS", data=np.arange(1000, dtype="i4"), chunks=(128,)
    )
    pos.attrs["note"] = "positions"
    out = tmp_path / "out"
    execute_store(plan_store(path, chunks="-1,7,2", arrays=["X/calldata/GT"]), out)
    before, after = tree_digest(path), tree_digest(out)
    for key, digest in before.items():
        if key == ".zattrs":  # the root's, with the mark of the command that wrote it
            written = json.loads((out / key).read_text())
            assert written.pop(MARK_ATTR)["command"] == "rechunk"
            assert written == json.loads((path / key).read_text())
        elif not key.startswith("X/calldata/GT"):
            assert after[key] == digest, key  # 2L's GT, POS, samples, attributes: unchanged
    root = zarr.open_group(str(out), mode="r")
    assert root["2L/calldata/GT"].chunks == SMALL_CHUNKS
    assert root["X/calldata/GT"].chunks == (450, 7, 2)
    assert root["2L/variants/POS"].attrs["note"] == "positions"


def test_source_is_never_modified(dir_store, tmp_path: Path) -> None:
    path, _ = dir_store
    before = tree_digest(path)
    result = runner.invoke(
        app,
        [
            "rechunk",
            str(path),
            str(tmp_path / "o"),
            "--chunks",
            "50,2,1",
            "--verify",
            "--compressor",
            "zlib:1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert tree_digest(path) == before


@pytest.mark.fault
def test_failure_leaves_no_target_staging_or_temp(dir_store, tmp_path: Path) -> None:
    path, _ = dir_store
    with mock.patch("zarrgeno.rewrite.arrayplan.TASK_ALLOWANCE", 0):
        plan = plan_store(path, chunks="1000,1,1", max_mem="20kB", backend="dask", workers=2)
    calls = []
    original = blockcopy.copy_block

    def failing(key, *, config):
        calls.append(key)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        original(key, config=config)

    with mock.patch("zarrgeno.rewrite.blockcopy.copy_block", failing):
        with pytest.raises(StoreIOError, match="No space left"):
            execute_store(plan, tmp_path / "out")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


@pytest.mark.hostile
def test_mapping_target_refusals(memory_store) -> None:
    store, _ = memory_store
    plan = plan_store(store, chunks="100,7,2")
    with pytest.raises(TargetExistsError, match="is the source"):
        execute_store(plan, store)
    busy = zarr.MemoryStore()
    busy["x"] = b"1"
    with pytest.raises(TargetExistsError, match="not empty"):
        execute_store(plan, busy)
    execute_store(plan, busy, overwrite=True)
    assert "x" not in busy


def _run(*args: str):
    return runner.invoke(app, list(args))


def test_plan_prints_every_figure_and_writes_nothing(dir_store, tmp_path: Path) -> None:
    path, _ = dir_store
    target = tmp_path / "out"
    result = _run("rechunk", str(path), str(target), "--chunks", "1000,7,2", "--plan")
    assert result.exit_code == 0, result.output
    for field in (
        "source chunks",
        "target chunks",
        "read chunks",
        "intermediate chunks",
        "write chunks",
        "output chunk files",
        "temp store",
        "expected peak memory",
        "Dry run (--plan): nothing was written.",
    ):
        assert field in result.stdout
    assert "300 x 5 x 2" in result.stdout and "1000 x 7 x 2" in result.stdout
    assert not target.exists() and leftovers(tmp_path) == []
    data = json.loads(
        _run("rechunk", str(path), str(target), "--chunks", "1000,7,2", "--plan", "--json").stdout
    )
    assert [a["output_chunks"] for a in data["arrays"]] == [1, 1]
    assert data["arrays"][0]["target_chunks"] == [1000, 7, 2]
    assert data["expected_peak"] <= data["max_mem"] and not target.exists()


def test_cli_rechunk_writes_a_store_that_zarrgeno_accepts(dir_store, tmp_path: Path) -> None:
    path, _genotypes = dir_store
    out = tmp_path / "out"
    result = _run("rechunk", str(path), str(out), "--chunks", "-1,7,2", "--verify")
    assert result.exit_code == 0, result.output
    assert "verified identical to the source" in result.stdout and str(out) in result.stdout
    from zarrgeno.io.store import find_genotypes, open_store

    _, group = open_store(out)
    assert [g.chunks for g in find_genotypes(group)] == [(1000, 7, 2), (450, 7, 2)]
    again = _run("rechunk", str(path), str(out), "--chunks", "100,7,2", "--overwrite")
    assert again.exit_code == 0, again.output
    assert zarr.open_group(str(out), mode="r")[GT].chunks == (100, 7, 2)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("100,7", "has 2 value(s) but the array has 3 dimension(s)"),
        ("0,7,2", "0 is not allowed"),
        ("-2,7,2", "-2 is not allowed"),
        ("a,7,2", "'a' is not an integer"),
        ("1.5,7,2", "'1.5' is not an integer"),
    ],
)
@pytest.mark.hostile
def test_bad_chunk_specs_are_usage_errors(dir_store, tmp_path, spec: str, message: str) -> None:
    path, _ = dir_store
    result = _run("rechunk", str(path), str(tmp_path / "o"), "--chunks", spec)
    assert result.exit_code == 2 and message in result.stderr
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.hostile
def test_refusals(dir_store, tmp_path: Path) -> None:
    path, _ = dir_store
    (tmp_path / "exists").mkdir()
    (tmp_path / "exists" / "mine.txt").write_text("mine")
    link = tmp_path / "link"
    link.symlink_to(path)
    cases = [
        ([str(tmp_path / "exists")], 5, "already exists: a directory (1 entry; 1 file; 4 B)"),
        ([str(path), "--overwrite"], 5, "is the source store"),
        ([str(path / "2L" / "out")], 5, "lies inside the source store"),
        ([str(tmp_path), "--overwrite"], 5, "contains the source store"),
        ([str(link), "--overwrite"], 5, "is the source store"),
        ([str(tmp_path / "o"), "--max-mem", "lots"], 2, "size 'lots' is not understood"),
        ([str(tmp_path / "o"), "--max-mem", "100kB"], 2, "needs at least"),
        ([str(tmp_path / "o"), "--backend", "multiprocessing"], 2, "multiprocessing is a"),
        ([str(tmp_path / "o"), "--backend", "threads"], 2, "threads is a `zarrgeno stats`"),
        ([str(tmp_path / "o"), "--backend", "spark"], 2, "unknown backend 'spark'"),
        (
            [str(tmp_path / "o"), "--backend", "dask", "--scheduler", "tcp://h:1"],
            2,
            "--scheduler needs --backend distributed",
        ),
        ([str(tmp_path / "o"), "--array", "3R/calldata/GT"], 3, "no array '3R/calldata/GT'"),
        ([str(tmp_path / "o"), "--compressor", "snappy"], 2, "unknown compressor 'snappy'"),
        ([str(tmp_path / "o"), "--checksum", "md5"], 2, "unknown filter 'md5'"),
    ]
    before = tree_digest(path)
    for args, code, message in cases:
        result = _run("rechunk", str(path), *args, "--chunks", "100,7,2")
        assert result.exit_code == code, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1
    assert tree_digest(path) == before and not (tmp_path / "o").exists()
    missing = _run("rechunk", str(tmp_path / "nope"), str(tmp_path / "o"), "--chunks", "1,1,1")
    assert missing.exit_code == 3


@pytest.mark.hostile
def test_chunk_larger_than_blosc_allows_is_refused(tmp_path: Path) -> None:
    store = zarr.MemoryStore()
    root = zarr.open_group(store, mode="w")
    root.create_dataset(
        "big", shape=(2**20, 2**12), chunks=(2**10, 2**12), dtype="i1", fill_value=0
    )
    with pytest.raises(UsageError, match="allow at most"):
        plan_store(store, chunks="-1,-1", arrays=["big"], max_mem="100GB")


def test_distributed_backend_on_a_local_cluster(dir_store, tmp_path: Path) -> None:
    path, genotypes = dir_store
    out = tmp_path / "out"
    result = _run(
        "rechunk",
        str(path),
        str(out),
        "--chunks",
        "200,7,2",
        "--backend",
        "distributed",
        "--workers",
        "2",
        "--max-mem",
        "200MB",
    )
    assert result.exit_code == 0, result.output
    root = zarr.open_group(str(out), mode="r")
    for contig, gt in genotypes.items():
        np.testing.assert_array_equal(root[f"{contig}/calldata/GT"][:], gt)
    assert math.prod(root[GT].chunks) == 200 * 7 * 2


@pytest.mark.fault
def test_unreachable_scheduler_is_a_cluster_error(dir_store, tmp_path: Path) -> None:
    path, _ = dir_store
    result = _run(
        "rechunk",
        str(path),
        str(tmp_path / "o"),
        "--chunks",
        "100,7,2",
        "--scheduler",
        "tcp://127.0.0.1:9",
        "--timeout",
        "0.5",
    )
    assert result.exit_code == 7, result.output
    assert "cannot reach a dask scheduler at tcp://127.0.0.1:9" in result.stderr
    assert not (tmp_path / "o").exists() and leftovers(tmp_path) == []


def test_vcf_zarr_layout_and_zip_source(tmp_path: Path) -> None:
    """VCF Zarr's shared call_genotype is rechunked once; a .zip store is a valid source."""
    store = zarr.storage.ZipStore(str(tmp_path / "vcf.zip"), mode="w")
    root = zarr.group(store)
    gt = np.random.default_rng(1).integers(-1, 2, size=(500, 4, 2)).astype("i1")
    root.create_dataset("call_genotype", data=gt, chunks=(100, 4, 2), fill_value=-1)
    root.create_dataset("variant_contig", data=np.repeat([0, 1], [300, 200]).astype("i1"))
    root.create_dataset("contig_id", data=np.array(["2L", "X"], dtype="U2"))
    root.create_dataset("sample_id", data=np.array(["a", "b", "c", "d"], dtype="U1"))
    store.close()
    out = tmp_path / "out"
    result = _run("rechunk", str(tmp_path / "vcf.zip"), str(out), "--chunks", "-1,2,2", "--verify")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("call_genotype") == 1
    root = zarr.open_group(str(out), mode="r")
    assert root["call_genotype"].chunks == (500, 2, 2)
    np.testing.assert_array_equal(root["call_genotype"][:], gt)
    assert root["contig_id"][:].tolist() == ["2L", "X"]


@pytest.mark.parametrize("command", ["rechunk", "recompress"])
def test_help_lists_every_backend_and_each_is_accepted(command: str) -> None:
    from zarrgeno.rewrite.executors import BACKENDS, resolve_backend

    text = " ".join(runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"}).stdout.split())
    for name in BACKENDS:
        assert name in text
        assert resolve_backend(name, None, 2)[0] == name
    assert "Example: zarrgeno" in text


def _file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_the_same_rewrite_gives_the_same_bytes_on_every_backend(tmp_path: Path) -> None:
    """Blosc's own threads write a chunk's blocks in the order they finish, so a chunk
    encoded with them differs from run to run; the copy tasks encode on one thread each.
    The sequential backend encodes in the main thread, where numcodecs would use them."""
    from zarrgeno.simulate.genotypes import simulate_store

    source = tmp_path / "src.zarr"
    simulate_store(str(source), contigs=("2L",), scale=0.004, seed=3)
    outputs = []
    for n, backend in enumerate(["sequential", "sequential", "dask", "sequential"]):
        target = tmp_path / f"out{n}.zarr"
        args = ["rechunk", str(source), str(target), "--chunks", "20000,81,2", "-b", backend]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        outputs.append(_file_hashes(target))
    assert all(o == outputs[0] for o in outputs[1:])
