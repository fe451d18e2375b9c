"""The compiled unit step of the QC pass (``unit_alleles``, ``allele_counts``,
``missing_terms``) against straightforward numpy, on both compiled paths: the AVX2 loop
takes 4 rows of alleles 0 and 1 at a time, the portable loop one row, and both hand the
rows with calls past 1/1 to the general step. Rows are drawn by kind (two alleles, more
alleles, no call, every call the same genotype), every histogram count type, K 2..5, row
counts that leave a partial block of 4, widths that are not a multiple of 8 or 64."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from kernelpaths import kernel_path  # noqa: F401  (autouse: both compiled paths)

from zarrgeno.stats.fastpath import allele_counts, missing_terms, unit_alleles
from zarrgeno.stats.qc.alleles import AlleleFreqs
from zarrgeno.stats.qc.counting import observed_alleles
from zarrgeno.stats.qc.genotypes import alleles_seen, first_beyond, genotype_pairs, n_genotypes
from zarrgeno.stats.qc.inbreeding import expected_het

KINDS = ("two", "many", "none", "same")


def histograms(rng: np.random.Generator, n: int, k: int, width: int, dtype: str) -> np.ndarray:
    """``n`` histogram rows of ``width`` calls each: alleles 0 and 1 only, any of the K
    alleles, no call at all, or every call one genotype (half the time 0/0)."""
    g = n_genotypes(k)
    hist = np.zeros((n, 1 + g), dtype=np.int64)
    kinds = rng.choice(len(KINDS), size=n, p=[0.55, 0.2, 0.1, 0.15])
    for i, kind in enumerate(kinds):
        if KINDS[kind] == "two":
            cols = 4
        elif KINDS[kind] == "many":
            cols = 1 + g
        elif KINDS[kind] == "none":
            hist[i, 0] = width
            continue
        else:
            hist[i, 1 if rng.random() < 0.5 else rng.integers(1, 1 + g)] = width
            continue
        weights = rng.random(cols) ** 3
        hist[i, :cols] = rng.multinomial(width, weights / weights.sum())
    return hist.astype(dtype)


def reference_counts(hist: np.ndarray, k: int) -> np.ndarray:
    """AC of each allele: each genotype a/b adds its count to a and to b."""
    out = np.zeros((len(hist), k), dtype=np.int64)
    for col, (a, b) in enumerate(genotype_pairs(k), start=1):
        out[:, a] += hist[:, col].astype(np.int64)
        out[:, b] += hist[:, col].astype(np.int64)
    return out


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(0, 70),
    k=st.integers(2, 5),
    width=st.integers(1, 200),
    dtype=st.sampled_from(["u1", "u2", "u4", "u8"]),
    listed=st.booleans(),
    table=st.booleans(),
)
def test_unit_alleles_equal_numpy_bit_for_bit(
    seed: int, n: int, k: int, width: int, dtype: str, listed: bool, table: bool
) -> None:
    """Alleles, expected heterozygosity (the same doubles), polymorphism, the alleles
    seen and the first row with calls beyond its alleles, with 1 / AN from the table
    (the width of the calls) or by division (a width too large for the table)."""
    rng = np.random.default_rng(seed)
    width = min(width, 255) if dtype == "u1" else width
    hist = histograms(rng, n, k, width, dtype)
    given_alleles = rng.choice([2, 2, 2, k], size=n).astype(np.int64) if listed else None
    limit = width if table else 2**20  # a width past 2**19 has no table of 1 / AN
    alleles, ehet, poly, seen, row = unit_alleles(hist, given_alleles, None, limit)
    counts = reference_counts(hist, k)
    np.testing.assert_array_equal(allele_counts(hist), counts)
    want_alleles = given_alleles if given_alleles is not None else observed_alleles(hist)
    np.testing.assert_array_equal(alleles, want_alleles)
    np.testing.assert_array_equal(seen, np.bincount(alleles_seen(hist), minlength=k + 1))
    assert row == first_beyond(hist, want_alleles)
    want_ehet, want_poly = expected_het(AlleleFreqs(counts, want_alleles))
    assert ehet.tobytes() == want_ehet.tobytes()
    np.testing.assert_array_equal(poly, want_poly)


def test_rows_beyond_their_alleles_in_blocks_and_after() -> None:
    """The first row calling an allele past its listed ones, wherever it falls: in a
    block of two-allele rows (a listed single allele), in a row past 1/1, in the tail."""
    rng = np.random.default_rng(5)
    hist = histograms(rng, 23, 4, 30, "u1")
    hist[:, 4:] = 0
    hist[:, 1:4] = 10
    for at, alleles_there, extra in [(6, 1, 0), (9, 2, 5), (21, 2, 8), (13, 3, 10), (2, 0, 0)]:
        listed = np.full(23, 2, dtype=np.int64)
        listed[at] = alleles_there
        h = hist.copy()
        if extra:
            h[at, extra] = 3
        listed[at + 1 :] = np.where(np.arange(at + 1, 23) % 5 == 0, 1, 2)  # later ones too
        want = first_beyond(h, listed)
        assert want == at
        assert unit_alleles(h, listed)[4] == want


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(0, 600),  # past the 256 rows whose polymorphic ones are listed at once
    width=st.integers(1, 200),
    density=st.sampled_from([0.0, 0.02, 0.15, 0.6, 1.0]),
)
def test_missing_terms_equal_numpy_bit_for_bit(
    seed: int, n: int, width: int, density: float
) -> None:
    """Per sample, the polymorphic rows of its missing calls and their summed ``ehet``
    (rows added in order: the same doubles); bits past the width are not samples."""
    rng = np.random.default_rng(seed)
    nbytes = (width + 7) // 8
    missing = rng.random((n, 8 * nbytes)) < density
    bits = np.packbits(missing, axis=1, bitorder="little")
    poly = rng.random(n) < 0.7
    ehet = np.where(poly, rng.random(n) / 2, 0.0)
    obs, expected = missing_terms(bits, width, ehet, poly)
    counted = missing[:, :width] & poly[:, None]
    np.testing.assert_array_equal(obs, counted.sum(axis=0))
    # a running sum is the sequential one; adding 0.0 leaves a sum of non-negatives as is
    terms = np.where(counted, ehet[:, None], 0.0)
    want = np.cumsum(terms, axis=0)[-1] if n else np.zeros(width)
    assert expected.tobytes() == want.tobytes()
