"""Chunk specs and chunk-aligned partitions of variant ranges; pure, no I/O."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from zarrgeno.errors import UsageError


def parse_chunks(spec: str | Sequence[int], shape: Sequence[int]) -> tuple[int, ...]:
    """Parse ``"12131437,81,2"`` into a chunk shape for ``shape``; ``-1`` is the whole axis.

    Each chunk length is clamped to its axis (a zero-length axis keeps chunk 1, as zarr
    does), so one spec fits every contig of a store.

    >>> parse_chunks("12131437,81,2", (48525747, 81, 2))
    (12131437, 81, 2)
    >>> parse_chunks("-1,50,2", (1000, 81, 2))
    (1000, 50, 2)
    """
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.split(",")]
        values: list[int] = []
        for part in parts:
            try:
                values.append(int(part))
            except ValueError:
                raise UsageError(
                    f"chunk spec {spec!r}: {part!r} is not an integer "
                    "(use comma-separated positive integers, -1 for a whole axis)"
                ) from None
        text = spec
    else:
        values = [int(v) for v in spec]
        text = ",".join(str(v) for v in values)
    if len(values) != len(shape):
        raise UsageError(
            f"chunk spec {text!r} has {len(values)} value(s) but the array has "
            f"{len(shape)} dimension(s) {tuple(shape)}"
        )
    chunks = []
    for value, length in zip(values, shape, strict=True):
        if value == -1:
            value = length
        elif value <= 0:
            raise UsageError(
                f"chunk spec {text!r}: {value} is not allowed (chunk lengths are positive; "
                "-1 means the whole axis)"
            )
        chunks.append(max(1, min(value, length)))
    return tuple(chunks)


def chunk_intervals(start: int, stop: int, chunk: int) -> list[tuple[int, int]]:
    """Split ``start:stop`` at multiples of ``chunk``, so each piece lies in one stored chunk.

    >>> chunk_intervals(250, 1000, 300)
    [(250, 300), (300, 600), (600, 900), (900, 1000)]
    """
    if chunk <= 0:
        raise ValueError(f"chunk length must be positive, got {chunk}")
    if stop <= start:
        return []
    edges = [start, *range((start // chunk + 1) * chunk, stop, chunk), stop]
    return list(itertools.pairwise(edges))


def grouped_intervals(start: int, stop: int, chunk: int, per_task: int) -> list[tuple[int, int]]:
    """Like :func:`chunk_intervals`, but ``per_task`` stored chunks per interval.

    >>> grouped_intervals(0, 1000, 300, 2)
    [(0, 600), (600, 1000)]
    """
    if per_task <= 0:
        raise ValueError(f"per_task must be positive, got {per_task}")
    pieces = chunk_intervals(start, stop, chunk)
    return [
        (pieces[i][0], pieces[min(i + per_task, len(pieces)) - 1][1])
        for i in range(0, len(pieces), per_task)
    ]
