"""`zarrgeno rechunk` and `recompress`: new chunk layouts and codecs, as checked copies."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from zarrgeno.cli.common import (
    DEFAULT_MAX_MEM,
    FetchConcurrencyOpt,
    JsonOpt,
    MaxMemOpt,
    MissingOpt,
    ProgressOpt,
    StoreArg,
    TlsCaFileOpt,
    TlsCertOpt,
    TlsKeyOpt,
    app,
    print_json,
    reports_errors,
    use_fetch_concurrency,
)
from zarrgeno.cli.progress import task_progress
from zarrgeno.defaults import BACKENDS, DEFAULT_STORE, PROMISE_FACTOR
from zarrgeno.render import Column, Output
from zarrgeno.sizes import format_size

if TYPE_CHECKING:
    from zarrgeno.rewrite.arrayplan import ArrayPlan
    from zarrgeno.rewrite.execute import CopyResult
    from zarrgeno.rewrite.storeplan import StorePlan

DEFAULT_TARGET = "data/rechunk"
DEFAULT_RECOMPRESS_TARGET = "data/recompress"

_CHUNKS_HELP = (
    "Target chunks: one positive integer per dimension, -1 for a whole dimension "
    "(e.g. 12131437,81,2), or by dimension name (variants=20000,samples=81); clamped to "
    "each array's shape. On a VCF Zarr store every array with those dimensions follows "
    "(a positional spec is call_genotype's) and region_index is rebuilt."
)
_FORMAT_HELP = "Zarr format of TARGET: 2 or 3; default: the source's."
_SHARDS_HELP = (
    "Zarr format 3 shards, by dimension name or position (e.g. variants=100000): each "
    "shard holds whole chunks; an axis not named holds one chunk per shard."
)
_ARRAY_HELP = "Array to convert, repeatable (e.g. 2L/calldata/GT); default: every genotype array."
_PLAN_HELP = "Print the plan (chunks, files, temp store, expected peak memory); write nothing."
_COMPRESSOR_HELP = (
    "Compressor spec: blosc:CNAME:CLEVEL:SHUFFLE (cname lz4, lz4hc, zstd, blosclz, zlib; "
    "shuffle noshuffle, shuffle, bitshuffle), zstd:LEVEL, lz4, zlib:LEVEL, gzip:LEVEL, bz2, "
    "lzma, none, or a JSON codec config."
)
_CHECKSUM_HELP = (
    "Add a checksum filter (crc32, adler32, fletcher32) so later corruption is detected; "
    "none removes one."
)
_BACKEND_HELP = (
    f"Where copy tasks run: {', '.join(BACKENDS)} (sequential = rechunker's python executor, "
    "dask = threads, distributed = a dask.distributed cluster); default dask."
)
_WORKERS_HELP = "Parallel tasks (threads, or local worker processes); default: the cores."
_SCHEDULER_HELP = (
    "dask.distributed scheduler address (tcp://HOST:PORT, or tls://HOST:PORT with the "
    "TLS options); implies --backend distributed."
)
_OVERWRITE_HELP = (
    "Replace TARGET when it is an empty directory or an earlier output of this same command "
    "(removed only on success); anything else there is never replaced."
)
_VERIFY_HELP = "Compare the target with the source before it is moved into place."

ArrayOpt = Annotated[list[str] | None, typer.Option("--array", help=_ARRAY_HELP)]
PlanOpt = Annotated[bool, typer.Option("--plan", help=_PLAN_HELP)]
ChecksumOpt = Annotated[str | None, typer.Option("--checksum", help=_CHECKSUM_HELP)]
BackendOpt = Annotated[str | None, typer.Option("--backend", "-b", help=_BACKEND_HELP)]
WorkersOpt = Annotated[int | None, typer.Option("--workers", "-w", help=_WORKERS_HELP)]
SchedulerOpt = Annotated[str | None, typer.Option("--scheduler", help=_SCHEDULER_HELP)]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help=_OVERWRITE_HELP)]
FormatOpt = Annotated[
    int | None, typer.Option("--zarr-format", metavar="2|3", help=_FORMAT_HELP, show_default=False)
]
ShardsOpt = Annotated[str | None, typer.Option("--shards", help=_SHARDS_HELP)]


def _target_arg(default: str) -> Any:
    """TARGET, the second path: the store to write (``default`` when not given)."""
    return typer.Argument(
        metavar="TARGET",
        help=f"Store to write (default: {default}); never the source, inside it or around it.",
        show_default=False,
    )


VerifyOpt = Annotated[bool, typer.Option("--verify", help=_VERIFY_HELP)]
TimeoutOpt = Annotated[
    float,
    typer.Option(
        min=0.1, metavar="SECONDS", help="distributed: give up on --scheduler after this."
    ),
]


def _dims(chunks: tuple[int, ...] | None) -> str:
    return " x ".join(str(c) for c in chunks) if chunks else "none"


def render_plan(plan: StorePlan, target: str) -> None:
    """One table per array: the chunks at each step, files, tasks, temp store, memory."""
    import numpy as np

    for job in plan.jobs:
        p = job.plan

        def size(chunks: tuple[int, ...] | None, itemsize: int = p.itemsize) -> str:
            return format_size(itemsize * _prod(chunks))

        inter = (
            f"{_dims(p.intermediate_chunks)} ({size(p.intermediate_chunks)})"
            if p.intermediate_chunks
            else "none: each block is copied directly"
        )
        tasks = ", ".join(f"{s.name} {s.tasks:,}" for s in p.stages)
        temp = (
            f"{format_size(p.temp_bytes)} raw, written once and read once (lz4 level 1)"
            if p.temp_bytes
            else "none"
        )
        most = max(s.tasks for s in p.stages)
        limited = ""
        if p.concurrency < plan.workers:
            why = "memory-bound" if p.concurrency < most else f"{most} task(s) per stage"
            limited = f" of {plan.workers} ({why})"
        rows = [
            ["shape", f"{_dims(p.shape)} {np.dtype(job.dtype).name} ({format_size(p.nbytes)})"],
            ["source chunks", f"{_dims(p.source_chunks)} ({size(p.source_chunks)})"],
            ["target chunks", f"{_dims(job.inner_chunks)} ({size(job.inner_chunks)})"],
            *(
                [["target shards", f"{_dims(job.shards)} ({size(job.shards)})"]]
                if job.shards
                else []
            ),
            ["compressor", f"{job.compressor_spec}, filters {job.filters_spec}"],
            ["read chunks", f"{_dims(p.read_chunks)} ({size(p.read_chunks)})"],
            ["intermediate chunks", inter],
            ["write chunks", f"{_dims(p.write_chunks)} ({size(p.write_chunks)})"],
            ["output chunk files", f"{p.output_chunks:,}"],
            ["copy tasks", tasks],
            ["temp store", temp],
            ["parallel tasks", f"{p.concurrency}{limited}"],
            ["memory per task", format_size(p.task_peak)],
            *([["chunks fetched ahead", _fetched_ahead(p)]] if p.read_ahead else []),
            ["expected peak memory", f"{format_size(p.expected_peak)} + interpreter baseline"],
        ]
        Output.table(p.path, [Column("plan"), Column("value")], rows)
    backend = plan.backend + (f" at {plan.scheduler}" if plan.scheduler else "")
    Output.text(
        f"{plan.source.name} -> {target} (Zarr format {plan.zarr_format}): "
        f"{len(plan.jobs)} array(s) on {backend}; "
        f"expected peak {format_size(plan.expected_peak)} within --max-mem "
        f"{format_size(plan.max_mem)} (promise: peak RSS <= {PROMISE_FACTOR} x max-mem "
        "+ interpreter baseline)."
    )
    Output.text("Dry run (--plan): nothing was written.")


def _fetched_ahead(p: ArrayPlan) -> str:
    """The remote source's window of chunks fetched ahead, as the plan counts it."""
    where = "per task (a worker process each)" if p.read_ahead_per_task else "once per process"
    return f"{format_size(p.read_ahead)} at most, {where} (--fetch-concurrency)"


def _prod(chunks: tuple[int, ...] | None) -> int:
    n = 1
    for c in chunks or ():
        n *= c
    return n


def render_result(result: CopyResult) -> None:
    sharded = any(a.shards for a in result.arrays)
    rows = [
        [
            a.path,
            _dims(a.chunks),
            *([_dims(a.shards) if a.shards else "-"] if sharded else []),
            a.compressor + ("" if a.filters == "none" else f" +{a.filters}"),
            format_size(a.nbytes),
            format_size(a.stored_bytes),
            f"{a.nbytes / max(a.stored_bytes, 1):.1f}",
        ]
        for a in result.arrays
    ]
    columns = [
        Column("array"),
        Column("chunks"),
        *([Column("shards")] if sharded else []),
        Column("compressor"),
        Column("raw", True),
        Column("stored", True),
        Column("ratio", True),
    ]
    Output.table(result.target, columns, rows)
    raw = sum(a.nbytes for a in result.arrays)
    rate = raw / 1e6 / result.elapsed if result.elapsed > 0 else 0.0
    extras = [
        f"wrote {result.copied_keys:,} group(s) in Zarr format {result.zarr_format}"
        if result.converted
        else f"copied {result.copied_keys:,} other keys unchanged"
    ]
    if result.consolidated:
        extras.append("consolidated metadata written")
    if result.verified:
        extras.append("verified identical to the source")
    Output.text(
        f"wrote {result.target} in {result.elapsed:.1f} s ({rate:,.0f} MB/s raw); "
        + "; ".join(extras)
    )


def _check_target(store: str, target: str, *, overwrite: bool, command: str) -> None:
    """Refuse TARGET before any planning: the source under any name, inside it or around
    it, or an existing target that --overwrite may not replace."""
    from zarrgeno.io.store import StoreRef
    from zarrgeno.io.writing import check_target

    sources = (StoreRef.from_source(store),)
    check_target(target, overwrite=overwrite, command=command, sources=sources)


def _run(
    plan: StorePlan,
    target: str,
    *,
    dry_run: bool,
    overwrite: bool,
    verify: bool,
    json_output: bool,
    progress: bool | None,
    command: str,
) -> None:
    from zarrgeno.rewrite.execute import execute_store

    for warning in plan.warnings:
        Output.note(f"Warning: {warning}")
    if dry_run:
        print_json(plan.to_dict()) if json_output else render_plan(plan, target)
        return
    with task_progress("tasks", progress) as bar:
        result = execute_store(
            plan, target, overwrite=overwrite, progress=bar, verify=verify, command=command
        )
    print_json(result.to_dict()) if json_output else render_result(result)


@app.command()
@reports_errors
def rechunk(
    store: StoreArg = DEFAULT_STORE,
    target: Annotated[str, _target_arg(DEFAULT_TARGET)] = DEFAULT_TARGET,
    chunks: Annotated[str, typer.Option("--chunks", help=_CHUNKS_HELP)] = ...,  # type: ignore[assignment]
    array: ArrayOpt = None,
    max_mem: MaxMemOpt = DEFAULT_MAX_MEM,
    fetch_concurrency: FetchConcurrencyOpt = None,
    plan: PlanOpt = False,
    compressor: Annotated[
        str | None, typer.Option("--compressor", help=_COMPRESSOR_HELP + " Default: keep.")
    ] = None,
    checksum: ChecksumOpt = None,
    zarr_format: FormatOpt = None,
    shards: ShardsOpt = None,
    backend: BackendOpt = None,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    tls_ca_file: TlsCaFileOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    overwrite: OverwriteOpt = False,
    verify: VerifyOpt = False,
    allow_missing: MissingOpt = None,
    timeout: TimeoutOpt = 10.0,
    progress: ProgressOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Rechunk genotype arrays out of core with rechunker, within --max-mem.

    Every genotype array is rechunked (or those named with --array); the rest of the store
    is copied, so TARGET is a complete store. Try --plan first.

    TARGET is written beside itself and renamed into place only when complete. With one
    path, it is STORE, and TARGET is data/rechunk.

    Example: zarrgeno rechunk data/AG1000G-AO data/rechunk --chunks 12131437,81,2 --max-mem 4GB
    """
    from zarrgeno.io.compression import parse_compressor
    from zarrgeno.rewrite.storeplan import KEEP, plan_store
    from zarrgeno.runtime.cluster import tls_security

    use_fetch_concurrency(fetch_concurrency)
    _check_target(store, target, overwrite=overwrite, command="rechunk")
    store_plan = plan_store(
        store,
        chunks=chunks,
        arrays=array,
        max_mem=max_mem,
        backend=backend,
        workers=workers,
        scheduler=scheduler,
        compressor=KEEP if compressor is None else parse_compressor(compressor),
        checksum=checksum,
        allow_missing=allow_missing,
        timeout=timeout,
        security=tls_security(scheduler, ca_file=tls_ca_file, cert=tls_cert, key=tls_key),
        shards=shards,
        zarr_format=zarr_format,
    )
    _run(
        store_plan,
        target,
        dry_run=plan,
        overwrite=overwrite,
        verify=verify,
        json_output=json_output,
        progress=progress,
        command="rechunk",
    )


@app.command()
@reports_errors
def recompress(
    store: StoreArg = DEFAULT_STORE,
    target: Annotated[str, _target_arg(DEFAULT_RECOMPRESS_TARGET)] = DEFAULT_RECOMPRESS_TARGET,
    compressor: Annotated[str, typer.Option("--compressor", help=_COMPRESSOR_HELP)] = ...,  # type: ignore[assignment]
    checksum: ChecksumOpt = None,
    array: ArrayOpt = None,
    max_mem: MaxMemOpt = DEFAULT_MAX_MEM,
    fetch_concurrency: FetchConcurrencyOpt = None,
    plan: PlanOpt = False,
    zarr_format: FormatOpt = None,
    shards: ShardsOpt = None,
    backend: BackendOpt = None,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    tls_ca_file: TlsCaFileOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    overwrite: OverwriteOpt = False,
    verify: VerifyOpt = False,
    allow_missing: MissingOpt = None,
    timeout: TimeoutOpt = 10.0,
    progress: ProgressOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Re-encode genotype arrays with a new compressor, keeping their chunks.

    Chunks are re-encoded in parallel in bounded memory; the rest of the store is copied.

    Use `zarrgeno codecs` to choose a codec, and --checksum crc32 to detect corruption later.

    With one path, it is STORE, and TARGET is data/recompress.

    Example: zarrgeno recompress data/AG1000G-AO data/zstd --compressor blosc:zstd:7:bitshuffle
    """
    from zarrgeno.rewrite.recompress import plan_recompress
    from zarrgeno.runtime.cluster import tls_security

    use_fetch_concurrency(fetch_concurrency)
    _check_target(store, target, overwrite=overwrite, command="recompress")
    store_plan = plan_recompress(
        store,
        compressor=compressor,
        checksum=checksum,
        arrays=array,
        max_mem=max_mem,
        backend=backend,
        workers=workers,
        scheduler=scheduler,
        allow_missing=allow_missing,
        timeout=timeout,
        security=tls_security(scheduler, ca_file=tls_ca_file, cert=tls_cert, key=tls_key),
        shards=shards,
        zarr_format=zarr_format,
    )
    _run(
        store_plan,
        target,
        dry_run=plan,
        overwrite=overwrite,
        verify=verify,
        json_output=json_output,
        progress=progress,
        command="recompress",
    )
