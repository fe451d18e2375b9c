"""The QC side of a run: which partials each contig's units count, and how they add up.

:func:`qc_requests` turns ``qc=True`` (or report names) into a
:class:`zarrgeno.stats.plan.QcRequest` per contig: the partials the reports need, K (the
most alleles a variant has, from the store's ALT width) and where the labels are.
:class:`QcReducer` adds the units' partials as they arrive, in any order, one
:class:`zarrgeno.stats.qc.fields.Reduction` per contig, and hands each unit's per-variant
partials to a :class:`QcSink` when one writes them out (so that a contig's histograms are
never all in memory), else keeps them for the result.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from zarrgeno.errors import BadDataError, UsageError
from zarrgeno.io.store import GenotypeArray, StoreRef, open_store
from zarrgeno.stats.filters import take_passing
from zarrgeno.stats.plan import Partial, QcRequest, StatsPlan
from zarrgeno.stats.qc.counting import ALLELES_SEEN, N_ALLELES
from zarrgeno.stats.qc.fields import (
    REPORTS,
    SPECS,
    VARIANT_GENOTYPES,
    Axis,
    Reduction,
    add_contigs,
    is_autosome,
    partials_for,
)
from zarrgeno.stats.qc.labels import find_labels, max_alleles
from zarrgeno.stats.qc.results import (
    QcResult,
    QcVariants,
    contig_result,
    sample_result,
)

#: The reports ``qc=True`` stands for: plink2's --freq, --geno-counts, --hardy, --missing, --het.
ALL_REPORTS = ("afreq", "gcount", "hardy", "vmiss", "smiss", "het")


class QcSink(Protocol):
    """Receives each unit's QC partials as it arrives (variants ``start:stop`` of
    ``contig``, in any order), e.g. to write per-variant reports unit by unit."""

    def add(self, contig: str, start: int, stop: int, partials: Mapping[str, np.ndarray]) -> None:
        """Take one unit's partials."""


def report_names(qc: bool | Iterable[str] | None) -> tuple[str, ...]:
    """The reports ``qc`` asks for: none, every one (True), or those named.

    >>> report_names(True)
    ('afreq', 'gcount', 'hardy', 'vmiss', 'smiss', 'het')
    >>> report_names(["het", "afreq", "het"])
    ('het', 'afreq')
    """
    if qc is None or qc is False:
        return ()
    if qc is True:
        return ALL_REPORTS
    names = tuple(dict.fromkeys(str(n) for n in qc))
    unknown = [n for n in names if n not in REPORTS]
    if unknown:
        raise UsageError(f"unknown QC report {unknown[0]!r}; choose among {', '.join(REPORTS)}")
    return names


def qc_requests(
    qc: bool | Sequence[str] | None,
    arrays: Sequence[GenotypeArray],
    ref: StoreRef,
    group: Any,
    sites: Any = None,
    cohorts: Any = None,
) -> dict[str, QcRequest]:
    """Each contig's :class:`QcRequest` (none when ``qc`` asks for nothing). ``arrays``
    are the whole contigs (before a range or region), ``sites`` a sites store or None,
    ``cohorts`` the run's :class:`zarrgeno.stats.cohorts.Cohorts` or None."""
    names = report_names(qc)
    if not names:
        return {}
    sites_pair = None
    if sites is not None:
        sites_ref, sites_group = open_store(sites)
        sites_pair = (sites_ref, sites_group)
    sources = find_labels(arrays, ref, group, sites=sites_pair)
    k, _ = max_alleles(sources.values())
    partials = tuple(s.name for s in partials_for(REPORTS[n] for n in names))
    return {a.contig: QcRequest(k, partials, sources[a.contig], names, cohorts) for a in arrays}


class QcReducer:
    """The QC partials of a plan's units, added per contig."""

    def __init__(self, plan: StatsPlan, sink: QcSink | None = None) -> None:
        self.plan, self.sink = plan, sink
        first = next(iter(plan.qc.values()))
        self.k, self.reports = first.max_alleles, first.reports
        self.specs = tuple(SPECS[n] for n in first.partials)
        self.keep = plan.per_variant and sink is None
        kept = [s for s in self.specs if self.keep or s.axis is Axis.SAMPLE]
        width = plan.n_samples
        self.reductions = {
            a.contig: Reduction(kept, a.n_variants, width, self.k) for a in plan.arrays
        }
        self.seen = {a.contig: np.zeros(self.k + 1, dtype=np.int64) for a in plan.arrays}
        self.offset = {a.contig: a.start for a in plan.arrays}
        #: Each variant's alleles, as its unit found them (REF and listed ALT, else those its
        #: calls hold: sample windows of the same variants take the most).
        self.alleles = {}
        if self.keep and VARIANT_GENOTYPES.name in first.partials:
            self.alleles = {a.contig: np.zeros(a.n_variants, np.uint8) for a in plan.arrays}
        self.cohorts: Any = first.cohorts
        self.by_cohort: Any = None
        if self.cohorts is not None and self.keep:
            from zarrgeno.stats.qc.cohort_counts import CohortReduction  # with cohorts only

            lengths = {a.contig: a.n_variants for a in plan.arrays}
            self.by_cohort = CohortReduction(self.cohorts, lengths, self.k, width)

    def add(self, part: Partial) -> None:
        if part.qc is None:
            raise BadDataError(f"a worker returned no QC statistics for {part.contig}")
        self.reductions[part.contig].add(part.start - self.offset[part.contig], part.qc)
        self.seen[part.contig] += part.qc[ALLELES_SEEN]
        if self.alleles:
            found = part.qc[N_ALLELES]
            at = part.start - self.offset[part.contig]
            held = self.alleles[part.contig][at : at + len(found)]
            np.maximum(held, found, out=held)
        if self.by_cohort is not None:
            self.by_cohort.add(part.contig, part.start - self.offset[part.contig], part.qc)
        if self.sink is not None:
            self.sink.add(part.contig, part.start, part.stop, part.qc)

    def finish(self, passing: Mapping[str, Any] | None = None) -> QcResult:
        """The result; ``passing``: each contig's variants that passed a site filter
        (:class:`zarrgeno.stats.filters.SitePass`), the only ones listed and counted."""
        passing = passing or {}
        counted = {a.contig: a.n_variants for a in self.plan.arrays}
        counted |= {c: site.n_pass for c, site in passing.items()}
        contigs, totals = [], {}
        for a in self.plan.arrays:
            t = totals[a.contig] = self.reductions[a.contig].totals()
            variants = None
            if self.keep and VARIANT_GENOTYPES.name in t:
                hist = t[VARIANT_GENOTYPES.name]
                n_alleles = self.alleles[a.contig].astype(np.int64)
                mask = getattr(passing.get(a.contig), "mask", None)
                if mask is not None:
                    hist, n_alleles = take_passing(hist, mask), take_passing(n_alleles, mask)
                variants = QcVariants(a.contig, a.start, a.stop, hist, n_alleles, mask)
            contigs.append(contig_result(a.contig, t, self.seen[a.contig], variants))
        genotypes = sum((c.samples for c in contigs), np.zeros((4, self.plan.n_samples), np.int64))
        autosomes = [a for a in self.plan.arrays if is_autosome(a.contig)]
        autosomal = None
        if autosomes and "het" in self.reports:
            autosomal = add_contigs([totals[a.contig] for a in autosomes], self.specs)
        listed = any(r.labels is not None and r.labels.has_alleles for r in self.plan.qc.values())
        samples = sample_result(
            self.plan.sample_names,
            sum(counted.values()),
            genotypes,
            autosomal,
            sum(counted[a.contig] for a in autosomes),
        )
        cohorts = None
        if self.cohorts is not None:
            cohorts = self._cohort_result(genotypes, contigs, sum(counted.values()))
        return QcResult(self.reports, self.k, listed, tuple(contigs), samples, cohorts)

    def _cohort_result(self, genotypes: np.ndarray, contigs: Sequence[Any], n_variants: int) -> Any:
        """The per-cohort summaries over the ``n_variants`` counted (passing) variants and,
        when kept, allele counts (of the passing variants only, as the contig's)."""
        from zarrgeno.stats.qc.cohort_counts import CohortResult, CohortVariants, summaries

        per_contig = []
        if self.by_cohort is not None:
            for a, c in zip(self.plan.arrays, contigs, strict=True):
                counts = self.by_cohort.arrays[a.contig]
                n_alleles = c.variants.n_alleles if c.variants is not None else None
                if n_alleles is None:  # per-variant genotype counts not kept
                    continue
                assert c.variants is not None
                if c.variants.site_pass is not None:
                    counts = take_passing(counts, c.variants.site_pass)
                per_contig.append(CohortVariants(a.contig, a.start, a.stop, counts, n_alleles))
        found = summaries(self.cohorts, genotypes, n_variants)
        return CohortResult(self.cohorts, found, tuple(per_contig))
