"""Genotype arrays whose ploidy axis is stored in several chunks, as sgkit's dask auto-chunking
writes them ((10000, 41, 1)), and arrays that are not diploid at all.

Results must not depend on chunking: every backend, every variant and sample chunking
(including chunks longer than the array) and ploidy chunks 1, 2 and 3 give the naive
reference's counts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_backends_distributed import dask_cluster
from test_stats_api import assert_matches
from test_stats_reference import chunkings, genotype_arrays, naive_counts
from typer.testing import CliRunner

from zarrgeno.cli import app
from zarrgeno.errors import BadDataError
from zarrgeno.io.store import StoreRef
from zarrgeno.stats.api import genotype_stats, plan_stats

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

runner = CliRunner()
GT = "2L/calldata/GT"
COMPRESSORS = {
    "blosc": numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE),
    "zstd": numcodecs.Zstd(3),
    "none": None,
}


def write_calls(
    store: zarr.storage.BaseStore | str,
    arrays: dict[str, np.ndarray],
    chunks: tuple[int, int, int],
    *,
    compressor: str = "blosc",
    fill_value: int | None = -1,
) -> None:
    """A MalariaGEN-layout store with zarr 2.18 directly, each GT chunked ``chunks``."""
    root = zarr.open_group(store, mode="w")
    for contig, gt in arrays.items():
        root.create_dataset(
            f"{contig}/calldata/GT",
            data=gt,
            chunks=chunks,
            compressor=COMPRESSORS[compressor],
            fill_value=fill_value,
        )
    n_samples = next(iter(arrays.values())).shape[1]
    names = np.array([f"S{j:03d}".encode() for j in range(n_samples)], dtype="|S24")
    root.create_dataset("samples", data=names)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_results_do_not_depend_on_chunking(data: st.DataObject) -> None:
    gt = data.draw(genotype_arrays(max_variants=80, max_samples=16).filter(lambda a: len(a) > 0))
    rows, cols = data.draw(chunkings(gt))
    ploidy_chunk = data.draw(st.sampled_from([1, 2, 3]))
    compressor = data.draw(st.sampled_from(sorted(COMPRESSORS)))
    backend = data.draw(st.sampled_from(["sequential", "dask"]))
    semantics = data.draw(st.sampled_from(["tutorial", "sgkit"]))
    store = zarr.MemoryStore()
    write_calls(store, {"2L": gt}, (rows, cols, ploidy_chunk), compressor=compressor)
    result = genotype_stats(store, backend=backend, semantics=semantics)
    assert_matches(result, "2L", gt, semantics)


SPLIT = [(7, 3, 1), (1000, 100, 1), (16, 5, 3), (1, 1, 1)]


@pytest.mark.parametrize(
    ("backend", "chunks"),
    [(b, c) for b in ("sequential", "dask") for c in SPLIT]
    + [("multiprocessing", SPLIT[0]), ("multiprocessing", SPLIT[2])],
)
def test_selections_on_split_ploidy(backend: str, chunks: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(sum(chunks))
    gt = rng.choice(np.array([0, 0, 1, 2, -1], "i1"), size=(40, 9, 2))
    store = zarr.MemoryStore()
    write_calls(store, {"2L": gt, "X": gt[::-1].copy()}, chunks)
    options = {"workers": 2} if backend != "sequential" else {}
    picked = [1, 4, 5, 8]
    result = genotype_stats(
        store, backend=backend, samples=picked, variants=(3, 31), contigs=["X"], **options
    )
    assert_matches(result, "X", gt[::-1][3:31, picked])


def test_read_chunk_assembles_one_contiguous_block() -> None:
    """The kernel takes a contiguous (variants, samples, 2) int8 block, whatever the chunks."""
    from zarrgeno.stats.reader import ChunkReader

    gt = np.arange(10 * 7 * 2, dtype="i1").reshape(10, 7, 2)
    for ploidy_chunk in (1, 2, 5):
        store = zarr.MemoryStore()
        write_calls(store, {"2L": gt}, (4, 3, ploidy_chunk))
        reader = ChunkReader(StoreRef.from_source(zarr.open_group(store, mode="r")), GT)
        assert reader.chunks == (4, 3, 2)
        for shared in (False, True):
            block = reader.read_chunk(2, 1, shared=shared)
            assert block.shape == (4, 3, 2) and block.dtype == np.int8
            assert block.flags.c_contiguous
            np.testing.assert_array_equal(block[:2], gt[8:10, 3:6])
        assert reader[1:9, 2:7, :].tolist() == gt[1:9, 2:7].tolist()


@pytest.mark.hostile
def test_missing_ploidy_chunk_is_named_or_read_as_fill(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    gt = rng.choice(np.array([0, 1, -1], "i1"), size=(30, 6, 2))
    path = tmp_path / "s.zarr"
    write_calls(str(path), {"2L": gt}, (10, 6, 1))
    (path / GT / "1.0.1").unlink()
    res = runner.invoke(app, ["stats", str(path)])
    assert res.exit_code == 4, res.output
    assert "2L/calldata/GT/1.0.1" in res.output and len(res.output.strip().splitlines()) == 1
    result = genotype_stats(str(path), allow_missing=True)
    expected = gt.copy()
    expected[10:20, :, 1] = -1
    assert_matches(result, "2L", expected)


@pytest.mark.parametrize(
    ("shape", "chunks"),
    [
        ((12, 4, 1), (5, 4, 1)),
        ((12, 4, 4), (5, 4, 1)),
        ((12, 4, 4), (12, 4, 4)),
        ((12, 4, 3), (5, 2, 2)),
    ],
)
@pytest.mark.parametrize("layout", ["malariagen", "vcf"])
def test_not_diploid_is_one_line_naming_the_array_shape(
    tmp_path: Path, shape: tuple[int, int, int], chunks: tuple[int, int, int], layout: str
) -> None:
    path = tmp_path / "s.zarr"
    root = zarr.open_group(str(path), mode="w")
    name = GT if layout == "malariagen" else "call_genotype"
    root.create_dataset(name, data=np.zeros(shape, "i1"), chunks=chunks)
    for backend in ("sequential", "dask"):
        res = runner.invoke(app, ["stats", str(path), "-b", backend])
        assert res.exit_code == 4, res.output
        line = res.output.strip()
        assert len(line.splitlines()) == 1 and "Traceback" not in line
        assert name in line and f"shape {shape}" in line and "diploid" in line
    with pytest.raises(BadDataError, match=f"ploidy {shape[2]}"):
        plan_stats(str(path))


def test_rechunk_recompress_verify_across_ploidy_chunks(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    gt = rng.choice(np.array([0, 1, 2, -1], "i1"), size=(70, 11, 2))
    src = tmp_path / "split.zarr"
    write_calls(str(src), {"2L": gt}, (20, 4, 1))
    steps = [
        ("recompress", src, tmp_path / "rc.zarr", ["--compressor", "zstd:3"], (20, 4, 1)),
        ("rechunk", src, tmp_path / "whole.zarr", ["--chunks", "30,11,2"], (30, 11, 2)),
        (
            "rechunk",
            tmp_path / "whole.zarr",
            tmp_path / "back.zarr",
            ["--chunks", "9,2,1"],
            (9, 2, 1),
        ),
    ]
    for command, source, target, options, chunks in steps:
        res = runner.invoke(app, [command, str(source), str(target), *options, "--verify"])
        assert res.exit_code == 0, res.output
        written = zarr.open_array(str(target), path=GT, mode="r")
        assert written.chunks == chunks
        np.testing.assert_array_equal(written[...], gt)
        assert runner.invoke(app, ["verify", str(source), str(target)]).exit_code == 0
        assert_matches(genotype_stats(str(target)), "2L", gt)


def test_simulated_split_ploidy_store(tmp_path: Path) -> None:
    path = tmp_path / "sim.zarr"
    res = runner.invoke(
        app,
        [
            "simulate",
            str(path),
            "-c",
            "X",
            "--scale",
            "1e-5",
            "--samples",
            "7",
            "--chunks",
            "50,3,1",
        ],
    )
    assert res.exit_code == 0, res.output
    arr = zarr.open_array(str(path), path="X/calldata/GT", mode="r")
    assert arr.chunks == (50, 3, 1)
    res = runner.invoke(app, ["stats", str(path), "--json", "-b", "dask"])
    assert res.exit_code == 0, res.output
    ref = naive_counts(arr[...])
    (contig,) = json.loads(res.stdout)["contigs"]
    assert (contig["n_missing"], contig["n_het"]) == (ref.variant[0].sum(), ref.variant[2].sum())
    assert contig["complete_data"] == ref.complete_data


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real cluster of 2 worker processes x 1 thread on 127.0.0.1."""
    with dask_cluster(tmp_path_factory.mktemp("cluster")) as address:
        yield address


@pytest.mark.slow
@pytest.mark.parametrize("persist", [False, True])
def test_distributed_across_ploidy_chunks(scheduler: str, tmp_path: Path, persist: bool) -> None:
    rng = np.random.default_rng(8)
    gt = rng.choice(np.array([0, 0, 1, -1], "i1"), size=(90, 13, 2))
    for chunks in ((25, 5, 1), (200, 50, 1), (30, 13, 2), (7, 20, 3)):
        path = tmp_path / f"s{'-'.join(map(str, chunks))}.zarr"
        write_calls(str(path), {"2L": gt}, chunks)
        result = genotype_stats(
            str(path), backend="distributed", scheduler=scheduler, persist=persist
        )
        assert_matches(result, "2L", gt)
