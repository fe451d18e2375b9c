"""VCF Zarr chunking rules: new chunks by dimension name for a whole store; the region index.

The VCF Zarr specification (0.4) requires that "all Zarr arrays with a ``variants``
dimension must have the same chunk size in this dimension"; vcztools also reads every
``call_*`` array by the samples chunks of ``sample_id``, so the arrays with a ``samples``
dimension must share one samples chunk length too. bio2zarr's ``region_index`` (one row
per contig per variants chunk) is in units of the variants chunk, so a new variants chunk
length means a new index (:func:`region_index`). Pure: numpy only, no store I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from zarrgeno.chunkgrid import chunks_by_name, parse_named, shards_for
from zarrgeno.errors import BadDataError, UsageError

VARIANTS, SAMPLES = "variants", "samples"
#: The dimensions whose chunk length every array that has them must share.
SHARED = (VARIANTS, SAMPLES)
#: Arrays a VCF Zarr store names by the specification; they must name their dimensions.
_NAMED_PREFIXES = ("call_", "variant_", "sample_", "contig_", "filter_")
REGION_INDEX = "region_index"
#: The arrays bio2zarr builds the region index from.
REGION_INDEX_SOURCES = ("variant_contig", "variant_position", "variant_length")
#: bio2zarr's columns: chunk, contig, start, end, max end, number of records.
REGION_INDEX_FIELDS = 6


@dataclass(frozen=True)
class ArrayInfo:
    """What the chunking rule needs of one array of a store."""

    name: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    #: From ``_ARRAY_DIMENSIONS`` (format 2) or ``dimension_names`` (format 3); None if absent.
    dimensions: tuple[str, ...] | None


@dataclass(frozen=True)
class VcfZarrChunks:
    """The new chunks of a VCF Zarr store's arrays (the unchanged ones included)."""

    chunks: dict[str, tuple[int, ...]]
    #: The variants chunk length of the result (None: no array has a variants dimension).
    variants_chunk: int | None
    #: True when the store has a region_index and the variants chunk length changes: the
    #: index must be rebuilt (:func:`region_index`), it is not in :attr:`chunks`.
    rebuild_region_index: bool


def _dimension_lengths(arrays: Sequence[ArrayInfo]) -> dict[str, tuple[str, int]]:
    """Each dimension name's length, and the first array that has it; a disagreement is bad
    data (every array with a dimension has its length, by the specification)."""
    seen: dict[str, tuple[str, int]] = {}
    for array in arrays:
        if array.dimensions is None:
            if array.name.startswith(_NAMED_PREFIXES):
                raise BadDataError(
                    f"{array.name} has no dimension names (_ARRAY_DIMENSIONS), which VCF "
                    "Zarr requires of every array"
                )
            continue
        if len(array.dimensions) != len(array.shape):
            raise BadDataError(
                f"{array.name}: dimension names {list(array.dimensions)} do not match its "
                f"shape {array.shape}"
            )
        for name, length in zip(array.dimensions, array.shape, strict=True):
            first = seen.setdefault(name, (array.name, length))
            if first[1] != length:
                raise BadDataError(
                    f"{first[0]} and {array.name} disagree on the length of dimension "
                    f"{name!r} ({first[1]} and {length})"
                )
    return seen


def _shared_length(
    arrays: Sequence[ArrayInfo], chunks: Mapping[str, tuple[int, ...]], dimension: str
) -> int | None:
    """The one chunk length of ``dimension`` among ``chunks``; two lengths are refused."""
    first: tuple[str, int] | None = None
    for array in arrays:
        if not array.dimensions or dimension not in array.dimensions:
            continue
        length = chunks[array.name][array.dimensions.index(dimension)]
        if first is None:
            first = (array.name, length)
        elif first[1] != length:
            raise UsageError(
                f"the result would chunk {dimension} by {first[1]} in {first[0]} and by "
                f"{length} in {array.name}, which VCF Zarr does not allow: give "
                f"{dimension}=N in --chunks"
            )
    return first[1] if first else None


def _request(
    arrays: Sequence[ArrayInfo], spec: str | Mapping[str, int], option: str
) -> dict[str, int]:
    """The named lengths of ``spec``; a positional spec, or a name no array has, is refused."""
    if isinstance(spec, str):
        named = parse_named(spec)
        if named is None:
            raise UsageError(
                f"{option} {spec!r}: give a VCF Zarr store's {option} by dimension name "
                "(variants=N,samples=M), which applies them to every array that has them"
            )
    else:
        named = dict(spec)
    lengths = _dimension_lengths(arrays)
    unknown = [name for name in named if name not in lengths]
    if unknown:
        raise UsageError(
            f"{option}: no array of the store has dimension {unknown[0]!r} (its dimensions: "
            f"{', '.join(sorted(lengths))})"
        )
    return named


def vcf_zarr_chunks(arrays: Sequence[ArrayInfo], spec: str | Mapping[str, int]) -> VcfZarrChunks:
    """The chunks of every array of a VCF Zarr store after ``--chunks`` by dimension name.

    Every array with a named dimension gets the new length along it (clamped to its axis,
    -1 the whole axis); the others keep theirs. Refused in one line: a name that no array
    has (:class:`UsageError`), a result in which two arrays chunk ``variants`` or
    ``samples`` differently (:class:`UsageError`), an array of the specification without
    dimension names, and arrays that disagree on a dimension's length (:class:`BadDataError`).

    >>> arrays = [ArrayInfo("call_genotype", (1000, 6, 2), (100, 6, 2),
    ...                     ("variants", "samples", "ploidy")),
    ...           ArrayInfo("variant_position", (1000,), (100,), ("variants",)),
    ...           ArrayInfo("sample_id", (6,), (6,), ("samples",))]
    >>> vcf_zarr_chunks(arrays, "variants=250,samples=4").chunks
    {'call_genotype': (250, 4, 2), 'variant_position': (250,), 'sample_id': (4,)}
    """
    named = _request(arrays, spec, "--chunks")
    chunks = {
        a.name: chunks_by_name(named, a.shape, a.chunks, a.dimensions, where=a.name, strict=False)
        for a in arrays
    }
    variants = _shared_length(arrays, chunks, VARIANTS)
    _shared_length(arrays, chunks, SAMPLES)
    by_name = {a.name: a for a in arrays}
    position = by_name.get("variant_position")
    # bio2zarr counts the index's chunks in variant_position's chunks
    rebuild = REGION_INDEX in by_name and (position is None or position.chunks[:1] != (variants,))
    if rebuild:
        missing = [n for n in REGION_INDEX_SOURCES if n not in by_name]
        if missing:
            raise BadDataError(
                f"region_index cannot be rebuilt for the new variants chunks without "
                f"{', '.join(missing)}"
            )
        del chunks[REGION_INDEX]
    return VcfZarrChunks(chunks, variants, rebuild)


def check_vcf_zarr(arrays: Sequence[ArrayInfo], chunks: Mapping[str, tuple[int, ...]]) -> None:
    """Refuse (:class:`UsageError`, one line) ``chunks`` for the store's ``arrays`` that
    would leave it invalid VCF Zarr: two chunk lengths of ``variants`` or of ``samples``.

    >>> arrays = [ArrayInfo("call_genotype", (10, 4, 2), (5, 4, 2), ("variants", "samples",
    ...                     "ploidy")), ArrayInfo("variant_position", (10,), (5,), ("variants",))]
    >>> check_vcf_zarr(arrays, {"call_genotype": (2, 4, 2), "variant_position": (5,)})
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    zarrgeno.errors.UsageError: the result would chunk variants by 2 in call_genotype and by 5 ...
    """
    _dimension_lengths(arrays)
    for dimension in SHARED:
        _shared_length(arrays, chunks, dimension)


def vcf_zarr_shards(
    arrays: Sequence[ArrayInfo],
    chunks: Mapping[str, tuple[int, ...]],
    spec: str | Mapping[str, int],
) -> dict[str, tuple[int, ...]]:
    """The shards of every array of ``chunks`` (its new inner chunks) after ``--shards`` by
    dimension name; an axis not named holds one inner chunk per shard
    (:func:`zarrgeno.chunkgrid.shards_for`). Readers see the inner chunks (zarr-python 3's
    ``Array.chunks``, which vcztools checks), so the VCF Zarr rules bind those.

    >>> arrays = [ArrayInfo("call_genotype", (1000, 6, 2), (100, 6, 2),
    ...                     ("variants", "samples", "ploidy")),
    ...           ArrayInfo("variant_position", (1000,), (100,), ("variants",))]
    >>> vcf_zarr_shards(arrays, {a.name: a.chunks for a in arrays}, "variants=400")
    {'call_genotype': (400, 6, 2), 'variant_position': (400,)}
    """
    named = _request(arrays, spec, "--shards")
    return {
        a.name: shards_for(named, a.shape, chunks[a.name], a.dimensions, where=a.name, strict=False)
        for a in arrays
        if a.name in chunks
    }


def region_index_rows(
    chunk_index: int, contig: np.ndarray, position: np.ndarray, length: np.ndarray
) -> np.ndarray:
    """bio2zarr's region_index rows of one variants chunk: one per run of equal
    ``variant_contig``, ``(chunk, contig, first position, last position, max end, records)``
    with end = position + length - 1, in the dtype of ``position`` (int64 while computed).

    >>> region_index_rows(2, np.array([1, 1, 2]), np.array([1234567, 1235237, 10]),
    ...                   np.array([1, 1, 2])).tolist()
    [[2, 1, 1234567, 1235237, 1235237, 2], [2, 2, 10, 10, 11, 1]]
    """
    n = len(contig)
    if len(position) != n or len(length) != n:
        raise BadDataError(
            f"variants chunk {chunk_index}: variant_contig, variant_position and "
            f"variant_length have {n}, {len(position)} and {len(length)} rows"
        )
    if n == 0:
        return np.zeros((0, REGION_INDEX_FIELDS), dtype=position.dtype)
    contig = np.asarray(contig, dtype=np.int64)
    if contig.min() < 0:
        raise BadDataError(
            f"variants chunk {chunk_index}: variant_contig holds {contig.min()}, not a contig"
        )
    starts = np.flatnonzero(np.diff(contig, prepend=-1))
    stops = np.append(starts[1:], n)
    pos = np.asarray(position, dtype=np.int64)
    ends = pos + np.asarray(length, dtype=np.int64) - 1
    rows = np.column_stack(
        [
            np.full(len(starts), chunk_index, dtype=np.int64),
            contig[starts],
            pos[starts],
            pos[stops - 1],
            np.maximum.reduceat(ends, starts),
            stops - starts,
        ]
    )
    return rows.astype(position.dtype)


def region_index(
    contig: np.ndarray, position: np.ndarray, length: np.ndarray, variants_chunk: int
) -> np.ndarray:
    """bio2zarr's whole region_index, shape ``(rows, 6)``, for variants chunks of
    ``variants_chunk`` rows (the VCF Zarr specification's example):

    >>> region_index(np.array([0, 0, 1, 1, 1, 1, 1, 1, 2]),
    ...              np.array([111, 112, 14370, 17330, 1110696, 1230237, 1234567, 1235237, 10]),
    ...              np.array([1, 1, 1, 1, 1, 1, 1, 1, 2]), 3).tolist()
    ... # doctest: +NORMALIZE_WHITESPACE
    [[0, 0, 111, 112, 112, 2], [0, 1, 14370, 14370, 14370, 1],
     [1, 1, 17330, 1230237, 1230237, 3], [2, 1, 1234567, 1235237, 1235237, 2],
     [2, 2, 10, 10, 11, 1]]
    """
    if variants_chunk <= 0:
        raise ValueError(f"variants chunk length must be positive, got {variants_chunk}")
    n = len(position)
    if len(contig) != n or len(length) != n:
        raise BadDataError(
            f"variant_contig, variant_position and variant_length have {len(contig)}, {n} and "
            f"{len(length)} rows"
        )
    blocks = [
        region_index_rows(
            i // variants_chunk,
            contig[i : i + variants_chunk],
            position[i : i + variants_chunk],
            length[i : i + variants_chunk],
        )
        for i in range(0, n, variants_chunk)
    ]
    return np.concatenate([np.zeros((0, REGION_INDEX_FIELDS), position.dtype), *blocks])
