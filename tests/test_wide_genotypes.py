"""int16, int32 and int64 genotype arrays (VCF Zarr allows them; bio2zarr writes int16 once an
allele index passes 127): opened, counted on every backend, rewritten, checked.

Counts are compared with the naive reference of test_stats_reference, which reads each call's
two values as Python ints: alleles above 127 are real alleles, -1 is missing, -2 is fill.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import zarr
from hostile import Tree, assert_refused, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st
from test_kernel_baseline import baseline  # noqa: F401 (a fixture)
from test_stats_api import assert_matches
from test_stats_kernels import _numpy_counts
from test_stats_reference import chunkings, naive_counts, write_gt
from test_vcf_zarr import parse_vcf

from zarrgeno.errors import BadDataError
from zarrgeno.io.store import find_genotypes, open_store
from zarrgeno.stats import _kernel
from zarrgeno.stats.api import genotype_stats
from zarrgeno.stats.fastpath import count_wide
from zarrgeno.stats.kernels import count_calls, partial_calls

DATA = Path(__file__).parent / "data"
SEMANTICS = ("tutorial", "sgkit")
#: Values around every byte boundary an int8 reading would get wrong (255 is 0x00FF, 256 is
#: 0x0100, -129 is 0xFF7F), VCF Zarr's -1 and -2, and the dtype's extremes.
WIDE_ALLELES = {
    "i2": [0, 0, 0, 1, 2, 127, 128, 200, 255, 256, 300, 32767, -1, -1, -2, -3, -129, -32768],
    "i4": [0, 0, 0, 1, 128, 255, 65535, 65536, 2**31 - 1, -1, -1, -2, -256, -65536, -(2**31)],
    "i8": [0, 0, 1, 300, 2**32, 2**63 - 1, -1, -2, -(2**32) - 1, -(2**63)],
}
#: The dtypes a store may hold: native and big-endian (read through the generic path).
DTYPES = ("<i2", "<i4", "<i8", ">i2", ">i4")


@st.composite
def wide_arrays(
    draw: st.DrawFn,
    dtype: str,
    max_variants: int = 80,
    max_samples: int = 20,
    samples: int | None = None,
) -> np.ndarray:
    """Calls of ``dtype``: odd values everywhere, some whole uniform rows, partial calls."""
    n = draw(st.integers(1, max_variants))
    s = samples or draw(st.integers(1, max_samples))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    gt = rng.choice(np.array(WIDE_ALLELES[dtype[1:]], dtype=dtype), size=(n, s, 2))
    uniform = rng.random(n) < draw(st.sampled_from([0.0, 0.3]))
    rows = np.array([[0, 0], [-1, -1], [300, 300], [-1, 300], [0, -2]], dtype=dtype)
    gt[uniform] = rows[rng.integers(0, len(rows), n)][uniform][:, None, :]
    return gt


@pytest.mark.parametrize("semantics", SEMANTICS)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_the_kernel_counts_wide_calls_as_the_reference(semantics: str, data: st.DataObject) -> None:
    """Whole blocks, column windows of a wider buffer (a stored edge chunk), strided views,
    and counts added into a unit's totals."""
    dtype = data.draw(st.sampled_from(DTYPES))
    gt = data.draw(wide_arrays(dtype, max_variants=150, max_samples=40))
    n, s, _ = gt.shape
    c0 = data.draw(st.integers(0, s))
    c1 = data.draw(st.integers(c0, s))
    ref = naive_counts(gt[:, c0:c1], semantics)
    window = count_calls(gt, semantics=semantics, columns=(c0, c1))
    edge = count_calls(gt[:, : max(c1, 1)], semantics=semantics, columns=(c0, c1))
    calls = gt[:, c0:c1].astype(np.int64)
    partial = partial_calls(calls[..., 0], calls[..., 1]) if semantics == "tutorial" else 0
    for counts in (window, edge):
        np.testing.assert_array_equal(counts.variant, ref.variant)
        np.testing.assert_array_equal(counts.sample, ref.sample)
        assert counts.partial == partial
    into = np.full((3, n), 2, dtype=np.uint16)
    added = count_calls(gt, semantics=semantics, columns=(c0, c1), into=into)
    assert added.variant is into
    np.testing.assert_array_equal(into, ref.variant + 2)
    strided = gt[::2, ::-1]
    counts = count_calls(strided, semantics=semantics)
    np.testing.assert_array_equal(counts.sample, naive_counts(strided, semantics).sample)


def test_wide_rows_over_1023_samples_and_every_count_width() -> None:
    """The compiled wide loop's 10-bit fields, split at 1023 columns and flushed every
    1023 rows, on a per-variant count of each width."""
    rng = np.random.default_rng(4)
    gt = rng.choice(np.array(WIDE_ALLELES["i2"], dtype="i2"), size=(1100, 1100, 2))
    gt[:, 500:] = [300, 300]  # a run of the same call fills fields to the top
    for semantics in SEMANTICS:
        variant, sample = _numpy_counts(gt, semantics)
        counts = count_calls(gt, semantics=semantics)
        assert counts.variant.dtype == np.uint16
        np.testing.assert_array_equal(counts.variant, variant)
        np.testing.assert_array_equal(counts.sample, sample)
        want_variant, want_sample = _numpy_counts(gt[:, 50:1050], semantics)
        for dtype in (np.uint8, np.uint32, np.uint64):
            variant, sample = np.zeros((3, 1100), dtype), np.zeros((3, 1000), np.int64)
            count_wide(gt, 50, 1050, semantics == "sgkit", variant, sample)
            np.testing.assert_array_equal(sample, want_sample)
            np.testing.assert_array_equal(variant, want_variant.astype(dtype))  # uint8 wraps


def test_the_compiled_wide_loop_refuses_bad_buffers() -> None:
    calls = np.zeros((4, 3, 2), "i2")
    variant, cols = np.zeros((3, 4), np.uint8), np.zeros((3, 3), np.int64)
    _kernel.count_wide(calls, 2, 4, 3, 0, 3, False, variant, 1, cols)
    assert variant[1].tolist() == [3, 3, 3, 3] and cols[1].tolist() == [4, 4, 4]
    unaligned = np.zeros(4 * 3 * 2 * 2 + 1, np.uint8)[1:]
    for args, message in [
        ((calls, 3, 4, 3, 0, 3, False, variant, 1, cols), "allele size"),
        ((calls, 4, 4, 3, 0, 3, False, variant, 1, cols), "calls buffer too small"),
        ((calls, 2, 4, 3, 0, 4, False, variant, 1, cols), "out of bounds"),
        ((unaligned, 2, 4, 3, 0, 3, False, variant, 1, cols), "not aligned"),
    ]:
        with pytest.raises(ValueError, match=message):
            _kernel.count_wide(*args)
    with pytest.raises(ValueError, match="native int16"):
        count_wide(calls.astype(">i2"), 0, 3, False, variant, cols)


IN_PROCESS = ("sequential", "threads", "dask")


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_stats_in_process_equal_the_reference(data: st.DataObject) -> None:
    """Any wide dtype, any chunking, any fill value, both semantics."""
    dtype = data.draw(st.sampled_from(DTYPES))
    gt = data.draw(wide_arrays(dtype))
    chunks = data.draw(chunkings(gt))
    semantics = data.draw(st.sampled_from(SEMANTICS))
    store = zarr.MemoryStore()
    write_gt(store, {"2L": gt}, chunks, fill_value=data.draw(st.sampled_from([0, -1, None])))
    assert open_store(store)[1]["2L/calldata/GT"].dtype == np.dtype(dtype)
    for backend in IN_PROCESS:
        result = genotype_stats(store, backend=backend, semantics=semantics)
        assert_matches(result, "2L", gt, semantics)


@pytest.mark.parametrize("backend", ["multiprocessing", "distributed"])
@settings(max_examples=2, deadline=None)
@given(data=st.data())
def test_stats_in_worker_processes_equal_the_reference(backend: str, data: st.DataObject) -> None:
    """One store of five contigs, one per dtype (and int8), in worker processes."""
    s = data.draw(st.integers(1, 12))
    arrays = {"2L": data.draw(wide_arrays("<i2", max_variants=300, samples=s))}
    for contig, dtype in zip(("2R", "3L", "3R", "X"), DTYPES[1:], strict=True):
        arrays[contig] = data.draw(wide_arrays(dtype, max_variants=120, samples=s))
    semantics = data.draw(st.sampled_from(SEMANTICS))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.zarr"
        root = write_gt(str(path), {"2L": arrays["2L"]}, (64, 5))
        for contig, gt in arrays.items():
            if contig != "2L":
                root.create_dataset(
                    f"{contig}/calldata/GT", data=gt, chunks=(50, 7, 2), fill_value=None
                )
        result = genotype_stats(str(path), backend=backend, workers=2, semantics=semantics)
        for contig, gt in arrays.items():
            assert_matches(result, contig, gt, semantics)


@pytest.fixture(scope="module")
def int16_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """An int16 store as bio2zarr writes one past 127 alleles: MalariaGEN layout here."""
    rng = np.random.default_rng(16)
    gt = rng.choice(np.array(WIDE_ALLELES["i2"], dtype="i2"), size=(90, 7, 2))
    path = tmp_path_factory.mktemp("int16") / "int16.zarr"
    write_gt(str(path), {"2L": gt}, (40, 5))
    zarr.consolidate_metadata(str(path))
    return path, gt


def test_info_and_stats_read_an_int16_store(int16_store: tuple[Path, np.ndarray]) -> None:
    path, gt = int16_store
    tree = Tree(path)
    info = run_cli("info", path, "--json")
    assert info.code == 0, str(info)
    assert '"int16"' in info.out or "<i2" in info.out
    stats = run_cli("stats", path, "--json", "--per-sample")
    assert stats.code == 0, str(stats)
    contig = json.loads(stats.out)["contigs"][0]
    ref = naive_counts(gt)
    assert [contig["n_missing"], contig["n_hom_ref"], contig["n_het"]] == ref.variant.sum(
        axis=1
    ).tolist()
    tree.assert_unchanged()


@pytest.mark.parametrize("command", ["rechunk", "recompress"])
def test_rewrites_keep_an_int16_store_exact(
    command: str, int16_store: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    path, gt = int16_store
    target = tmp_path / "out.zarr"
    option = ["--chunks", "25,7,2"] if command == "rechunk" else ["--compressor", "zstd:3"]
    result = run_cli(command, path, target, *option, "--verify")
    assert result.code == 0, str(result)
    out = zarr.open_group(str(target), mode="r")["2L/calldata/GT"]
    assert out.dtype == np.dtype("i2")
    np.testing.assert_array_equal(out[:], gt)
    assert run_cli("verify", path, target).code == 0
    counts = genotype_stats(str(target), backend="sequential")
    assert_matches(counts, "2L", gt)


@pytest.mark.hostile
@pytest.mark.parametrize("dtype", ["u1", "u2", "f4", "b1"])
def test_genotypes_that_are_not_signed_integers_are_refused(tmp_path: Path, dtype: str) -> None:
    path = tmp_path / "store.zarr"
    root = zarr.open_group(str(path), mode="w")
    root.zeros("2L/calldata/GT", shape=(10, 3, 2), dtype=dtype, chunks=(5, 3, 2))
    with pytest.raises(BadDataError, match="must be a signed integer"):
        find_genotypes(open_store(path)[1])
    tree = Tree(path)
    why = ("2L/calldata/GT", "genotype dtype must be a signed integer", str(np.dtype(dtype)))
    assert_refused(run_cli("stats", path), 4, says=why)
    shown = run_cli("info", path)  # info shows the store, and why it has no contigs
    assert shown.code == 0 and "Traceback" not in shown.err, str(shown)
    problem = next(line for line in shown.out.splitlines() if line.startswith("Contigs:"))
    assert all(text in problem for text in why), problem
    tree.assert_unchanged()


def test_the_baseline_build_counts_wide_calls_as_the_installed_one(
    request: pytest.FixtureRequest,
) -> None:
    """The wide loops are compiled for AVX2 and for the x86-64 baseline; a CPU without AVX2
    runs the baseline clone, which this machine would otherwise never execute."""
    built = request.getfixturevalue("baseline")  # test_kernel_baseline's build
    rng = np.random.default_rng(8)
    for dtype in ("i2", "i4", "i8"):
        gt = rng.choice(np.array(WIDE_ALLELES[dtype], dtype=dtype), size=(700, 70, 2))
        for sgkit in (False, True):
            outputs = []
            for kernel in (_kernel, built):
                variant, sample = np.zeros((3, 700), np.uint8), np.zeros((3, 67), np.int64)
                kernel.count_wide(gt, gt.itemsize, 700, 70, 3, 70, sgkit, variant, 1, sample)
                outputs.append((variant, sample))
            np.testing.assert_array_equal(outputs[0][0], outputs[1][0])
            np.testing.assert_array_equal(outputs[0][1], outputs[1][1])
            ref = naive_counts(gt[:50, 3:], "sgkit" if sgkit else "tutorial")
            np.testing.assert_array_equal(outputs[1][0][:, :50], ref.variant)


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_a_bio2zarr_store_with_int16_genotypes_counts_as_its_vcf(semantics: str) -> None:
    """bio2zarr wrote ``call_genotype`` as int16 for tests/data/wide_alleles.vcf (sites with
    130 to 300 ALT alleles, calls such as 0/300, 255/256, haploid 200 padded with -2)."""
    path = DATA / "bio2zarr_int16.vcz"
    _, group = open_store(path)
    assert group["call_genotype"].dtype == np.dtype("<i2")
    vcf = parse_vcf(DATA / "wide_alleles.vcf", dtype="i2")
    assert vcf["2L"][1, 0].tolist() == [0, 300] and vcf["X"][0, 1].tolist() == [200, -2]
    for backend in ("sequential", "threads", "dask"):
        result = genotype_stats(path, backend=backend, semantics=semantics)
        assert result.sample_names == ("S1", "S2", "S3", "S4", "S5")
        for contig, gt in vcf.items():
            assert_matches(result, contig, gt, semantics)
