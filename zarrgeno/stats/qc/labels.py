"""Where each contig's variant labels are (ID, REF, ALT), and how many alleles each variant has.

plink2's files print each variant's ID, REF and ALT alleles, and its statistics depend on
how many alleles a variant lists (a listed ALT allele that is never called still gets a
frequency, a ``--hardy`` row, and changes ``--het``'s expected heterozygosity formula). They
are read, through zarrgeno's checked chunk reads, from the sites store (``--sites``) or the
genotype store itself, in the layouts the genotypes come in:

- MalariaGEN and scikit-allel (``group=``): ``CONTIG/variants/{ID,REF,ALT}`` beside
  ``CONTIG/calldata/GT``; scikit-allel without ``group=``: root ``variants/{ID,REF,ALT}``;
- VCF Zarr: ``variant_allele`` (variants, alleles; REF first) and ``variant_id``.

A store without them gets ``.`` where plink2 prints a label it does not know, and each
variant counts the alleles its calls hold (at least two).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from zarrgeno.errors import BadDataError
from zarrgeno.io.rows import opened_group, read_row_range
from zarrgeno.io.screened import refuse_needed
from zarrgeno.io.store import ROOT_GT, VCF_ZARR_GT, GenotypeArray, StoreRef
from zarrgeno.stats.qc.plink2 import VariantLabels, as_bytes

#: Alleles per variant (REF and 3 ALT, as Ag1000G's sites) when the store lists none.
DEFAULT_MAX_ALLELES = 4
#: Most alleles a store may list per variant (the kernel's histogram has 1 + K(K+1)/2 columns).
MAX_ALLELES = 64


@dataclass(frozen=True)
class LabelSource:
    """One contig's labels: arrays of store ``ref``, rows ``r - offset`` for genotype row
    ``r``. ``alleles`` is VCF Zarr's ``variant_allele`` (REF then ALT), else ``ref`` and
    ``alt`` are separate arrays; any may be None. Picklable: a worker opens the store."""

    ref: StoreRef
    contig: str
    offset: int = 0
    ids: str | None = None
    ref_path: str | None = None
    alt: str | None = None
    alleles: str | None = None

    @property
    def has_alleles(self) -> bool:
        return self.alleles is not None or self.alt is not None

    def _group(self) -> zarr.hierarchy.Group:
        return opened_group(self.ref)

    def _rows(self, path: str, start: int, stop: int) -> np.ndarray:
        group = self._group()
        return read_row_range(group, path, start - self.offset, stop - self.offset)

    def ref_alt(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray] | None:
        """REF (m,) and ALT (m, K-1) of genotype rows ``start:stop``, as UTF-8 bytes;
        None when the store lists no alleles."""
        if self.alleles is not None:
            both = as_bytes(self._rows(self.alleles, start, stop))
            return both[:, 0], both[:, 1:]
        if self.alt is None:
            return None
        alt = as_bytes(self._rows(self.alt, start, stop))
        if alt.ndim == 1:
            alt = alt[:, None]
        ref = (
            as_bytes(self._rows(self.ref_path, start, stop))
            if self.ref_path is not None
            else np.full(stop - start, b".")
        )
        return ref, alt

    def n_alleles(self, start: int, stop: int) -> np.ndarray | None:
        """REF and listed ALT alleles of each variant (at least 2), or None without ALT."""
        found = self.ref_alt(start, stop)
        if found is None:
            return None
        listed = (found[1] != b"").sum(axis=1) if found[1].size else np.zeros(stop - start)
        return np.maximum(2, 1 + listed).astype(np.int64)

    def labels(self, start: int, stop: int, n_alleles: np.ndarray, k: int) -> VariantLabels:
        """plink2's labels of rows ``start:stop``; ``n_alleles`` (from the calls) where the
        store lists no alleles, whose REF and ALT are then printed ``.``."""
        ids = as_bytes(self._rows(self.ids, start, stop)) if self.ids is not None else None
        if ids is not None:
            ids = np.where(ids == b"", b".", ids)
        found = self.ref_alt(start, stop)
        if found is None:
            ref = np.full(stop - start, b".")
            alt = np.where(np.arange(k - 1)[None, :] < (n_alleles - 1)[:, None], b".", b"")
            return VariantLabels(self.contig, ref, alt, ids)
        ref, alt = found
        return VariantLabels(self.contig, np.where(ref == b"", b".", ref), alt, ids)

    def width(self) -> int | None:
        """Alleles per variant the store has room for (REF and its ALT columns), or None."""
        group = self._group()
        if self.alleles is not None:
            shape = group[self.alleles].shape
            return int(shape[1]) if len(shape) == 2 else 1
        if self.alt is not None:
            shape = group[self.alt].shape
            return 1 + (int(shape[1]) if len(shape) == 2 else 1)
        return None


def _array(group: zarr.hierarchy.Group, path: str) -> Any:
    try:
        found = group.get(path)
    except (KeyError, ValueError):
        return None
    return found if isinstance(found, zarr.Array) else None


def find_labels(
    arrays: Iterable[GenotypeArray],
    ref: StoreRef,
    group: zarr.hierarchy.Group,
    *,
    sites: tuple[StoreRef, zarr.hierarchy.Group] | None = None,
) -> dict[str, LabelSource]:
    """Each contig's labels: in the sites store when given, else in the genotype store.
    An array of the wrong length, or one the store's validation refused, is refused by
    name (exit 4)."""
    where_ref, where = sites if sites is not None else (ref, group)
    found = {}
    for a in arrays:
        per_contig = {k: f"{a.contig}/variants/{v}" for k, v in _MALARIAGEN.items()}
        candidates: list[tuple[dict[str, str], int, int]]
        if a.path == ROOT_GT:  # one array of every contig: per-contig labels, or shared ones
            shared = {k: f"variants/{v}" for k, v in _MALARIAGEN.items()}
            candidates = [(per_contig, a.n_variants, a.start), (shared, a.shape[0], 0)]
        elif a.path == VCF_ZARR_GT:
            candidates = [(per_contig, a.n_variants, a.start), (dict(_VCF_ZARR), a.shape[0], 0)]
        else:
            candidates = [(per_contig, a.shape[0], 0)]
        # a label array the store's validation refused is needed, not absent: say so
        refuse_needed(where, where_ref.name, [p for c in candidates for p in c[0].values()])
        source = LabelSource(where_ref, a.contig)
        for paths, length, offset in candidates:
            present = {k: p for k, p in paths.items() if _array(where, p) is not None}
            if not present:
                continue
            for p in present.values():
                if where[p].shape[0] != length:
                    raise BadDataError(
                        f"{where_ref.name}: {p} has {where[p].shape[0]:,} rows but "
                        f"{a.path} has {length:,} variants ({a.contig})"
                    )
            source = LabelSource(
                where_ref,
                a.contig,
                offset,
                ids=present.get("ids"),
                ref_path=present.get("ref_path"),
                alt=present.get("alt"),
                alleles=present.get("alleles"),
            )
            break
        found[a.contig] = source
    return found


_MALARIAGEN = {"ids": "ID", "ref_path": "REF", "alt": "ALT"}
_VCF_ZARR = {"ids": "variant_id", "alleles": "variant_allele"}


def max_alleles(sources: Iterable[LabelSource]) -> tuple[int, bool]:
    """K, the most alleles a variant may have: the widest REF+ALT among the contigs'
    labels, or :data:`DEFAULT_MAX_ALLELES` when none lists alleles; and whether it came
    from the store."""
    widths = [w for w in (s.width() for s in sources) if w is not None]
    if not widths:
        return DEFAULT_MAX_ALLELES, False
    k = max(2, max(widths))
    if k > MAX_ALLELES:
        raise BadDataError(
            f"the store lists {k} alleles per variant; QC statistics take at most {MAX_ALLELES}"
        )
    return k, True
