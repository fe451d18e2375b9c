"""Site filters: which variants pass, one bool per variant, from a store or the genotype store.

Three layouts are read:

- MalariaGEN's site-filter stores (``--site-filters STORE``): ``CONTIG/variants/filter_pass``,
  parallel to the contig's genotypes, as the sites store holds ``CONTIG/variants/POS``;
- scikit-allel's ``vcf_to_zarr`` (``--site-filter FILTER_PASS``): ``CONTIG/variants/NAME``
  beside ``CONTIG/calldata/GT``, or root ``variants/NAME`` beside a root ``calldata/GT``;
- VCF Zarr (``--site-filter variant_filter``): the (variants, filters) bool array, column
  ``PASS`` of ``filter_id``.

Only metadata is read when a plan is made; each work unit reads its own rows
(:meth:`SiteFilter.read`) with the chunks of genotypes it counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from zarrgeno.errors import BadDataError, MissingInputError
from zarrgeno.io.rows import opened_group, read_row_range
from zarrgeno.io.screened import refuse_needed
from zarrgeno.io.store import ROOT_GT, VCF_ZARR_GT, GenotypeArray, StoreRef, open_store

#: The array of a MalariaGEN site-filter store, per contig.
FILTER_PASS = "filter_pass"
#: VCF Zarr's filter array and the names of its columns.
VCF_ZARR_FILTER, VCF_ZARR_FILTER_ID = "variant_filter", "filter_id"


@dataclass(frozen=True)
class SiteFilter:
    """One contig's filter: array ``path`` of store ``ref``; genotype row ``r`` passes when
    item ``r - offset`` is True (``column`` of a 2-D array). Picklable: a worker opens the
    store itself, once per process."""

    ref: StoreRef
    contig: str
    path: str
    offset: int = 0
    column: int | None = None

    def describe(self) -> str:
        where = self.path if self.column is None else f"{self.path}[:, {self.column}]"
        return f"{self.ref.name}: {where}"

    def _group(self) -> zarr.hierarchy.Group:
        return opened_group(self.ref)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Whether genotype rows ``start:stop`` pass (bool), through the checked chunk reads."""
        rows = read_row_range(self._group(), self.path, start - self.offset, stop - self.offset)
        if self.column is not None:
            rows = rows[:, self.column]
        return np.ascontiguousarray(rows, dtype=bool)


def _get(group: zarr.hierarchy.Group, path: str) -> Any:
    try:
        return group.get(path)
    except (KeyError, ValueError):
        return None


def _candidates(a: GenotypeArray, name: str) -> list[tuple[str, int, int]]:
    """Where contig ``a``'s filter ``name`` may be: (path, its length, offset)."""
    found = [(f"{a.contig}/variants/{name}", a.n_variants, a.start)]
    if a.path == ROOT_GT:  # scikit-allel without group=: one array of every contig
        found.append((f"variants/{name}", a.shape[0], 0))
    elif a.path == VCF_ZARR_GT:
        found.append((name, a.shape[0], 0))
    return found


def _pass_column(group: zarr.hierarchy.Group, where: str, path: str) -> int:
    """The column of ``PASS`` in VCF Zarr's ``filter_id``, for the 2-D filter ``path``."""
    ids = _get(group, VCF_ZARR_FILTER_ID)
    if not isinstance(ids, zarr.Array) or ids.ndim != 1:
        raise BadDataError(
            f"{where}: {path} is 2-D (variants, filters) but the store has no 1-D "
            f"{VCF_ZARR_FILTER_ID} naming its columns"
        )
    names = [x.decode() if isinstance(x, bytes) else str(x) for x in ids[:].tolist()]
    if "PASS" not in names:
        raise MissingInputError(
            f"{where}: {VCF_ZARR_FILTER_ID} has no PASS column (filters: {', '.join(names)})"
        )
    return names.index("PASS")


def _check(array: Any, where: str, path: str, length: int, a: GenotypeArray) -> None:
    """A filter must be bool, one item (row) per variant of the contig's genotype array."""
    if not isinstance(array, zarr.Array):
        raise BadDataError(f"{where}: {path} is a group, not a bool array")
    if array.dtype != np.dtype(bool) or array.ndim not in (1, 2):
        raise BadDataError(
            f"{where}: {path} must be a bool array of one item per variant, found "
            f"{array.dtype} of shape {array.shape}"
        )
    if array.shape[0] != length:
        raise BadDataError(
            f"{where}: {path} has {array.shape[0]:,} items but {a.path} has {length:,} "
            f"variants ({a.contig})"
        )


def find_site_filters(
    arrays: Iterable[GenotypeArray],
    ref: StoreRef,
    group: zarr.hierarchy.Group,
    *,
    store: Any = None,
    array: str | None = None,
) -> dict[str, SiteFilter]:
    """Each contig's :class:`SiteFilter` (``arrays`` are whole contigs): array ``array``
    (default ``filter_pass``) of the site-filter ``store`` when one is given, else of the
    genotype store ``ref``, ``group``. A contig without it is a MissingInputError (exit 3);
    a filter of the wrong dtype, shape or length is a BadDataError (exit 4). Reads
    metadata only (and VCF Zarr's ``filter_id``)."""
    name = array if array is not None else FILTER_PASS
    if store is not None:
        try:
            ref, group = open_store(store)
        except MissingInputError as exc:  # not the genotype store's hint to simulate one
            reason = str(exc).split("; create one")[0]
            raise MissingInputError(f"--site-filters: {reason}") from None
        where = f"{ref.name} (site filters)"
    else:
        where = ref.name
    found = {}
    for a in arrays:
        candidates = _candidates(a, name)
        refuse_needed(group, ref.name, [p for p, _, _ in candidates])
        for path, length, offset in candidates:
            item = _get(group, path)
            if item is None:
                continue
            _check(item, where, path, length, a)
            column = None
            if item.ndim == 2:
                column = _pass_column(group, where, path)
            found[a.contig] = SiteFilter(ref, a.contig, path, offset, column)
            break
        else:
            looked = " or ".join(p for p, _, _ in candidates)
            raise MissingInputError(
                f"{where} has no site filter for contig {a.contig} (looked for {looked})"
            )
    return found
