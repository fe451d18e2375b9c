"""Every writer on arrays shorter than one chunk (variants, samples, both, none), via the CLI.

Published Ag3 stores declare chunks (300000, 50, 2) on arrays with fewer variants or samples
than that (zarr allows it and keeps the declared chunks); rechunker refuses such chunks, so
zarrgeno plans with chunks clamped to the shape (zarrgeno.rewrite.arrayplan.clamp_chunks).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import zarr
from httpserver import StoreServer
from hypothesis import given, settings
from hypothesis import strategies as st
from test_stats_reference import naive_counts
from typer.testing import CliRunner

from conftest import build_store
from zarrgeno.chunkgrid import parse_chunks
from zarrgeno.cli import app
from zarrgeno.errors import UsageError
from zarrgeno.rewrite.arrayplan import clamp_chunks, plan_rechunk

runner = CliRunner()
GT = "2L/calldata/GT"
#: The published Ag3 chunking, scaled down 1000x along variants to keep the tests fast.
CHUNKS = (300, 50, 2)
#: Genotype shapes (variants, samples) below one chunk on some axis, or empty.
CASES = {
    "variants": (67, 81),
    "samples": (1000, 31),
    "both": (67, 31),
    "no-variants": (0, 31),
    "no-samples": (50, 0),
    "nothing": (0, 0),
}


@pytest.fixture(params=list(CASES), ids=list(CASES))
def small(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A store whose 2L/calldata/GT is CASES[param] x 2, chunked CHUNKS, and its calls."""
    n, s = CASES[request.param]
    path = tmp_path / "src.zarr"
    written = build_store(str(path), contigs={"2L": n}, n_samples=s, chunks=CHUNKS)
    return path, written["2L"]


def files_digest(path: Path) -> str:
    """One hash over every file of a directory store: to show a source is untouched."""
    digest = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            digest.update(str(p.relative_to(path)).encode() + b"\0" + p.read_bytes())
    return digest.hexdigest()


def assert_same_arrays(source: Path, target: Path) -> None:
    """Every array of ``source`` is in ``target`` with the same shape, dtype and values."""
    src, dst = zarr.open_group(str(source), mode="r"), zarr.open_group(str(target), mode="r")
    paths: list[str] = []
    src.visitvalues(lambda v: paths.append(v.path) if isinstance(v, zarr.Array) else None)
    assert GT in paths
    for path in paths:
        a, b = src[path], dst[path]
        assert (a.shape, a.dtype) == (b.shape, b.dtype), path
        np.testing.assert_array_equal(a[...], b[...], err_msg=path)


def one_line_error(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


def test_recompress_keeps_the_declared_chunks(small, tmp_path: Path) -> None:
    path, _ = small
    before = files_digest(path)
    target = tmp_path / "out.zarr"
    res = runner.invoke(
        app, ["recompress", str(path), str(target), "--compressor", "zstd:5", "--verify"]
    )
    assert res.exit_code == 0, res.output
    assert "verified identical" in res.output
    written = zarr.open_array(str(target), path=GT, mode="r")
    # A faithful copy: only the codec changes, the chunks stay as the store declared them.
    assert written.chunks == CHUNKS and written.compressor.codec_id == "zstd"
    assert_same_arrays(path, target)
    assert files_digest(path) == before


@pytest.mark.parametrize("spec", ["1000000,1000,2", "-1,-1,-1", "70,3,1"])
def test_rechunk_clamps_to_the_shape(small, tmp_path: Path, spec: str) -> None:
    path, gt = small
    target = tmp_path / "out.zarr"
    res = runner.invoke(app, ["rechunk", str(path), str(target), "--chunks", spec, "--verify"])
    assert res.exit_code == 0, res.output
    written = zarr.open_array(str(target), path=GT, mode="r")
    assert written.chunks == parse_chunks(spec, gt.shape)
    assert_same_arrays(path, target)


@pytest.mark.parametrize("fmt", ["zarr", "tsv"])
def test_stats_output_equals_the_reference(small, tmp_path: Path, fmt: str) -> None:
    path, gt = small
    out = tmp_path / f"counts.{fmt}"
    res = runner.invoke(app, ["stats", str(path), "--output", str(out)])
    assert res.exit_code == 0, res.output
    ref = naive_counts(gt)
    if fmt == "zarr":
        root = zarr.open_group(str(out), mode="r")
        got = np.array([root[f"2L/variants/{k}"][:] for k in ("n_missing", "n_hom_ref", "n_het")])
        samples = np.array(
            [root[f"2L/samples/{k}"][:] for k in ("n_missing", "n_hom_ref", "n_het")]
        )
    else:
        variants = _tsv(out / "variants.tsv", ("MISSING_CT", "HOM_REF_CT", "HET_CT"))
        got = variants.reshape(-1, 3).T
        samples = _tsv(out / "samples.tsv", ("MISSING_CT", "HOM_REF_CT", "HET_CT")).reshape(-1, 3).T
    np.testing.assert_array_equal(got.reshape(3, -1), ref.variant)
    np.testing.assert_array_equal(samples.reshape(3, -1), ref.sample)


def _tsv(path: Path, columns: tuple[str, ...]) -> np.ndarray:
    header, *rows = path.read_text().splitlines()
    names = header.split("\t")
    at = [names.index(c) for c in columns]
    return np.array([[int(r.split("\t")[i]) for i in at] for r in rows], dtype=np.int64)


def test_consolidate_then_open(small) -> None:
    path, gt = small
    res = runner.invoke(app, ["consolidate", str(path)])
    assert res.exit_code == 0, res.output
    root = zarr.open_consolidated(str(path), mode="r")
    np.testing.assert_array_equal(root[GT][...], gt)
    assert runner.invoke(app, ["verify", str(path)]).exit_code == 0


def test_download_mirrors_small_arrays(small, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ZARRGENO_HTTP_TIMEOUT", "2")
    path, _ = small
    dest = tmp_path / "mirror"
    with StoreServer(path.parent) as server:
        res = runner.invoke(app, ["download", server.url(path.name), str(dest), "--verify"])
    assert res.exit_code == 0, res.output
    assert_same_arrays(path, dest)


def test_published_ag3_chunks_recompress_and_plan(tmp_path: Path) -> None:
    """A published Ag3 case: 67,835 variants x 31 samples under chunks (300000, 50, 2)."""
    path = tmp_path / "ag3.zarr"
    build_store(str(path), contigs={"2L": 67835}, n_samples=31, chunks=(300000, 50, 2))
    plan = runner.invoke(
        app, ["recompress", str(path), str(tmp_path / "p"), "--compressor", "zstd:3", "--plan"]
    )
    assert plan.exit_code == 0, plan.output
    target = tmp_path / "out.zarr"
    res = runner.invoke(app, ["recompress", str(path), str(target), "--compressor", "zstd:3"])
    assert res.exit_code == 0, res.output
    assert zarr.open_array(str(target), path=GT, mode="r").chunks == (300000, 50, 2)
    assert_same_arrays(path, target)


@pytest.mark.parametrize(("scale", "samples"), [(1e-7, 1), (1e-6, 3), (1e-6, 49)])
def test_simulate_tiny_then_every_reader(tmp_path: Path, scale: float, samples: int) -> None:
    store = tmp_path / "sim.zarr"
    res = runner.invoke(
        app, ["simulate", str(store), "--scale", str(scale), "--samples", str(samples)]
    )
    assert res.exit_code == 0, res.output
    gt = zarr.open_array(str(store), path=GT, mode="r")
    assert gt.shape[1] == samples and gt.shape[0] < 300000
    stats = runner.invoke(app, ["stats", str(store), "-c", "2L", "--json"])
    assert stats.exit_code == 0, stats.output
    assert '"total_pos": ' + str(gt.shape[0]) in stats.output
    target = tmp_path / "re.zarr"
    res = runner.invoke(app, ["recompress", str(store), str(target), "--compressor", "lz4"])
    assert res.exit_code == 0, res.output
    assert_same_arrays(store, target)


def test_simulate_refuses_empty_sizes(tmp_path: Path) -> None:
    for args in (["--scale", "0"], ["--samples", "0"]):
        res = runner.invoke(app, ["simulate", str(tmp_path / "s.zarr"), *args])
        assert res.exit_code == 2
        assert one_line_error(res.output).startswith("Error:")


@pytest.mark.parametrize(
    "failure", [ValueError("Invalid chunk_limits (1, 2).\nmore"), AssertionError()]
)
def test_planner_errors_are_one_line(tmp_path: Path, monkeypatch, failure: Exception) -> None:
    import rechunker.algorithm

    def broken(*args: object, **kwargs: object) -> None:
        raise failure

    monkeypatch.setattr(rechunker.algorithm, "rechunking_plan", broken)
    path = tmp_path / "src.zarr"
    build_store(str(path), contigs={"2L": 67}, n_samples=31, chunks=CHUNKS)
    for cmd in (["rechunk", "--chunks", "10,10,2"], ["recompress", "--compressor", "lz4"]):
        res = runner.invoke(app, [cmd[0], str(path), str(tmp_path / "out"), *cmd[1:]])
        assert res.exit_code == 2, res.output
        line = one_line_error(res.output)
        assert GT in line and "rechunker:" in line and "(67, 31, 2)" in line
    assert not (tmp_path / "out").exists()


@settings(max_examples=60, deadline=None)
@given(
    shape=st.tuples(st.integers(0, 40), st.integers(0, 12), st.integers(1, 3)),
    source=st.tuples(st.integers(1, 60), st.integers(1, 20), st.integers(1, 4)),
    target=st.tuples(st.integers(1, 60), st.integers(1, 20), st.integers(1, 4)),
)
def test_any_chunks_plan(shape, source, target) -> None:
    """Chunks longer than the array on any axis plan as their clamped form does."""
    plan = plan_rechunk(shape, source, target, 1, 100_000_000)
    assert plan.target_chunks == target and plan.source_chunks == source
    clamped = clamp_chunks(target, shape)
    assert plan.output_chunks == (
        math.prod(math.ceil(n / c) for n, c in zip(shape, clamped, strict=True))
        if all(shape)
        else 0
    )
    for stage in plan.stages:
        assert all(k <= max(1, n) for k, n in zip(stage.key_chunks, shape, strict=True))


def test_clamp_chunks_rejects_nothing_a_store_allows() -> None:
    assert clamp_chunks((300000, 50, 2), (67835, 31, 2)) == (67835, 31, 2)
    assert clamp_chunks((300000, 50, 2), (0, 0, 2)) == (1, 1, 2)
    with pytest.raises(UsageError, match="must be positive"):
        plan_rechunk((10, 3, 2), (0, 3, 2), (10, 3, 2), 1, 10**8)
