"""QC results: per-variant allele counts, frequencies, genotype counts and HWE; per-sample
genotype classes and the inbreeding coefficient F; their JSON form and an xarray Dataset.

Everything is derived, when asked, from the reduced partials (a contig's genotype
histogram, the per-sample counts): nothing is computed twice and nothing large is kept
beyond the histogram (11 bytes per variant for Ag1000G's 81 samples and 3 ALT alleles).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from zarrgeno.stats.qc.alleles import AlleleFreqs
from zarrgeno.stats.qc.fields import (
    SAMPLE_GENOTYPES,
    SAMPLE_HET_EXPECTED,
    SAMPLE_HET_OBS,
)
from zarrgeno.stats.qc.genotypes import HET, HOM_ALT, HOM_REF, MISSING, GenotypeCounts
from zarrgeno.stats.qc.hwe import hardy_table
from zarrgeno.stats.qc.inbreeding import Inbreeding


def _json(value: float) -> float | None:
    return None if value != value else round(float(value), 8)


@dataclass(frozen=True)
class QcVariants:
    """One contig's per-variant QC statistics, variants ``start:stop``: from the genotype
    histogram ``hist`` (variants, 1 + K(K+1)/2) and each variant's alleles ``n_alleles``
    (REF and listed ALT, or the alleles called when the store lists none). With a site
    filter, only the variants of ``start:stop`` that ``site_pass`` marks."""

    contig: str
    start: int
    stop: int
    hist: np.ndarray = field(repr=False)
    n_alleles: np.ndarray = field(repr=False)
    site_pass: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.hist)

    def positions(self, read: Any) -> np.ndarray:
        """The variants' positions, given ``read(start, stop)`` of the contig's."""
        pos = read(self.start, self.stop)
        return pos if self.site_pass is None else pos[self.site_pass]

    @cached_property
    def genotypes(self) -> GenotypeCounts:
        return GenotypeCounts(np.asarray(self.hist, dtype=np.int64), self.n_alleles)

    @cached_property
    def freqs(self) -> AlleleFreqs:
        return AlleleFreqs.from_genotypes(self.genotypes)

    @property
    def allele_count(self) -> np.ndarray:
        """AC (variants, K), REF first (scikit-allel's ``count_alleles``)."""
        return self.genotypes.allele_counts

    @property
    def allele_number(self) -> np.ndarray:
        """AN: called alleles."""
        return self.genotypes.allele_number

    @property
    def allele_frequency(self) -> np.ndarray:
        """(variants, K) frequencies, REF first; NaN without calls and past a variant's alleles."""
        return self.freqs.freqs

    @property
    def alt_freqs(self) -> np.ndarray:
        return self.freqs.alt_freqs

    @property
    def maf(self) -> np.ndarray:
        """1 - the major allele's frequency (plink2's MAF); NaN without calls."""
        return self.freqs.maf

    @property
    def n_missing(self) -> np.ndarray:
        return self.genotypes.missing

    @property
    def n_called(self) -> np.ndarray:
        return self.genotypes.called

    @property
    def n_hom_ref(self) -> np.ndarray:
        return self.genotypes.hom_ref

    @property
    def n_het(self) -> np.ndarray:
        return self.genotypes.het

    @property
    def n_hom_alt(self) -> np.ndarray:
        return self.genotypes.hom_alt

    @property
    def call_rate(self) -> np.ndarray:
        total = self.n_called + self.n_missing
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.n_called / total.astype(np.float64)

    def hwe_p(self, *, midp: bool = False) -> np.ndarray:
        """plink2's Hardy-Weinberg exact test p (``midp``: mid-p) of each biallelic variant
        (REF against ALT); NaN for variants of more alleles."""
        table = hardy_table(self.genotypes, midp=midp)
        out = np.full(len(self.n_alleles), np.nan)
        biallelic = self.n_alleles[table.variant] == 2
        out[table.variant[biallelic]] = table.p[biallelic]
        return out


@dataclass(frozen=True)
class QcSamples:
    """Per-sample QC statistics over ``n_variants`` variants: ``genotypes`` (4, samples)
    missing, hom-ref, het and hom-alt calls; ``autosomal``, the per-sample partials summed
    over the autosomes' ``n_autosomal`` variants, for plink2 ``--het`` (None when not
    asked for, or no autosome was counted)."""

    samples: tuple[str, ...]
    n_variants: int
    genotypes: np.ndarray
    autosomal: Mapping[str, np.ndarray] | None = field(default=None, repr=False)
    n_autosomal: int = 0

    @property
    def n_missing(self) -> np.ndarray:
        return self.genotypes[MISSING]

    @property
    def n_hom_ref(self) -> np.ndarray:
        return self.genotypes[HOM_REF]

    @property
    def n_het(self) -> np.ndarray:
        return self.genotypes[HET]

    @property
    def n_hom_alt(self) -> np.ndarray:
        return self.genotypes[HOM_ALT]

    @property
    def n_called(self) -> np.ndarray:
        return self.n_variants - self.n_missing

    @property
    def call_rate(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return (
                self.n_called / float(self.n_variants)
                if self.n_variants
                else self.n_called * np.nan
            )

    @property
    def inbreeding(self) -> Inbreeding | None:
        """plink2 ``--het``: O(HOM), E(HOM), OBS_CT and F (autosomes only), when computed."""
        a = self.autosomal
        if a is None or SAMPLE_HET_OBS.name not in a:
            return None
        return Inbreeding(
            a[SAMPLE_GENOTYPES.name][HET], a[SAMPLE_HET_OBS.name][0], a[SAMPLE_HET_EXPECTED.name][0]
        )

    def rows(self) -> list[dict[str, Any]]:
        f = self.inbreeding
        out = []
        for j, name in enumerate(self.samples):
            row: dict[str, Any] = {"sample": name, "n_hom_alt": int(self.n_hom_alt[j])}
            if f is not None:
                row |= {
                    "het_obs_ct": int(f.obs[j]),
                    "o_hom": int(f.o_hom[j]),
                    "e_hom": _json(float(f.e_hom[j])),
                    "f": _json(float(f.f[j])),
                }
            out.append(row)
        return out


@dataclass(frozen=True)
class QcContig:
    """One contig's QC partials: per-sample classes, how many variants show 0, 1, 2, ...
    called alleles, and (when kept) the per-variant statistics."""

    contig: str
    samples: np.ndarray
    alleles_seen: np.ndarray
    variants: QcVariants | None = None

    def summary(self) -> dict[str, Any]:
        seen = self.alleles_seen.tolist()
        return {
            "n_hom_alt": int(self.samples[HOM_ALT].sum()),
            "n_variants_no_call": int(seen[0]),
            "n_variants_monomorphic": int(seen[1]) if len(seen) > 1 else 0,
            "n_variants_biallelic": int(seen[2]) if len(seen) > 2 else 0,
            "n_variants_multiallelic": int(sum(seen[3:])),
        }


@dataclass(frozen=True)
class QcResult:
    """QC statistics of a run: per contig and over every contig; ``reports`` are the
    plink2 reports they cover, ``max_alleles`` the K of the genotype histograms."""

    reports: tuple[str, ...]
    max_alleles: int
    alleles_listed: bool
    contigs: tuple[QcContig, ...]
    samples: QcSamples
    #: Per-cohort statistics (:class:`zarrgeno.stats.qc.cohort_counts.CohortResult`),
    #: when cohorts were asked for.
    cohorts: Any = None

    def contig(self, name: str) -> QcContig:
        for c in self.contigs:
            if c.contig == name:
                return c
        raise KeyError(name)

    def notes(self) -> list[str]:
        notes = []
        if not self.alleles_listed:
            notes.append(
                "Note: the store lists no REF/ALT alleles: QC statistics assume at most "
                f"{self.max_alleles - 1} ALT alleles, count the alleles each variant's calls "
                "hold, and the plink2 files print . for REF, ALT and ID"
            )
        return notes

    def to_dict(self) -> dict[str, Any]:
        f = self.samples.inbreeding
        return {
            "reports": list(self.reports),
            "max_alleles": self.max_alleles,
            "contigs": {c.contig: c.summary() for c in self.contigs},
            "n_autosomal_variants": self.samples.n_autosomal if f is not None else None,
            "samples": self.samples.rows(),
        } | ({"cohorts": self.cohorts.to_dict()} if self.cohorts is not None else {})

    def to_xarray(self) -> Any:
        """The statistics as an ``xarray.Dataset`` with sgkit's variable names (needs the
        per-variant statistics, ``per_variant=True``, and xarray: ``pip install
        'zarrgeno[xarray]'``)."""
        from zarrgeno.stats.qc.dataset import qc_dataset

        return qc_dataset(self)


def contig_result(
    contig: str,
    totals: Mapping[str, np.ndarray],
    alleles_seen: np.ndarray,
    variants: QcVariants | None,
) -> QcContig:
    return QcContig(contig, totals[SAMPLE_GENOTYPES.name], alleles_seen, variants)


def sample_result(
    names: Sequence[str],
    n_variants: int,
    genotypes: np.ndarray,
    autosomal: Mapping[str, np.ndarray] | None,
    n_autosomal: int,
) -> QcSamples:
    return QcSamples(tuple(names), n_variants, genotypes, autosomal, n_autosomal)
