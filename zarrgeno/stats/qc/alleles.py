"""Allele counts and frequencies (AN, AC, ALT frequencies, MAF) from genotype histograms."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zarrgeno.stats.qc.genotypes import GenotypeCounts


@dataclass(frozen=True)
class AlleleFreqs:
    """Allele counts ``counts`` (variants, K), REF first, and each variant's number of
    alleles; frequencies are derived as plink2 ``--freq`` derives them.

    >>> f = AlleleFreqs(np.array([[7, 5], [0, 0]]), np.array([2, 2]))
    >>> f.an.tolist(), [round(x, 6) for x in f.freqs[0].tolist()], bool(np.isnan(f.freqs[1, 0]))
    ([12, 0], [0.583333, 0.416667], True)
    """

    counts: np.ndarray
    n_alleles: np.ndarray

    @classmethod
    def from_genotypes(cls, genotypes: GenotypeCounts) -> AlleleFreqs:
        return cls(genotypes.allele_counts, genotypes.n_alleles)

    @property
    def an(self) -> np.ndarray:
        """AN: called alleles."""
        return self.counts.sum(axis=1)

    @property
    def freqs(self) -> np.ndarray:
        """``(variants, K)`` float64: AC times 1/AN, as plink2 computes it (the reciprocal
        first); NaN where AN is 0, and past a variant's alleles."""
        with np.errstate(divide="ignore", invalid="ignore"):
            recip = 1.0 / self.an.astype(np.float64)
            out = self.counts.astype(np.float64) * recip[:, None]
        out[~self.present] = np.nan
        return out

    @property
    def present(self) -> np.ndarray:
        """``(variants, K)``: which allele columns exist for each variant."""
        return np.arange(self.counts.shape[1])[None, :] < self.n_alleles[:, None]

    @property
    def alt_freqs(self) -> np.ndarray:
        """``(variants, K-1)``: the ALT frequencies (bcftools' AF, plink2's ALT_FREQS)."""
        return self.freqs[:, 1:]

    @property
    def maf(self) -> np.ndarray:
        """Minor allele frequency as plink2's ``--maf`` reads it: 1 - the major allele's
        frequency (for two alleles, the smaller frequency); NaN where AN is 0."""
        major = np.where(self.present, self.freqs, -np.inf).max(axis=1)
        return np.where(self.an > 0, 1.0 - major, np.nan)

    @property
    def second_freq(self) -> np.ndarray:
        """The second largest allele frequency: bcftools ``+fill-tags``' MAF (equal to
        :attr:`maf` for two alleles); NaN where AN is 0."""
        freqs = np.where(self.present, self.freqs, -np.inf)
        out = -np.sort(-freqs, axis=1)[:, 1]
        return np.where(self.an > 0, out, np.nan)
