"""Split genotype histograms (``SplitHistogram``: four columns a row, the rare columns kept
apart and valid only where counted) count, and take the unit step, as whole rows do: on
both compiled paths, with a site filter's mask, Blosc chunks decoded in cache, and rare
columns holding stale values from an earlier unit."""

from __future__ import annotations

import numcodecs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kernelpaths import kernel_path  # noqa: F401  (autouse: both compiled paths)

from zarrgeno.io.chunks import blockwise_blosc
from zarrgeno.io.decompress import lz4_block_decoder
from zarrgeno.stats.fastpath import SplitHistogram, unit_alleles
from zarrgeno.stats.kernels import count_blosc_qc, count_calls_qc, variant_dtype

ALLELES = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 3, -1, -2], dtype="i1")


def _stale(n: int, columns: int, dtype: np.dtype) -> SplitHistogram:
    """Zeroed split histograms whose rare columns hold what an earlier unit left."""
    split = SplitHistogram.zeros(n, columns, dtype)
    split.rare[:] = np.iinfo(dtype).max // 3
    return split


@pytest.mark.parametrize("semantics", ["tutorial", "sgkit"])
@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 2500),
    s=st.integers(2, 90),
    seed=st.integers(0, 2**31),
    rare_share=st.sampled_from([0.0, 0.001, 0.02, 0.3]),
    masked=st.sampled_from(["none", "scattered", "runs"]),
)
def test_split_histograms_count_as_whole_rows(
    semantics: str, n: int, s: int, seed: int, rare_share: float, masked: str
) -> None:
    """Two column windows counted into the same histograms (a unit's two sample chunks):
    the split histograms' whole rows equal the whole-row histograms, and every other count
    is the same; with a site filter's mask of scattered rows or of runs of 1 to 90 rows
    (counted where they lie, their last rows staged)."""
    rng = np.random.default_rng(seed)
    gt = rng.choice(ALLELES[:8], size=(n, s, 2))
    rare = rng.random((n, s)) < rare_share
    gt[rare] = rng.choice(ALLELES, size=(int(rare.sum()), 2))
    mask = None
    if masked == "scattered":
        mask = rng.random(n) < 0.7
    elif masked == "runs":
        runs = np.repeat(np.arange(n) % 2 == 0, rng.integers(1, 91, size=n))
        mask = np.ascontiguousarray(runs[:n])
    dtype = variant_dtype(s)
    cut = s // 2
    whole = np.zeros((n, 11), dtype=dtype)
    split = _stale(n, 11, dtype)
    for hist in (whole, split):
        results = []
        for columns in ((0, cut), (cut, s)):
            counts, qc = count_calls_qc(
                gt, hist=hist, semantics=semantics, columns=columns, bits=True, mask=mask
            )
            results.append((counts.variant, counts.sample, counts.partial, qc.sample, qc.bits))
        if hist is whole:
            want = results
    np.testing.assert_array_equal(split.full(), whole)
    for got_piece, want_piece in zip(results, want, strict=True):
        for got, expected in zip(got_piece, want_piece, strict=True):
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("listed", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("seed", [1, 2])
def test_the_unit_step_reads_split_histograms_as_whole_rows(
    seed: int, dtype: type, listed: bool
) -> None:
    """unit_alleles of split histograms (rare rows seen, the others' rare columns stale)
    gives each variant's alleles, expected heterozygosity (to the bit), polymorphism,
    the alleles seen and the first row beyond its alleles as whole rows do."""
    rng = np.random.default_rng(seed)
    n, width = 4003, 81
    hist = np.zeros((n, 11), dtype=dtype)
    for i in range(n):  # 81 calls a row: mostly 0/0, some 0/1 and 1/1, a few past 1/1
        kinds = rng.choice(11, size=width, p=[0.1, 0.6, 0.15, 0.1] + [0.05 / 7] * 7)
        if rng.random() < 0.8:  # most rows call alleles 0 and 1 only
            kinds = np.minimum(kinds, 3)
        if rng.random() < 0.6:  # and most of them allele 0 alone, in runs of rows
            kinds = np.minimum(kinds, 1)
        hist[i] = np.bincount(kinds, minlength=11)
    hist[rng.random(n) < 0.1] = 0  # no call
    split = _stale(n, 11, np.dtype(dtype))
    split.hot[:] = hist[:, :4]
    seen = (hist[:, 4:] != 0).any(axis=1) | (rng.random(n) < 0.01)  # some seen, all zero
    split.seen[:] = seen
    split.rare[seen] = hist[seen, 4:]
    np.testing.assert_array_equal(split.full(), hist)
    n_alleles = rng.choice([1, 2, 2, 2, 3, 4], size=n) if listed else None
    want = unit_alleles(hist, n_alleles, width=width)
    got = unit_alleles(split, n_alleles, width=width)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1].view(np.uint64), want[1].view(np.uint64))
    for a, b in zip(got[2:4], want[2:4], strict=True):
        np.testing.assert_array_equal(a, b)
    assert got[4] == want[4]


@pytest.mark.skipif(lz4_block_decoder() is None, reason="numcodecs' Blosc exports no LZ4")
@pytest.mark.parametrize("masked", [False, True])
def test_split_histograms_of_a_blosc_chunk_decoded_in_cache(masked: bool) -> None:
    """A Blosc chunk counted a few blocks at a time into split histograms: as whole rows."""
    rng = np.random.default_rng(5)
    gt = rng.choice(ALLELES, size=(9_001, 50, 2))
    gt[::3] = 0
    raw = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=1).encode(gt)
    block = blockwise_blosc(raw)
    assert block is not None
    mask = rng.random(len(gt)) < 0.6 if masked else None
    whole = np.zeros((len(gt), 11), dtype=np.uint8)
    split = _stale(len(gt), 11, np.dtype(np.uint8))
    for hist in (whole, split):
        count_blosc_qc(
            raw, lz4_block_decoder(), block, len(gt), 50, "chunk", hist=hist, columns=(0, 50),
            bits=True, mask=mask,
        )  # fmt: skip
    np.testing.assert_array_equal(split.full(), whole)
    assert split.seen.any() and not split.seen.all()


def test_a_split_histogram_of_another_shape_is_refused() -> None:
    gt = np.zeros((5, 4, 2), dtype="i1")
    split = SplitHistogram.zeros(4, 11, np.dtype(np.uint8))
    with pytest.raises(ValueError, match="split histogram"):
        count_calls_qc(gt, hist=split)
