"""The QC counts of the fused pass (``count_calls_qc``, the C ``qc_count``) against the
numpy reference of ``zarrgeno.stats.qc.genotypes``: histograms, per-sample classes and
missing-call bits, on both compiled paths, every allele width, column windows, views,
big-endian arrays and more samples than one call of the C loop takes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kernelpaths import kernel_path  # noqa: F401  (autouse: both compiled paths)

from zarrgeno.errors import BadDataError
from zarrgeno.stats.kernels import count_calls, count_calls_qc, variant_dtype
from zarrgeno.stats.qc.genotypes import count_genotypes, missing_bits, n_genotypes

ALLELES = np.array([0, 0, 0, 0, 1, 1, 2, 3, -1, -1, -2, -3], dtype=np.int64)


def _reference(gt: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Histogram, per-sample classes and bits as plink2 reads the calls (any negative
    allele: missing), from the straightforward numpy count."""
    missing = (gt < 0).any(axis=2)
    plain = np.where(missing[..., None], -1, gt)
    hist, per_sample = count_genotypes(plain, k)
    return hist, per_sample, missing_bits(gt)


def _check(gt: np.ndarray, k: int, columns: tuple[int, int] | None, semantics: str) -> None:
    n, s, _ = gt.shape
    c0, c1 = (0, s) if columns is None else columns
    hist = np.zeros((n, 1 + n_genotypes(k)), dtype=variant_dtype(c1 - c0))
    counts, qc = count_calls_qc(gt, hist=hist, semantics=semantics, columns=columns, bits=True)
    want_hist, want_sample, want_bits = _reference(np.asarray(gt[:, c0:c1]), k)
    np.testing.assert_array_equal(hist, want_hist)
    np.testing.assert_array_equal(qc.sample, want_sample)
    assert qc.bits is not None
    np.testing.assert_array_equal(qc.bits, want_bits)
    assert qc.beyond == 0
    plain = count_calls(gt, semantics=semantics, columns=columns)  # the run's own counts
    np.testing.assert_array_equal(counts.variant, plain.variant)
    np.testing.assert_array_equal(counts.sample, plain.sample)
    assert counts.partial == plain.partial


@pytest.mark.parametrize("semantics", ["tutorial", "sgkit"])
@pytest.mark.parametrize("dtype", ["i1", "i2", "i4", "i8", ">i2"])
@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 600),
    s=st.integers(1, 70),
    seed=st.integers(0, 2**31),
    window=st.booleans(),
)
def test_qc_counts_equal_the_numpy_reference(
    semantics: str, dtype: str, n: int, s: int, seed: int, window: bool
) -> None:
    rng = np.random.default_rng(seed)
    gt = rng.choice(ALLELES, size=(n, s, 2)).astype(dtype)
    columns = (s // 3, s - s // 4) if window and s > 2 else None
    _check(gt, 4, columns, semantics)


def test_a_view_of_a_padded_edge_chunk_and_two_allele_histograms() -> None:
    """An edge chunk handed out as chunk[:, :31] is counted through its full rows; K = 2
    (one ALT column in the store) gives 4 columns."""
    rng = np.random.default_rng(3)
    chunk = rng.choice(np.array([0, 0, 1, -1], dtype="i1"), size=(300, 50, 2))
    _check(chunk[:, :31], 2, None, "sgkit")
    _check(chunk[17:40, :31], 4, (5, 29), "tutorial")


def test_more_samples_than_one_compiled_call_takes() -> None:
    """1,100 samples: the C loop takes 1,016 columns a call; bits stay byte-aligned."""
    rng = np.random.default_rng(4)
    gt = rng.choice(ALLELES, size=(40, 1100, 2)).astype("i1")
    _check(gt, 4, None, "sgkit")
    _check(gt, 4, (3, 1099), "tutorial")


def test_calls_of_alleles_beyond_k_are_counted_apart() -> None:
    """A call holding allele 4 has no column when K = 4: the pass counts it for the caller
    to refuse; half calls holding it are missing and not counted."""
    gt = np.array([[[0, 4], [4, 4], [-1, 4], [1, 2]]], dtype="i1")
    hist = np.zeros((1, 11), dtype=np.uint8)
    _, qc = count_calls_qc(gt, hist=hist)
    assert qc.beyond == 2
    assert hist[0, 0] == 1 and hist[0, 5] == 1  # the half call, and 1/2


def test_refuses_what_is_not_diploid_integer_calls() -> None:
    hist = np.zeros((2, 11), dtype=np.uint8)
    with pytest.raises(BadDataError, match="diploid"):
        count_calls_qc(np.zeros((2, 3, 1), dtype="i1"), hist=hist)
    with pytest.raises(ValueError, match="hist"):
        count_calls_qc(np.zeros((2, 3, 2), dtype="i1"), hist=np.zeros((2, 11), np.int64))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(0, 400), listed=st.booleans())
def test_unit_step_in_c_equals_numpy_bit_for_bit(seed: int, n: int, listed: bool) -> None:
    """The compiled unit step (each variant's alleles, plink2's expected heterozygosity,
    alleles called, calls beyond a variant's alleles) against the numpy functions."""
    from zarrgeno.stats.fastpath import missing_terms, unit_alleles
    from zarrgeno.stats.qc.alleles import AlleleFreqs
    from zarrgeno.stats.qc.counting import observed_alleles
    from zarrgeno.stats.qc.genotypes import GenotypeCounts, alleles_seen, first_beyond
    from zarrgeno.stats.qc.inbreeding import expected_het, het_terms_numpy

    rng = np.random.default_rng(seed)
    gt = rng.choice(ALLELES, size=(n, 13, 2)).astype("i1")
    hist, _, bits = _reference(gt, 4)
    hist = hist.astype(np.uint8)
    given = rng.integers(2, 5, size=n) if listed else None
    alleles, ehet, poly, seen, row = unit_alleles(hist, given)
    want_alleles = given if given is not None else observed_alleles(hist)
    np.testing.assert_array_equal(alleles, want_alleles)
    assert row == first_beyond(hist, want_alleles)
    np.testing.assert_array_equal(seen, np.bincount(alleles_seen(hist), minlength=5))
    if row is None:
        freqs = AlleleFreqs.from_genotypes(GenotypeCounts(hist, want_alleles))
        want_ehet, want_poly = expected_het(freqs)
        assert ehet.tobytes() == want_ehet.tobytes()
        np.testing.assert_array_equal(poly, want_poly)
        obs, expected = missing_terms(bits, 13, ehet, poly)
        want = het_terms_numpy(bits, 13, ehet, poly)
        total = ehet[poly].sum()
        np.testing.assert_array_equal(int(np.count_nonzero(poly)) - obs, want.obs)
        np.testing.assert_allclose(total - expected, want.expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", ["i1", "i2"])
@pytest.mark.parametrize("odd_rows", [0.005, 0.05, 0.5])
def test_tutorial_counts_from_sgkit_ones_where_the_rules_differ(dtype: str, odd_rows: float):
    """Under the tutorial rule the QC pass derives the counts from its sgkit ones, fixing
    the rows with calls the rules count differently (half calls, -3/-3, ...); a block with
    many such rows is counted again instead. Both ways equal count_calls."""
    rng = np.random.default_rng(7)
    n, s = 3000, 50
    gt = rng.choice(np.array([0, 0, 1], dtype=dtype), size=(n, s, 2))
    gt[rng.random((n, s)) < 0.1] = -1  # whole missing calls: the rules agree
    rows = np.flatnonzero(rng.random(n) < odd_rows)
    cols = rng.integers(0, s, size=len(rows))
    odd = np.array([[0, -1], [-1, 1], [-3, -3], [1, -1], [-1, -3]], dtype=dtype)
    gt[rows, cols] = odd[rng.integers(0, len(odd), size=len(rows))]
    _check(gt, 4, None, "tutorial")
    _check(gt, 4, (3, 47), "tutorial")


# Calls the QC flags and bits must see in the last calls of a 16*k + 1 or 16*k + 2 call
# segment (the AVX2 path counts those of 8 rows in one vector): missing, a -2 fill, half
# calls, -128, called alleles >= 2, a half call holding allele 2 (missing: no flag for it).
TAIL_CALLS = np.array(
    [[-1, -1], [-2, -2], [0, -2], [-1, 0], [1, -1], [-3, -3], [0, -128], [0, 2], [2, 2],
     [3, 1], [2, -1]],
    dtype="i1",
)  # fmt: skip


def _avx2_and_portable(gt: np.ndarray, semantics: str) -> list[tuple[object, ...]]:
    """count_calls_qc's outputs on the AVX2 path, then on the portable one."""
    from zarrgeno.stats import _kernel

    before = _kernel.simd()
    got = []
    try:
        for avx2 in (True, False):
            try:
                _kernel.simd(avx2)
            except ValueError as exc:
                pytest.skip(f"no AVX2 path here: {exc}")
            hist = np.zeros((gt.shape[0], 11), dtype=np.uint16)
            counts, qc = count_calls_qc(gt, hist=hist, semantics=semantics, bits=True)
            got.append((hist, qc.sample, qc.bits, qc.beyond, counts.variant, counts.sample,
                        counts.partial))  # fmt: skip
    finally:
        _kernel.simd(before)
    return got


@pytest.mark.parametrize("semantics", ["tutorial", "sgkit"])
@pytest.mark.parametrize("width", [31, 49, 50])
def test_one_flagged_call_alone_in_its_rows_is_seen_wherever_it_lies(
    semantics: str, width: int
) -> None:
    """The AVX2 path tests 8 rows at once for calls that set a QC flag, then the rows of a
    group that may hold one: each such call alone in 19 rows of 0/0 (two 8-row groups and 3
    rows past them), in a first, a masked or a tail column, counts as on the portable path."""
    for call in TAIL_CALLS:
        for column in (0, 15, 16, width - 2, width - 1):
            for row in (5, 17):
                gt = np.zeros((19, width, 2), dtype="i1")
                gt[row, column] = call
                _check(gt, 4, None, semantics)
                avx2, portable = _avx2_and_portable(gt, semantics)
                for avx2_item, portable_item in zip(avx2, portable, strict=True):
                    np.testing.assert_array_equal(avx2_item, portable_item)


@pytest.mark.parametrize("semantics", ["tutorial", "sgkit"])
@settings(max_examples=40, deadline=None)
@given(
    width=st.sampled_from([16, 17, 18, 31, 33, 34, 49, 50, 113, 114]),
    n=st.integers(0, 300),
    seed=st.integers(0, 2**31),
    tail_share=st.sampled_from([0.0, 0.01, 0.1, 0.6]),
    rest_share=st.sampled_from([0.0, 0.002, 0.05]),
)
def test_qc_extras_of_the_tail_calls_of_a_segment_equal_the_portable_path(
    semantics: str, width: int, n: int, seed: int, tail_share: float, rest_share: float
) -> None:
    """Segments of 16*k + 1 and 16*k + 2 calls (a 50-sample chunk), with flags and missing
    bits from their last two calls, on rows in and past the 8-row steps: the AVX2 path's
    histograms, classes, bits and counts equal the portable path's and the reference's."""
    rng = np.random.default_rng(seed)
    gt = rng.choice(np.array([0, 0, 0, 1], dtype="i1"), size=(n, width, 2))
    share = np.full(width, rest_share)
    for g in range(0, width, 64):  # the last two calls of each 64-call segment
        end = min(width, g + 64)
        share[end - 2 : end] = tail_share
    at = rng.random((n, width)) < share
    gt[at] = TAIL_CALLS[rng.integers(0, len(TAIL_CALLS), size=int(at.sum()))]
    _check(gt, 4, None, semantics)
    avx2, portable = _avx2_and_portable(gt, semantics)
    for avx2_item, portable_item in zip(avx2, portable, strict=True):
        np.testing.assert_array_equal(avx2_item, portable_item)


@pytest.mark.parametrize("dtype", ["i1", "i2"])
@pytest.mark.parametrize("layout", ["runs", "odd runs", "scattered", "none", "all"])
@pytest.mark.parametrize("semantics", ["tutorial", "sgkit"])
@pytest.mark.parametrize("shape", [(2800, 53), (700, 2100)])
def test_masked_qc_counts_the_passing_rows_where_they_lie(
    dtype: str, layout: str, semantics: str, shape: tuple[int, int]
) -> None:
    """``mask``: every QC count of the passing rows (histograms, bits, per-cohort counts,
    per-sample classes) as if they alone were counted, on their own rows; the failing rows'
    are left as they were. 2,800 rows of 53 calls: two 1024-row staging blocks; 700 rows of
    2,100: staging blocks cut to 1 MiB of calls (249 rows of int8, 124 of int16). Odd runs
    (1 to 90 rows): runs counted where they lie but for their last 0-7 rows, staged."""
    rng = np.random.default_rng(len(layout) + len(dtype))
    n, s = shape
    gt = rng.choice(ALLELES, size=(n, s + 3, 2)).astype(dtype)
    keep = {
        "runs": np.repeat(np.arange(14) % 3 != 0, n // 14),
        "odd runs": np.repeat(np.arange(n) % 2 == 0, rng.integers(1, 91, size=n))[:n],
        "scattered": rng.random(n) < 0.6,
        "none": np.zeros(n, dtype=bool),
        "all": np.ones(n, dtype=bool),
    }[layout]
    codes = rng.integers(-1, 3, size=s).astype(np.int32)
    columns = (2, s + 2)

    def count(calls: np.ndarray, mask: np.ndarray | None) -> tuple:
        m = len(calls)
        hist = np.full((m, 11), 7, dtype=np.uint16)  # what the failing rows keep
        bits = np.zeros((m, (s + 7) // 8), dtype=np.uint8)
        out = np.ones((m, 3, 4), dtype=np.uint16)
        into = np.full((3, m), 5, dtype=np.uint16)
        counts, qc = count_calls_qc(
            calls, hist=hist, semantics=semantics, columns=columns, into=into, bits=bits,
            cohorts=(codes, 3, out), mask=mask,
        )  # fmt: skip
        return counts, qc, hist, bits, out

    counts, qc, hist, bits, out = count(gt, keep)
    alone, qc_alone, hist_alone, bits_alone, out_alone = count(gt[keep], None)
    np.testing.assert_array_equal(hist[keep], hist_alone)
    np.testing.assert_array_equal(hist[~keep], 7)
    np.testing.assert_array_equal(bits[keep], bits_alone)
    np.testing.assert_array_equal(bits[~keep], 0)
    np.testing.assert_array_equal(out[keep], out_alone)
    np.testing.assert_array_equal(out[~keep], 1)
    np.testing.assert_array_equal(counts.variant[:, keep], alone.variant)
    np.testing.assert_array_equal(counts.variant[:, ~keep], 5)
    np.testing.assert_array_equal(counts.sample, alone.sample)
    assert counts.partial == alone.partial
    np.testing.assert_array_equal(qc.sample, qc_alone.sample)
    assert qc.beyond == qc_alone.beyond
