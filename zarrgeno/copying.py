"""The copy engine: a chunk-by-chunk kernel, rechunker executors with progress, store copies."""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numcodecs
import numcodecs.compat
import numpy as np
import zarr

from zarrgeno.chunkio import ChunkLayout, check_blosc_header, decode_chunk, read_raw
from zarrgeno.cluster import dask_client
from zarrgeno.compression import codec_from_config
from zarrgeno.errors import (
    BadDataError,
    ClusterError,
    StoreIOError,
    TargetExistsError,
    UsageError,
    ZarrgenoError,
    os_reason,
)
from zarrgeno.store import CONSOLIDATED_KEY
from zarrgeno.writing import WriterPool, check_target, staged_directory

if TYPE_CHECKING:
    # rechunker imports dask.array (a quarter of a second); it loads when a copy runs.
    from rechunker.types import ParallelPipelines

    from zarrgeno.rechunk import StorePlan

#: Execution backends, named as ``zarrgeno stats`` names them (``multiprocessing`` aside).
BACKENDS = ("sequential", "dask", "distributed")
#: The temporary store is written once and read once: the fastest Blosc setting.
TEMP_COMPRESSOR = numcodecs.Blosc(cname="lz4", clevel=1, shuffle=numcodecs.Blosc.SHUFFLE)
#: Where rechunker's temporary arrays live: inside the staging directory of the target.
TEMP_DIR = ".zarrgeno-temp"

# Set when the user interrupts: copy tasks still running in pool threads stop at their next
# chunk, so nothing is written into the staging directory after it has been removed.
_CANCEL = threading.Event()
_LIBC: Any = None
# Per-thread reusable buffers. Fresh memory costs a page fault per 4 KiB: filling a new
# 2 GB buffer took 2.2 s here against 0.16 s for a reused one.
_LOCAL = threading.local()


class Cancelled(Exception):
    """A copy task stopped because the run was interrupted."""


class Progress:
    """Progress callbacks; the default does nothing. The CLI draws a bar from them."""

    def start(self, description: str, total: int) -> None:
        """A new phase of ``total`` tasks begins."""

    def advance(self, n: int = 1) -> None:
        """``n`` tasks finished (called from worker threads too)."""


def return_freed_buffers() -> None:
    """Make glibc return freed chunk-sized buffers to the operating system at once.

    By default glibc raises its mmap threshold up to 32 MB after big frees, so chunk-sized
    temporaries then come from per-thread heaps that keep their peak: with two copy threads
    the measured peak was 1.3-1.6x the buffers alive. Fixed thresholds keep RSS at what the
    memory model counts: buffers above 4 MiB are mapped and unmapped (the big ones are
    reused per thread anyway), while heaps keep at most 16 MiB free, so codec workspaces
    of a few MB (zstd's) are not page-faulted afresh on every block (that made zstd 3x
    slower with a 1 MiB threshold). Process-wide; a no-op off glibc.
    """
    global _LIBC
    try:
        if _LIBC is None:
            import ctypes
            import ctypes.util

            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC.mallopt(-3, 4 << 20)  # M_MMAP_THRESHOLD
            _LIBC.mallopt(-1, 16 << 20)  # M_TRIM_THRESHOLD
        _LIBC.malloc_trim(0)  # and release what earlier work left in the heaps
    except (OSError, AttributeError):
        pass


def thread_buffer(name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised array from this thread's reusable buffer ``name``."""
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    cache = _LOCAL.__dict__.setdefault("buffers", {})
    raw = cache.get(name)
    if raw is None or raw.nbytes < nbytes:
        cache.pop(name, None)  # free the small one before allocating the big one
        raw = cache[name] = np.empty(max(nbytes, 1), dtype=np.uint8)
    return raw[:nbytes].view(dtype).reshape(shape)


def release_buffers() -> None:
    """Free this thread's reusable buffers."""
    _LOCAL.__dict__.pop("buffers", None)


@dataclass(frozen=True)
class CopyStep:
    """What the tasks of one stage share: read ``source``, write whole chunks of ``target``.

    Picklable (directory stores pickle as paths), so dask.distributed workers can run
    :func:`copy_block` with it.
    """

    source_store: MutableMapping[str, bytes]
    source: ChunkLayout
    target_store: MutableMapping[str, bytes]
    target: ChunkLayout
    allow_missing: bool = False


def read_region(
    store: Any,
    layout: ChunkLayout,
    region: tuple[slice, ...],
    out: np.ndarray,
    *,
    allow_missing: bool = False,
) -> None:
    """Decode ``region`` of an array into ``out``, one stored chunk at a time.

    Chunks go through zarrgeno.chunkio's checks (Blosc headers, missing chunks are
    errors unless ``allow_missing``). Blosc chunks decode straight into ``out`` when the
    rows wanted are a contiguous prefix of the chunk landing on a contiguous part of
    ``out``, and through a reused per-thread buffer otherwise.
    """
    chunks = layout.chunks
    ranges = [
        range(r.start // c, math.ceil(r.stop / c)) for r, c in zip(region, chunks, strict=True)
    ]
    fast = (
        layout.compressor is not None
        and layout.compressor.codec_id == "blosc"
        and not layout.filters
        and layout.order == "C"
    )
    for index in itertools.product(*ranges):
        if _CANCEL.is_set():
            raise Cancelled
        src, dst = [], []
        for i, r, c in zip(index, region, chunks, strict=True):
            lo, hi = max(i * c, r.start), min((i + 1) * c, r.stop)
            src.append(slice(lo - i * c, hi - i * c))
            dst.append(slice(lo - r.start, hi - r.start))
        try:
            _read_chunk(store, layout, index, out[tuple(dst)], tuple(src), fast, allow_missing)
        except BadDataError as exc:
            raise BadDataError(f"{exc} ({describe_chunk(layout, index)})") from None


def describe_chunk(layout: ChunkLayout, index: tuple[int, ...]) -> str:
    """``variants 300-600, samples 0-50`` for genotype-like arrays, ``elements a-b`` for 1-D."""
    spans = [
        f"{i * c}-{min((i + 1) * c, n)}"
        for i, c, n in zip(index, layout.chunks, layout.shape, strict=True)
    ]
    if len(spans) == 1:
        return f"elements {spans[0]}"
    return f"variants {spans[0]}, samples {spans[1]}" if spans else "the value"


def _read_chunk(
    store: Any,
    layout: ChunkLayout,
    index: tuple[int, ...],
    target: np.ndarray,
    src: tuple[slice, ...],
    fast: bool,
    allow_missing: bool,
) -> None:
    key = layout.key(index)
    raw = read_raw(store, key, allow_missing=allow_missing)
    if raw is None:
        target[...] = layout.fill_value if layout.fill_value is not None else 0
        return
    if not fast:
        target[...] = decode_chunk(layout, key, raw)[src]
        return
    check_blosc_header(raw, layout.chunk_nbytes, f"chunk {key}")
    # The rows wanted are a contiguous prefix of the chunk (the whole chunk, or the part of
    # an edge chunk inside the array) landing on a contiguous part of ``target``: decode
    # straight into it, with no scratch buffer.
    prefix = (
        target.flags.c_contiguous
        and src[0].start == 0
        and all(
            s.start == 0 and s.stop == c for s, c in zip(src[1:], layout.chunks[1:], strict=True)
        )
    )
    try:
        if prefix and target.shape == layout.chunks:
            layout.compressor.decode(raw, out=target)
        elif prefix:
            layout.compressor.decode_partial(raw, 0, target.size, out=target)
        else:
            scratch = thread_buffer("decode", layout.chunks, layout.dtype)
            layout.compressor.decode(raw, out=scratch)
            target[...] = scratch[src]
    except Exception as exc:  # numcodecs raises RuntimeError and friends
        raise BadDataError(f"chunk {key}: cannot decode ({type(exc).__name__}: {exc})") from None


def encode_chunk(layout: ChunkLayout, chunk: np.ndarray) -> bytes:
    """Encode one whole, contiguous chunk with the layout's filters and compressor, as zarr does."""
    data: Any = chunk
    for codec in layout.filters:
        data = codec.encode(data)
    if layout.compressor is not None:
        data = layout.compressor.encode(data)
    return data if isinstance(data, bytes) else numcodecs.compat.ensure_bytes(data)


def copy_block(key: tuple[slice, ...], *, config: CopyStep) -> None:
    """Copy the block ``key`` of the source into whole chunks of the target.

    The block starts on a target-chunk boundary; at the array's edge it is padded with the
    fill value up to whole chunks. It is read one source chunk at a time and written one
    target chunk at a time, so a task holds its block, one decoded source chunk and one
    encoded target chunk (rechunker's own copy function holds the block twice at the edge
    and every encoded chunk of the block at once). Buffers are reused per thread.
    """
    layout = config.target
    chunks = layout.chunks
    start = tuple(k.start for k in key)
    region = tuple(k.stop - k.start for k in key)
    if any(s % c for s, c in zip(start, chunks, strict=True)):
        raise AssertionError(f"block {key} does not start on a chunk of {chunks}")
    grid = tuple(math.ceil(n / c) for n, c in zip(region, chunks, strict=True))
    padded = tuple(g * c for g, c in zip(grid, chunks, strict=True))
    block = thread_buffer("block", padded, layout.dtype)
    fill = layout.fill_value if layout.fill_value is not None else 0
    for axis, (n, p) in enumerate(zip(region, padded, strict=True)):
        if p > n:
            block[(slice(None),) * axis + (slice(n, None),)] = fill
    view = block[tuple(slice(0, n) for n in region)]
    read_region(config.source_store, config.source, key, view, allow_missing=config.allow_missing)
    first = tuple(s // c for s, c in zip(start, chunks, strict=True))
    for index in np.ndindex(*grid):
        if _CANCEL.is_set():
            raise Cancelled
        part = block[tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, chunks, strict=True))]
        if not part.flags.c_contiguous:
            copy = thread_buffer("chunk", chunks, layout.dtype)
            np.copyto(copy, part)
            part = copy
        coords = [f + i for f, i in zip(first, index, strict=True)]
        config.target_store[layout.key(coords)] = encode_chunk(layout, part)


def copy_first(key: tuple[slice, ...], *, config: tuple[CopyStep, ...]) -> None:
    """Stage function of a direct copy, or of the copy into the temporary array."""
    copy_block(key, config=config[0])


def copy_second(key: tuple[slice, ...], *, config: tuple[CopyStep, ...]) -> None:
    """Stage function of the copy from the temporary array into the target."""
    copy_block(key, config=config[1])


def _counted(pipelines: ParallelPipelines, progress: Progress) -> ParallelPipelines:
    """Wrap every stage function so each finished task advances the progress bar."""
    from rechunker.types import Pipeline

    wrapped = []
    for pipeline in pipelines:
        stages = []
        for stage in pipeline.stages:
            function = stage.function

            def counted(key: Any, *, config: Any, _function: Callable = function) -> None:
                _function(key, config=config)
                progress.advance(1)

            stages.append(replace(stage, function=counted))
        wrapped.append(Pipeline(stages, config=pipeline.config))
    return tuple(wrapped)


def run_pipelines(
    pipelines: ParallelPipelines,
    *,
    backend: str,
    concurrency: int,
    client: Any = None,
    progress: Progress | None = None,
) -> None:
    """Run rechunker pipelines (stages of ``fn(key, config=...)`` tasks) on a backend.

    ``sequential`` is rechunker's python executor; ``dask`` is rechunker's dask executor on
    a pool of ``concurrency`` threads (one task at a time runs in the calling thread,
    where Blosc uses its own threads); ``distributed`` submits tasks to ``client`` with at
    most ``concurrency`` in flight. Stages run in order; the pipelines one after another.
    """
    progress = progress or Progress()
    _CANCEL.clear()
    try:
        if backend == "distributed":
            _run_distributed(pipelines, client, concurrency, progress)
        elif backend == "sequential" or (backend == "dask" and concurrency == 1):
            from rechunker.executors.python import PythonPipelineExecutor

            executor = PythonPipelineExecutor()
            executor.execute_plan(executor.pipelines_to_plan(_counted(pipelines, progress)))
        elif backend == "dask":
            _run_dask_threads(pipelines, concurrency, progress)
        else:
            raise UsageError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    except Cancelled:
        raise KeyboardInterrupt from None
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        if isinstance(exc, UsageError | StoreIOError):
            raise
        # zarr's DirectoryStore reports a directory it cannot create as a KeyError.
        cause = exc.__cause__ if isinstance(exc, KeyError) else exc
        if isinstance(cause, OSError):
            raise StoreIOError(f"copy failed: {os_reason(cause)}", cause.errno) from None
        if isinstance(exc, KeyError):
            raise
        raise BadDataError(f"copy failed: {exc}") from None
    finally:
        _CANCEL.clear()
        release_buffers()


def _run_dask_threads(pipelines: ParallelPipelines, threads: int, progress: Progress) -> None:
    import dask
    from rechunker.executors.dask import DaskPipelineExecutor

    executor = DaskPipelineExecutor()
    plan = executor.pipelines_to_plan(_counted(pipelines, progress))
    pool = WriterPool(threads, thread_name_prefix="zarrgeno-copy")
    try:
        # One pipeline (array) at a time keeps `threads` tasks in flight, not more.
        for delayed in plan:
            dask.compute(delayed, scheduler="threads", pool=pool)
    except BaseException:
        _CANCEL.set()  # stop running tasks at their next chunk, then wait for them
        raise
    finally:
        pool.drain()


def _run_distributed(
    pipelines: ParallelPipelines, client: Any, limit: int, progress: Progress
) -> None:
    from distributed import as_completed

    if client is None:
        raise UsageError("the distributed backend needs a dask.distributed client")
    for pipeline in pipelines:
        [config] = client.scatter([pipeline.config], broadcast=True)
        for stage in pipeline.stages:
            keys: Iterator[Any] = iter(stage.mappable or ())
            pending = as_completed()
            for key in keys:
                pending.add(client.submit(_remote, stage.function, key, config, pure=False))
                if pending.count() >= limit:
                    break
            try:
                for future in pending:
                    _result(future)
                    progress.advance(1)
                    key = next(keys, None)
                    if key is not None:
                        pending.add(client.submit(_remote, stage.function, key, config, pure=False))
            except BaseException:
                client.cancel(list(pending.futures))
                raise


def _remote(function: Callable[..., None], key: Any, config: Any) -> None:
    """Run one task on a worker; its buffers are freed after it, as worker threads live on."""
    try:
        function(key, config=config)
    finally:
        release_buffers()


def _result(future: Any) -> None:
    try:
        future.result()
    except (ZarrgenoError, OSError, RuntimeError, ValueError):
        raise  # the task's own error (a corrupt chunk, a full disk), as in-process
    except Exception as exc:  # KilledWorker, CommClosedError, ...
        raise ClusterError(
            f"a copy task failed on the cluster: {type(exc).__name__}: {exc}"
        ) from None


def copy_other_keys(
    source: MutableMapping[str, bytes],
    target: MutableMapping[str, bytes],
    *,
    exclude: Iterable[str],
) -> int:
    """Copy every key of ``source`` (groups, attributes, arrays, chunks) byte for byte,
    except the arrays under ``exclude`` and the consolidated metadata; return the count.

    Raw copies keep the other arrays exactly as they were (codec, chunks, bytes) at the
    cost of one value in memory at a time.
    """
    prefixes = tuple(f"{p.strip('/')}/" for p in exclude)
    n = 0
    for key in sorted(source.keys()):
        if key == CONSOLIDATED_KEY or key.startswith(prefixes):
            continue
        target[key] = source[key]
        n += 1
    return n


def resolve_backend(
    backend: str | None, scheduler: str | None, workers: int | None
) -> tuple[str, int]:
    """The backend name and the number of parallel tasks requested."""
    if scheduler is not None:
        if backend not in (None, "distributed"):
            raise UsageError(f"--scheduler needs --backend distributed, not {backend}")
        backend = "distributed"
    backend = backend or "dask"
    if backend == "multiprocessing":
        raise UsageError(
            "rechunk and recompress run on sequential, dask (threads) or distributed; "
            "multiprocessing is a `zarrgeno stats` backend"
        )
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    if backend == "sequential":
        return backend, 1
    return backend, workers or os.cpu_count() or 1


# ---------------------------------------------------------------------------------------
# Executing a store plan: create target arrays, run the copies, copy the rest, rename.
# ---------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class CopyResult:
    """What a rechunk or recompression wrote."""

    target: str
    arrays: tuple[ArrayResult, ...]
    copied_keys: int
    consolidated: bool
    verified: bool
    elapsed: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "arrays": [asdict(a) for a in self.arrays]}


def execute_store(
    plan: StorePlan,
    target: str | os.PathLike[str] | MutableMapping[str, bytes],
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
    verify: bool = False,
) -> CopyResult:
    """Carry out ``plan`` into ``target``; the source is only read.

    A local ``target`` is written in a staging directory beside it (rechunker's temporary
    arrays inside that) and renamed into place only when complete and, with ``verify``,
    verified; the temporary arrays are removed on success and failure alike. A mapping
    ``target`` (tests, notebooks) is written directly and must be empty unless ``overwrite``.
    """
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
        path = check_target(target, overwrite=overwrite, sources=(ref,))
        with staged_directory(path, overwrite=overwrite) as staging:
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
        name, arrays, copied, plan.consolidated, verify, time.perf_counter() - started
    )


def _verify(plan: StorePlan, target: MutableMapping[str, bytes]) -> None:
    from zarrgeno.verify import verify_stores

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
        dst = zarr.create(
            store=store,
            path=p.path,
            shape=p.shape,
            chunks=p.target_chunks,
            dtype=job.dtype,
            compressor=codec_from_config(job.compressor) if job.compressor else None,
            filters=[codec_from_config(f) for f in job.filters] if job.filters else None,
            fill_value=job.fill_value,
            order="C",
            dimension_separator=job.separator,
        )
        dst.attrs.put(src.attrs.asdict())
        src_store, allow = source_store, plan.allow_missing
        steps = [CopyStep(src_store, ChunkLayout.of(src), store, ChunkLayout.of(dst), allow)]
        if p.intermediate_chunks is not None:
            temp = temp if temp is not None else make_temp()
            tmp = zarr.create(
                store=temp,
                path=p.path,
                shape=p.shape,
                chunks=p.intermediate_chunks,
                dtype=job.dtype,
                compressor=TEMP_COMPRESSOR,
                fill_value=job.fill_value,
            )
            steps = [
                CopyStep(src_store, ChunkLayout.of(src), temp, ChunkLayout.of(tmp), allow),
                CopyStep(temp, ChunkLayout.of(tmp), store, ChunkLayout.of(dst)),
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
        for job, steps in runs:
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
            run_pipelines(
                (Pipeline(stages, config=steps),),
                backend=plan.backend,
                concurrency=p.concurrency,
                client=client,
                progress=progress,
            )
    drop_temp()
    copied = copy_other_keys(
        plan.source.mapping_store(), store, exclude=[j.plan.path for j in plan.jobs]
    )
    if plan.consolidated:
        zarr.consolidate_metadata(store)
    results = []
    for job in plan.jobs:
        written = zarr.open_array(store, path=job.plan.path, mode="r")
        results.append(
            ArrayResult(
                job.plan.path,
                written.chunks,
                job.compressor_spec,
                job.filters_spec,
                written.nbytes,
                written.nbytes_stored,
                job.plan.tasks,
            )
        )
    return tuple(results), copied
