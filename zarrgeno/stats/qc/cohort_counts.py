"""Per-cohort allele counts in the counting pass, and the per-cohort results.

The C QC kernel (``qc_count``, through :func:`zarrgeno.stats.kernels.count_calls_qc`'s
``cohorts``) counts, block by block with the genotype histogram, for each variant each
cohort's count of each allele (REF first) over its called calls (a call with a negative
allele is missing, as in plink2 ``--freq`` and the genotype histogram), into a
``(variants, cohorts, K)`` array. It adds over sample windows of the same variants like
the histogram, and lands at its variants in the reduction. Per-cohort summaries (called
calls, missing rate, heterozygosity) need no per-variant count: they are sums of the
per-sample genotype classes over a cohort's samples. The cohorts themselves come from
:mod:`zarrgeno.stats.cohorts`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zarrgeno.stats import _kernel
from zarrgeno.stats.cohorts import Cohorts
from zarrgeno.stats.kernels import COMPILED, variant_dtype
from zarrgeno.stats.qc.alleles import AlleleFreqs
from zarrgeno.stats.qc.genotypes import HET, MISSING

#: The unit partial (and reduced array) of per-cohort allele counts.
COHORT_ALLELE_COUNT = "cohort_allele_count"
#: Columns per C call (a cohort's ALT count must fit 16 bits).
COHORT_WIDTH = 32767


def count_dtype(width: int) -> np.dtype:
    """The dtype of per-cohort allele counts over ``width`` samples (at most 2 per call)."""
    return variant_dtype(2 * width)


def count_cohorts_numpy(gt: np.ndarray, codes: np.ndarray, n_cohorts: int, k: int) -> np.ndarray:
    """The reference: ``(variants, n_cohorts, k)`` allele counts of ``gt`` (variants,
    samples, 2), each sample in cohort ``codes[j]`` (-1: none).

    >>> gt = np.array([[[0, 1], [1, 1], [-1, 0], [0, 2]]], dtype="i1")
    >>> count_cohorts_numpy(gt, np.array([0, 1, 1, 0]), 2, 3).tolist()
    [[[2, 1, 1], [0, 2, 0]]]
    """
    gt = np.asarray(gt)
    called = np.asarray((gt >= 0).all(axis=2))
    out = np.zeros((gt.shape[0], n_cohorts, k), dtype=np.int64)
    for c in range(n_cohorts):
        members = codes == c
        calls = gt[:, members]
        ok = called[:, members][..., None]
        for a in range(k):
            out[:, c, a] = ((calls == a) & ok).sum(axis=(1, 2))
    return out


def count_cohorts(
    gt: np.ndarray,
    columns: tuple[int, int] | None,
    codes: np.ndarray,
    n_cohorts: int,
    out: np.ndarray,
) -> None:
    """The same loops alone (the C ``cohort_count``): add the per-cohort allele counts of
    columns ``columns`` (all when None) of ``gt`` to ``out`` ((variants, n_cohorts, K),
    unsigned, C-contiguous); ``codes`` (int32, one per column counted) gives each
    column's cohort, -1 for none."""
    n, s, _ = gt.shape
    c0, c1 = (0, s) if columns is None else columns
    k = out.shape[2]
    codes = np.ascontiguousarray(codes, dtype=np.int32)
    if n == 0 or c1 <= c0 or not (codes >= 0).any():
        return
    if gt.dtype not in COMPILED or not gt.flags.c_contiguous:
        counts = count_cohorts_numpy(gt[:, c0:c1], codes, n_cohorts, k)
        out += counts.astype(out.dtype)
        return
    for g0 in range(c0, c1, COHORT_WIDTH):
        g1 = min(c1, g0 + COHORT_WIDTH)
        _kernel.cohort_count(
            gt, gt.itemsize, n, s, g0, g1, codes[g0 - c0 : g1 - c0], n_cohorts, k, out,
            out.itemsize,
        )  # fmt: skip


@dataclass(frozen=True)
class CohortSummary:
    """One cohort over every variant counted: its samples, their called and missing
    calls and het calls (half calls missing, as plink2 reads them)."""

    name: str
    n_samples: int
    n_called: int
    n_missing: int
    n_het: int

    @property
    def missing_rate(self) -> float:
        total = self.n_called + self.n_missing
        return self.n_missing / total if total else float("nan")

    @property
    def heterozygosity(self) -> float:
        return self.n_het / self.n_called if self.n_called else float("nan")

    def to_dict(self) -> dict[str, Any]:
        def real(x: float) -> float | None:
            return None if x != x else round(x, 8)

        return {
            "cohort": self.name,
            "n_samples": self.n_samples,
            "n_called": self.n_called,
            "n_missing": self.n_missing,
            "n_het": self.n_het,
            "missing_rate": real(self.missing_rate),
            "heterozygosity": real(self.heterozygosity),
        }


@dataclass(frozen=True)
class CohortVariants:
    """One contig's per-cohort allele counts, variants ``start:stop``: ``counts``
    (variants, cohorts, K), REF first, and each variant's number of alleles."""

    contig: str
    start: int
    stop: int
    counts: np.ndarray = field(repr=False)
    n_alleles: np.ndarray = field(repr=False)

    def freqs(self, cohort: int) -> AlleleFreqs:
        """One cohort's allele counts and frequencies, as plink2 ``--freq`` computes them."""
        return AlleleFreqs(np.asarray(self.counts[:, cohort], dtype=np.int64), self.n_alleles)

    @property
    def allele_count(self) -> np.ndarray:
        """AC (variants, cohorts, K): sgkit's ``cohort_allele_count``."""
        return self.counts

    @property
    def allele_number(self) -> np.ndarray:
        """AN (variants, cohorts): called alleles of each cohort."""
        return np.asarray(self.counts, dtype=np.int64).sum(axis=2)

    @property
    def allele_frequency(self) -> np.ndarray:
        """(variants, cohorts, K) frequencies, REF first; NaN where a cohort has no call,
        and past a variant's alleles."""
        return np.stack([self.freqs(c).freqs for c in range(self.counts.shape[1])], axis=1)

    @property
    def alt_freqs(self) -> np.ndarray:
        """(variants, cohorts, K-1): each cohort's ALT frequencies."""
        return self.allele_frequency[:, :, 1:]


@dataclass(frozen=True)
class CohortResult:
    """The cohorts of a run, their summaries, and (when the per-variant statistics are
    kept) each contig's per-cohort allele counts."""

    cohorts: Cohorts
    summaries: tuple[CohortSummary, ...]
    contigs: tuple[CohortVariants, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return self.cohorts.names

    def contig(self, name: str) -> CohortVariants:
        for c in self.contigs:
            if c.contig == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        c = self.cohorts
        return {
            "metadata": c.path,
            "by": list(c.by),
            "min_size": c.min_size,
            "n_samples_unlisted": len(c.unlisted),
            "left_out": [{"cohort": n, "n_samples": k} for n, k in c.dropped],
            "cohorts": [s.to_dict() for s in self.summaries],
        }


def summaries(
    cohorts: Cohorts, genotypes: np.ndarray, n_variants: int
) -> tuple[CohortSummary, ...]:
    """Each cohort's summary from the per-sample genotype classes (4, samples) over
    ``n_variants`` variants."""
    out = []
    for c, name in enumerate(cohorts.names):
        members = cohorts.members(c)
        missing = int(genotypes[MISSING, members].sum())
        out.append(
            CohortSummary(
                name,
                len(members),
                len(members) * n_variants - missing,
                missing,
                int(genotypes[HET, members].sum()),
            )
        )
    return tuple(out)


class CohortReduction:
    """Per-cohort allele counts of each contig, added up from its units in any order."""

    def __init__(self, cohorts: Cohorts, lengths: Mapping[str, int], k: int, width: int) -> None:
        self.cohorts = cohorts
        dtype = count_dtype(width)
        self.arrays = {
            contig: np.zeros((n, cohorts.n_cohorts, k), dtype=dtype)
            for contig, n in lengths.items()
        }

    def add(self, contig: str, start: int, partials: Mapping[str, np.ndarray]) -> None:
        """Add one unit's counts; ``start`` is its first variant within the contig's range."""
        part = partials[COHORT_ALLELE_COUNT]
        self.arrays[contig][start : start + len(part)] += part


def dataset_variables(result: CohortResult) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
    """sgkit-style variables: ``cohort_allele_count`` (variants, cohorts, alleles) and
    ``cohort_allele_frequency`` over every contig in turn (when kept), ``sample_cohort``
    (samples; -1 for none) and the per-cohort summaries (cohorts)."""
    out: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
    if result.contigs:
        out["cohort_allele_count"] = (
            ("variants", "cohorts", "alleles"),
            np.concatenate([v.allele_count for v in result.contigs]),
        )
        out["cohort_allele_frequency"] = (
            ("variants", "cohorts", "alleles"),
            np.concatenate([v.allele_frequency for v in result.contigs]),
        )
    out |= summary_variables(result)
    return out


def summary_variables(result: CohortResult) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
    """The per-sample cohort index and the per-cohort summaries, as variables."""
    s = result.summaries
    return {
        "sample_cohort": (("samples",), np.asarray(result.cohorts.index, dtype=np.int32)),
        "cohort_n_samples": (("cohorts",), np.array([x.n_samples for x in s], dtype=np.int64)),
        "cohort_n_called": (("cohorts",), np.array([x.n_called for x in s], dtype=np.int64)),
        "cohort_missing_rate": (("cohorts",), np.array([x.missing_rate for x in s])),
        "cohort_heterozygosity": (("cohorts",), np.array([x.heterozygosity for x in s])),
    }


def write_cohort_arrays(
    result: CohortResult,
    create: Callable[[str, tuple[str, ...], tuple[int, ...], Any], Any],
    total: int,
    block: int,
) -> None:
    """Write the cohort variables with ``create(name, dims, shape, dtype)`` (a Zarr array
    carrying its dimensions): the ``cohorts`` coordinate, the summaries and, over the
    ``total`` variants of every contig in turn, ``cohort_allele_count`` and
    ``cohort_allele_frequency``, ``block`` variants at a time."""
    names = np.array(result.names, dtype=str)
    create("cohorts", ("cohorts",), names.shape, names.dtype)[:] = names
    for name, (dims, data) in summary_variables(result).items():
        create(name, dims, data.shape, data.dtype)[:] = data
    if not result.contigs:
        return
    n_cohorts, k = result.contigs[0].counts.shape[1:]
    dims = ("variants", "cohorts", "alleles")
    shape = (total, n_cohorts, k)
    counts = create("cohort_allele_count", dims, shape, result.contigs[0].counts.dtype)
    freqs = create("cohort_allele_frequency", dims, shape, np.float64)
    at = 0
    for v in result.contigs:
        n = v.stop - v.start
        for lo in range(0, n, block):
            hi = min(n, lo + block)
            part = CohortVariants(v.contig, v.start + lo, v.start + hi, v.counts[lo:hi],
                                  v.n_alleles[lo:hi])  # fmt: skip
            counts[at + lo : at + hi] = part.allele_count
            freqs[at + lo : at + hi] = part.allele_frequency
        at += n
