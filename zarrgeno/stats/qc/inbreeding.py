"""The inbreeding coefficient F of each sample, as plink2 ``--het`` computes it.

plink2 (2.0, default options) takes the autosomal variants whose expected heterozygosity
``ehet`` is at least 2**-35, computed from the allele frequencies of the same samples:
``2f(1 - f)`` with ``f`` the REF frequency for two alleles, ``1 - sum(f_a**2)`` for more
(variants where every call is missing count as monomorphic). For sample j, over those
variants where j has a call:

- ``OBS_CT``: how many there are; ``O(HET)``: how many of j's calls are heterozygous (any
  two different alleles); ``E(HET)``: the sum of their ``ehet``;
- ``O(HOM) = OBS_CT - O(HET)``, ``E(HOM) = OBS_CT - E(HET)``, ``F = 1 - O(HET) / E(HET)``.

**One pass.** ``ehet`` of a variant is known only once all its samples are counted, and
E(HET) needs to know which samples have a call at which variant, so E(HET) is not a sum
of per-call terms that one pass over the calls could add up. It becomes one at the level
of a work unit: a unit holds every selected sample of its variants, so when its last chunk
is counted its variants' allele counts are complete. The pass keeps, for each unit, one
bit per call (missing or not: 1/16 of the decoded int8 calls); at the unit's end,
:func:`het_terms` turns the unit's allele counts and those bits into two per-sample
partials, OBS_CT and E(HET) over the unit's variants, and the bits are dropped. The
partials add over units (E(HET) is a float: add it in the plan's unit order for results
that do not depend on the backend), and O(HET) is the het count the pass already makes.
Every chunk is read once. :func:`het_terms` visits each set bit (missing call) of a
polymorphic variant once, in compiled code (:func:`zarrgeno.stats.fastpath.missing_terms`);
:func:`het_terms_numpy` does the same with one ``np.bincount`` per 8 samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zarrgeno.stats.fastpath import missing_terms
from zarrgeno.stats.qc.alleles import AlleleFreqs

#: plink2's kSmallishEpsilon (2**-35): below it a variant counts as monomorphic.
MONOMORPHIC = 2.0**-35
#: ``_BITS[k]``: the 128 byte values with bit ``k`` set.
_BITS = np.array([np.flatnonzero((np.arange(256) >> k) & 1) for k in range(8)])


def expected_het(freqs: AlleleFreqs) -> tuple[np.ndarray, np.ndarray]:
    """Each variant's expected heterozygosity, with plink2's floating-point steps, and
    whether it counts (polymorphic: ``ehet >= 2**-35``, some call).

    >>> counts = np.array([[7, 5, 0], [4, 4, 4], [14, 0, 0], [0, 0, 0]])
    >>> ehet, poly = expected_het(AlleleFreqs(counts, np.array([2, 3, 2, 2])))
    >>> [round(x, 6) for x in ehet.tolist()], poly.tolist()
    ([0.486111, 0.666667, 0.0, 0.0], [True, True, False, False])
    """
    an, n_alleles = freqs.an, freqs.n_alleles
    total = np.zeros(len(an))
    squares = np.zeros(len(an))
    with np.errstate(divide="ignore", invalid="ignore"):  # AN 0: NaN, not counted below
        recip = 1.0 / an.astype(np.float64)
        f0 = freqs.counts[:, 0] * recip
        for a in range(freqs.counts.shape[1] - 1):  # the first K-1, in order, as plink2 adds
            fa = f0 if a == 0 else freqs.counts[:, a] * recip
            if np.any(n_alleles < a + 2):
                fa = np.where(a < n_alleles - 1, fa, 0.0)
            total += fa
            squares += fa * fa
        last = 1.0 - total
        ehet = 1.0 - squares - last * last
        two = n_alleles == 2
        if np.any(two):
            ehet = np.where(two, (2 * f0) * (1 - f0), ehet)
    poly = (freqs.an > 0) & (ehet >= MONOMORPHIC)
    return np.where(poly, ehet, 0.0), poly


@dataclass(frozen=True)
class HetTerms:
    """A unit's per-sample inbreeding partials: ``obs`` (int64) called polymorphic
    variants, ``expected`` (float64) the sum of their ``ehet``."""

    obs: np.ndarray
    expected: np.ndarray

    def __add__(self, other: HetTerms) -> HetTerms:
        return HetTerms(self.obs + other.obs, self.expected + other.expected)


def het_terms(
    bits: np.ndarray,
    n_samples: int,
    ehet: np.ndarray,
    poly: np.ndarray,
    totals: tuple[int, float] | None = None,
) -> HetTerms:
    """OBS_CT and E(HET) of each of ``n_samples`` samples over one unit's variants.

    ``bits`` (variants, ceil(n_samples / 8)) uint8 marks missing calls (bit ``j % 8`` of
    byte ``j // 8``, :func:`zarrgeno.stats.qc.genotypes.missing_bits`); ``ehet`` and
    ``poly`` come from :func:`expected_het` on the unit's allele counts (``ehet`` is 0
    where ``poly`` is False). ``totals``: the count of ``poly`` and the sum of ``ehet``,
    when the caller has them (pieces of other samples of the same variants share them).

    >>> bits = np.packbits([[0, 1], [0, 0], [1, 1]], axis=1, bitorder="little")
    >>> t = het_terms(bits, 2, np.array([0.5, 0.25, 0.5]), np.array([True, True, True]))
    >>> t.obs.tolist(), t.expected.tolist()
    ([2, 1], [0.75, 0.25])
    """
    n_bytes = (n_samples + 7) // 8
    if bits.shape != (len(ehet), n_bytes) or bits.dtype != np.uint8:
        raise ValueError(f"bits must be uint8 of shape ({len(ehet)}, {n_bytes})")
    n_poly, total = totals if totals is not None else poly_totals(ehet, poly)
    missing_obs, missing_exp = missing_terms(bits, n_samples, ehet, poly)
    return HetTerms(n_poly - missing_obs, total - missing_exp)


def poly_totals(ehet: np.ndarray, poly: np.ndarray) -> tuple[int, float]:
    """The polymorphic variants of ``poly`` and the sum of their ``ehet`` (0 elsewhere)."""
    return int(np.count_nonzero(poly)), ehet.sum()


def het_terms_numpy(
    bits: np.ndarray, n_samples: int, ehet: np.ndarray, poly: np.ndarray
) -> HetTerms:
    """:func:`het_terms` in numpy alone: one ``np.bincount`` of a column of bytes (256
    bins) per 8 samples, each sample given the bins whose byte has its bit set. The
    reference the compiled sum is tested against."""
    n_bytes = (n_samples + 7) // 8
    n_poly = int(np.count_nonzero(poly))
    total = ehet[poly].sum()
    rows = np.flatnonzero(poly & bits.any(axis=1))  # only rows with a missing call subtract
    missing = bits[rows]
    weights = ehet[rows]
    missing_obs = np.zeros(8 * n_bytes, dtype=np.int64)
    missing_exp = np.zeros(8 * n_bytes, dtype=np.float64)
    for c in range(n_bytes):
        column = missing[:, c]
        counts = np.bincount(column, minlength=256)
        sums = np.bincount(column, weights=weights, minlength=256)
        missing_obs[8 * c : 8 * c + 8] = counts[_BITS].sum(axis=1)
        missing_exp[8 * c : 8 * c + 8] = sums[_BITS].sum(axis=1)
    return HetTerms(n_poly - missing_obs[:n_samples], total - missing_exp[:n_samples])


@dataclass(frozen=True)
class Inbreeding:
    """plink2 ``--het`` of each sample: ``het`` O(HET), ``obs`` OBS_CT, ``expected`` E(HET).

    >>> f = Inbreeding(np.array([1]), np.array([5]), np.array([2.465986]))
    >>> f.o_hom.tolist(), round(float(f.e_hom[0]), 5), round(float(f.f[0]), 6)
    ([4], 2.53401, 0.594483)
    """

    het: np.ndarray
    obs: np.ndarray
    expected: np.ndarray

    @property
    def o_hom(self) -> np.ndarray:
        return self.obs - self.het

    @property
    def e_hom(self) -> np.ndarray:
        return self.obs.astype(np.float64) - self.expected

    @property
    def f(self) -> np.ndarray:
        """``1 - O(HET) / E(HET)`` (NaN for a sample with no called polymorphic variant)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return 1.0 - self.het / self.expected
