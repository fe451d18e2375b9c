"""Run one work unit: read its stored chunks and count them into a :class:`Partial`.

The task function every backend ships to its workers (:func:`run_unit`), and the pieces
the dask graph and the poison-chunk search reuse. It sits below the backends and the
planner; it imports numpy, so backends that must start workers before numpy is loaded
import it on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from zarrgeno.errors import BadDataError
from zarrgeno.stats.kernels import (
    HET,
    HOM_REF,
    MISSING,
    BlockCounts,
    QcBlock,
    Semantics,
    count_blosc,
    count_blosc_qc,
    count_calls,
    count_calls_qc,
    variant_dtype,
)
from zarrgeno.stats.plan import Partial, WorkUnit
from zarrgeno.stats.reader import ChunkPiece, StoredPiece

if TYPE_CHECKING:
    from zarrgeno.stats.qc.counting import QcUnit

#: Per-thread scratch arrays (see :func:`_scratch`).
_SCRATCH = threading.local()


def _selection_in_chunk(
    samples: tuple[int, ...], sample0: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Local columns of chunk samples ``sample0:sample0+width`` that are selected, and
    their positions in the output."""
    sel = np.asarray(samples)
    inside = np.flatnonzero((sel >= sample0) & (sel < sample0 + width))
    local = sel[inside] - sample0
    order = np.argsort(local, kind="stable")
    return local[order], inside[order]


def count_piece(
    piece: ChunkPiece,
    samples: tuple[int, ...] | None,
    semantics: Semantics,
    mask: np.ndarray | None = None,
) -> tuple[BlockCounts, np.ndarray | slice]:
    """Count one stored chunk's rows (those ``mask`` passes, when given); returns the
    counts and where their samples go."""
    if samples is None:
        counts = count_calls(
            piece.data, semantics=semantics, columns=(piece.c0, piece.c1), mask=mask
        )
        return counts, slice(piece.sample0 + piece.c0, piece.sample0 + piece.c1)
    local, positions = _selection_in_chunk(samples, piece.sample0, piece.c1)
    if local.size == 0:
        return BlockCounts(
            np.zeros((3, piece.stop - piece.start), np.uint8), np.zeros((3, 0), np.int64)
        ), positions
    if local[-1] - local[0] + 1 == local.size:  # a contiguous run: no copy
        counts = count_calls(
            piece.data,
            semantics=semantics,
            columns=(int(local[0]), int(local[-1]) + 1),
            mask=mask,
        )
    else:
        data = np.ascontiguousarray(piece.data[:, local])
        counts = count_calls(data, semantics=semantics, mask=mask)
    return counts, positions


def count_stored(piece: StoredPiece, semantics: Semantics, into: np.ndarray | None) -> BlockCounts:
    """Count a still-compressed piece (every sample of its chunk), its per-variant counts
    added to ``into`` when given."""
    return count_blosc(
        piece.raw,
        piece.lz4,
        piece.blocksize,
        piece.stop - piece.start,
        piece.stride,
        f"chunk {piece.key}",
        semantics=semantics,
        columns=(piece.c0, piece.c1),
        into=into,
    )


def count_piece_qc(
    piece: ChunkPiece,
    samples: tuple[int, ...] | None,
    semantics: Semantics,
    qc: QcUnit,
    lo: int,
    mask: np.ndarray | None = None,
) -> tuple[BlockCounts, QcBlock, np.ndarray | slice]:
    """:func:`count_piece` with the QC counts: its histogram goes to the unit's rows
    ``lo:lo + rows`` of ``qc.hist``, its per-cohort counts to the same rows of the unit's
    (of the rows ``mask`` passes, when given, where they lie)."""
    rows = piece.stop - piece.start
    hist = qc.hist[lo : lo + rows]
    if samples is None:
        where = slice(piece.sample0 + piece.c0, piece.sample0 + piece.c1)
        bits = qc.bits_buffer(rows, piece.c1 - piece.c0)
        into = _piece_counts(rows, piece.c1 - piece.c0)
        counts, block = count_calls_qc(
            piece.data,
            hist=hist,
            semantics=semantics,
            columns=(piece.c0, piece.c1),
            bits=bits,
            into=into,
            cohorts=qc.cohort_target(where, lo, rows),
            mask=mask,
        )
        return counts, block, where
    local, positions = _selection_in_chunk(samples, piece.sample0, piece.c1)
    if local.size and local[-1] - local[0] + 1 == local.size:  # a contiguous run: no copy
        data, columns = piece.data, (int(local[0]), int(local[-1]) + 1)
    else:
        data, columns = np.ascontiguousarray(piece.data[:, local]), None
    width = len(local)
    bits = qc.bits_buffer(rows, width)
    into = _piece_counts(rows, width)
    counts, block = count_calls_qc(
        data,
        hist=hist,
        semantics=semantics,
        columns=columns,
        bits=bits,
        into=into,
        cohorts=qc.cohort_target(positions, lo, rows),
        mask=mask,
    )
    return counts, block, positions


def count_stored_qc(
    piece: StoredPiece,
    semantics: Semantics,
    qc: QcUnit,
    lo: int,
    mask: np.ndarray | None = None,
    into: np.ndarray | None = None,
) -> tuple[BlockCounts, QcBlock, np.ndarray | slice]:
    """:func:`count_piece_qc` of a still-compressed piece (every sample of its chunk),
    decoded and counted a few blocks at a time; its per-variant counts are added to
    ``into`` (3, rows) when given (the unit's own, when the piece spans its rows)."""
    rows, width = piece.stop - piece.start, piece.c1 - piece.c0
    where: np.ndarray | slice = slice(piece.sample0 + piece.c0, piece.sample0 + piece.c1)
    counts, block = count_blosc_qc(
        piece.raw,
        piece.lz4,
        piece.blocksize,
        rows,
        piece.stride,
        f"chunk {piece.key}",
        hist=qc.hist[lo : lo + rows],
        semantics=semantics,
        columns=(piece.c0, piece.c1),
        bits=qc.bits_buffer(rows, width),
        into=_piece_counts(rows, width) if into is None else into,
        cohorts=qc.cohort_target(where, lo, rows),
        mask=mask,
    )
    return counts, block, where


def _pieces_qc(unit: WorkUnit) -> Iterable[ChunkPiece | StoredPiece]:
    """The unit's pieces for the QC pass: chunks left compressed where the kernel decodes
    them a few blocks at a time (every sample selected), else decoded whole."""
    if unit.samples is None:
        return unit.reader.stored_pieces(unit.start, unit.stop)
    return unit.reader.pieces(unit.start, unit.stop, shared=True)


def count_passing(
    piece: ChunkPiece,
    keep: np.ndarray,
    samples: tuple[int, ...] | None,
    semantics: Semantics,
    qc: QcUnit | None = None,
    lo: int = 0,
) -> tuple[BlockCounts, np.ndarray | slice]:
    """:func:`count_piece` (:func:`count_piece_qc` with ``qc``, placed in the unit's rows
    ``lo:lo + rows``) of the piece's rows that pass the site filter (``keep``, one bool
    per row); the others' counts stay zero (and, with ``qc``, their histograms, missing
    bits and per-cohort counts). The kernels skip the failing rows where they lie."""
    if qc is None:
        return count_piece(piece, samples, semantics, mask=keep)
    counts, block, where = count_piece_qc(piece, samples, semantics, qc, lo, mask=keep)
    qc.add(lo, lo + len(keep), where, block)
    return counts, where


def _piece_counts(rows: int, width: int) -> np.ndarray:
    """A zeroed (3, rows) array of this thread's scratch for a piece's per-variant counts
    (added to the unit's at once)."""
    out = _scratch("piece", 3 * rows, variant_dtype(width)).reshape(3, rows)
    out.fill(0)
    return out


def unit_arrays(unit: WorkUnit) -> tuple[np.ndarray, np.ndarray]:
    """The zeroed per-variant ``(3, n_variants)`` and per-sample ``(3, width)`` totals of a
    unit. Per-variant counts a unit does not return live in this thread's scratch: a fresh
    megabyte array per unit costs page faults (every page, where glibc serves it with
    ``mmap``, as in dask workers), a reused one only a memset."""
    width = len(unit.samples) if unit.samples is not None else unit.reader.shape[1]
    dtype = variant_dtype(width)
    if unit.per_variant:
        variant = np.zeros((3, unit.n_variants), dtype=dtype)
    else:
        variant = _scratch("variant", 3 * unit.n_variants, dtype).reshape(3, unit.n_variants)
        variant.fill(0)
    return variant, np.zeros((3, width), dtype=np.int64)


def unit_partial(
    unit: WorkUnit,
    variant: np.ndarray,
    sample: np.ndarray,
    partial_het: int = 0,
    qc: dict[str, np.ndarray] | None = None,
    site_pass: np.ndarray | None = None,
) -> Partial:
    """The :class:`Partial` of a unit's totals: the per-variant summaries (over the
    variants in ``site_pass`` when filtered), and the per-variant counts themselves when
    the unit keeps them."""
    flags = _scratch("flags", unit.n_variants, np.dtype(bool))
    np.equal(variant[MISSING], 0, out=flags)
    if site_pass is not None:
        flags &= site_pass
    complete = int(np.count_nonzero(flags))
    np.greater(variant[HOM_REF], variant[HET], out=flags)
    if site_pass is not None:
        flags &= site_pass
    more_hom = int(np.count_nonzero(flags))
    return Partial(
        contig=unit.contig,
        start=unit.start,
        stop=unit.stop,
        sample=sample,
        complete_data=complete,
        more_anc_hom=more_hom,
        variant=variant if unit.per_variant else None,
        partial_het=partial_het,
        qc=qc,
        site_pass=site_pass,
    )


def finish_unit(
    unit: WorkUnit,
    counted: Iterable[tuple[int, int, BlockCounts, np.ndarray | slice]],
    qc: QcUnit | None = None,
    site_pass: np.ndarray | None = None,
    arrays: tuple[np.ndarray, np.ndarray] | None = None,
) -> Partial:
    """Add per-variant counts over sample chunks, place per-sample counts: one Partial
    (with ``qc``'s partials, which ``counted`` filled, when QC statistics are asked for;
    ``site_pass``: the variants counted, when the unit has a site filter). ``arrays``: the
    unit's totals (:func:`unit_arrays`), when pieces counted into them directly (their
    counts' ``variant`` is then the unit's own, not added again)."""
    variant, sample = unit_arrays(unit) if arrays is None else arrays
    partial = 0
    for start, stop, counts, where in counted:
        if counts.variant is not variant:
            variant[:, start - unit.start : stop - unit.start] += counts.variant
        sample[:, where] += counts.sample
        partial += counts.partial
    parts = None if qc is None else qc.finish(unit)
    if parts is not None and site_pass is not None:
        from zarrgeno.stats.qc.counting import ALLELES_SEEN  # loaded with QcUnit already

        parts[ALLELES_SEEN][0] -= unit.n_variants - int(np.count_nonzero(site_pass))
    return unit_partial(unit, variant, sample, partial, parts, site_pass)


def site_pass(unit: WorkUnit) -> np.ndarray | None:
    """Which of the unit's variants its site filter passes (read now), or None."""
    if unit.site_filter is None:
        return None
    keep = unit.site_filter.read(unit.start, unit.stop)
    if len(keep) != unit.n_variants:  # the array changed since the plan checked it
        raise BadDataError(
            f"{unit.site_filter.describe()}: {len(keep):,} items for {unit.describe()}"
        )
    return keep


def _run_unit_filtered(unit: WorkUnit, keep: np.ndarray) -> Partial:
    """:func:`run_unit` with the QC counts over the variants that pass the unit's site
    filter (``keep``)."""
    qc = qc_unit(unit)
    arrays = unit_arrays(unit)

    def counted() -> Iterable[tuple[int, int, BlockCounts, np.ndarray | slice]]:
        for piece in _pieces_qc(unit):
            lo, hi = piece.start - unit.start, piece.stop - unit.start
            if isinstance(piece, StoredPiece):
                into = _whole_rows(unit, lo, hi, arrays[0])
                counts, block, where = count_stored_qc(
                    piece, unit.semantics, qc, lo, keep[lo:hi], into
                )
                qc.add(lo, hi, where, block)
            else:
                counts, where = count_passing(
                    piece, keep[lo:hi], unit.samples, unit.semantics, qc, lo
                )
            yield piece.start, piece.stop, counts, where

    return finish_unit(unit, counted(), qc, keep, arrays)


def qc_unit(unit: WorkUnit) -> QcUnit:
    """The QC partials of ``unit`` as its pieces are counted (``unit.qc`` must be set)."""
    # Imported here for start-up cost only: the QC modules (20 ms) are not loaded by the
    # workers of a run that counts no QC statistics.
    from zarrgeno.stats.qc.counting import QcUnit

    assert unit.qc is not None
    width = len(unit.samples) if unit.samples is not None else unit.reader.shape[1]
    return QcUnit(unit.qc, unit.n_variants, width, keep=unit.per_variant)


def read_ahead(units: Iterable[WorkUnit]) -> None:
    """Announce the chunks of ``units``, in order, to their stores: a remote store fetches
    them a window at a time ahead of the counting (a local one reads on demand)."""
    for unit in units:
        unit.reader.read_ahead(unit.reader.chunk_indexes(unit.start, unit.stop))


def abandon_reads(units: Iterable[WorkUnit]) -> None:
    """Cancel the requests in flight of the stores of ``units`` (Ctrl-C, a failure), so that
    threads waiting for a slow server return at once rather than when it answers."""
    readers = {id(unit.reader): unit.reader for unit in units}
    for reader in readers.values():
        reader.stop_reads(abandon=True)


def _run_unit_qc(unit: WorkUnit) -> Partial:
    """:func:`run_unit` with the QC counts of the same pass."""
    qc = qc_unit(unit)
    arrays = unit_arrays(unit)

    def counted() -> Iterable[tuple[int, int, BlockCounts, np.ndarray | slice]]:
        for piece in _pieces_qc(unit):
            lo = piece.start - unit.start
            if isinstance(piece, StoredPiece):  # decoded and counted a few blocks at a time
                into = _whole_rows(unit, lo, piece.stop - unit.start, arrays[0])
                counts, block, where = count_stored_qc(piece, unit.semantics, qc, lo, None, into)
            else:
                counts, block, where = count_piece_qc(piece, unit.samples, unit.semantics, qc, lo)
            qc.add(lo, piece.stop - unit.start, where, block)
            yield piece.start, piece.stop, counts, where

    return finish_unit(unit, counted(), qc, None, arrays)


def _whole_rows(unit: WorkUnit, lo: int, hi: int, variant: np.ndarray) -> np.ndarray | None:
    """The unit's per-variant counts when a piece spans all its rows (``lo:hi``), so that
    the kernel adds to them directly; else None (the piece's counts are added after)."""
    return variant if (lo, hi) == (0, unit.n_variants) else None


def run_unit(unit: WorkUnit) -> Partial:
    """Read the unit's chunks straight from the store and count them: the one task function
    of the sequential, threads, process and distributed backends.

    A chunk spanning the whole unit (the usual unit: one row of stored chunks) with every
    sample selected is counted straight into the unit's totals, with no array per chunk.
    A unit asked for QC statistics (``unit.qc``) takes another path, so that this one stays
    as it is. With a site filter the kernel counts the passing rows only, where they lie
    (the others' per-variant counts stay zero).
    """
    read_ahead((unit,))
    keep = site_pass(unit)
    if unit.qc is not None:
        return _run_unit_qc(unit) if keep is None else _run_unit_filtered(unit, keep)
    variant, sample = unit_arrays(unit)
    partial = 0
    reader = unit.reader
    pieces = (
        reader.stored_pieces(unit.start, unit.stop)
        if keep is None and unit.samples is None
        else reader.pieces(unit.start, unit.stop, shared=True)
    )
    for piece in pieces:
        lo, hi = piece.start - unit.start, piece.stop - unit.start
        if isinstance(piece, StoredPiece):  # decoded and counted a few blocks at a time
            whole = (lo, hi) == (0, unit.n_variants)
            counts = count_stored(piece, unit.semantics, variant if whole else None)
            if not whole:
                variant[:, lo:hi] += counts.variant
            sample[:, piece.sample0 + piece.c0 : piece.sample0 + piece.c1] += counts.sample
            partial += counts.partial
            continue
        mask = None if keep is None else keep[lo:hi]
        if unit.samples is None and (lo, hi) == (0, unit.n_variants):
            counts = count_calls(
                piece.data,
                semantics=unit.semantics,
                columns=(piece.c0, piece.c1),
                into=variant,
                mask=mask,
            )
            sample[:, piece.sample0 + piece.c0 : piece.sample0 + piece.c1] += counts.sample
        else:
            counts, where = count_piece(piece, unit.samples, unit.semantics, mask)
            variant[:, lo:hi] += counts.variant
            sample[:, where] += counts.sample
        partial += counts.partial
    return unit_partial(unit, variant, sample, partial, site_pass=keep)


def run_units(units: tuple[WorkUnit, ...]) -> list[Partial]:
    """:func:`run_unit` on each unit in turn: one distributed task for a batch of units, so
    that the scheduler and the client handle a task per batch rather than per chunk row."""
    read_ahead(units)
    return [run_unit(unit) for unit in units]


def _scratch(name: str, size: int, dtype: np.dtype) -> np.ndarray:
    """This thread's reusable 1-D array ``name`` of ``size`` items (contents undefined),
    grown when a bigger one is asked for."""
    arrays = getattr(_SCRATCH, "arrays", None)
    if arrays is None:
        arrays = _SCRATCH.arrays = {}
    key = (name, dtype.str)
    buf = arrays.get(key)
    if buf is None or buf.size < size:
        buf = arrays[key] = np.empty(size, dtype=dtype)
    return buf[:size]


def count_chunk(unit: WorkUnit, i: int, j: int) -> BlockCounts:
    """Read and count stored chunk ``(i, j)`` of ``unit`` alone: the smallest piece of work,
    run by itself to tell whether that chunk kills the process that reads it."""
    piece = unit.reader.piece(i, j, unit.start, unit.stop)
    return count_piece(piece, unit.samples, unit.semantics)[0]
