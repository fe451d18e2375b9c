"""Store copies: carry out a rechunk or recompression plan into a target store.

:func:`execute_store` creates the target arrays, runs each array's copy stages (the kernel
in zarrgeno.rewrite.blockcopy, on a backend of zarrgeno.rewrite.executors), copies every other
key byte for byte, consolidates metadata, and, for a local target, does all of it in a
staging directory renamed into place only when complete (rechunker's temporary arrays live
inside it and are removed on success and failure alike). The plan comes from
zarrgeno.rewrite.storeplan (its types from zarrgeno.rewrite.jobs).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import asdict, dataclass
from typing import Any

import zarr

from zarrgeno.errors import BadDataError, TargetExistsError, UsageError
from zarrgeno.io.bounded import metadata_limit, read_bounded
from zarrgeno.io.chunks import ChunkLayout, blosc_threads
from zarrgeno.io.compression import codec_from_config
from zarrgeno.io.consolidate import consolidated_root_v3, unconsolidated_root_v3, write_root_v3
from zarrgeno.io.keys import check_key, parent_dirs
from zarrgeno.io.mark import unmarked
from zarrgeno.io.readahead import reads_stopped
from zarrgeno.io.store import CONSOLIDATED_KEY
from zarrgeno.io.validation import NODE_DOCUMENTS
from zarrgeno.io.writing import MARKER, check_target, staged_directory
from zarrgeno.io.zarr3 import ZARR_JSON
from zarrgeno.rewrite.blockcopy import CopyStep, copy_first, copy_second, fetch_regions
from zarrgeno.rewrite.buffers import return_freed_buffers
from zarrgeno.rewrite.executors import BACKENDS, Progress, resolve_backend, run_pipelines
from zarrgeno.rewrite.jobs import TEMP_COMPRESSOR, StorePlan
from zarrgeno.rewrite.regionindex import write_region_index
from zarrgeno.rewrite.writers import create_array, open_written, write_groups
from zarrgeno.runtime.cluster import dask_client
from zarrgeno.vcfzarr import REGION_INDEX

__all__ = [
    "BACKENDS",
    "TEMP_DIR",
    "ArrayResult",
    "CopyResult",
    "Progress",
    "copy_other_keys",
    "execute_store",
    "resolve_backend",
]

#: Where rechunker's temporary arrays live: inside the staging directory of the target.
TEMP_DIR = ".zarrgeno-temp"


def copy_other_keys(
    source: MutableMapping[str, bytes],
    target: MutableMapping[str, bytes],
    *,
    exclude: Iterable[str],
    caps: Callable[[str], int] | None = None,
) -> int:
    """Copy every key of ``source`` (groups, attributes, arrays, chunks) byte for byte,
    except the arrays under ``exclude``, the consolidated metadata and the mark of the
    command that wrote the source (its file, or its root attribute); return the count.

    Raw copies keep the other arrays exactly as they were (codec, chunks, bytes) at the
    cost of one value in memory at a time. Every key must be safe (:mod:`zarrgeno.io.keys`)
    before the first is written, and lands below a directory target once symbolic links
    are resolved; each value is read up to what its array's chunks may hold (metadata up
    to the metadata cap), so a chunk that inflates without end is refused by name.
    """
    prefixes = tuple(f"{p.strip('/')}/" for p in exclude)
    where = str(getattr(source, "name", None) or getattr(source, "path", "the source store"))
    keys = [
        check_key(key, where)
        for key in sorted(source.keys())
        if key not in (CONSOLIDATED_KEY, MARKER) and not key.startswith(prefixes)
    ]
    root = os.path.realpath(target.path) if isinstance(target, zarr.DirectoryStore) else None
    cap = caps or _value_caps(zarr.open_group(source, mode="r"), source)
    for key in keys:
        if root is not None:
            path = os.path.realpath(os.path.join(root, *key.split("/")))
            if not path.startswith(root + os.sep):
                raise BadDataError(f"{where}: key {key!r} would be written outside the target")
        try:
            value = read_bounded(source, key, cap(key), what="key")
        except KeyError:
            raise BadDataError(f"{where}: key {key} is listed but cannot be read") from None
        value = bytes(value) if isinstance(value, memoryview) else value
        target[key] = unmarked(key, value, where)  # the root attributes less the mark
    return len(keys)


def _value_caps(group: zarr.hierarchy.Group, source: Any) -> Callable[[str], int]:
    """The most bytes each key of ``source`` (the store ``group`` reads) may hold: a chunk
    its array's :attr:`~zarrgeno.io.chunks.ChunkLayout.raw_cap`, a shard its index and
    every inner chunk at that size, anything else the metadata cap."""
    caps: dict[str, int] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, zarr.Array):
            layout = ChunkLayout.of(obj)
            spec = layout.shard
            caps[name] = (
                layout.raw_cap
                if spec is None
                else spec.index_nbytes + spec.n_chunks * layout.raw_cap
            )

    group.visititems(visit)

    def cap(key: str) -> int:
        if key.rsplit("/", 1)[-1] not in (*NODE_DOCUMENTS, ZARR_JSON):
            for parent in reversed(parent_dirs(key)):
                if parent in caps:
                    return caps[parent]
        return metadata_limit()

    return cap


@dataclass(frozen=True)
class ArrayResult:
    """One written array: its new layout and encoded size."""

    path: str
    chunks: tuple[int, ...]
    compressor: str
    filters: str
    nbytes: int
    stored_bytes: int
    tasks: int
    #: Zarr format 3 shards, or None.
    shards: tuple[int, ...] | None = None


@dataclass(frozen=True)
class CopyResult:
    """What a rechunk or recompression wrote."""

    target: str
    arrays: tuple[ArrayResult, ...]
    copied_keys: int
    consolidated: bool
    verified: bool
    elapsed: float
    #: The Zarr format written; ``converted`` when the source's was the other one (then
    #: ``copied_keys`` counts the groups written, every array being rewritten).
    zarr_format: int = 2
    converted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "arrays": [asdict(a) for a in self.arrays]}


def execute_store(
    plan: StorePlan,
    target: str | os.PathLike[str] | MutableMapping[str, bytes],
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
    verify: bool = False,
    command: str = "rechunk",
) -> CopyResult:
    """Carry out ``plan`` into ``target``; the source is only read.

    A local ``target`` is written in a staging directory beside it (rechunker's temporary
    arrays inside that) and renamed into place only when complete and, with ``verify``,
    verified; the temporary arrays are removed on success and failure alike. It may be
    neither the source nor inside or around it, under any name. An existing one is
    replaced only with ``overwrite``, and only when empty or an earlier output of the same
    ``command`` (``rechunk`` or ``recompress``), which the new one records in its root
    attributes (zarrgeno.io.mark). A mapping ``target`` (tests, notebooks) is written directly and
    must be empty unless ``overwrite``.
    """
    # One Blosc thread per task (tasks run in parallel already): the same source then gives
    # the same bytes on every run.
    with blosc_threads(False):
        return _execute(plan, target, overwrite, progress, verify, command)


def _execute(
    plan: StorePlan,
    target: str | os.PathLike[str] | MutableMapping[str, bytes],
    overwrite: bool,
    progress: Progress | None,
    verify: bool,
    command: str,
) -> CopyResult:
    started = time.perf_counter()
    return_freed_buffers()
    ref = plan.source
    if isinstance(target, MutableMapping):
        if ref.mapping is not None and target is ref.mapping:
            raise TargetExistsError("the target store is the source store; choose another target")
        if len(target) and not overwrite:
            raise TargetExistsError("the target store is not empty; pass overwrite=True")
        if plan.backend == "distributed":
            raise UsageError("the distributed backend writes directory stores only")
        target.clear()
        arrays, copied = _write(plan, target, lambda: zarr.MemoryStore(), lambda: None, progress)
        if verify:
            _verify(plan, target)
        name = f"<{type(target).__name__}>"
    else:
        if plan.backend == "distributed" and ref.mapping is not None:
            raise UsageError("the distributed backend reads stores from paths or URLs only")
        path = check_target(target, overwrite=overwrite, command=command, sources=(ref,))
        with staged_directory(
            path, overwrite=overwrite, command=command, source=ref.name
        ) as staging:
            temp = staging / TEMP_DIR
            store = zarr.DirectoryStore(str(staging))
            try:
                arrays, copied = _write(
                    plan,
                    store,
                    lambda: zarr.DirectoryStore(str(temp)),
                    lambda: shutil.rmtree(temp, ignore_errors=True),
                    progress,
                )
            finally:
                shutil.rmtree(temp, ignore_errors=True)
            if verify:
                _verify(plan, store)
        name = str(path)
    return CopyResult(
        name,
        arrays,
        copied,
        plan.consolidated,
        verify,
        time.perf_counter() - started,
        plan.zarr_format,
        plan.zarr_format != plan.source_format,
    )


def _verify(plan: StorePlan, target: MutableMapping[str, bytes]) -> None:
    # Imported on first use for start-up cost only (no cycle): most runs do not verify.
    from zarrgeno.rewrite.verify import verify_stores

    verify_stores(plan.source, target, max_mem=plan.max_mem)


def _write(
    plan: StorePlan,
    store: MutableMapping[str, bytes],
    make_temp: Callable[[], MutableMapping[str, bytes]],
    drop_temp: Callable[[], None],
    progress: Progress | None,
) -> tuple[tuple[ArrayResult, ...], int]:
    progress = progress or Progress()
    group = plan.source.open()
    source_store = plan.source.mapping_store()
    temp = None
    runs = []
    for job in plan.jobs:
        p = job.plan
        src = group[p.path]
        layout = create_array(
            store,
            p.path,
            shape=p.shape,
            chunks=job.inner_chunks,
            dtype=job.dtype,
            compressor=codec_from_config(job.compressor) if job.compressor else None,
            filters=[codec_from_config(f) for f in job.filters or ()],
            fill_value=job.fill_value,
            attributes=src.attrs.asdict(),
            zarr_format=plan.zarr_format,
            shards=job.shards,
            separator=job.separator,
        )
        src_layout, allow = ChunkLayout.of(src), plan.allow_missing
        steps = [CopyStep(source_store, src_layout, store, layout, allow)]
        if p.intermediate_chunks is not None:
            temp = temp if temp is not None else make_temp()
            tmp = create_array(
                temp,
                p.path,
                shape=p.shape,
                chunks=p.intermediate_chunks,
                dtype=job.dtype,
                compressor=TEMP_COMPRESSOR,
                # Strings keep their object codec in the temporary array too.
                filters=src_layout.object_filters,
                fill_value=job.fill_value,
                attributes={},
                zarr_format=2,
            )
            steps = [
                CopyStep(source_store, src_layout, temp, tmp, allow),
                CopyStep(temp, tmp, store, layout),
            ]
        runs.append((job, tuple(steps)))
    client_context = (
        dask_client(
            plan.scheduler,
            n_workers=None if plan.scheduler else plan.concurrency,
            threads_per_worker=1,
            timeout=plan.timeout,
            security=plan.security,
        )
        if plan.backend == "distributed"
        else contextlib.nullcontext()
    )
    from rechunker.pipeline import chunk_keys
    from rechunker.types import Pipeline
    from rechunker.types import Stage as RechunkerStage

    with client_context as client:
        for job, job_steps in runs:
            p = job.plan
            if not math.prod(p.shape):
                continue
            functions = (copy_first, copy_second)
            stages = [
                RechunkerStage(
                    functions[i], stage.name, mappable=list(chunk_keys(p.shape, stage.key_chunks))
                )
                for i, stage in enumerate(p.stages)
            ]
            progress.start(p.path, p.tasks)
            first = job_steps[0]
            if plan.backend != "distributed":  # there each task announces its own chunks
                # The chunks of the whole first stage, in task order: a remote source keeps
                # a window of them in flight, shared by the tasks (zarrgeno.io.readahead).
                fetch_regions(first.source_store, first.source, stages[0].mappable or ())
            with reads_stopped(source_store):
                run_pipelines(
                    (Pipeline(stages, config=job_steps),),
                    backend=plan.backend,
                    concurrency=p.concurrency,
                    client=client,
                    progress=progress,
                    stop=getattr(source_store, "abandon", None),
                )
    drop_temp()
    rewritten = [j.plan.path for j in plan.jobs]
    if plan.region_index_chunk is not None:
        rewritten.append(REGION_INDEX)
        write_region_index(
            group,
            source_store,
            store,
            plan.region_index_chunk,
            zarr_format=plan.zarr_format,
            allow_missing=plan.allow_missing,
        )
    if plan.zarr_format == plan.source_format:
        copied = copy_other_keys(
            source_store, store, exclude=rewritten, caps=_value_caps(group, source_store)
        )
    else:  # every array was rewritten (plan_targets): the groups remain
        copied = write_groups(group, store, plan.zarr_format)
    if plan.consolidated and plan.zarr_format == 3:
        write_root_v3(store, consolidated_root_v3(store))
    elif plan.consolidated:
        zarr.consolidate_metadata(store)
    elif plan.zarr_format == 3:  # a copied root zarr.json keeps no stale consolidated copy
        write_root_v3(store, unconsolidated_root_v3(store))
    results = []
    for job in plan.jobs:
        written = open_written(store, job.plan.path, plan.zarr_format)
        results.append(
            ArrayResult(
                job.plan.path,
                written.chunks,
                job.compressor_spec,
                job.filters_spec,
                written.nbytes,
                written.nbytes_stored,
                job.plan.tasks,
                job.shards,
            )
        )
    return tuple(results), copied
