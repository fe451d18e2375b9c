"""Windows along each contig: the per-variant partials of the one pass, summed by window.

A window is ``size`` variants (``--window``) or ``size`` base pairs (``--window-bp``,
positions from the store's ``POS`` / ``variant_position`` or ``--sites``; windows of
1..N, N+1..2N, ... of the genome). :class:`WindowTally` adds each unit's per-variant
counts (and, when the pass makes them, its genotype histograms) into its windows as the
units arrive, in any order: nothing per variant is kept. :class:`WindowTable` is the
result: per window, the variants, those that passed the site filter, the missing rate,
the heterozygosity (het calls / called calls), the segregating sites (two or more
alleles called) and the mean MAF (over the sites with calls).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zarrgeno.errors import (
    MissingInputError,
    StoreIOError,
    UsageError,
    os_reason,
)
from zarrgeno.io.partfiles import write_whole
from zarrgeno.io.sites import ContigPositions
from zarrgeno.stats.kernels import HET, MISSING
from zarrgeno.stats.plan import Partial, StatsPlan
from zarrgeno.stats.plot import check_drawing_file

#: Windows across all contigs when ``--plot`` is given no window size.
TARGET_WINDOWS = 600
#: The columns of the windows table (TSV header, JSON keys).
COLUMNS = (
    "contig",
    "start",
    "end",
    "variants",
    "passing_sites",
    "missing_rate",
    "heterozygosity",
    "segregating_sites",
    "mean_maf",
)
#: The file formats of ``--windows-output``, by suffix.
FORMATS = ("tsv", "json")
#: The per-variant QC partial the allele statistics come from (the genotype histogram).
HISTOGRAM = "variant_genotypes"


@dataclass(frozen=True)
class WindowSpec:
    """Windows of ``size`` variants (``bp=False``) or base pairs (``bp=True``)."""

    size: int
    bp: bool = False

    def __post_init__(self) -> None:
        if self.size < 1:
            unit = "bp" if self.bp else "variant"
            raise UsageError(f"a window must be at least 1 {unit}, got {self.size}")

    def describe(self) -> str:
        return f"{self.size:,} bp" if self.bp else f"{self.size:,} variants"


def window_spec(plan_variants: int, window: int | None, window_bp: int | None) -> WindowSpec:
    """The windows asked for: ``window`` variants, ``window_bp`` base pairs (not both), or
    about :data:`TARGET_WINDOWS` windows of variants over ``plan_variants``."""
    if window is not None and window_bp is not None:
        raise UsageError("give windows in variants (--window) or in bp (--window-bp), not both")
    if window_bp is not None:
        return WindowSpec(int(window_bp), bp=True)
    if window is not None:
        return WindowSpec(int(window))
    return WindowSpec(max(1, -(-plan_variants // TARGET_WINDOWS)))


def require_positions(plan_arrays: Any, positions: Mapping[str, ContigPositions]) -> None:
    """Windows in bp need every contig's positions."""
    for a in plan_arrays:
        if a.contig not in positions:
            raise MissingInputError(
                f"--window-bp needs positions, and the store has none for {a.contig} "
                f"(no {a.contig}/variants/POS, variants/POS or variant_position): "
                "pass --sites SITES_STORE"
            )


class _Sums:
    """One contig's window sums, grown as windows appear (indexes from ``first``)."""

    NAMES = ("variants", "passing", "missing", "het", "segregating", "maf", "maf_sites")

    def __init__(self) -> None:
        self.first: int | None = None
        self.data = np.zeros((len(self.NAMES), 0), dtype=np.float64)
        self.lo = np.zeros(0, dtype=np.int64)  # first and last position (or row) seen
        self.hi = np.zeros(0, dtype=np.int64)

    def add(self, index: np.ndarray, values: np.ndarray, where: np.ndarray) -> None:
        """Add ``values`` (names x variants) into windows ``index``; ``where`` is each
        variant's position (or row)."""
        if index.size == 0:
            return
        lo, hi = int(index.min()), int(index.max())
        if self.first is None:
            self.first = lo
        if lo < self.first:  # a unit before the ones seen: grow to the left
            pad = self.first - lo
            self.data = np.pad(self.data, ((0, 0), (pad, 0)))
            self.lo = np.pad(self.lo, (pad, 0), constant_values=np.iinfo(np.int64).max)
            self.hi = np.pad(self.hi, (pad, 0), constant_values=np.iinfo(np.int64).min)
            self.first = lo
        need = hi - self.first + 1
        if need > self.data.shape[1]:
            grow = need - self.data.shape[1]
            self.data = np.pad(self.data, ((0, 0), (0, grow)))
            self.lo = np.pad(self.lo, (0, grow), constant_values=np.iinfo(np.int64).max)
            self.hi = np.pad(self.hi, (0, grow), constant_values=np.iinfo(np.int64).min)
        local = index - self.first
        for k in range(len(self.NAMES)):
            self.data[k] += np.bincount(local, weights=values[k], minlength=self.data.shape[1])
        np.minimum.at(self.lo, local, where)
        np.maximum.at(self.hi, local, where)


def _allele_stats(hist: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per variant from its genotype histogram: segregating (two or more alleles called),
    MAF (1 - the major allele's frequency) and whether it has calls."""
    # Imported here for start-up cost only, as the QC modules elsewhere.
    from zarrgeno.stats.fastpath import allele_counts

    counts = allele_counts(hist)
    number = counts.sum(axis=1)
    called = number > 0
    segregating = np.count_nonzero(counts > 0, axis=1) >= 2
    with np.errstate(invalid="ignore", divide="ignore"):
        maf = np.where(called, 1.0 - counts.max(axis=1) / np.maximum(number, 1), 0.0)
    return segregating, maf, called


class WindowTally:
    """The windows of a plan's contigs, added up unit by unit."""

    def __init__(self, plan: StatsPlan, spec: WindowSpec) -> None:
        self.plan, self.spec = plan, spec
        self.sums = {a.contig: _Sums() for a in plan.arrays}
        self.offset = {a.contig: a.start for a in plan.arrays}
        self.alleles = False

    def add(self, part: Partial) -> None:
        if part.variant is None:
            raise UsageError("windows need per-variant counts (per_variant=True)")
        n = part.stop - part.start
        rows = np.arange(part.start, part.stop, dtype=np.int64)
        positions = self.plan.positions.get(part.contig)
        where = positions.read(part.start, part.stop).astype(np.int64) if positions else rows
        if self.spec.bp:
            index = (where - 1) // self.spec.size
        else:
            index = (rows - self.offset[part.contig]) // self.spec.size
        passing = np.ones(n, dtype=bool) if part.site_pass is None else part.site_pass
        values = np.zeros((len(_Sums.NAMES), n), dtype=np.float64)
        values[0] = 1
        values[1] = passing
        values[2] = part.variant[MISSING]
        values[3] = part.variant[HET]
        hist = None if part.qc is None else part.qc.get(HISTOGRAM)
        if hist is not None:
            self.alleles = True
            segregating, maf, called = _allele_stats(np.asarray(hist))
            values[4] = segregating & passing
            values[5] = np.where(called & passing, maf, 0.0)
            values[6] = called & passing
        self.sums[part.contig].add(index, values, where)

    def finish(self) -> WindowTable:
        return WindowTable(
            self.spec,
            bool(self.plan.positions),
            self.alleles,
            {a.contig: self._columns(a.contig) for a in self.plan.arrays},
        )

    def _columns(self, contig: str) -> dict[str, np.ndarray]:
        """One contig's windows as :data:`COLUMNS` arrays (none when it has no variant)."""
        s = self.sums[contig]
        variants, passing, missing, het, segregating, maf, maf_sites = s.data
        index = (s.first or 0) + np.arange(s.data.shape[1])
        if self.spec.bp:
            start, end = index * self.spec.size + 1, (index + 1) * self.spec.size
        else:
            start, end = s.lo, s.hi
        calls = passing * self.plan.n_samples
        called = calls - missing
        with np.errstate(invalid="ignore", divide="ignore"):
            return {
                "contig": np.full(len(index), contig, dtype=object),
                "start": start.astype(np.int64),
                "end": end.astype(np.int64),
                "variants": variants.astype(np.int64),
                "passing_sites": passing.astype(np.int64),
                "missing_rate": np.where(calls > 0, missing / np.maximum(calls, 1), np.nan),
                "heterozygosity": np.where(called > 0, het / np.maximum(called, 1), np.nan),
                "segregating_sites": segregating.astype(np.int64),
                "mean_maf": np.where(
                    maf_sites > 0, maf / np.maximum(maf_sites, 1), np.nan
                ) if self.alleles else np.full(len(index), np.nan),
            }  # fmt: skip


@dataclass(frozen=True)
class WindowTable:
    """Windows of every contig, in the plan's order: one dict of :data:`COLUMNS` arrays
    per contig name. ``start`` and ``end`` are 1-based positions, both included (for windows
    of variants: of the window's first and last variant; without positions, their
    0-based rows). Without genotype histograms (``alleles`` False) the segregating sites
    are -1 and the mean MAF NaN."""

    spec: WindowSpec
    positions: bool
    alleles: bool
    contigs: dict[str, dict[str, np.ndarray]]

    def __len__(self) -> int:
        return sum(len(b["start"]) for b in self.contigs.values())

    def contig(self, name: str) -> dict[str, np.ndarray]:
        return self.contigs[name]

    def rows(self) -> Iterator[dict[str, Any]]:
        """One dict per window (NaN as None)."""
        for b in self.contigs.values():
            columns = [b[c].tolist() for c in COLUMNS]
            for values in zip(*columns, strict=True):
                row = {
                    c: (None if isinstance(v, float) and math.isnan(v) else v)
                    for c, v in zip(COLUMNS, values, strict=True)
                }
                if not self.alleles:
                    row["segregating_sites"] = None
                yield row

    def to_dict(self) -> dict[str, Any]:
        unit = "bp" if self.spec.bp else "variants"
        coords = "position" if self.spec.bp or self.positions else "row"
        return {"window": {"size": self.spec.size, "unit": unit, "coordinates": coords},
                "columns": list(COLUMNS), "windows": list(self.rows())}  # fmt: skip

    def tsv(self) -> str:
        lines = ["\t".join(COLUMNS)]
        for row in self.rows():
            cells = []
            for c in COLUMNS:
                v = row[c]
                if v is None:
                    cells.append("NA")
                elif isinstance(v, float):
                    cells.append(f"{v:.6g}")
                else:
                    cells.append(str(v))
            lines.append("\t".join(cells))
        return "\n".join(lines) + "\n"


def windows_format(path: str | os.PathLike[str]) -> str:
    """``tsv`` or ``json``, from the file name."""
    suffix = Path(path).suffix.lstrip(".").lower()
    if suffix not in FORMATS:
        raise UsageError(f"--windows-output {path}: use a .tsv or .json file name")
    return suffix


def check_windows_file(path: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """The ``--windows-output`` file, checked before anything is computed (as a drawing's)."""
    return check_drawing_file("--windows-output", path, FORMATS, overwrite=overwrite)


def write_windows(
    table: WindowTable, path: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Write the table as TSV or JSON (by the suffix), whole."""
    target = check_windows_file(path, overwrite=overwrite)
    if windows_format(target) == "json":
        text = json.dumps(table.to_dict(), indent=1) + "\n"
    else:
        text = table.tsv()
    try:
        write_whole(target, text.encode())
    except OSError as exc:
        raise StoreIOError(f"cannot write {target}: {os_reason(exc)}", exc.errno) from None
    return target
