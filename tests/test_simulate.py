"""The simulator: determinism, layout, the genotype model, safety and the CLI."""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import zarrgeno.simulate.genotypes as genotypes_module
from zarrgeno.cli import app
from zarrgeno.errors import TargetExistsError, UsageError
from zarrgeno.simulate.genotypes import (
    GEN_BLOCK,
    REAL_VARIANTS,
    contig_sizes,
    sample_ids,
    sample_quality,
    simulate_genotypes,
    simulate_store,
)
from zarrgeno.sizes import format_size

runner = CliRunner()


@pytest.fixture(scope="module")
def sample_block() -> np.ndarray:
    """Enough variants (four generation blocks) for the statistics of the model."""
    return simulate_genotypes(4 * GEN_BLOCK, 24, seed=7, contig="3R")


def _accessible(gt: np.ndarray) -> np.ndarray:
    return ~(gt[:, :, 0] < 0).all(axis=1)


# --- determinism -----------------------------------------------------------------------


def test_same_seed_same_genotypes_and_seeds_contigs_differ() -> None:
    a = simulate_genotypes(60_000, 6, seed=11)
    assert np.array_equal(a, simulate_genotypes(60_000, 6, seed=11))
    # Every stream (variants, inaccessible runs, missing calls) depends on seed and contig.
    for other in (
        simulate_genotypes(60_000, 6, seed=12),
        simulate_genotypes(60_000, 6, seed=11, contig="2R"),
    ):
        both = (a >= 0) & (other >= 0)
        assert (a[both] != other[both]).mean() > 0.01
        assert ((a < 0) != (other < 0)).mean() > 0.1


@settings(max_examples=15, deadline=None)
@given(
    cuts=st.lists(st.integers(1, 2 * GEN_BLOCK + 999), max_size=5, unique=True),
    order=st.randoms(use_true_random=False),
)
def test_pieces_made_in_any_order_equal_the_whole(cuts: list[int], order: random.Random) -> None:
    n, start = 2 * GEN_BLOCK + 1000, GEN_BLOCK - 500  # spans three generation blocks
    whole = simulate_genotypes(n, 5, seed=3, start=start)
    edges = [0, *sorted(cuts), n]
    pieces = list(itertools.pairwise(edges))
    order.shuffle(pieces)
    out = np.full_like(whole, 99)
    for lo, hi in pieces:
        out[lo:hi] = simulate_genotypes(hi - lo, 5, seed=3, start=start + lo)
    assert np.array_equal(out, whole)


def test_runs_crossing_a_block_boundary_are_kept_in_every_piece() -> None:
    gt = simulate_genotypes(2 * GEN_BLOCK, 60, seed=3)
    missing = gt[:, :, 0] < 0
    # Precondition: some sample's missing run spans the first generation-block boundary.
    assert (missing[GEN_BLOCK - 1] & missing[GEN_BLOCK] & ~missing[GEN_BLOCK - 1].all()).any()
    assert np.array_equal(
        simulate_genotypes(500, 60, seed=3, start=GEN_BLOCK), gt[GEN_BLOCK : GEN_BLOCK + 500]
    )


def test_store_content_is_independent_of_chunks_threads_and_scale() -> None:
    stores = []
    for chunks, workers in [((300_000, 50, 2), 1), ((7_001, 3, 2), 2), ((1_000, 7, 2), 2)]:
        store = zarr.MemoryStore()
        simulate_store(
            store, contigs=["X"], scale=0.001, n_samples=7, chunks=chunks, seed=5, workers=workers
        )
        stores.append(zarr.open_group(store, mode="r")["X/calldata/GT"][:])
    assert stores[0].shape == (23_385, 7, 2)
    assert all(np.array_equal(stores[0], s) for s in stores[1:])
    # A smaller scale is a prefix of a larger one, and the pure function agrees with both.
    expected = simulate_genotypes(23_385, 7, seed=5, contig="X")
    assert np.array_equal(stores[0], expected)
    small = zarr.MemoryStore()
    simulate_store(small, contigs=["X"], scale=0.0004, n_samples=7, seed=5)
    assert np.array_equal(zarr.open_group(small, mode="r")["X/calldata/GT"][:], expected[:9_354])


# --- layout ----------------------------------------------------------------------------


def test_layout_matches_ag1000g() -> None:
    store = zarr.MemoryStore()
    report = simulate_store(
        store, contigs=("2L", "X"), scale=0.0005, n_samples=7, chunks=(5_000, 3, 2), seed=2
    )
    root = zarr.open_consolidated(store, mode="r")
    assert sorted(root.group_keys()) == ["2L", "X"]
    assert sorted(root.array_keys()) == ["samples"]
    for contig in ("2L", "X"):
        gt = root[f"{contig}/calldata/GT"]
        assert gt.shape == (round(REAL_VARIANTS[contig] * 0.0005), 7, 2)
        assert gt.chunks == (5_000, 3, 2)
        assert gt.dtype == np.int8
        assert gt.compressor == numcodecs.Blosc("lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)
    samples = root["samples"]
    assert samples.dtype == np.dtype("S24") and samples.shape == (7,)
    assert samples[:].tolist() == [f"AO000{i}-C".encode() for i in range(1, 8)]
    sim = root.attrs["simulation"]
    assert (sim["seed"], sim["scale"], sim["n_samples"], sim["model_version"]) == (2, 0.0005, 7, 1)
    assert sim["contigs"] == {"2L": 24_263, "X": 11_693}
    assert [c.contig for c in report.contigs] == ["2L", "X"]


def test_report_values_are_measured_from_the_store() -> None:
    store = zarr.MemoryStore()
    report = simulate_store(
        store, contigs=["3L"], scale=0.001, n_samples=9, seed=4, compressor="zstd:3"
    )
    (row,) = report.contigs
    gt = zarr.open_group(store, mode="r")["3L/calldata/GT"]
    chunk_bytes = sum(
        len(v)
        for k, v in store.items()
        if k.startswith("3L/calldata/GT/") and not k.rsplit("/", 1)[1].startswith(".")
    )
    assert row.nbytes == 40_758 * 9 * 2 == report.nbytes
    assert chunk_bytes <= row.nbytes_stored < chunk_bytes + 1_000  # plus .zarray/.zattrs
    assert math.isclose(report.ratio, row.nbytes / row.nbytes_stored)
    assert row.missing_calls == np.count_nonzero(gt[:][:, :, 0] < 0)
    assert report.compressor == "zstd:3" and gt.compressor == numcodecs.Zstd(level=3)
    assert json.loads(json.dumps(report.to_dict()))["contigs"][0]["shape"] == [40_758, 9, 2]


def test_default_model_compresses_like_the_real_2l() -> None:
    """Real AG1000G-AO 2L stores at 17.6 with Blosc lz4; the model must stay near it."""
    report = simulate_store(zarr.MemoryStore(), contigs=["2L"], scale=0.004, seed=1)
    assert 12 <= report.ratio <= 25


def test_progress_reports_every_variant_once() -> None:
    calls: list[int] = []
    simulate_store(
        zarr.MemoryStore(),
        contigs=["2R", "X"],
        scale=0.0005,
        n_samples=4,
        chunks=(4_000, 4, 2),
        progress=calls.append,
    )
    assert sum(calls) == sum(contig_sizes(["2R", "X"], 0.0005).values()) == 30_066 + 11_693
    assert len(calls) == math.ceil(30_066 / 4_000) + math.ceil(11_693 / 4_000)


# --- the genotype model ----------------------------------------------------------------


def test_missing_calls_are_whole_and_come_in_inaccessible_blocks(sample_block: np.ndarray) -> None:
    gt = sample_block
    assert set(np.unique(gt).tolist()) <= {-1, 0, 1, 2, 3}
    assert not ((gt[:, :, 0] < 0) != (gt[:, :, 1] < 0)).any()  # never half a call
    blocked = ~_accessible(gt)
    assert 0.1 < blocked.mean() < 0.3
    edges = np.diff(np.concatenate([[0], blocked.astype(np.int8), [0]]))
    runs = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    assert runs.max() >= 1_000 and np.median(runs) >= 100
    scattered = (gt[_accessible(gt), :, 0] < 0).mean()
    assert 0.001 < scattered < 0.05


def test_poor_quality_samples_miss_more_calls(sample_block: np.ndarray) -> None:
    rates, poor = sample_quality(24, seed=7)
    assert len(poor) >= 1
    observed = (sample_block[_accessible(sample_block), :, 0] < 0).mean(axis=0)
    good = np.setdiff1d(np.arange(24), poor)
    assert observed[poor].min() > 3 * observed[good].max()
    # Rates follow the model (runs of about six calls make each sample's count noisy).
    assert np.corrcoef(observed, rates)[0, 1] > 0.95
    assert observed.sum() / rates.sum() == pytest.approx(1, rel=0.1)


def test_frequency_spectrum_is_rare_skewed_and_hom_ref_dominates(sample_block: np.ndarray) -> None:
    gt = sample_block[_accessible(sample_block)]
    called = gt[:, :, 0] >= 0
    hom_ref = ((gt[:, :, 0] == 0) & (gt[:, :, 1] == 0)).sum() / called.sum()
    assert hom_ref > 0.9
    alt = (gt > 0).sum(axis=(1, 2))
    counts = alt[alt > 0]
    assert 0.05 < counts.size / len(gt) < 0.5  # a minority of sites segregate
    spectrum = np.bincount(counts, minlength=49)
    assert spectrum[1] == spectrum[1:].max()  # singletons are the commonest class
    # The neutral spectrum: i copies are 1/i as common as singletons.
    for i in (2, 3, 4, 8):
        assert spectrum[1] / spectrum[i] == pytest.approx(i, rel=0.2)
    assert (counts <= 0.2 * 48).mean() > 0.55  # most variants are rare
    with_2 = (gt == 2).any(axis=(1, 2))[alt > 0].mean()
    with_3 = (gt == 3).any(axis=(1, 2))[alt > 0].mean()
    assert 0.01 < with_2 < 0.1 and 0 < with_3 < with_2


def test_genotypes_are_in_hardy_weinberg_proportions(sample_block: np.ndarray) -> None:
    gt = sample_block[_accessible(sample_block)]
    gt = gt[(gt.max(axis=(1, 2)) == 1) & (gt.min(axis=(1, 2)) == 0)]  # biallelic, no missing
    n = gt.shape[1]
    p = gt.sum(axis=(1, 2)) / (2 * n)
    observed = (gt[:, :, 0] != gt[:, :, 1]).sum()
    expected = (2 * p * (1 - p) * n * 2 * n / (2 * n - 1)).sum()
    assert abs(observed / expected - 1) < 0.03


# --- safety ------------------------------------------------------------------------------


@pytest.mark.hostile
def test_existing_targets_need_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "store"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    for overwrite in (False, True):  # --overwrite never replaces a directory of other files
        with pytest.raises(TargetExistsError, match="remove it yourself"):
            simulate_store(target, contigs=["X"], scale=0.0001, n_samples=3, overwrite=overwrite)
    assert (target / "keep.txt").read_text() == "mine"
    (target / "keep.txt").unlink()  # an empty directory, then an earlier simulation
    for _ in range(2):
        simulate_store(target, contigs=["X"], scale=0.0001, n_samples=3, overwrite=True)
        assert zarr.open_group(str(target), mode="r")["X/calldata/GT"].shape == (2_339, 3, 2)
    memory = zarr.MemoryStore()
    memory["other"] = b"x"
    with pytest.raises(TargetExistsError):
        simulate_store(memory, contigs=["X"], scale=0.0001)
    assert dict(memory) == {"other": b"x"}


@pytest.mark.fault
def test_a_failed_run_leaves_nothing_behind(tmp_path: Path) -> None:
    def explode(n: int) -> None:
        raise KeyboardInterrupt

    target = tmp_path / "store"
    with pytest.raises(KeyboardInterrupt):
        simulate_store(target, contigs=["X"], scale=0.001, chunks=(1_000, 50, 2), progress=explode)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": 0}, "scale must be a positive number"),
        ({"scale": float("inf")}, "scale must be a positive number"),
        ({"contigs": ["2L", "Y"]}, "unknown contig 'Y'"),
        ({"contigs": []}, "no contigs"),
        ({"n_samples": 0}, "number of samples must be at least 1"),
        ({"seed": -1}, "seed must be at least 0"),
        ({"chunks": "100,0,2"}, "0 is not allowed"),
        ({"compressor": "blosc:lz9"}, "unknown Blosc cname"),
    ],
)
@pytest.mark.hostile
def test_bad_arguments_are_usage_errors(kwargs: dict, message: str) -> None:
    store = zarr.MemoryStore()
    with pytest.raises(UsageError, match=message):
        simulate_store(store, **{"scale": 0.0001, **kwargs})
    assert len(store) == 0


# --- the command -------------------------------------------------------------------------


def test_cli_writes_the_store_and_prints_its_table(tmp_path: Path) -> None:
    dest = tmp_path / "sim"
    args = [
        "simulate",
        str(dest),
        "--contig",
        "X",
        "-c",
        "3L",
        "--scale",
        "0.0002",
        "--samples",
        "5",
        "--seed",
        "3",
        "--chunks",
        "1000,3,2",
        "--compressor",
        "zstd:1",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert zarr.open_consolidated(str(dest), mode="r")["X/calldata/GT"].shape == (4_677, 5, 2)
    gt = zarr.open_group(str(dest), mode="r")["X/calldata/GT"]
    assert gt.chunks == (1_000, 3, 2) and gt.compressor == numcodecs.Zstd(level=1)
    assert np.array_equal(gt[:], simulate_genotypes(4_677, 5, seed=3, contig="X"))
    lines = result.stdout.splitlines()
    row = next(line for line in lines if line.startswith("X "))
    ratio = gt.nbytes / gt.nbytes_stored
    assert "4677 x 5 x 2" in row and row.split()[-1] == f"{ratio:.1f}"
    assert f" {format_size(gt.nbytes)} " in row and f" {format_size(gt.nbytes_stored)} " in row
    assert any(line.startswith("3L ") and "8152 x 5 x 2" in line for line in lines)
    assert lines[-1].startswith("wrote 12,829 variants in ")


def test_cli_json(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "simulate",
            str(tmp_path / "s"),
            "--contig",
            "X",
            "--scale",
            "0.0001",
            "--samples",
            "3",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    (row,) = data["contigs"]
    gt = zarr.open_group(str(tmp_path / "s"), mode="r")["X/calldata/GT"]
    assert row["shape"] == [2_339, 3, 2] and row["nbytes_stored"] == gt.nbytes_stored
    assert data["seed"] == 0 and data["compressor"] == "blosc:lz4:5:shuffle"
    assert np.array_equal(gt[:], simulate_genotypes(2_339, 3, seed=0, contig="X"))


def test_cli_passes_options_to_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict = {}

    def fake(dest: str, **kwargs: object) -> object:
        seen.update(kwargs, dest=dest)
        raise TargetExistsError("stop here")

    monkeypatch.setattr(genotypes_module, "simulate_store", fake)  # imported by the command
    result = runner.invoke(
        app,
        [
            "simulate",
            "out",
            "-c",
            "2R",
            "--scale",
            "0.5",
            "--samples",
            "9",
            "--chunks",
            "-1,9,2",
            "--seed",
            "8",
            "--overwrite",
        ],
    )
    assert result.exit_code == 5
    assert result.stderr == "Error: stop here\n"
    assert {
        k: seen[k]
        for k in (
            "dest",
            "contigs",
            "scale",
            "n_samples",
            "chunks",
            "seed",
            "overwrite",
            "compressor",
        )
    } == {
        "dest": "out",
        "contigs": ("2R",),
        "scale": 0.5,
        "n_samples": 9,
        "chunks": "-1,9,2",
        "seed": 8,
        "overwrite": True,
        "compressor": "blosc:lz4:5:shuffle",
    }


@pytest.mark.hostile
def test_cli_refuses_an_existing_target(tmp_path: Path) -> None:
    dest = tmp_path / "exists"
    dest.mkdir()
    result = runner.invoke(app, ["simulate", str(dest), "--contig", "X", "--scale", "0.0001"])
    assert result.exit_code == 5
    assert result.stderr == (
        f"Error: target {dest} already exists: an empty directory; pass --overwrite to write "
        "into it (nothing is deleted)\n"
    )
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--scale", "0"], "scale must be a positive number, got 0.0"),
        (["--scale", "-2"], "scale must be a positive number, got -2.0"),
        (["--contig", "4L"], "unknown contig '4L' (choose from 2L, 2R, 3L, 3R, X)"),
        (["--chunks", "10,x,2"], "chunk spec '10,x,2': 'x' is not an integer"),
        (["--chunks", "1000,50"], "chunk spec '1000,50' has 2 value(s)"),
        (["--samples", "0"], "number of samples must be at least 1, got 0"),
        (["--compressor", "snappy"], "unknown compressor 'snappy'"),
    ],
)
@pytest.mark.hostile
def test_cli_bad_options_exit_2_with_one_line(
    tmp_path: Path, option: list[str], message: str
) -> None:
    dest = tmp_path / "never"
    result = runner.invoke(app, ["simulate", str(dest), "--scale", "0.0001", *option])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and result.stdout == ""
    assert not dest.exists() and list(tmp_path.iterdir()) == []


def test_sample_ids_fit_the_s24_dtype() -> None:
    ids = sample_ids(12_000)
    assert ids[0] == "AO0001-C" and ids[80] == "AO0081-C" and ids[-1] == "AO12000-C"
    assert len(set(ids)) == 12_000 and max(map(len, ids)) <= 24
