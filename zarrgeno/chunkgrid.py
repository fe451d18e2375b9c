"""Chunk specs and chunk-aligned partitions of variant ranges; pure, no I/O."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

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


def parse_named(spec: str) -> dict[str, int] | None:
    """``"variants=20000,samples=81"`` -> ``{"variants": 20000, "samples": 81}``; None for the
    positional form (``"20000,81,2"``). A length is positive, or -1 for the whole axis.

    >>> parse_named("variants=20000, samples=-1")
    {'variants': 20000, 'samples': -1}
    >>> parse_named("20000,81,2") is None
    True
    """
    parts = [p.strip() for p in spec.split(",")]
    if not any("=" in p for p in parts):
        return None
    named: dict[str, int] = {}
    for part in parts:
        name, sep, value = (s.strip() for s in part.partition("="))
        if not sep or not name:
            raise UsageError(
                f"chunk spec {spec!r}: {part!r} is not NAME=LENGTH "
                "(give every length by dimension name, or none)"
            )
        if name in named:
            raise UsageError(f"chunk spec {spec!r}: dimension {name!r} is given twice")
        try:
            length = int(value)
        except ValueError:
            raise UsageError(f"chunk spec {spec!r}: {value!r} is not an integer") from None
        if length <= 0 and length != -1:
            raise UsageError(
                f"chunk spec {spec!r}: {name}={length} is not allowed (chunk lengths are "
                "positive; -1 means the whole axis)"
            )
        named[name] = length
    return named


def chunks_by_name(
    named: Mapping[str, int],
    shape: Sequence[int],
    chunks: Sequence[int],
    dimensions: Sequence[str] | None,
    *,
    where: str = "array",
    strict: bool = True,
) -> tuple[int, ...]:
    """The chunk shape of an array of ``shape`` (now chunked ``chunks``, dimensions named
    ``dimensions``) with the named lengths of ``named`` applied, the other axes kept; each
    length clamped to its axis as :func:`parse_chunks` does. With ``strict``, every name
    must be one of the array's; else the names it lacks are left out (one spec for a store).

    >>> chunks_by_name({"variants": 20000}, (48525747, 81, 2), (300000, 50, 2),
    ...                ("variants", "samples", "ploidy"))
    (20000, 50, 2)
    """
    if dimensions is None:
        if not strict:
            return parse_chunks(chunks, shape)
        raise UsageError(
            f"{where} has no dimension names (_ARRAY_DIMENSIONS or dimension_names): "
            "give its chunks by position"
        )
    if len(dimensions) != len(shape) or len(chunks) != len(shape):
        raise ValueError(f"{where}: dimensions {dimensions} or chunks {chunks} do not fit {shape}")
    unknown = [name for name in named if name not in dimensions]
    if strict and unknown:
        raise UsageError(
            f"{where} has no dimension {unknown[0]!r} (its dimensions: {', '.join(dimensions)})"
        )
    values = [named.get(name, chunk) for name, chunk in zip(dimensions, chunks, strict=True)]
    return parse_chunks(values, shape)


def chunks_for(
    spec: str,
    shape: Sequence[int],
    chunks: Sequence[int],
    dimensions: Sequence[str] | None,
    *,
    where: str = "array",
) -> tuple[int, ...]:
    """``--chunks`` for one array: positional (``"20000,81,2"``) or by dimension name
    (``"variants=20000,samples=81"``, the other axes keep ``chunks``).

    >>> chunks_for("samples=-1", (1000, 81, 2), (100, 40, 2), ["variants", "samples", "ploidy"])
    (100, 81, 2)
    >>> chunks_for("100,81,2", (1000, 81, 2), (100, 40, 2), None)
    (100, 81, 2)
    """
    named = parse_named(spec)
    if named is None:
        return parse_chunks(spec, shape)
    return chunks_by_name(named, shape, chunks, dimensions, where=where)


def shards_for(
    spec: str | Mapping[str, int],
    shape: Sequence[int],
    chunks: Sequence[int],
    dimensions: Sequence[str] | None,
    *,
    where: str = "array",
    strict: bool = True,
) -> tuple[int, ...]:
    """``--shards`` for one array of inner chunks ``chunks``: positional or by dimension
    name, an axis not named holding one inner chunk per shard. -1, or a length past the
    axis, is the axis rounded up to whole inner chunks; a shard length must be a multiple
    of the inner chunk length (Zarr format 3's ``sharding_indexed``).

    >>> shards_for("variants=60000", (1000000, 81, 2), (20000, 81, 2),
    ...            ["variants", "samples", "ploidy"])
    (60000, 81, 2)
    >>> shards_for("variants=-1", (50000, 81, 2), (20000, 81, 2), ["variants", "samples", "ploidy"])
    (60000, 81, 2)
    """
    whole = [max(c, -(-n // c) * c) for n, c in zip(shape, chunks, strict=True)]
    named = parse_named(spec) if isinstance(spec, str) else dict(spec)
    if named is None:
        assert isinstance(spec, str)
        if spec.count(",") + 1 != len(shape):
            parse_chunks(spec, shape)  # the error that names the real shape
        shards = parse_chunks(spec, whole)
    else:
        shards = chunks_by_name(named, whole, chunks, dimensions, where=where, strict=strict)
    for axis, (shard, chunk) in enumerate(zip(shards, chunks, strict=True)):
        if shard % chunk:
            label = dimensions[axis] if dimensions is not None else f"axis {axis}"
            raise UsageError(
                f"{where}: shard length {shard} along {label} is not a multiple of the "
                f"inner chunk length {chunk}"
            )
    return shards
