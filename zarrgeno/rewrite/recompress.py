"""Recompression: the rechunk engine with target chunks equal to the source's and a new codec."""

from __future__ import annotations

import os
from collections.abc import MutableMapping, Sequence
from typing import Any

from numcodecs.abc import Codec

from zarrgeno.io.compression import parse_compressor
from zarrgeno.rewrite.execute import CopyResult, execute_store
from zarrgeno.rewrite.executors import Progress
from zarrgeno.rewrite.jobs import StorePlan
from zarrgeno.rewrite.storeplan import plan_store


def plan_recompress(
    source: Any,
    *,
    compressor: Codec | str | None,
    checksum: str | None = None,
    arrays: Sequence[str] | None = None,
    max_mem: int | str = "4GB",
    backend: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    allow_missing: bool | None = None,
    timeout: float = 10.0,
    security: Any = None,
    shards: str | None = None,
    zarr_format: int | None = None,
) -> StorePlan:
    """Plan re-encoding arrays with ``compressor`` (a codec, None, or a spec string).

    Chunks stay as they are, so rechunker plans one direct stage (no temporary store)
    whose blocks are several whole chunks; tasks decode and re-encode them in parallel
    within ``max_mem``. ``checksum`` adds (``crc32``...) or removes (``none``) a checksum
    filter. Reads metadata and two sample chunks per array; writes nothing. ``scheduler``,
    ``timeout`` and ``security`` choose a running dask cluster, ``zarr_format`` (default:
    the source's) and ``shards`` what is written, as for ``plan_store``; a sharded array
    keeps its shards in format 3 unless ``shards`` says otherwise.

    >>> import zarr, numpy as np
    >>> store = zarr.MemoryStore()
    >>> root = zarr.open_group(store, mode="w")
    >>> _ = root.create_dataset("x", data=np.arange(1000), chunks=100)
    >>> plan = plan_recompress(store, compressor="zstd:5", arrays=["x"], max_mem="100MB")
    >>> plan.jobs[0].compressor_spec, plan.jobs[0].plan.target_chunks
    ('zstd:5', (100,))
    """
    codec = parse_compressor(compressor) if isinstance(compressor, str) else compressor
    return plan_store(
        source,
        chunks=None,
        arrays=arrays,
        max_mem=max_mem,
        backend=backend,
        workers=workers,
        scheduler=scheduler,
        compressor=codec,
        checksum=checksum,
        allow_missing=allow_missing,
        timeout=timeout,
        security=security,
        shards=shards,
        zarr_format=zarr_format,
    )


def recompress(
    source: Any,
    target: str | os.PathLike[str] | MutableMapping[str, bytes],
    *,
    compressor: Codec | str | None,
    overwrite: bool = False,
    verify: bool = False,
    progress: Progress | None = None,
    **options: Any,
) -> CopyResult:
    """Plan and carry out a recompression of ``source`` into ``target`` (see plan_recompress)."""
    plan = plan_recompress(source, compressor=compressor, **options)
    return execute_store(
        plan, target, overwrite=overwrite, progress=progress, verify=verify, command="recompress"
    )
