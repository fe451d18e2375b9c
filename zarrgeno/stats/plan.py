"""The types a statistics plan is made of: work units, the plan, a unit's partial result.

They sit below both the planner (:mod:`zarrgeno.stats.api`) and the backends
(:mod:`zarrgeno.stats.backends`), which import them at top level. This module imports
nothing heavy (numpy, zarr appear in annotations only), so a backend module that names
these types does not delay starting worker processes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

# Annotations only, for start-up cost (numpy, zarr): no cycle, none of these imports this module.
if TYPE_CHECKING:
    import numpy as np

    from zarrgeno.io.sitefilters import SiteFilter
    from zarrgeno.io.sites import ContigPositions, Region
    from zarrgeno.io.store import GenotypeArray
    from zarrgeno.stats.kernels import Semantics
    from zarrgeno.stats.reader import ChunkReader

#: Called with the number of variants each finished unit covered.
ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class QcRequest:
    """What a unit counts beside the missing / hom-ref / het counts when QC statistics are
    asked for: the partials of :mod:`zarrgeno.stats.qc.fields` by name (the union of the
    reports' needs), for at most ``max_alleles`` alleles per variant, with each variant's
    alleles (REF and listed ALT) read from ``labels`` when the store lists them."""

    max_alleles: int
    partials: tuple[str, ...]
    #: A :class:`zarrgeno.stats.qc.labels.LabelSource` (the qc package imports this
    #: module, so it is not named here), or None.
    labels: Any = None
    #: The reports asked for (:data:`zarrgeno.stats.qc.fields.REPORTS`), by name.
    reports: tuple[str, ...] = ()
    #: The run's :class:`zarrgeno.stats.cohorts.Cohorts` (per-cohort allele counts), or None.
    cohorts: Any = None


@dataclass(frozen=True)
class WorkUnit:
    """One task: variants ``start:stop`` (chunk-aligned) of one array, every selected sample.

    It carries a picklable :class:`ChunkReader` (a store reference and a path), never
    data, so any worker can run it.
    """

    reader: ChunkReader
    contig: str
    start: int
    stop: int
    samples: tuple[int, ...] | None
    semantics: Semantics
    per_variant: bool
    #: QC partials to count too (None: the missing / hom-ref / het counts only).
    qc: QcRequest | None = None
    #: Count only the variants this filter passes (read with the unit's chunks).
    site_filter: SiteFilter | None = None

    @property
    def n_variants(self) -> int:
        return self.stop - self.start

    def describe(self) -> str:
        return f"{self.contig} variants {self.start:,}:{self.stop:,}"


@dataclass(frozen=True)
class Partial:
    """The additive result of one unit."""

    contig: str
    start: int
    stop: int
    sample: np.ndarray
    complete_data: int
    more_anc_hom: int
    variant: np.ndarray | None
    #: Partial calls (one allele missing) counted as het: the tutorial rule's, else 0.
    partial_het: int = 0
    #: The unit's QC partials by name (:mod:`zarrgeno.stats.qc.fields`), when asked for.
    qc: dict[str, np.ndarray] | None = None
    #: Which of the unit's variants passed its site filter (None: no filter, all counted);
    #: the per-variant counts of the others are zero.
    site_pass: np.ndarray | None = None


@dataclass(frozen=True, repr=False)
class StatsPlan:
    """What to compute: the store, the contigs and ranges, the samples, and the units.

    Nothing is read until a backend runs it; ``repr`` describes it.
    """

    store: str
    arrays: tuple[GenotypeArray, ...]
    readers: tuple[ChunkReader, ...]
    sample_names: tuple[str, ...]
    samples: tuple[int, ...] | None
    semantics: Semantics
    per_variant: bool
    units: tuple[WorkUnit, ...]
    #: The QC request of each contig (by name), when QC statistics are asked for.
    qc: dict[str, QcRequest] = field(default_factory=dict)
    #: The region asked for each contig (by name), and where each contig's positions are.
    regions: dict[str, Region] = field(default_factory=dict)
    positions: dict[str, ContigPositions] = field(default_factory=dict)
    #: The site filter of each contig (by name), when variants are filtered.
    site_filters: dict[str, SiteFilter] = field(default_factory=dict)
    #: The windows to sum the per-variant partials in (a
    #: :class:`zarrgeno.stats.windows.WindowSpec`, which imports this module), or None.
    windows: Any = None

    @property
    def total_variants(self) -> int:
        return sum(a.n_variants for a in self.arrays)

    @property
    def n_samples(self) -> int:
        return len(self.sample_names)

    def __repr__(self) -> str:
        ranges = ", ".join(f"{a.contig}[{a.start:,}:{a.stop:,}]" for a in self.arrays)
        return (
            f"<StatsPlan {self.store}: {ranges}; {self.n_samples} samples; "
            f"{len(self.units)} chunk-aligned units; {self.semantics} semantics>"
        )

    @property
    def raw_bytes(self) -> int:
        """Bytes of the selected genotype calls once decoded."""
        return sum(
            a.n_variants * a.n_samples * a.ploidy * r.dtype.itemsize
            for a, r in zip(self.arrays, self.readers, strict=True)
        )


#: Batches per worker thread: enough to even out the last ones' finishing times.
BATCHES_PER_THREAD = 4
#: Units per batch at most, which bounds a batch's per-variant result (and progress steps).
MAX_BATCH_UNITS = 16


def batch_units(
    units: Sequence[WorkUnit], threads: int, max_units: int = MAX_BATCH_UNITS
) -> list[tuple[WorkUnit, ...]]:
    """Split ``units`` into batches of consecutive units of one array each, in order: at
    least ``BATCHES_PER_THREAD`` per thread (when there are units enough), of at most
    ``max_units`` units.

    >>> from types import SimpleNamespace as U
    >>> units = [U(reader="2L", start=k) for k in range(10)] + [U(reader="X", start=0)]
    >>> [[(u.reader, u.start) for u in b] for b in batch_units(units, threads=1)]
    ... # doctest: +NORMALIZE_WHITESPACE
    [[('2L', 0), ('2L', 1)], [('2L', 2), ('2L', 3)], [('2L', 4), ('2L', 5)],
     [('2L', 6), ('2L', 7)], [('2L', 8), ('2L', 9)], [('X', 0)]]
    """
    wanted = max(1, threads) * BATCHES_PER_THREAD
    size = max(1, min(max_units, len(units) // wanted))
    batches: list[tuple[WorkUnit, ...]] = []
    for _, same in itertools.groupby(units, key=lambda u: u.reader):
        run = tuple(same)
        batches += [run[k : k + size] for k in range(0, len(run), size)]
    return batches
