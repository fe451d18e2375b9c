"""Which arrays of a store a rewrite writes anew, with which chunks and shards, in which format.

:func:`plan_targets` turns ``--chunks``, ``--shards``, ``--array`` and ``--zarr-format`` into
one :class:`Target` per rewritten array. A VCF Zarr store is rechunked as a whole
(:mod:`zarrgeno.vcfzarr`: every array with a ``variants`` or ``samples`` dimension, one
chunk length each, the region index rebuilt); any other store has its genotype arrays (or
those named) rechunked. Reads metadata only; pure apart from the open group it is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import zarr

from zarrgeno.chunkgrid import chunks_for, parse_chunks, parse_named, shards_for
from zarrgeno.errors import BadDataError, MissingInputError, UsageError
from zarrgeno.io.chunks import ChunkLayout
from zarrgeno.io.store import VCF_ZARR_GT, find_genotypes
from zarrgeno.vcfzarr import (
    REGION_INDEX,
    SAMPLES,
    SHARED,
    VARIANTS,
    ArrayInfo,
    check_vcf_zarr,
    vcf_zarr_chunks,
    vcf_zarr_shards,
)

#: Zarr formats zarrgeno writes.
FORMATS = (2, 3)


@dataclass(frozen=True)
class Target:
    """One array written anew: its (inner) chunks, its shards (None: not sharded), and
    whether the command's codec applies to it (else it keeps its own)."""

    path: str
    chunks: tuple[int, ...]
    shards: tuple[int, ...] | None
    selected: bool


@dataclass(frozen=True)
class StoreTargets:
    """Every rewritten array, and what else a VCF Zarr rechunk needs."""

    arrays: tuple[Target, ...]
    #: The new variants chunk length when ``region_index`` is rebuilt, else None.
    region_index_chunk: int | None
    #: True when the store is VCF Zarr (its chunking rules hold).
    vcf_zarr: bool
    #: What the user should know about the result (printed, not refused).
    warnings: tuple[str, ...] = ()


def dimensions(arr: zarr.Array) -> tuple[str, ...] | None:
    """An array's dimension names (``_ARRAY_DIMENSIONS``; ``dimension_names`` in format 3),
    or None; names that are not one string per dimension are bad data."""
    names = arr.attrs.get("_ARRAY_DIMENSIONS")
    if names is None:
        return None
    if (
        not isinstance(names, list)
        or len(names) != arr.ndim
        or not all(isinstance(n, str) for n in names)
    ):
        raise BadDataError(
            f"{arr.path}: _ARRAY_DIMENSIONS {names!r} must name each of its {arr.ndim} dimensions"
        )
    return tuple(names)


def is_vcf_zarr(group: zarr.hierarchy.Group) -> bool:
    """True for a VCF Zarr store: ``call_genotype`` at the root with its dimension names
    (bio2zarr, sgkit); without them, its chunking rules cannot be applied by name."""
    gt = group.get(VCF_ZARR_GT)
    return isinstance(gt, zarr.Array) and gt.attrs.get("_ARRAY_DIMENSIONS") is not None


def _root_arrays(group: zarr.hierarchy.Group) -> list[tuple[str, zarr.Array]]:
    return sorted(group.arrays())


def _chunks(arr: zarr.Array) -> tuple[int, ...]:
    """An array's chunks, a length of 0 (along an empty axis, as zarr-python 3 writes it)
    read as 1."""
    return tuple(max(1, int(c)) for c in arr.chunks)


def _infos(group: zarr.hierarchy.Group) -> list[ArrayInfo]:
    return [
        ArrayInfo(name, tuple(a.shape), _chunks(a), dimensions(a))
        for name, a in _root_arrays(group)
    ]


def _select(group: zarr.hierarchy.Group, arrays: Sequence[str] | None) -> list[str]:
    if arrays:
        paths = []
        for path in arrays:
            path = path.strip("/")
            if path not in group or not isinstance(group[path], zarr.Array):
                raise MissingInputError(f"no array {path!r} in the store")
            paths.append(path)
        return list(dict.fromkeys(paths))
    paths = list(dict.fromkeys(g.path for g in find_genotypes(group)))
    if not paths:
        raise MissingInputError(
            "no genotype arrays found (looked for */calldata/GT and call_genotype); "
            "name arrays with --array"
        )
    return paths


def _all_arrays(group: zarr.hierarchy.Group) -> list[str]:
    found: list[str] = []
    group.visititems(lambda name, obj: found.append(name) if isinstance(obj, zarr.Array) else None)
    return sorted(found)


def _named_from_genotypes(group: zarr.hierarchy.Group, spec: str) -> dict[str, int]:
    """A positional ``--chunks`` of a VCF Zarr store, read as call_genotype's chunks and
    given by its dimension names (so that every array follows it)."""
    gt = group[VCF_ZARR_GT]
    names = dimensions(gt)
    if names is None:
        raise UsageError(
            f"--chunks {spec!r}: {VCF_ZARR_GT} has no dimension names to apply it by; give "
            "it by dimension name (variants=N,samples=M)"
        )
    values = parse_chunks(spec, gt.shape)
    return dict(zip(names, values, strict=True))


def _shard_warnings(targets: Sequence[Target], infos: Sequence[ArrayInfo]) -> list[str]:
    """vcztools (0.2) reads a sharded VCF Zarr array only when each shard holds one
    variants chunk and one samples chunk: say which arrays it will not read."""
    dims = {i.name: i.dimensions or () for i in infos}
    wide = [
        t.path
        for t in targets
        if t.shards is not None
        and any(
            d in SHARED and s > c
            for d, s, c in zip(dims.get(t.path, ()), t.shards, t.chunks, strict=False)
        )
    ]
    if not wide:
        return []
    return [
        f"shards of more than one {VARIANTS} or {SAMPLES} chunk ({', '.join(wide[:3])}"
        f"{', ...' if len(wide) > 3 else ''}): zarr-python 3 reads them, vcztools 0.2 does "
        f"not; for vcztools give --shards no larger than --chunks along {VARIANTS} and "
        f"{SAMPLES}"
    ]


def plan_targets(
    group: zarr.hierarchy.Group,
    *,
    chunks: str | Sequence[int] | None,
    shards: str | None = None,
    arrays: Sequence[str] | None = None,
    zarr_format: int,
    source_format: int,
) -> StoreTargets:
    """The arrays to write anew and their chunks and shards (see the module docstring).

    ``chunks`` None is a recompression (chunks kept; the source's shards too, unless
    ``shards`` or format 2). Without ``arrays``, a VCF Zarr store's ``chunks`` apply by
    dimension name to every root array (a positional spec is call_genotype's); other
    stores' to their genotype arrays. A change of format rewrites every array (the others
    keep their chunks and codec); so does reading shards into format 2.
    """
    if zarr_format not in FORMATS:
        raise UsageError(
            f"--zarr-format {zarr_format} is not one of {', '.join(map(str, FORMATS))}"
        )
    if shards is not None and zarr_format != 3:
        raise UsageError("--shards needs Zarr format 3 (--zarr-format 3)")
    vcf = is_vcf_zarr(group)
    every = _all_arrays(group)
    rechunked: dict[str, tuple[int, ...]] = {}
    rebuild: int | None = None
    infos = _infos(group) if vcf else []
    if vcf and not arrays and chunks is not None:
        spec = ",".join(map(str, chunks)) if not isinstance(chunks, str) else chunks
        named = parse_named(spec)
        if named is None:
            named = _named_from_genotypes(group, spec)
        result = vcf_zarr_chunks(infos, named)
        rechunked = {p: c for p, c in result.chunks.items() if c != _chunks(group[p])}
        rebuild = result.variants_chunk if result.rebuild_region_index else None
        selected = [VCF_ZARR_GT] + [p for p in rechunked if p != VCF_ZARR_GT]
    else:
        selected = _select(group, arrays)
        for path in selected:
            arr = group[path]
            if chunks is None:
                continue
            if isinstance(chunks, str) and parse_named(chunks) is not None:
                new = chunks_for(chunks, arr.shape, arr.chunks, dimensions(arr), where=path)
            else:
                new = parse_chunks(chunks, arr.shape)
            rechunked[path] = new
        if vcf and chunks is not None:
            final = {i.name: rechunked.get(i.name, i.chunks) for i in infos}
            try:
                check_vcf_zarr(infos, final)
            except UsageError as exc:
                raise UsageError(
                    f"{exc}, and leave out --array (every array is then rechunked)"
                ) from None
    layouts = {p: ChunkLayout.of(group[p]) for p in every}
    sharded = {p for p, layout in layouts.items() if layout.shard is not None}
    new_shards: dict[str, tuple[int, ...]] = {}
    if shards is not None:
        inner = {p: rechunked.get(p, tuple(group[p].chunks)) for p in every}
        if vcf:
            wanted = parse_named(shards)
            shard_infos = [i for i in infos if set(wanted or {}) & set(i.dimensions or ())]
            new_shards = vcf_zarr_shards(shard_infos, inner, shards)
        else:
            for path in selected:
                arr = group[path]
                new_shards[path] = shards_for(
                    shards, arr.shape, inner[path], dimensions(arr), where=path
                )
    rewrite = set(rechunked) | set(new_shards) | ({*selected} if chunks is None else set())
    if zarr_format != source_format:
        rewrite |= set(every)
    elif sharded and zarr_format == 2:
        rewrite |= sharded
    rewrite.discard(REGION_INDEX) if rebuild is not None else None
    targets = []
    for path in sorted(rewrite):
        layout = layouts[path]
        keep = layout.shard.shard_shape if layout.shard is not None else None
        if path in rechunked and rechunked[path] != tuple(layout.chunks):
            keep = None  # the source's shards do not fit new chunks
        targets.append(
            Target(
                path,
                rechunked.get(path, tuple(layout.chunks)),
                new_shards.get(path, keep if zarr_format == 3 else None),
                path in selected or path in rechunked,
            )
        )
    warnings = _shard_warnings(targets, infos) if vcf else []
    return StoreTargets(tuple(targets), rebuild, vcf, tuple(warnings))
