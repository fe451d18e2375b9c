"""Result dataclasses of genotype statistics: per contig, per sample, and their JSON form."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from zarrgeno.stats.kernels import HET, HOM_REF, MISSING

if TYPE_CHECKING:
    from zarrgeno.stats.qc.results import QcResult


def _rate(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")


def _json_float(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 8)


@dataclass(frozen=True)
class SampleCounts:
    """Per-sample call counts over ``n_variants`` variants (plink2 ``--missing``/``--het``).

    ``counts[k, j]``: k = missing, hom-ref, het; j = sample.
    """

    samples: tuple[str, ...]
    n_variants: int
    counts: np.ndarray

    @property
    def n_missing(self) -> np.ndarray:
        return self.counts[MISSING]

    @property
    def n_hom_ref(self) -> np.ndarray:
        return self.counts[HOM_REF]

    @property
    def n_het(self) -> np.ndarray:
        return self.counts[HET]

    @property
    def n_called(self) -> np.ndarray:
        return self.n_variants - self.n_missing

    @property
    def call_rate(self) -> np.ndarray:
        """Called / all variants (1 - plink's F_MISS)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return (
                self.n_called / float(self.n_variants)
                if self.n_variants
                else np.full(len(self.samples), np.nan)
            )

    @property
    def heterozygosity(self) -> np.ndarray:
        """Het calls / called calls: the observed heterozygosity."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n_called > 0, self.n_het / np.maximum(self.n_called, 1), np.nan)

    def __add__(self, other: SampleCounts) -> SampleCounts:
        if other.samples != self.samples:
            raise ValueError("cannot add counts of different samples")
        return SampleCounts(
            self.samples, self.n_variants + other.n_variants, self.counts + other.counts
        )

    def rows(self) -> list[dict[str, Any]]:
        """One dict per sample, plink-like keys."""
        rate, het = self.call_rate, self.heterozygosity
        return [
            {
                "sample": name,
                "n_missing": int(self.n_missing[j]),
                "n_hom_ref": int(self.n_hom_ref[j]),
                "n_het": int(self.n_het[j]),
                "n_called": int(self.n_called[j]),
                "call_rate": _json_float(rate[j]),
                "heterozygosity": _json_float(het[j]),
            }
            for j, name in enumerate(self.samples)
        ]


@dataclass(frozen=True)
class ContigStats:
    """Statistics of one contig's variants ``start:stop``: the Ag1000G tutorial's numbers and more.

    ``total_pos`` is the number of variants counted: ``stop - start``, or with a site
    filter the ``n_sites_pass`` variants that passed it (``site_pass``, over ``start:stop``,
    when kept); ``complete_data``
    counts variants with no missing call; ``more_anc_hom`` variants with more hom-ref
    than het calls. ``variant_counts`` (3, total_pos) holds the per-variant counts when
    they were kept. ``n_partial_het`` counts the calls with one allele missing (``0/.``,
    ``./1``, a haploid call stored as ``[0, -1]``) among the het calls: the tutorial rule
    counts them as het, the sgkit rule (and bcftools, scikit-allel) as missing.
    """

    contig: str
    path: str
    start: int
    stop: int
    complete_data: int
    more_anc_hom: int
    samples: SampleCounts
    variant_counts: np.ndarray | None = field(default=None, repr=False, compare=False)
    #: The region asked for (``2L:1-1,000``) when the variants were selected by position.
    region: str | None = None
    n_partial_het: int = 0
    #: Variants that passed the site filter (None: no filter, every variant counted).
    n_sites_pass: int | None = None
    site_pass: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def total_pos(self) -> int:
        return self.n_variants if self.n_sites_pass is None else self.n_sites_pass

    @property
    def n_variants(self) -> int:
        """Variants selected, before any site filter."""
        return self.stop - self.start

    def variant_rows(self) -> np.ndarray:
        """Genotype rows of the variants in ``variant_counts`` (those counted)."""
        if self.site_pass is None:
            return np.arange(self.start, self.stop)
        return self.start + np.flatnonzero(self.site_pass)

    @property
    def n_samples(self) -> int:
        return len(self.samples.samples)

    @property
    def n_calls(self) -> int:
        return self.total_pos * self.n_samples

    @property
    def n_missing(self) -> int:
        return int(self.samples.n_missing.sum())

    @property
    def n_hom_ref(self) -> int:
        return int(self.samples.n_hom_ref.sum())

    @property
    def n_het(self) -> int:
        return int(self.samples.n_het.sum())

    @property
    def missing_rate(self) -> float:
        return _rate(self.n_missing, self.n_calls)

    @property
    def heterozygosity(self) -> float:
        return _rate(self.n_het, self.n_calls - self.n_missing)

    def summary(self) -> dict[str, Any]:
        return (
            {
                "contig": self.contig,
                "path": self.path,
                "start": self.start,
                "stop": self.stop,
                "total_pos": self.total_pos,
                "complete_data": self.complete_data,
                "more_anc_hom": self.more_anc_hom,
                "n_calls": self.n_calls,
                "n_missing": self.n_missing,
                "n_hom_ref": self.n_hom_ref,
                "n_het": self.n_het,
                "n_partial_het": self.n_partial_het,
                "missing_rate": _json_float(self.missing_rate),
                "heterozygosity": _json_float(self.heterozygosity),
            }
            | ({"region": self.region} if self.region is not None else {})
            | self._filtered()
        )

    def _filtered(self) -> dict[str, Any]:
        if self.n_sites_pass is None:
            return {}
        return {"n_variants": self.n_variants, "n_sites_pass": self.n_sites_pass}

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "samples": self.samples.rows()}


@dataclass(frozen=True)
class StatsResult:
    """Everything ``zarrgeno stats`` computes, in the order the contigs were asked for."""

    store: str
    backend: str
    semantics: str
    contigs: tuple[ContigStats, ...]
    elapsed: float = 0.0
    #: QC statistics, when asked for (``qc=True``).
    qc: QcResult | None = field(default=None, repr=False, compare=False)
    #: The windowed table (:class:`zarrgeno.stats.windows.WindowTable`), when asked for.
    windows: Any = field(default=None, repr=False, compare=False)

    @property
    def sample_names(self) -> tuple[str, ...]:
        return self.contigs[0].samples.samples if self.contigs else ()

    @property
    def samples(self) -> SampleCounts:
        """Per-sample counts over every contig."""
        total = self.contigs[0].samples
        for c in self.contigs[1:]:
            total = total + c.samples
        return total

    def contig(self, name: str) -> ContigStats:
        for c in self.contigs:
            if c.contig == name:
                return c
        raise KeyError(name)

    def totals(self) -> dict[str, Any]:
        n_calls = sum(c.n_calls for c in self.contigs)
        n_missing = sum(c.n_missing for c in self.contigs)
        n_het = sum(c.n_het for c in self.contigs)
        return {
            "total_pos": sum(c.total_pos for c in self.contigs),
            "complete_data": sum(c.complete_data for c in self.contigs),
            "more_anc_hom": sum(c.more_anc_hom for c in self.contigs),
            "n_calls": n_calls,
            "n_missing": n_missing,
            "n_hom_ref": sum(c.n_hom_ref for c in self.contigs),
            "n_het": n_het,
            "n_partial_het": self.n_partial_het,
            "missing_rate": _json_float(_rate(n_missing, n_calls)),
            "heterozygosity": _json_float(_rate(n_het, n_calls - n_missing)),
        } | self._filtered()

    def _filtered(self) -> dict[str, Any]:
        """The variants before and after the site filter, when one was applied."""
        if not any(c.n_sites_pass is not None for c in self.contigs):
            return {}
        return {
            "n_variants": sum(c.n_variants for c in self.contigs),
            "n_sites_pass": sum(c.total_pos for c in self.contigs),
        }

    @property
    def n_partial_het(self) -> int:
        """Calls with one allele missing counted as het, over every contig."""
        return sum(c.n_partial_het for c in self.contigs)

    def notes(self) -> list[str]:
        """What a reader of the counts should know: the partial calls counted as het.

        >>> from zarrgeno.stats.api import genotype_stats
        >>> import zarr
        >>> root = zarr.group()
        >>> gt = np.array([[[0, 1], [0, -1], [-1, -1]]], dtype="i1")  # [0, -1]: haploid 0
        >>> _ = root.create_dataset("X/calldata/GT", data=gt)
        >>> genotype_stats(root).notes()  # doctest: +NORMALIZE_WHITESPACE
        ['Note: 1 call with one allele missing (such as 0/. or a haploid call stored as
          [0, -1]) is counted as het by the tutorial rule; --semantics sgkit counts such
          calls as missing, as bcftools and scikit-allel do']
        """
        qc_notes = self.qc.notes() if self.qc is not None else []
        n = self.n_partial_het
        if not n:
            return qc_notes
        calls = "1 call" if n == 1 else f"{n:,} calls"
        return [
            f"Note: {calls} with one allele missing (such as 0/. or a haploid call stored as "
            f"[0, -1]) {'is' if n == 1 else 'are'} counted as het by the tutorial rule; "
            "--semantics sgkit counts such calls as missing, as bcftools and scikit-allel do",
            *qc_notes,
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "backend": self.backend,
            "semantics": self.semantics,
            "elapsed_seconds": round(self.elapsed, 3),
            "notes": self.notes(),
            "contigs": [c.to_dict() for c in self.contigs],
            "total": {**self.totals(), "samples": self.samples.rows()},
        } | ({"qc": self.qc.to_dict()} if self.qc is not None else {})


def same_counts(a: StatsResult, b: StatsResult) -> bool:
    """True when two results hold identical counts (used to compare backends)."""
    if [c.contig for c in a.contigs] != [c.contig for c in b.contigs]:
        return False
    for x, y in zip(a.contigs, b.contigs, strict=True):
        if (x.start, x.stop, x.complete_data, x.more_anc_hom) != (
            y.start,
            y.stop,
            y.complete_data,
            y.more_anc_hom,
        ):
            return False
        if not np.array_equal(x.samples.counts, y.samples.counts):
            return False
        if (x.variant_counts is None) != (y.variant_counts is None):
            return False
        if (
            x.variant_counts is not None
            and y.variant_counts is not None
            and not np.array_equal(x.variant_counts, y.variant_counts)
        ):
            return False
    return True
