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
from dataclasses import replace
from typing import Any

import zarr
import zarr.storage
from numcodecs.abc import Codec

from zarrgeno.io.chunks import ChunkLayout
from zarrgeno.io.compression import parse_compressor, parse_filters
from zarrgeno.io.consolidate import is_consolidated
from zarrgeno.io.readahead import window_bytes
from zarrgeno.io.screened import refuse_needed
from zarrgeno.io.store import missing_chunks_allowed, open_store
from zarrgeno.io.zarr3 import is_zarr3
from zarrgeno.io.zarr3_write import array_document
from zarrgeno.rewrite.arrayplan import (
    MAX_CHUNK_BYTES,
    PROMISE_FACTOR,
    ArrayPlan,
    Codecs,
    Stage,
    budget_too_small,
    plan_rechunk,
    read_ahead_too_large,
    task_memory,
)
from zarrgeno.rewrite.executors import resolve_backend
from zarrgeno.rewrite.jobs import TEMP_COMPRESSOR, ArrayJob, StorePlan
from zarrgeno.rewrite.measure import compressed_fractions
from zarrgeno.rewrite.targets import Target, plan_targets
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


def _target_filters(arr: zarr.Array, checksum: str | None) -> list[Codec] | None:
    kept = list(arr.filters or [])
    if checksum is None:
        return kept or None
    kept = [f for f in kept if f.codec_id not in CHECKSUM_IDS]
    if checksum.strip().lower() != "none":
        kept.extend(parse_filters([checksum]) or [])
    return kept or None


def _check_budget(
    arr: zarr.Array,
    target_chunks: Sequence[int],
    budget: int,
    n_source: int,
    n_target: int,
    read_ahead: int = 0,
) -> None:
    """Refuse, from metadata alone, a budget that one task could not fit even with the best
    compression, or not with ``read_ahead`` bytes of source chunks fetched ahead: before
    any sample chunk is decoded (a sample costs what a task does). The message also names
    what one task needs with incompressible data, enough in every case."""
    best = Codecs(BEST_FRACTION, BEST_FRACTION, BEST_FRACTION, n_source, n_target)
    worst = Codecs(1.0, 1.0, 1.0, n_source, n_target)
    args = (arr.shape, arr.chunks, target_chunks, arr.itemsize)
    minimum = task_memory(*args, best, arr.path)
    if minimum > budget:
        raise budget_too_small(arr.path, budget, target_chunks, minimum, task_memory(*args, worst))
    if minimum + read_ahead > budget:
        raise read_ahead_too_large(arr.path, budget, minimum, read_ahead)


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


def _v3_document(
    arr: zarr.Array, target: Target, codec: Codec | None, filters: Sequence[Codec] | None
) -> None:
    """Refuse, before anything is written, what Zarr format 3 cannot say of ``arr``."""
    zarray = {
        "shape": list(arr.shape),
        "chunks": list(target.chunks),
        "dtype": arr.dtype.str,
        "fill_value": arr.fill_value,
        "compressor": codec,
        "filters": list(filters or ()),
        "order": arr.order,
    }
    array_document(zarray, arr.attrs.asdict(), shards=target.shards, where=arr.path)


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
    shards: str | None = None,
    zarr_format: int | None = None,
) -> StorePlan:
    """Plan a rechunk (``chunks`` given) or a recompression (``chunks=None``) of a store.

    Reads metadata and up to two chunks per array (to measure compression); writes
    nothing. ``compressor`` is a numcodecs codec, None for uncompressed, or ``KEEP``;
    ``checksum`` adds (``crc32``, ``adler32``, ``fletcher32``) or removes (``none``) a
    checksum filter. ``chunks`` (positional, or by dimension name), ``shards`` and
    ``zarr_format`` (default: the source's) decide which arrays are written anew
    (:func:`zarrgeno.rewrite.targets.plan_targets`: a VCF Zarr store is rechunked whole).
    A missing source chunk is an error unless ``allow_missing`` (then it reads as the fill
    value; None: when the source's writer leaves out fill-value chunks,
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
    source_format = 3 if is_zarr3(store) else 2
    # A copy holds every array (those not rewritten are copied byte for byte), and its
    # consolidated metadata every document: a refused array cannot be carried over.
    refuse_needed(group, ref.name, None)
    budget = parse_size(max_mem)
    targets = plan_targets(
        group,
        chunks=chunks,
        shards=shards,
        arrays=arrays,
        zarr_format=source_format if zarr_format is None else zarr_format,
        source_format=source_format,
    )
    target_format = source_format if zarr_format is None else zarr_format
    local = isinstance(store, zarr.storage.DirectoryStore)
    jobs = []
    for target in targets.arrays:
        path = target.path
        arr = group[path]
        layout = ChunkLayout.of(arr)
        if not target.selected or (isinstance(compressor, str) and compressor == KEEP):
            codec = arr.compressor
        elif isinstance(compressor, str):  # a spec such as ``blosc:zstd:7:bitshuffle``
            codec = parse_compressor(compressor)
        else:
            codec = compressor
        filters = _target_filters(arr, checksum if target.selected else None)
        if target_format == 3:
            _v3_document(arr, target, codec, filters)
        written = target.shards or target.chunks
        # A remote source's window of chunks fetched ahead (--fetch-concurrency bodies at
        # their size bound): once in this process, once per worker process on distributed.
        ahead = window_bytes(store, layout)
        _check_budget(arr, written, budget, len(layout.filters), len(filters or ()), ahead)
        codecs = _codecs(store, layout, codec, filters or ())
        if layout.shard is not None and not local:  # a whole source shard per reader
            codecs = replace(codecs, source_fraction=codecs.source_fraction * layout.shard.n_chunks)
        if target.shards is not None:  # a shard's encoded chunks, then the shard's bytes
            codecs = replace(codecs, target_fraction=2 * codecs.target_fraction)
        plan = plan_rechunk(
            arr.shape,
            arr.chunks,
            written,
            arr.itemsize,
            budget,
            concurrency=workers,
            path=path,
            codecs=codecs,
            read_ahead=ahead,
            read_ahead_per_task=backend == "distributed",
        )
        jobs.append(
            ArrayJob(
                plan=plan,
                dtype=arr.dtype.str,
                compressor=codec.get_config() if codec is not None else None,
                filters=tuple(f.get_config() for f in filters) if filters else None,
                fill_value=arr.fill_value,
                separator=layout.separator if layout.key_prefix == "" else ".",
                chunks=target.chunks,
                shards=target.shards,
            )
        )
    return StorePlan(
        ref,
        tuple(jobs),
        budget,
        backend,
        workers,
        scheduler,
        consolidated=is_consolidated(store),
        allow_missing=missing_chunks_allowed(allow_missing, group),
        timeout=timeout,
        security=security,
        zarr_format=target_format,
        source_format=source_format,
        region_index_chunk=targets.region_index_chunk,
        warnings=targets.warnings,
    )
