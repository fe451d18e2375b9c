"""Run one work unit: read its stored chunks and count them into a :class:`Partial`.

The task function every backend ships to its workers (:func:`run_unit`), and the pieces
the dask graph and the poison-chunk search reuse. It sits below the backends and the
planner; it imports numpy, so backends that must start workers before numpy is loaded
import it on first use.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from zarrgeno.stats.kernels import (
    HET,
    HOM_REF,
    MISSING,
    BlockCounts,
    Semantics,
    count_calls,
    variant_dtype,
)
from zarrgeno.stats.plan import Partial, WorkUnit
from zarrgeno.stats.reader import ChunkPiece


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
    piece: ChunkPiece, samples: tuple[int, ...] | None, semantics: Semantics
) -> tuple[BlockCounts, np.ndarray | slice]:
    """Count one stored chunk's rows; returns the counts and where their samples go."""
    if samples is None:
        counts = count_calls(piece.data, semantics=semantics, columns=(piece.c0, piece.c1))
        return counts, slice(piece.sample0 + piece.c0, piece.sample0 + piece.c1)
    local, positions = _selection_in_chunk(samples, piece.sample0, piece.c1)
    if local.size == 0:
        return BlockCounts(
            np.zeros((3, piece.stop - piece.start), np.uint8), np.zeros((3, 0), np.int64)
        ), positions
    if local[-1] - local[0] + 1 == local.size:  # a contiguous run: no copy
        counts = count_calls(
            piece.data, semantics=semantics, columns=(int(local[0]), int(local[-1]) + 1)
        )
    else:
        counts = count_calls(np.ascontiguousarray(piece.data[:, local]), semantics=semantics)
    return counts, positions


def finish_unit(
    unit: WorkUnit, counted: Iterable[tuple[int, int, BlockCounts, np.ndarray | slice]]
) -> Partial:
    """Add per-variant counts over sample chunks, place per-sample counts: one Partial."""
    width = len(unit.samples) if unit.samples is not None else unit.reader.shape[1]
    variant = np.zeros((3, unit.n_variants), dtype=variant_dtype(width))
    sample = np.zeros((3, width), dtype=np.int64)
    for start, stop, counts, where in counted:
        variant[:, start - unit.start : stop - unit.start] += counts.variant
        sample[:, where] += counts.sample
    return Partial(
        contig=unit.contig,
        start=unit.start,
        stop=unit.stop,
        sample=sample,
        complete_data=int(np.count_nonzero(variant[MISSING] == 0)),
        more_anc_hom=int(np.count_nonzero(variant[HOM_REF] > variant[HET])),
        variant=variant if unit.per_variant else None,
    )


def run_unit(unit: WorkUnit) -> Partial:
    """Read the unit's chunks straight from the store and count them: the one task function
    of the sequential, process and distributed backends."""

    def counted() -> Iterable[tuple[int, int, BlockCounts, np.ndarray | slice]]:
        for piece in unit.reader.pieces(unit.start, unit.stop, shared=True):
            counts, where = count_piece(piece, unit.samples, unit.semantics)
            yield piece.start, piece.stop, counts, where

    return finish_unit(unit, counted())


def count_chunk(unit: WorkUnit, i: int, j: int) -> BlockCounts:
    """Read and count stored chunk ``(i, j)`` of ``unit`` alone: the smallest piece of work,
    run by itself to tell whether that chunk kills the process that reads it."""
    piece = unit.reader.piece(i, j, unit.start, unit.stop)
    return count_piece(piece, unit.samples, unit.semantics)[0]
