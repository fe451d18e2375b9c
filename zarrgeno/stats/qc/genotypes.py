"""Genotype classes of diploid calls, and every count derived from them.

A variant's calls are summarised by one histogram: missing calls (any allele negative, as
plink2 with ``--vcf-half-call m``, scikit-allel and sgkit count them), then one column per
unordered genotype ``a/b`` (``a <= b``) in VCF order (``0/0, 0/1, 1/1, 0/2, 1/2, 2/2, ...``:
column ``1 + b*(b+1)/2 + a``). For K alleles (Ag1000G: REF and 3 ALT, K = 4) that is
1 + K(K+1)/2 = 11 counts. Histograms of two sample ranges of the same variants add up.
Allele counts, hom-ref / het / hom-alt counts, plink2's ``--geno-counts`` columns and the
per-allele counts of ``--hardy`` are linear in it.

Per sample, four counts over variants: missing, hom-ref, het (two different called
alleles, any two), hom-alt (two equal alleles other than REF). Counts of two variant ranges
add up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from zarrgeno.errors import BadDataError
from zarrgeno.stats.fastpath import allele_counts as histogram_alleles

#: Rows of the per-sample counts.
SAMPLE_COUNTS = ("missing", "hom_ref", "het", "hom_alt")
MISSING, HOM_REF, HET, HOM_ALT = range(4)


def n_genotypes(n_alleles: int) -> int:
    """Unordered diploid genotypes of ``n_alleles`` alleles: K(K+1)/2.

    >>> n_genotypes(2), n_genotypes(4)
    (3, 10)
    """
    return n_alleles * (n_alleles + 1) // 2


def genotype_index(a: int, b: int) -> int:
    """VCF order of the genotype ``a/b`` (either order): ``hi*(hi+1)/2 + lo``.

    >>> [genotype_index(a, b) for a, b in [(0, 0), (0, 1), (1, 1), (2, 0), (2, 1), (3, 3)]]
    [0, 1, 2, 3, 4, 9]
    """
    lo, hi = min(a, b), max(a, b)
    return hi * (hi + 1) // 2 + lo


def genotype_pairs(n_alleles: int) -> np.ndarray:
    """``(K(K+1)/2, 2)``: the alleles ``(a, b)``, ``a <= b``, of each genotype in VCF order."""
    return np.array([(a, b) for b in range(n_alleles) for a in range(b + 1)], dtype=np.int64)


def alleles_of(columns: int) -> int:
    """K from the width ``1 + K(K+1)/2`` of a histogram."""
    k = 1
    while 1 + n_genotypes(k) < columns:
        k += 1
    if 1 + n_genotypes(k) != columns:
        raise ValueError(f"{columns} columns is not 1 + K(K+1)/2 for any K")
    return k


@dataclass(frozen=True)
class GenotypeCounts:
    """Per-variant genotype histograms ``hist`` (variants, 1 + K(K+1)/2), and each
    variant's number of alleles (REF plus listed ALT, 2..K)."""

    hist: np.ndarray
    n_alleles: np.ndarray
    #: The caller has checked that no variant has calls beyond its alleles.
    checked: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        k = alleles_of(self.hist.shape[1])
        if self.n_alleles.shape != (self.hist.shape[0],):
            raise ValueError("n_alleles must have one entry per variant")
        if self.hist.shape[0] and (self.n_alleles.min() < 1 or self.n_alleles.max() > k):
            raise ValueError(f"n_alleles must be within 1..{k}")
        row = None if self.checked else first_beyond(self.hist, self.n_alleles)
        if row is not None:
            raise BadDataError(
                f"variant {row} has calls of an allele beyond its "
                f"{int(self.n_alleles[row])} alleles (REF and ALT)"
            )

    @property
    def max_alleles(self) -> int:
        return alleles_of(self.hist.shape[1])

    @property
    def missing(self) -> np.ndarray:
        return self.hist[:, 0].astype(np.int64)

    @cached_property
    def genotypes(self) -> np.ndarray:
        """``(variants, K(K+1)/2)`` int64: the called genotypes."""
        return self.hist[:, 1:].astype(np.int64)

    @cached_property
    def called(self) -> np.ndarray:
        return self.genotypes.sum(axis=1)

    @cached_property
    def allele_counts(self) -> np.ndarray:
        """``(variants, K)``: AC of every allele, REF first (0 past a variant's alleles),
        in one compiled integer pass over the histograms."""
        return histogram_alleles(self.hist)

    @property
    def allele_number(self) -> np.ndarray:
        """AN: called alleles, twice the called genotypes."""
        return 2 * self.called

    def hom(self, allele: int) -> np.ndarray:
        """Calls ``allele/allele``."""
        return self.genotypes[:, genotype_index(allele, allele)]

    def het_with(self, allele: int) -> np.ndarray:
        """Calls holding ``allele`` once (``allele/b``, ``b`` another allele)."""
        pairs = genotype_pairs(self.max_alleles)
        once = (pairs[:, 0] == allele) ^ (pairs[:, 1] == allele)
        return self.genotypes[:, once].sum(axis=1)

    @property
    def hom_ref(self) -> np.ndarray:
        return self.hom(0)

    @property
    def het(self) -> np.ndarray:
        """Calls of two different alleles (REF/ALT and ALT/ALT alike)."""
        pairs = genotype_pairs(self.max_alleles)
        return self.genotypes[:, pairs[:, 0] != pairs[:, 1]].sum(axis=1)

    @property
    def hom_alt(self) -> np.ndarray:
        pairs = genotype_pairs(self.max_alleles)
        same = (pairs[:, 0] == pairs[:, 1]) & (pairs[:, 0] > 0)
        return self.genotypes[:, same].sum(axis=1)

    def het_ref_alt(self) -> np.ndarray:
        """``(variants, K-1)``: ``0/1, 0/2, ...`` (plink2's ``HET_REF_ALT_CTS``)."""
        return self.genotypes[:, [genotype_index(0, a) for a in range(1, self.max_alleles)]]

    def two_alt(self) -> np.ndarray:
        """``(variants, (K-1)K/2)``: ``1/1, 1/2, 2/2, 1/3, ...`` in VCF order
        (plink2's ``TWO_ALT_GENO_CTS``)."""
        pairs = genotype_pairs(self.max_alleles)
        return self.genotypes[:, pairs[:, 0] > 0]


def first_beyond(hist: np.ndarray, n_alleles: np.ndarray) -> int | None:
    """The first variant with calls of an allele beyond its ``n_alleles``, or None."""
    k = alleles_of(hist.shape[1])
    fewer = np.flatnonzero(n_alleles < k)  # most stores list K alleles everywhere
    absent = (hist[fewer, 1:] > 0) & ~_present(n_alleles[fewer], k)
    if not np.any(absent):
        return None
    return int(fewer[np.flatnonzero(absent.any(axis=1))[0]])


def _present(n_alleles: np.ndarray, k: int) -> np.ndarray:
    """``(variants, K(K+1)/2)``: whether each genotype exists for each variant's alleles."""
    pairs = genotype_pairs(k)
    return pairs[None, :, 1] < np.asarray(n_alleles)[:, None]


def count_genotypes(gt: np.ndarray, n_alleles: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference count of a ``(variants, samples, 2)`` block: the per-variant histogram
    (variants, 1 + K(K+1)/2) and the per-sample counts (4, samples), both int64.

    A call with any negative allele is missing; an allele ``>= n_alleles`` is refused.

    >>> gt = np.array([[[0, 0], [0, 1], [-1, 1]], [[2, 1], [1, 1], [0, 0]]], dtype="i1")
    >>> hist, per_sample = count_genotypes(gt, 3)
    >>> hist.tolist()  # missing, 0/0, 0/1, 1/1, 0/2, 1/2, 2/2
    [[1, 1, 1, 0, 0, 0, 0], [0, 1, 0, 1, 0, 1, 0]]
    >>> per_sample.tolist()  # rows: missing, hom-ref, het, hom-alt; one column per sample
    [[0, 0, 1], [1, 0, 1], [1, 1, 0], [0, 1, 0]]
    """
    if gt.ndim != 3 or gt.shape[2] != 2:
        raise BadDataError(f"genotype counts need diploid calls; got shape {gt.shape}")
    n, s, _ = gt.shape
    a0, a1 = gt[..., 0].astype(np.int64), gt[..., 1].astype(np.int64)
    missing = (a0 < 0) | (a1 < 0)
    if np.any(~missing & ((a0 >= n_alleles) | (a1 >= n_alleles))):
        raise BadDataError(f"a call holds an allele >= {n_alleles}, more alleles than expected")
    width = 1 + n_genotypes(n_alleles)
    lo, hi = np.minimum(a0, a1), np.maximum(a0, a1)
    cls = np.where(missing, 0, 1 + hi * (hi + 1) // 2 + lo)
    cls += np.arange(n, dtype=np.int64)[:, None] * width
    hist = np.bincount(cls.ravel(), minlength=n * width).reshape(n, width)
    called_same = ~missing & (a0 == a1)
    per_sample = np.stack(
        [
            missing.sum(axis=0),
            (called_same & (a0 == 0)).sum(axis=0),
            (~missing & (a0 != a1)).sum(axis=0),
            (called_same & (a0 > 0)).sum(axis=0),
        ]
    ).astype(np.int64)
    return hist.astype(np.int64), per_sample.reshape(4, s)


def alleles_seen(hist: np.ndarray) -> np.ndarray:
    """How many distinct alleles each variant's calls hold (0 without a call).

    >>> alleles_seen(np.array([[5, 0, 0, 0], [0, 3, 0, 0], [0, 1, 1, 0], [0, 0, 0, 2]])).tolist()
    [0, 1, 2, 1]
    """
    k = alleles_of(hist.shape[1])
    called = np.asarray(hist)[:, 1:] != 0
    pairs = genotype_pairs(k)
    seen = np.zeros(len(called), dtype=np.int64)
    for a in range(k):
        seen += called[:, (pairs[:, 0] == a) | (pairs[:, 1] == a)].any(axis=1)
    return seen


def missing_bits(gt: np.ndarray) -> np.ndarray:
    """``(variants, ceil(samples/8))`` uint8: bit ``j % 8`` of byte ``j // 8`` is set when
    sample ``j``'s call is missing (any allele negative); little bit order, as
    ``np.packbits(..., bitorder="little")``."""
    missing = (gt[..., 0] < 0) | (gt[..., 1] < 0)
    return np.packbits(missing, axis=1, bitorder="little")
