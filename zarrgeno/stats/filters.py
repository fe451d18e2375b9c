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

    def __init__(self, plan: StatsPlan, *, keep: bool | None = None) -> None:
        """``keep``: whether to keep which variants passed (default: when the plan keeps
        per-variant results)."""
        self.filtered = bool(plan.site_filters)
        self.offset = {a.contig: a.start for a in plan.arrays}
        self.n_pass = {a.contig: 0 for a in plan.arrays}
        self.masks: dict[str, np.ndarray] = {}
        if self.filtered and (plan.per_variant if keep is None else keep):
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


def passing_columns(values: np.ndarray | None, site: SitePass | None, axis: int) -> Any:
    """``values`` along ``axis`` (variants) at the passing variants only (all without a
    filter, or when the mask was not kept)."""
    if values is None or site is None or site.mask is None:
        return values
    return take_passing(values, site.mask, axis)


def take_passing(values: np.ndarray, mask: np.ndarray, axis: int = 0) -> np.ndarray:
    """``values`` along ``axis`` where ``mask`` is True, as ``np.compress`` would give
    them: a take of the indices copies whole rows at a time, 2-7x faster than boolean
    indexing on rows of several items (a histogram's, a variant's cohort counts).

    >>> take_passing(np.arange(6).reshape(3, 2), np.array([True, False, True])).tolist()
    [[0, 1], [4, 5]]
    """
    return np.take(values, np.flatnonzero(mask), axis=axis)
