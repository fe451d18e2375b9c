"""The fused kernel against the naive reference: shapes, column windows, views, dtypes."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kernelpaths import kernel_path  # noqa: F401  (autouse: both compiled paths)
from test_stats_reference import genotype_arrays, naive_counts

import zarrgeno.runtime.cluster
import zarrgeno.stats.api
import zarrgeno.stats.kernels
from zarrgeno.errors import BadDataError, UsageError
from zarrgeno.stats.kernels import Semantics, count_calls, parse_semantics, variant_dtype

SEMANTICS = ["tutorial", "sgkit"]


@pytest.mark.parametrize("semantics", SEMANTICS)
@settings(max_examples=60, deadline=None)
@given(gt=genotype_arrays(max_variants=300, max_samples=70), data=st.data())
def test_kernel_equals_naive_reference(gt: np.ndarray, data: st.DataObject, semantics: str) -> None:
    s = gt.shape[1]
    c0 = data.draw(st.integers(0, s))
    c1 = data.draw(st.integers(c0, s))
    counts = count_calls(gt, semantics=semantics, columns=(c0, c1))
    ref = naive_counts(gt[:, c0:c1], semantics)
    np.testing.assert_array_equal(counts.variant, ref.variant)
    np.testing.assert_array_equal(counts.sample, ref.sample)
    assert counts.variant.dtype == variant_dtype(c1 - c0)


@settings(max_examples=30, deadline=None)
@given(gt=genotype_arrays(max_variants=200, max_samples=60), data=st.data())
def test_views_and_other_dtypes_count_the_same(gt: np.ndarray, data: st.DataObject) -> None:
    """Column windows of a wider buffer (a stored edge chunk), strided views, int16/int32."""
    n, s, _ = gt.shape
    r0 = data.draw(st.integers(0, n))
    r1 = data.draw(st.integers(r0, n))
    a = data.draw(st.integers(0, s - 1))
    b = data.draw(st.integers(a + 1, s))
    step = data.draw(st.sampled_from([1, 2]))
    view = gt[r0:r1, a:b:step]
    ref = naive_counts(np.ascontiguousarray(view), "tutorial")
    for candidate in (view, view.astype("i2"), view.astype("i4"), np.asfortranarray(view)):
        counts = count_calls(candidate)
        np.testing.assert_array_equal(counts.variant, ref.variant)
        np.testing.assert_array_equal(counts.sample, ref.sample)


def test_partial_calls_are_documented_both_ways() -> None:
    gt = np.array([[[-1, 1], [1, -1], [-1, -1], [0, 0], [0, 1], [2, 2]]], dtype="i1")
    tutorial = count_calls(gt, semantics="tutorial")
    assert tutorial.sample.tolist() == [[1, 0, 1, 0, 0, 0], [0, 0, 0, 1, 0, 0], [1, 1, 0, 0, 1, 0]]
    sgkit = count_calls(gt, semantics="sgkit")
    assert sgkit.sample.tolist() == [[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 1, 0]]


def test_big_blocks_cross_every_internal_boundary() -> None:
    """Enough rows for several blocks, a leftover row group, and every column window."""
    rng = np.random.default_rng(7)
    gt = rng.choice(np.array([0, 0, 0, 1, -1], dtype="i1"), size=(40_003, 50, 2))
    gt[rng.random(40_003) < 0.5] = 0
    for columns in [(0, 50), (0, 31), (3, 47), (49, 50)]:
        counts = count_calls(gt, columns=columns)
        sub = gt[:, columns[0] : columns[1]]
        a0, a1 = sub[..., 0], sub[..., 1]
        planes = [a0 == -1, (a0 == 0) & (a1 == 0), a0 != a1]
        np.testing.assert_array_equal(counts.variant, np.stack([p.sum(axis=1) for p in planes]))
        np.testing.assert_array_equal(counts.sample, np.stack([p.sum(axis=0) for p in planes]))


def test_wide_rows_over_255_samples() -> None:
    rng = np.random.default_rng(3)
    gt = rng.choice(np.array([0, 1, -1], dtype="i1"), size=(37, 300, 2))
    counts = count_calls(gt)
    ref = naive_counts(gt)
    assert counts.variant.dtype == np.uint16
    np.testing.assert_array_equal(counts.variant, ref.variant)
    np.testing.assert_array_equal(counts.sample, ref.sample)


@pytest.mark.parametrize("semantics", ["tutorial", "sgkit"])
def test_packed_fields_never_overflow(semantics: str) -> None:
    """Over 1023 rows and 1023 columns of the same call fill every 10-bit field to the top."""
    for call in ([-1, 1], [0, 0], [1, -1]):
        gt = np.empty((1100, 1100, 2), dtype="i1")
        gt[:] = call
        gt[5, 7] = [0, 1]
        counts = count_calls(gt, semantics=semantics, columns=(1, 1100))
        a0, a1 = gt[:, 1:, 0], gt[:, 1:, 1]
        if semantics == "tutorial":
            planes = [a0 == -1, (a0 == 0) & (a1 == 0), a0 != a1]
        else:
            missing = (a0 < 0) | (a1 < 0)
            planes = [missing, (a0 == 0) & (a1 == 0), ~missing & (a0 != a1)]
        np.testing.assert_array_equal(counts.variant, np.stack([p.sum(axis=1) for p in planes]))
        np.testing.assert_array_equal(counts.sample, np.stack([p.sum(axis=0) for p in planes]))


def test_empty_blocks() -> None:
    assert count_calls(np.zeros((0, 5, 2), "i1")).sample.tolist() == [[0] * 5] * 3
    assert count_calls(np.zeros((4, 5, 2), "i1"), columns=(2, 2)).variant.shape == (3, 4)


@pytest.mark.parametrize(
    "gt", [np.zeros((3, 2), "i1"), np.zeros((3, 2, 3), "i1"), np.zeros((3, 2, 2), "f4")]
)
def test_kernel_refuses_what_is_not_diploid_integer_calls(gt: np.ndarray) -> None:
    with pytest.raises(BadDataError):
        count_calls(gt)


def test_semantics_names() -> None:
    assert parse_semantics("TUTORIAL") is Semantics.TUTORIAL
    assert parse_semantics("scikit-allel") is Semantics.SGKIT
    with pytest.raises(UsageError, match="tutorial or sgkit"):
        parse_semantics("plink2")


@pytest.mark.parametrize(
    "module", [zarrgeno.stats.kernels, zarrgeno.stats.api, zarrgeno.runtime.cluster]
)
def test_docstring_examples_run(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.failed == 0


def test_compiled_kernel_refuses_bad_bounds() -> None:
    from zarrgeno.stats import _kernel

    calls = np.zeros((4, 3, 2), "i1")
    variant = np.zeros((3, 4), np.uint8)
    cols = np.zeros((3, 3), np.int64)
    _kernel.count_packed(calls, 4, 3, 0, 3, False, variant, 1, cols)
    assert variant[1].tolist() == [3, 3, 3, 3] and cols[1].tolist() == [4, 4, 4]
    for args, message in [
        ((calls, 4, 3, 0, 4, False, variant, 1, cols), "out of bounds"),
        ((calls, 9, 3, 0, 3, False, variant, 1, cols), "calls buffer too small"),
        ((calls, 4, 3, 0, 3, False, variant, 3, cols), "itemsize"),
        ((calls, 4, 3, 0, 3, False, variant, 1, cols[:, :1].copy()), "sample buffer too small"),
    ]:
        with pytest.raises(ValueError, match=message):
            _kernel.count_packed(*args)


def _numpy_counts(sub: np.ndarray, semantics: str) -> tuple[np.ndarray, np.ndarray]:
    """Missing, hom-ref and het of every call of ``sub`` (n, s, 2), vectorised."""
    a0, a1 = sub[..., 0], sub[..., 1]
    if semantics == "tutorial":
        fill = (a0 == -2) | (a1 == -2)
        missing, het = (a0 == -1) | fill, (a0 != a1) & ~fill
    else:
        missing = (a0 < 0) | (a1 < 0)
        het = ~missing & (a0 != a1)
    planes = [missing, (a0 == 0) & (a1 == 0), het]
    return np.stack([p.sum(axis=1) for p in planes]), np.stack([p.sum(axis=0) for p in planes])


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_every_segment_width_row_count_and_itemsize(semantics: str) -> None:
    """The compiled loop's edge paths: segment widths 1..130 (one to three 64-call segments
    of 1..4 loads, the last one overlapping, or 16*k + 1 and 16*k + 2 calls with a tail
    word), column offsets, row counts around the 8-row steps and the 248-row flush of the
    byte counters, every per-variant itemsize."""
    from zarrgeno.stats import _kernel

    rng = np.random.default_rng(5)
    alleles = np.array([0, 0, 0, 1, 1, 2, -1, -1, -2, 127, -128], dtype="i1")
    row_counts = [1, 7, 8, 9, 247, 248, 249, 256, 505]
    for width, n in [(w, row_counts[(w + k) % 9]) for w in range(1, 131) for k in (0, 4)]:
        c0 = width % 5
        stride = c0 + width + width % 3
        gt = rng.choice(alleles, size=(n, stride, 2))
        gt[rng.random(n) < 0.3] = [0, 0]
        want_variant, want_sample = _numpy_counts(gt[:, c0 : c0 + width], semantics)
        for itemsize, dtype in ((1, np.uint8), (2, np.uint16), (4, np.uint32), (8, np.uint64)):
            variant = np.full((3, n), 3, dtype=dtype)  # counts are added to what is there
            sample = np.full((3, width), 5, dtype=np.int64)
            _kernel.count_packed(
                gt, n, stride, c0, c0 + width, semantics == "sgkit", variant, itemsize, sample
            )
            msg = f"width {width}, n {n}, c0 {c0}, stride {stride}, itemsize {itemsize}"
            np.testing.assert_array_equal(variant, want_variant + 3, err_msg=msg)
            np.testing.assert_array_equal(sample, want_sample + 5, err_msg=msg)


def test_numpy_reference_of_the_width_test_is_the_naive_one() -> None:
    rng = np.random.default_rng(9)
    gt = rng.choice(np.array([0, 1, 2, -1, -2, 127, -128], dtype="i1"), size=(40, 9, 2))
    for semantics in SEMANTICS:
        variant, sample = _numpy_counts(gt, semantics)
        ref = naive_counts(gt, semantics)
        np.testing.assert_array_equal(variant, ref.variant)
        np.testing.assert_array_equal(sample, ref.sample)


@st.composite
def row_masks(draw: st.DrawFn, n: int) -> np.ndarray:
    """A site filter over ``n`` rows: none or all passing, scattered, or in runs (long and
    short, as real filters pass sites)."""
    kind = draw(st.sampled_from(["none", "all", "scattered", "runs"]))
    if kind in ("none", "all"):
        return np.full(n, kind == "all")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "scattered":
        return rng.random(n) < draw(st.sampled_from([0.1, 0.7, 0.97]))
    lengths = rng.integers(1, draw(st.sampled_from([4, 40, 300])), size=n + 1)
    runs = np.repeat(np.arange(len(lengths)) % 2 == rng.integers(0, 2), lengths)
    return np.ascontiguousarray(runs[:n])


def _counted_apart(gt: np.ndarray, mask: np.ndarray, **kwargs: object) -> tuple:
    """The counts of the passing rows copied together, put back at their rows."""
    kept = count_calls(np.ascontiguousarray(gt[mask]), **kwargs)  # type: ignore[arg-type]
    variant = np.zeros((3, gt.shape[0]), dtype=kept.variant.dtype)
    variant[:, mask] = kept.variant
    return variant, kept.sample, kept.partial


@pytest.mark.parametrize("semantics", SEMANTICS)
@settings(max_examples=60, deadline=None)
@given(gt=genotype_arrays(max_variants=1200, max_samples=70), data=st.data())
def test_masked_kernel_equals_the_kernel_on_the_copied_rows(
    gt: np.ndarray, data: st.DataObject, semantics: str
) -> None:
    """A site filter's rows counted in place (long runs in place, short ones staged) give
    what counting the passing rows copied together gives, for every dtype and window."""
    n, s, _ = gt.shape
    mask = data.draw(row_masks(n))
    c0 = data.draw(st.integers(0, s))
    c1 = data.draw(st.integers(c0, s))
    dtype = data.draw(st.sampled_from(["i1", "i2", "i4", "i8", ">i2"]))
    calls = gt.astype(dtype)
    counts = count_calls(calls, semantics=semantics, columns=(c0, c1), mask=mask)
    variant, sample, partial = _counted_apart(calls, mask, semantics=semantics, columns=(c0, c1))
    np.testing.assert_array_equal(counts.variant, variant)
    np.testing.assert_array_equal(counts.sample, sample)
    assert counts.partial == partial
    into = np.full((3, n), 7, dtype=np.uint16)  # added to what it holds, failing rows kept
    counted = count_calls(calls, semantics=semantics, columns=(c0, c1), mask=mask, into=into)
    np.testing.assert_array_equal(counted.variant, variant + 7)


@pytest.mark.parametrize("dtype", ["i1", "i8"])
def test_masked_kernel_over_long_runs_and_wide_rows(dtype: str) -> None:
    """Runs longer than one in-place call (4096 rows), a staging block filled many times
    over, rows wider than one group of 1023 columns."""
    rng = np.random.default_rng(5)
    for n, s in ((9000, 33), (700, 1100)):
        gt = rng.choice(np.array([-2, -1, 0, 0, 0, 1, 2], dtype=dtype), size=(n, s, 2))
        mask = rng.random(n) < 0.6
        mask[100 : 5000 if n > 5000 else 400] = True
        counts = count_calls(gt, columns=(1, s), mask=mask)
        variant, sample, partial = _counted_apart(gt, mask, columns=(1, s))
        np.testing.assert_array_equal(counts.variant, variant)
        np.testing.assert_array_equal(counts.sample, sample)
        assert counts.partial == partial


def test_masked_kernel_refuses_a_short_or_wrong_mask() -> None:
    from zarrgeno.stats import _kernel

    calls = np.zeros((4, 3, 2), "i1")
    variant = np.zeros((3, 4), np.uint8)
    cols = np.zeros((3, 3), np.int64)
    with pytest.raises(ValueError, match="mask buffer too small"):
        _kernel.count_packed(calls, 4, 3, 0, 3, False, variant, 1, cols, np.ones(3, bool))
    _kernel.count_packed(calls, 4, 3, 0, 3, False, variant, 1, cols, np.array([1, 0, 0, 1], bool))
    assert variant[1].tolist() == [3, 0, 0, 3] and cols[1].tolist() == [2, 2, 2]
    with pytest.raises(ValueError, match="mask must be a bool array"):
        count_calls(calls, mask=np.ones(4, np.int64))
    with pytest.raises(ValueError, match="mask must be a bool array"):
        count_calls(calls, mask=np.ones(5, bool))
