"""genotype_stats against the naive reference: chunkings, selections, layouts, bad input."""

from __future__ import annotations

from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from test_stats_reference import chunkings, genotype_arrays, naive_counts, write_gt

from zarrgeno.errors import BadDataError, MissingInputError, UsageError
from zarrgeno.stats.api import genotype_stats, parse_range, plan_stats
from zarrgeno.stats.results import StatsResult, same_counts

IN_PROCESS = ["sequential", "dask"]


def assert_matches(
    result: StatsResult, contig: str, gt: np.ndarray, semantics: str = "tutorial"
) -> None:
    """Every number of ``contig`` equals the naive count of ``gt``."""
    ref = naive_counts(gt, semantics)
    c = result.contig(contig)
    assert c.total_pos == gt.shape[0]
    assert c.complete_data == ref.complete_data
    assert c.more_anc_hom == ref.more_anc_hom
    np.testing.assert_array_equal(c.samples.counts, ref.sample)
    assert c.variant_counts is not None
    np.testing.assert_array_equal(c.variant_counts, ref.variant)
    assert c.n_missing == ref.variant[0].sum()
    assert c.n_het == ref.variant[2].sum()


@pytest.mark.parametrize("backend", IN_PROCESS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_every_chunking_gives_the_reference_counts(backend: str, data: st.DataObject) -> None:
    gt = data.draw(genotype_arrays(max_variants=90, max_samples=20).filter(lambda a: len(a) > 0))
    chunks = data.draw(chunkings(gt))
    semantics = data.draw(st.sampled_from(["tutorial", "sgkit"]))
    store = zarr.MemoryStore()
    write_gt(store, {"2L": gt}, chunks, fill_value=data.draw(st.sampled_from([0, -1, None])))
    result = genotype_stats(store, backend=backend, semantics=semantics)
    assert_matches(result, "2L", gt, semantics)


@settings(max_examples=15, deadline=None)
@given(
    gt=genotype_arrays(max_variants=80, max_samples=16).filter(lambda a: len(a) > 2), data=st.data()
)
def test_results_do_not_depend_on_chunking_or_backend(gt: np.ndarray, data: st.DataObject) -> None:
    results = []
    for _ in range(2):
        store = zarr.MemoryStore()
        write_gt(store, {"X": gt}, data.draw(chunkings(gt)))
        for backend in IN_PROCESS:
            results.append(genotype_stats(store, backend=backend))
    assert all(same_counts(results[0], r) for r in results[1:])


@settings(max_examples=20, deadline=None)
@given(
    gt=genotype_arrays(max_variants=60, max_samples=18).filter(lambda a: len(a) > 1), data=st.data()
)
def test_variant_range_and_sample_subset(gt: np.ndarray, data: st.DataObject) -> None:
    n, s, _ = gt.shape
    start = data.draw(st.integers(0, n - 1))
    stop = data.draw(st.integers(start + 1, n + 5))
    chosen = data.draw(st.lists(st.integers(0, s - 1), min_size=1, max_size=s, unique=True))
    names = [f"S{j:03d}" for j in range(s)]
    store = zarr.MemoryStore()
    write_gt(store, {"2L": gt}, data.draw(chunkings(gt)))
    backend = data.draw(st.sampled_from(IN_PROCESS))
    result = genotype_stats(
        store, variants=(start, stop), samples=[names[j] for j in chosen], backend=backend
    )
    assert result.sample_names == tuple(names[j] for j in chosen)  # in the order asked
    assert_matches(result, "2L", gt[start:stop][:, chosen])


def test_contigs_are_selected_and_ordered(memory_store) -> None:
    store, written = memory_store
    result = genotype_stats(store, contigs=["X", "2L"])
    assert [c.contig for c in result.contigs] == ["X", "2L"]
    for contig, gt in written.items():
        assert_matches(result, contig, gt)
    total = result.samples
    assert total.n_variants == sum(len(g) for g in written.values())
    np.testing.assert_array_equal(
        total.counts, sum(naive_counts(g).sample for g in written.values())
    )


def test_total_pos_is_the_exact_variant_count(memory_store) -> None:
    """The tutorial's loop adds a whole chunk at the end (1000 variants -> 1200); not here."""
    store, _ = memory_store
    result = genotype_stats(store, contigs=["2L"])
    assert result.contig("2L").total_pos == 1000
    assert result.to_dict()["contigs"][0]["total_pos"] == 1000


def test_vcf_zarr_layout_counts_each_contig_range() -> None:
    rng = np.random.default_rng(5)
    gt = rng.choice(np.array([0, 1, -1], dtype="i1"), size=(70, 6, 2))
    root = zarr.group(zarr.MemoryStore())
    root.create_dataset("call_genotype", data=gt, chunks=(16, 4, 2))
    root.create_dataset(
        "variant_contig", data=np.repeat([0, 1], [45, 25]).astype("i1"), chunks=(10,)
    )
    root.create_dataset("contig_id", data=np.array(["chr1", "chr2"], dtype="U4"))
    root.create_dataset("sample_id", data=np.array([f"s{i}" for i in range(6)], dtype="U3"))
    result = genotype_stats(root, backend="dask")
    assert [c.contig for c in result.contigs] == ["chr1", "chr2"]
    assert_matches(result, "chr1", gt[:45])
    assert_matches(result, "chr2", gt[45:])
    assert result.sample_names == tuple(f"s{i}" for i in range(6))


@pytest.mark.hostile
def test_a_missing_chunk_is_an_error_unless_allowed() -> None:
    """zarr would read a lost chunk file as the fill value; for genotypes that is data loss."""
    store = zarr.MemoryStore()
    root = zarr.open_group(store, mode="w")
    arr = root.create_dataset(
        "2L/calldata/GT", shape=(30, 5, 2), chunks=(10, 3, 2), dtype="i1", fill_value=-1
    )
    arr[10:20] = 0  # the other chunks are never written
    expected = np.full((30, 5, 2), -1, dtype="i1")
    expected[10:20] = 0
    for backend in IN_PROCESS:
        with pytest.raises(BadDataError, match=r"chunk 2L/calldata/GT/[02]\.[01]\.0 is missing"):
            genotype_stats(store, backend=backend)
        result = genotype_stats(store, backend=backend, allow_missing=True)
        assert_matches(result, "2L", expected)


def test_without_per_variant_counts_the_summary_is_the_same(memory_store) -> None:
    store, _ = memory_store
    light = genotype_stats(store, per_variant=False)
    full = genotype_stats(store)
    assert all(c.variant_counts is None for c in light.contigs)
    assert light.to_dict()["total"] == full.to_dict()["total"]


@pytest.mark.hostile
@pytest.mark.parametrize("damage", ["garbage", "truncated", "lying header"])
def test_a_corrupt_chunk_is_a_one_line_error_naming_it(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "s.zarr"
    write_gt(str(path), {"2L": np.zeros((40, 4, 2), "i1")}, (10, 4))
    chunk = path / "2L" / "calldata" / "GT" / "2.0.0"
    raw = chunk.read_bytes()
    if damage == "garbage":
        chunk.write_bytes(b"not blosc at all" * 4)
    elif damage == "truncated":
        chunk.write_bytes(raw[: len(raw) // 2])
    else:  # a header claiming a bigger chunk than the array's would overrun the buffer
        chunk.write_bytes(raw[:4] + (10**6).to_bytes(4, "little") + raw[8:])
    for backend in IN_PROCESS:
        with pytest.raises(BadDataError, match=r"chunk 2L/calldata/GT/2\.0\.0"):
            genotype_stats(str(path), backend=backend)


@pytest.mark.hostile
def test_bad_selections_are_usage_errors(memory_store) -> None:
    store, _ = memory_store
    with pytest.raises(MissingInputError, match="no contig 3R"):
        genotype_stats(store, contigs=["3R"])
    with pytest.raises(UsageError, match="starts at 5,000"):
        genotype_stats(store, variants=(5000, None))
    with pytest.raises(MissingInputError, match="unknown sample"):
        genotype_stats(store, samples=["nobody"])
    with pytest.raises(UsageError, match="twice"):
        genotype_stats(store, samples=["S000", "S000"])
    with pytest.raises(UsageError, match="unknown backend"):
        genotype_stats(store, backend="spark")


@pytest.mark.hostile
@pytest.mark.parametrize("text", ["5", "a:b", "7:3", "-1:4", "1:2:3"])
def test_parse_range_refuses(text: str) -> None:
    with pytest.raises(UsageError):
        parse_range(text)


@pytest.mark.hostile
def test_haploid_or_float_calls_are_refused() -> None:
    root = zarr.group(zarr.MemoryStore())
    root.create_dataset("2L/calldata/GT", data=np.zeros((5, 3, 1), "i1"))
    with pytest.raises(BadDataError, match="diploid"):
        plan_stats(root)


def test_units_follow_stored_chunks(memory_store) -> None:
    store, _ = memory_store
    plan = plan_stats(store, contigs=["2L"], variants=(250, 950))
    edges = [(u.start, u.stop) for u in plan.units]
    assert edges[0][0] == 250 and edges[-1][1] == 950
    assert all(a % 300 == 0 for a, _ in edges[1:])  # interior boundaries on chunk edges
    assert plan.total_variants == 700


def test_zstd_store_without_blosc_reads_too() -> None:
    store = zarr.MemoryStore()
    root = zarr.open_group(store, mode="w")
    gt = np.random.default_rng(2).choice(np.array([0, 1, -1], "i1"), size=(33, 7, 2))
    root.create_dataset("2L/calldata/GT", data=gt, chunks=(8, 3, 2), compressor=numcodecs.Zstd(1))
    root.create_dataset("3L/calldata/GT", data=gt, chunks=(8, 3, 2), compressor=None)
    result = genotype_stats(store)
    assert_matches(result, "2L", gt)
    assert_matches(result, "3L", gt)


def test_chunk_reader_slices_and_pickles(memory_store) -> None:
    """Any slice, aligned with the stored chunks or not, reads what zarr reads."""
    import pickle

    from zarrgeno.io.store import StoreRef
    from zarrgeno.stats.reader import ChunkReader

    store, written = memory_store
    reader = ChunkReader(StoreRef.from_source(store), "2L/calldata/GT")
    gt = written["2L"]
    for rows, cols in [
        ((0, 300), (0, 5)),
        ((300, 600), (5, 7)),
        ((250, 910), (3, 7)),
        ((999, 1000), (0, 7)),
    ]:
        block = reader[slice(*rows), slice(*cols), slice(0, 2)]
        np.testing.assert_array_equal(block, gt[slice(*rows), slice(*cols)])
    clone = pickle.loads(pickle.dumps(reader))
    np.testing.assert_array_equal(clone.read_chunk(3, 1)[:100, :2], gt[900:1000, 5:7])
    assert clone.token == reader.token
