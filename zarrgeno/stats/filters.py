"""Site filters in a statistics run: the plan's filters, and the passing variants each unit
reports, added up.

A unit with a site filter reads its rows of the filter with its genotype chunks, counts
only the variants that pass (:func:`zarrgeno.stats.unit.count_passing`) and returns which
they were (``Partial.site_pass``); the per-variant counts of the others are zero.
:class:`PassTally` adds the units' masks per contig; the results and files then list
the passing variants only, as plink2 does after ``--extract`` or ``--var-filter``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from zarrgeno.errors import BadDataError
from zarrgeno.io.sitefilters import SiteFilter, find_site_filters
from zarrgeno.io.store import GenotypeArray, StoreRef
from zarrgeno.stats.plan import Partial, StatsPlan


def plan_filters(
    arrays: Sequence[GenotypeArray],
    ref: StoreRef,
    group: Any,
    site_filters: Any = None,
    site_filter: str | None = None,
) -> dict[str, SiteFilter]:
    """Each contig's filter (none when neither is given): array ``site_filter`` (default
    ``filter_pass``) of the store ``site_filters``, or of the genotype store. ``arrays``
    are whole contigs (before a range or region)."""
    if site_filters is None and site_filter is None:
        return {}
    return find_site_filters(arrays, ref, group, store=site_filters, array=site_filter)


@dataclass(frozen=True)
class SitePass:
    """One contig's filtered variants: how many passed, and which (of its variants
    ``start:stop``) when the run keeps per-variant results."""

    n_pass: int
    mask: np.ndarray | None = None

    def rows(self, start: int) -> np.ndarray | None:
        """Genotype rows of the passing variants (None when not kept)."""
        return None if self.mask is None else start + np.flatnonzero(self.mask)


class PassTally:
    """The passing variants of a plan's units, per contig, as their partials arrive."""

    def __init__(self, plan: StatsPlan) -> None:
        self.filtered = bool(plan.site_filters)
        self.offset = {a.contig: a.start for a in plan.arrays}
        self.n_pass = {a.contig: 0 for a in plan.arrays}
        self.masks: dict[str, np.ndarray] = {}
        if self.filtered and plan.per_variant:
            self.masks = {a.contig: np.zeros(a.n_variants, dtype=bool) for a in plan.arrays}

    def add(self, part: Partial) -> None:
        if not self.filtered:
            return
        if part.site_pass is None:
            raise BadDataError(f"a worker returned no site-filter result for {part.contig}")
        self.n_pass[part.contig] += int(np.count_nonzero(part.site_pass))
        mask = self.masks.get(part.contig)
        if mask is not None:
            lo = part.start - self.offset[part.contig]
            mask[lo : lo + part.stop - part.start] = part.site_pass

    def finish(self) -> dict[str, SitePass]:
        """Each contig's :class:`SitePass` (empty without a filter)."""
        if not self.filtered:
            return {}
        return {c: SitePass(n, self.masks.get(c)) for c, n in self.n_pass.items()}


#: Passing rows are moved run by run when a piece has at most one run per this many rows
#: (real filters pass and fail sites in stretches), else by index.
ROWS_PER_RUN = 32


class PassingRows:
    """The rows of a piece that pass (``keep``): gathered together to be counted by the QC
    kernel, and the counts put back at their rows (the counts alone take the mask in the
    kernel: :func:`zarrgeno.stats.kernels.count_calls`). Runs of passing rows are copied
    as slices (a memcpy each), scattered rows by index."""

    def __init__(self, keep: np.ndarray) -> None:
        self.keep = keep
        padded = np.zeros(len(keep) + 2, dtype=bool)
        padded[1:-1] = keep
        edges = np.flatnonzero(padded[1:] != padded[:-1])  # run starts, then stops
        self.n = int(np.count_nonzero(keep))
        self.runs: list[tuple[int, int]] | None = None
        self.index: np.ndarray | None = None
        if len(edges) // 2 <= max(1, len(keep) // ROWS_PER_RUN):
            self.runs = list(zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True))
        else:
            self.index = np.flatnonzero(keep)

    def gather(self, data: np.ndarray, out: np.ndarray) -> np.ndarray:
        """The passing rows of ``data`` (rows first), copied into ``out`` (n rows)."""
        if self.runs is None:
            assert self.index is not None
            return np.take(data, self.index, axis=0, out=out)
        at = 0
        for start, stop in self.runs:
            out[at : at + stop - start] = data[start:stop]
            at += stop - start
        return out

    def scatter(self, target: np.ndarray, values: np.ndarray, axis: int = 0) -> None:
        """Add ``values`` (the passing rows' counts, along ``axis``) to their rows of
        ``target``."""
        if self.runs is None:
            where: list[Any] = [slice(None)] * target.ndim
            where[axis] = self.index
            target[tuple(where)] += values
            return
        at = 0
        for start, stop in self.runs:
            into: list[Any] = [slice(None)] * target.ndim
            take: list[Any] = [slice(None)] * target.ndim
            into[axis], take[axis] = slice(start, stop), slice(at, at + stop - start)
            target[tuple(into)] += values[tuple(take)]
            at += stop - start


def passing_columns(values: np.ndarray | None, site: SitePass | None, axis: int) -> Any:
    """``values`` along ``axis`` (variants) at the passing variants only (all without a
    filter, or when the mask was not kept)."""
    if values is None or site is None or site.mask is None:
        return values
    return np.compress(site.mask, values, axis=axis)
