"""Variant positions and genomic regions: ``2L:20,000,000-21,000,000`` -> rows of a contig."""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import zarr

from zarrgeno.errors import BadDataError, MissingInputError, UsageError
from zarrgeno.io.chunks import ChunkLayout, decode_chunk, read_raw, read_rows, take_rows
from zarrgeno.io.screened import refuse_needed
from zarrgeno.io.store import ROOT_GT, VCF_ZARR_GT, GenotypeArray, open_store

#: Decoded position chunks one lookup keeps: the search itself needs only each chunk's
#: first and last values, kept for every chunk read; the data is for the final step.
CACHED_CHUNKS = 2

_COORDS = re.compile(r"^\s*([0-9][0-9,_]*)\s*-\s*([0-9][0-9,_]*)\s*$")


@dataclass(frozen=True)
class Region:
    """A contig, or positions ``start`` to ``end`` of it (1-based, both included).

    The coordinates of ``malariagen_data``, VCF and samtools: ``2L:1-100`` is the first
    hundred bases of 2L.

    >>> str(Region("2L", 20_000_000, 21_000_000))
    '2L:20,000,000-21,000,000'
    """

    contig: str
    start: int | None = None
    end: int | None = None

    @property
    def whole(self) -> bool:
        """True for a whole contig (no coordinates)."""
        return self.start is None and self.end is None

    def __str__(self) -> str:
        if self.whole:
            return self.contig
        return f"{self.contig}:{self.start:,}-{self.end:,}"


def _number(text: str, region: str) -> int:
    digits = text.replace(",", "").replace("_", "")
    if not digits.isdigit():
        raise UsageError(f"region {region!r}: {text!r} is not a position")
    return int(digits)


def parse_region(text: str | Region, contigs: Iterable[str] = ()) -> Region:
    """``CONTIG`` or ``CONTIG:START-END`` (commas or ``_`` allowed in numbers) -> a Region.

    A name in ``contigs`` is always a whole contig, even if it contains ``:``.

    >>> parse_region("2L:20,000,000-21,000,000")
    Region(contig='2L', start=20000000, end=21000000)
    >>> parse_region("X")
    Region(contig='X', start=None, end=None)
    """
    if isinstance(text, Region):
        region = text
        if not region.whole:
            _check_bounds(str(region), region.start, region.end)
        return region
    if not isinstance(text, str) or not text.strip():
        raise UsageError(f"region {text!r} is empty: give CONTIG or CONTIG:START-END")
    text = text.strip()
    if text in set(contigs) or ":" not in text:
        return Region(text)
    contig, _, coords = text.rpartition(":")
    contig = contig.strip()
    match = _COORDS.match(coords)
    if not contig or match is None:
        raise UsageError(
            f"region {text!r} is not CONTIG or CONTIG:START-END (e.g. 2L:20,000,000-21,000,000; "
            "2L:1000-1000 for one position)"
        )
    start, end = _number(match.group(1), text), _number(match.group(2), text)
    _check_bounds(text, start, end)
    return Region(contig, start, end)


def _check_bounds(text: str, start: int | None, end: int | None) -> None:
    if start is None or end is None:
        raise UsageError(f"region {text!r} needs both START and END")
    if start < 1:
        raise UsageError(f"region {text!r}: positions start at 1 (1-based, as in VCF)")
    if end < start:
        raise UsageError(f"region {text!r}: START {start:,} is after END {end:,}")


def parse_regions(
    regions: str | Region | Iterable[str | Region], contigs: Iterable[str] = ()
) -> tuple[Region, ...]:
    """Parse one or more regions; at most one per contig (each contig is one result row)."""
    items = [regions] if isinstance(regions, str | Region) else list(regions)
    if not items:
        raise UsageError("the region selection is empty")
    known = tuple(contigs)
    parsed = tuple(parse_region(r, known) for r in items)
    seen: set[str] = set()
    for r in parsed:
        if r.contig in seen:
            raise UsageError(f"contig {r.contig} is in two regions: give one region per contig")
        seen.add(r.contig)
    return parsed


@dataclass(frozen=True)
class ContigPositions:
    """One contig's positions: array ``path`` of store ``store``, parallel to its genotypes.

    Genotype row ``r`` has position ``array[r - offset]``: ``offset`` is 0 when the
    positions cover the same rows as the genotype array (``2L/variants/POS`` beside
    ``2L/calldata/GT``, or VCF Zarr's ``variant_position``), and the contig's first row
    when a per-contig ``POS`` goes with a shared ``call_genotype``.
    """

    store: str
    path: str
    offset: int
    array: zarr.Array = field(repr=False, compare=False)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Positions of genotype rows ``start:stop``."""
        layout = ChunkLayout.of(self.array)
        return read_rows(self.array.chunk_store, layout, start - self.offset, stop - self.offset)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Positions of genotype rows ``rows`` (any order), decoding each chunk once."""
        layout = ChunkLayout.of(self.array)
        return take_rows(self.array.chunk_store, layout, np.asarray(rows) - self.offset)

    def locate(self, start: int, stop: int, region: Region) -> tuple[int, int]:
        """Genotype rows ``lo:hi`` within ``start:stop`` whose position is in ``region``.

        A binary search over the stored chunks: it decodes about ``log2(chunks) + 2`` of
        them, never the whole array. Every chunk it reads must ascend (ties allowed) and
        agree in order with the other chunks it read; otherwise a BadDataError.
        """
        if region.whole or stop <= start:
            return start, stop
        assert region.start is not None and region.end is not None
        search = _ChunkedSearch(self, start - self.offset, stop - self.offset)
        lo = search.searchsorted(region.start, "left")
        hi = search.searchsorted(region.end, "right")
        return lo + self.offset, max(lo, hi) + self.offset


class _ChunkedSearch:
    """``np.searchsorted`` over positions ``lo:hi`` of a chunked array, chunk by chunk."""

    def __init__(self, positions: ContigPositions, lo: int, hi: int) -> None:
        self.positions = positions
        self.array = positions.array
        self.layout = ChunkLayout.of(self.array)
        self.size = self.layout.chunks[0]
        self.lo, self.hi = lo, hi
        self.first, self.last = lo // self.size, (hi - 1) // self.size
        self.cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.bounds: dict[int, tuple[int, int, int]] = {}  # chunk -> (first value, last value, row)

    def _where(self) -> str:
        return f"{self.positions.store}: {self.positions.path}"

    def chunk(self, k: int) -> np.ndarray:
        """Positions ``lo:hi`` stored in chunk ``k``, checked to ascend."""
        if k in self.cache:
            self.cache.move_to_end(k)
            return self.cache[k]
        key = self.layout.key((k,))
        raw = read_raw(self.array.chunk_store, key, allow_missing=True, limit=self.layout.raw_cap)
        if raw is None:
            raise BadDataError(f"{self._where()}: chunk {key} of the positions is missing")
        row0 = max(k * self.size, self.lo)
        values = decode_chunk(self.layout, key, raw)
        values = values[row0 - k * self.size : min(self.hi, (k + 1) * self.size) - k * self.size]
        falls = values[1:] < values[:-1]
        if falls.any():
            i = int(np.argmax(falls))
            self._unsorted(row0 + i + 1, int(values[i + 1]), int(values[i]))
        self._check_order(k, int(values[0]), int(values[-1]), row0)
        self.cache[k] = values
        while len(self.cache) > CACHED_CHUNKS:
            self.cache.popitem(last=False)
        return values

    def _check_order(self, k: int, first: int, last: int, row0: int) -> None:
        """Chunk ``k``'s values must sit between those of the chunks read before and after."""
        before = [j for j in self.bounds if j < k]
        after = [j for j in self.bounds if j > k]
        if before:
            prev_last = self.bounds[max(before)][1]
            if first < prev_last:
                self._unsorted(row0, first, prev_last)
        if after:
            next_first, _, next_row = self.bounds[min(after)]
            if next_first < last:
                self._unsorted(next_row, next_first, last)
        self.bounds[k] = (first, last, row0)

    def _unsorted(self, row: int, value: int, previous: int) -> None:
        raise BadDataError(
            f"{self._where()} is not sorted: position {value:,} at row {row:,} comes after "
            f"{previous:,} (positions must ascend within a contig to select a region)"
        )

    def searchsorted(self, value: int, side: Literal["left", "right"]) -> int:
        """The first row of ``lo:hi`` whose position is >= ``value`` (left) or > (right)."""
        below, above = self.first, self.last + 1  # find the first chunk whose last value passes

        def passes(v: int) -> bool:
            return v >= value if side == "left" else v > value

        while below < above:
            mid = (below + above) // 2
            last = self.bounds[mid][1] if mid in self.bounds else int(self.chunk(mid)[-1])
            if passes(last):
                above = mid
            else:
                below = mid + 1
        if below > self.last:
            return self.hi
        values = self.chunk(below)
        limits = np.iinfo(values.dtype)
        if value > limits.max:  # beyond what the dtype holds (searchsorted would overflow)
            local = values.size
        else:
            local = int(np.searchsorted(values, values.dtype.type(value), side=side))
        return max(below * self.size, self.lo) + local


def _integer_vector(array: object) -> bool:
    return (
        isinstance(array, zarr.Array) and array.ndim == 1 and np.issubdtype(array.dtype, np.integer)
    )


def contig_positions(
    genotypes: GenotypeArray,
    group: zarr.hierarchy.Group,
    name: str,
    *,
    genotype_store: str,
    strict: bool,
) -> ContigPositions | None:
    """Find the positions of ``genotypes`` (a whole contig) in ``group``, the store ``name``.

    Looks for ``CONTIG/variants/POS`` (MalariaGEN, scikit-allel's ``vcf_to_zarr`` with
    ``group=``), then for the positions of every contig beside an array shared by all:
    VCF Zarr's ``variant_position`` for ``call_genotype``, ``variants/POS`` for
    scikit-allel's root ``calldata/GT``. With
    ``strict``, an array of the wrong length or type is a BadDataError naming both
    stores; otherwise it is ignored. Reads metadata only.
    """
    n = genotypes.n_variants
    where = f"{name}" if name == genotype_store else f"{name} (sites)"
    candidates = [(f"{genotypes.contig}/variants/POS", n, genotypes.start)]
    shared = {VCF_ZARR_GT: "variant_position", ROOT_GT: "variants/POS"}.get(genotypes.path)
    if shared is not None:  # one array of every contig's positions, beside the genotypes
        candidates.append((shared, genotypes.shape[0], 0))
    for path, length, offset in candidates:
        try:
            array = group.get(path)
        except (KeyError, ValueError):
            array = None
        if array is None:
            continue
        if not _integer_vector(array):
            if strict:
                raise BadDataError(
                    f"{where}: {path} must be a 1-D integer array of positions, "
                    f"found {getattr(array, 'dtype', 'a group')} {getattr(array, 'shape', '')}"
                )
            return None
        if array.shape[0] != length:
            if strict:
                raise BadDataError(
                    f"{where}: {path} has {array.shape[0]:,} positions but {genotype_store} "
                    f"{genotypes.path} has {length:,} variants ({genotypes.contig})"
                )
            return None
        return ContigPositions(name, path, offset, array)
    return None


def find_positions(
    arrays: Iterable[GenotypeArray],
    group: zarr.hierarchy.Group,
    name: str,
    *,
    sites: tuple[str, zarr.hierarchy.Group] | None = None,
    strict: bool = False,
) -> dict[str, ContigPositions]:
    """Positions of each contig: from the ``sites`` store (name, group) when given, else
    from the genotype store itself. A contig given a sites store must have positions there.
    """
    found: dict[str, ContigPositions] = {}
    for a in arrays:
        if sites is not None:
            sites_name, sites_group = sites
            cp = contig_positions(a, sites_group, sites_name, genotype_store=name, strict=True)
            if cp is None:
                raise MissingInputError(
                    f"{sites_name} (sites) has no positions for contig {a.contig} "
                    f"(looked for {a.contig}/variants/POS)"
                )
        else:
            cp = contig_positions(a, group, name, genotype_store=name, strict=strict)
        if cp is not None:
            found[a.contig] = cp
    return found


def restrict_to_region(
    a: GenotypeArray, region: Region, positions: Mapping[str, ContigPositions]
) -> GenotypeArray:
    """The rows of ``a`` inside ``region``; a region with no variant gives an empty range."""
    if region.whole:
        return a
    cp = positions.get(a.contig)
    if cp is None:
        raise MissingInputError(
            f"region {region} needs positions, and the store has none for {a.contig} "
            f"(no {a.contig}/variants/POS, variants/POS or variant_position): "
            "pass --sites SITES_STORE"
        )
    lo, hi = cp.locate(a.start, a.stop, region)
    return GenotypeArray(a.contig, a.path, lo, hi, a.shape, a.chunks)


def selected_regions(
    regions: str | Region | Sequence[str | Region] | None,
    contigs: Sequence[str] | None,
    variants: tuple[int, int | None] | None,
    found: list[GenotypeArray],
) -> tuple[Region, ...] | None:
    """The parsed regions of a plan (None: no regions); they name their own contigs, so
    they go with neither a contig list nor a row range."""
    if regions is None:
        return None
    if contigs:
        raise UsageError("--region names its contigs: use --region X for a whole contig, not -c")
    if variants is not None:
        raise UsageError("--region selects by position and --range by row: give one of them")
    return parse_regions(regions, [a.contig for a in found])


def plan_positions(
    name: str,
    group: zarr.hierarchy.Group,
    arrays: list[GenotypeArray],
    sites: object,
    regions: tuple[Region, ...] | None,
    per_variant: bool,
) -> dict[str, ContigPositions]:
    """A plan's positions by contig: from ``sites`` (opened read-only and validated like
    any store) or from the genotype store ``name``, ``group``.

    Positions that a region or ``sites`` asks for must fit; others are used when they do
    (for the POS of per-variant output), and are not looked up when nothing needs them.
    """
    if sites is None:
        strict = any(not r.whole for r in regions or ())
        if not (strict or per_variant):
            return {}
        return find_positions(arrays, group, name, strict=strict)
    try:
        sites_ref, sites_group = open_store(sites)
    except MissingInputError as exc:  # not the genotype store's hint to simulate one
        raise MissingInputError(f"--sites: {str(exc).split('; create one')[0]}") from None
    refuse_needed(sites_group, sites_ref.name, [f"{a.contig}/variants/POS" for a in arrays])
    return find_positions(arrays, group, name, sites=(sites_ref.name, sites_group))
