"""Store plans: which arrays of a store to rewrite, with which codecs, and each array's plan.

:func:`plan_store` (rechunk, or recompress with ``chunks=None``) opens the source, picks the
genotype arrays (or those named), resolves the target codec and checksum filter, measures
compression on two sample chunks per array and asks zarrgeno.rewrite.arrayplan for each array's
plan within the budget; the resulting :class:`StorePlan` is what ``--plan`` prints and
zarrgeno.rewrite.execute.execute_store carries out. It reads metadata and a few chunks, and writes
nothing. The per-array planner and size helpers are re-exported here, where they lived before,
and so are the plan's types (defined in zarrgeno.rewrite.jobs, below this module and the executor).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import zarr
from numcodecs.abc import Codec

from zarrgeno.chunkgrid import parse_chunks
from zarrgeno.errors import MissingInputError
from zarrgeno.io.chunks import ChunkLayout
from zarrgeno.io.compression import parse_compressor, parse_filters
from zarrgeno.io.screened import refuse_needed
from zarrgeno.io.store import (
    CONSOLIDATED_KEY,
    find_genotypes,
    missing_chunks_allowed,
    open_store,
)
from zarrgeno.io.zarr3 import refuse_zarr3
from zarrgeno.rewrite.arrayplan import (
    MAX_CHUNK_BYTES,
    PROMISE_FACTOR,
    ArrayPlan,
    Codecs,
    Stage,
    budget_too_small,
    plan_rechunk,
    task_memory,
)
from zarrgeno.rewrite.executors import resolve_backend
from zarrgeno.rewrite.jobs import TEMP_COMPRESSOR, ArrayJob, StorePlan
from zarrgeno.rewrite.measure import compressed_fractions
from zarrgeno.runtime.cluster import check_security, normalize_address
from zarrgeno.sizes import format_size, parse_size

__all__ = [
    "CHECKSUM_IDS",
    "FRACTION_MARGIN",
    "KEEP",
    "MAX_CHUNK_BYTES",
    "PROMISE_FACTOR",
    "ArrayJob",
    "ArrayPlan",
    "Codecs",
    "Stage",
    "StorePlan",
    "format_size",
    "parse_size",
    "plan_rechunk",
    "plan_store",
]

#: Keep the source's compressor (the default of ``rechunk``).
KEEP = "keep"
CHECKSUM_IDS = ("crc32", "adler32", "fletcher32")
#: Multiplier on the compressed fractions measured on sample chunks: other chunks vary.
FRACTION_MARGIN = 1.25
#: The smallest compressed fraction the memory model assumes (a chunk of one value).
BEST_FRACTION = 0.001


def _select_arrays(group: zarr.hierarchy.Group, arrays: Sequence[str] | None) -> list[str]:
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


def _target_filters(arr: zarr.Array, checksum: str | None) -> list[Codec] | None:
    kept = list(arr.filters or [])
    if checksum is None:
        return kept or None
    kept = [f for f in kept if f.codec_id not in CHECKSUM_IDS]
    if checksum.strip().lower() != "none":
        kept.extend(parse_filters([checksum]) or [])
    return kept or None


def _check_budget(
    arr: zarr.Array, target_chunks: Sequence[int], budget: int, n_source: int, n_target: int
) -> None:
    """Refuse, from metadata alone, a budget that one task could not fit even with the best
    compression: before any sample chunk is decoded (a sample costs what a task does). The
    message also names what one task needs with incompressible data, enough in every case."""
    best = Codecs(BEST_FRACTION, BEST_FRACTION, BEST_FRACTION, n_source, n_target)
    worst = Codecs(1.0, 1.0, 1.0, n_source, n_target)
    args = (arr.shape, arr.chunks, target_chunks, arr.itemsize)
    minimum = task_memory(*args, best, arr.path)
    if minimum > budget:
        raise budget_too_small(arr.path, budget, target_chunks, minimum, task_memory(*args, worst))


def _codecs(
    store: Any, layout: ChunkLayout, compressor: Codec | None, filters: Sequence[Codec]
) -> Codecs:
    """Compressed fractions measured on two chunks, with a margin: other chunks vary."""
    source, (target, temp) = compressed_fractions(
        store, layout, [(compressor, filters), (TEMP_COMPRESSOR, layout.object_filters)]
    )

    def margin(x: float) -> float:
        return min(1.0, max(x * FRACTION_MARGIN, BEST_FRACTION))

    return Codecs(margin(source), margin(target), margin(temp), len(layout.filters), len(filters))


def plan_store(
    source: Any,
    *,
    chunks: str | Sequence[int] | None,
    arrays: Sequence[str] | None = None,
    max_mem: int | str = "4GB",
    backend: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    compressor: Codec | str | None = KEEP,
    checksum: str | None = None,
    allow_missing: bool | None = None,
    timeout: float = 10.0,
    security: Any = None,
) -> StorePlan:
    """Plan a rechunk (``chunks`` given) or a recompression (``chunks=None``) of a store.

    Reads metadata and up to two chunks per array (to measure compression); writes
    nothing. ``compressor`` is a numcodecs codec, None for uncompressed, or ``KEEP``;
    ``checksum`` adds (``crc32``, ``adler32``, ``fletcher32``) or removes (``none``) a
    checksum filter. A missing source chunk is an error unless ``allow_missing`` (then it
    reads as the fill value; None: when the source's writer leaves out fill-value chunks,
    :func:`zarrgeno.io.store.skips_fill_chunks`). A tls:// ``scheduler`` is reached with
    ``security`` (a ``distributed.Security``; default: dask's ``distributed.comm.tls``
    configuration).
    """
    backend, workers = resolve_backend(backend, scheduler, workers)
    # TLS settings are checked (files present and loadable) before the store is read.
    security = check_security(
        normalize_address(scheduler) if scheduler is not None else None, security
    )
    ref, group = open_store(source)
    store = ref.mapping_store()
    refuse_zarr3(store, ref.name, "recompress" if chunks is None else "rechunk")
    # A copy holds every array (those not rewritten are copied byte for byte), and its
    # consolidated metadata every document: a refused array cannot be carried over.
    refuse_needed(group, ref.name, None)
    budget = parse_size(max_mem)
    jobs = []
    for path in _select_arrays(group, arrays):
        arr = group[path]
        layout = ChunkLayout.of(arr)
        target_chunks = arr.chunks if chunks is None else parse_chunks(chunks, arr.shape)
        if isinstance(compressor, str):  # KEEP, or a spec such as ``blosc:zstd:7:bitshuffle``
            codec = arr.compressor if compressor == KEEP else parse_compressor(compressor)
        else:
            codec = compressor
        filters = _target_filters(arr, checksum)
        _check_budget(arr, target_chunks, budget, len(layout.filters), len(filters or ()))
        plan = plan_rechunk(
            arr.shape,
            arr.chunks,
            target_chunks,
            arr.itemsize,
            budget,
            concurrency=workers,
            path=path,
            codecs=_codecs(store, layout, codec, filters or ()),
        )
        jobs.append(
            ArrayJob(
                plan=plan,
                dtype=arr.dtype.str,
                compressor=codec.get_config() if codec is not None else None,
                filters=tuple(f.get_config() for f in filters) if filters else None,
                fill_value=arr.fill_value,
                separator=layout.separator,
            )
        )
    return StorePlan(
        ref,
        tuple(jobs),
        budget,
        backend,
        workers,
        scheduler,
        consolidated=CONSOLIDATED_KEY in store,
        allow_missing=missing_chunks_allowed(allow_missing, group),
        timeout=timeout,
        security=security,
    )
