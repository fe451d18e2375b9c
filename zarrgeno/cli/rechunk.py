"""`zarrgeno rechunk`, `recompress`, `codecs` and `verify`: new layouts, checked copies."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated

import numpy as np
import typer
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

from zarrgeno.cli.app import (
    JsonOpt,
    StoreArg,
    TlsCaFileOpt,
    TlsCertOpt,
    TlsKeyOpt,
    app,
    print_json,
    reports_errors,
)
from zarrgeno.errors import BadDataError, UsageError
from zarrgeno.io.compression import parse_compressor
from zarrgeno.io.integrity import IntegrityReport, check_store, count_chunks
from zarrgeno.io.store import DEFAULT_STORE, default_store
from zarrgeno.io.writing import check_target
from zarrgeno.render import Column, Output
from zarrgeno.rewrite.arrayplan import PROMISE_FACTOR
from zarrgeno.rewrite.execute import CopyResult, execute_store
from zarrgeno.rewrite.executors import BACKENDS, Progress
from zarrgeno.rewrite.measure import RULE, CodecReport, measure_codecs
from zarrgeno.rewrite.recompress import plan_recompress
from zarrgeno.rewrite.storeplan import KEEP, StorePlan, plan_store
from zarrgeno.rewrite.verify import VerifyReport, verify_stores
from zarrgeno.runtime.cluster import tls_security
from zarrgeno.sizes import format_size

DEFAULT_TARGET = "data/rechunk"
DEFAULT_MAX_MEM = "4GB"

_CHUNKS_HELP = (
    "Target chunks, one positive integer per dimension, -1 for a whole dimension "
    "(e.g. 12131437,81,2); clamped to each array's shape."
)
_ARRAY_HELP = "Array to convert, repeatable (e.g. 2L/calldata/GT); default: every genotype array."
_MAX_MEM_HELP = (
    "Memory budget of the whole process, e.g. 4GB, 500MB, 2GiB: peak RSS stays within "
    f"{PROMISE_FACTOR}x this plus the interpreter's baseline, whatever the parallelism."
)
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
_OVERWRITE_HELP = "Replace TARGET if it exists (the old store is removed only on success)."
_VERIFY_HELP = "Compare the target with the source before it is moved into place."
_MISSING_HELP = (
    "Read a chunk missing from the store as the fill value (--allow-missing) or refuse it "
    "(--require-chunks); default: read it so only when the store's writer leaves out "
    "fill-value chunks (Zarr format 3, bio2zarr), else refuse."
)

MaxMemOpt = Annotated[str, typer.Option("--max-mem", help=_MAX_MEM_HELP)]
ArrayOpt = Annotated[list[str] | None, typer.Option("--array", help=_ARRAY_HELP)]
PlanOpt = Annotated[bool, typer.Option("--plan", help=_PLAN_HELP)]
ChecksumOpt = Annotated[str | None, typer.Option("--checksum", help=_CHECKSUM_HELP)]
BackendOpt = Annotated[str | None, typer.Option("--backend", help=_BACKEND_HELP)]
WorkersOpt = Annotated[int | None, typer.Option("--workers", help=_WORKERS_HELP)]
SchedulerOpt = Annotated[str | None, typer.Option("--scheduler", help=_SCHEDULER_HELP)]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help=_OVERWRITE_HELP)]
VerifyOpt = Annotated[bool, typer.Option("--verify", help=_VERIFY_HELP)]
MissingOpt = Annotated[
    bool | None, typer.Option("--allow-missing/--require-chunks", help=_MISSING_HELP)
]
ProgressOpt = Annotated[
    bool | None,
    typer.Option(
        "--progress/--no-progress", help="Progress bar on stderr (default: when it is a terminal)."
    ),
]
TimeoutOpt = Annotated[
    float,
    typer.Option(
        min=0.1, metavar="SECONDS", help="distributed: give up on --scheduler after this."
    ),
]


class _Bar(Progress):
    def __init__(self, bar: RichProgress) -> None:
        self.bar = bar
        self.task: int | None = None

    def start(self, description: str, total: int) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
        self.task = self.bar.add_task(description, total=total)

    def advance(self, n: int = 1) -> None:
        if self.task is not None:
            self.bar.advance(self.task, n)


@contextlib.contextmanager
def _progress(unit: str, enabled: bool | None) -> Iterator[Progress | None]:
    """A progress bar on stderr (by default when it is a terminal), or nothing."""
    console = Output.err_console()
    if not (console.is_terminal if enabled is None else enabled):
        yield None
        return
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
    )
    with RichProgress(*columns, console=console, transient=True) as bar:
        yield _Bar(bar)


def _dims(chunks: tuple[int, ...] | None) -> str:
    return " x ".join(str(c) for c in chunks) if chunks else "none"


def render_plan(plan: StorePlan, target: str) -> None:
    """One table per array: the chunks at each step, files, tasks, temp store, memory."""
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
            ["target chunks", f"{_dims(p.target_chunks)} ({size(p.target_chunks)})"],
            ["compressor", f"{job.compressor_spec}, filters {job.filters_spec}"],
            ["read chunks", f"{_dims(p.read_chunks)} ({size(p.read_chunks)})"],
            ["intermediate chunks", inter],
            ["write chunks", f"{_dims(p.write_chunks)} ({size(p.write_chunks)})"],
            ["output chunk files", f"{p.output_chunks:,}"],
            ["copy tasks", tasks],
            ["temp store", temp],
            ["parallel tasks", f"{p.concurrency}{limited}"],
            ["memory per task", format_size(p.task_peak)],
            ["expected peak memory", f"{format_size(p.expected_peak)} + interpreter baseline"],
        ]
        Output.table(p.path, [Column("plan"), Column("value")], rows)
    backend = plan.backend + (f" at {plan.scheduler}" if plan.scheduler else "")
    Output.text(
        f"{plan.source.name} -> {target}: {len(plan.jobs)} array(s) on {backend}; "
        f"expected peak {format_size(plan.expected_peak)} within --max-mem "
        f"{format_size(plan.max_mem)} (promise: peak RSS <= {PROMISE_FACTOR} x max-mem "
        "+ interpreter baseline)."
    )
    Output.text("Dry run (--plan): nothing was written.")


def _prod(chunks: tuple[int, ...] | None) -> int:
    n = 1
    for c in chunks or ():
        n *= c
    return n


def render_result(result: CopyResult) -> None:
    rows = [
        [
            a.path,
            _dims(a.chunks),
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
        Column("compressor"),
        Column("raw", True),
        Column("stored", True),
        Column("ratio", True),
    ]
    Output.table(result.target, columns, rows)
    raw = sum(a.nbytes for a in result.arrays)
    rate = raw / 1e6 / result.elapsed if result.elapsed > 0 else 0.0
    extras = [f"copied {result.copied_keys:,} other keys unchanged"]
    if result.consolidated:
        extras.append("consolidated metadata written")
    if result.verified:
        extras.append("verified identical to the source")
    Output.text(
        f"wrote {result.target} in {result.elapsed:.1f} s ({rate:,.0f} MB/s raw); "
        + "; ".join(extras)
    )


def _run(
    plan: StorePlan,
    target: str,
    *,
    dry_run: bool,
    overwrite: bool,
    verify: bool,
    json_output: bool,
    progress: bool | None,
) -> None:
    check_target(target, overwrite=overwrite, sources=(plan.source,))
    if dry_run:
        print_json(plan.to_dict()) if json_output else render_plan(plan, target)
        return
    with _progress("tasks", progress) as bar:
        result = execute_store(plan, target, overwrite=overwrite, progress=bar, verify=verify)
    print_json(result.to_dict()) if json_output else render_result(result)


@app.command()
@reports_errors
def rechunk(
    store: StoreArg = DEFAULT_STORE,
    target: Annotated[
        str,
        typer.Argument(metavar="TARGET", help="Store to write; an existing one needs --overwrite."),
    ] = DEFAULT_TARGET,
    chunks: Annotated[str, typer.Option("--chunks", help=_CHUNKS_HELP)] = ...,  # type: ignore[assignment]
    array: ArrayOpt = None,
    max_mem: MaxMemOpt = DEFAULT_MAX_MEM,
    plan: PlanOpt = False,
    compressor: Annotated[
        str | None, typer.Option("--compressor", help=_COMPRESSOR_HELP + " Default: keep.")
    ] = None,
    checksum: ChecksumOpt = None,
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

    TARGET is written beside itself and renamed into place only when complete.

    Example: zarrgeno rechunk data/AG1000G-AO data/rechunk --chunks 12131437,81,2 --max-mem 4GB
    """
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
    )
    _run(
        store_plan,
        target,
        dry_run=plan,
        overwrite=overwrite,
        verify=verify,
        json_output=json_output,
        progress=progress,
    )


@app.command()
@reports_errors
def recompress(
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="[STORE] TARGET",
            help="Source store (default: $ZARRGENO_STORE, then data/AG1000G-AO) and target.",
            show_default=False,
        ),
    ],
    compressor: Annotated[str, typer.Option("--compressor", help=_COMPRESSOR_HELP)] = ...,  # type: ignore[assignment]
    checksum: ChecksumOpt = None,
    array: ArrayOpt = None,
    max_mem: MaxMemOpt = DEFAULT_MAX_MEM,
    plan: PlanOpt = False,
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

    Example: zarrgeno recompress data/AG1000G-AO data/zstd --compressor blosc:zstd:7:bitshuffle
    """
    if len(paths) == 1:
        source, target = default_store(), paths[0]
    elif len(paths) == 2:
        source, target = paths
    else:
        raise UsageError(f"expected [STORE] TARGET, got {len(paths)} arguments")
    store_plan = plan_recompress(
        source,
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
    )
    _run(
        store_plan,
        target,
        dry_run=plan,
        overwrite=overwrite,
        verify=verify,
        json_output=json_output,
        progress=progress,
    )


def render_codecs(report: CodecReport) -> None:
    rows = []
    for r in sorted(report.results, key=lambda r: r.projected_bytes):
        mark = " (current)" if r.current else ""
        mark += "  <- recommended" if r.spec == report.recommended else ""
        rows.append(
            [
                r.spec + mark,
                f"{r.ratio:.1f}",
                f"{r.encode_mbps:,.0f}",
                f"{r.decode_mbps:,.0f}",
                format_size(r.projected_bytes),
                r.chunks,
            ]
        )
    columns = [
        Column("codec"),
        Column("ratio", True),
        Column("encode MB/s", True),
        Column("decode MB/s", True),
        Column("projected size", True),
        Column("chunks", True),
    ]
    title = (
        f"{report.array}: {report.sample_chunks} sampled chunk(s), "
        f"{format_size(report.sample_bytes)} raw; array {format_size(report.array_bytes)} raw"
    )
    Output.table(title, columns, rows)
    Output.text(f"recommended: {report.recommended} ({RULE}; speeds are single-threaded)")


@app.command()
@reports_errors
def codecs(
    store: StoreArg = DEFAULT_STORE,
    array: Annotated[
        str | None,
        typer.Option("--array", help="Array to sample; default: the first genotype array."),
    ] = None,
    sample: Annotated[
        int, typer.Option("--sample", help="Chunks to sample, spread over the array.")
    ] = 3,
    codec: Annotated[
        list[str] | None,
        typer.Option(
            "--codec", help="Candidate compressor spec, repeatable; default: a built-in set."
        ),
    ] = None,
    checksum: Annotated[
        str | None,
        typer.Option("--checksum", help="Measure candidates with this checksum filter (crc32...)."),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Measure candidate codecs on a sample of your own chunks, and recommend one.

    Prints each codec's ratio, encode and decode MB/s (one thread) and projected stored size.

    Recommends the smallest codec that decodes at least half as fast as the fastest decoder.

    Example: zarrgeno codecs data/AG1000G-AO --array 2L/calldata/GT --sample 4
    """
    report = measure_codecs(store, array=array, sample=sample, candidates=codec, checksum=checksum)
    print_json(report.to_dict()) if json_output else render_codecs(report)


def _check_integrity(
    source: str,
    arrays: list[str] | None,
    progress: bool | None,
    json_output: bool,
    allow_missing: bool | None,
) -> None:
    with _progress("chunks", progress) as bar:
        if bar is not None:
            bar.start("checking", count_chunks(source, arrays=arrays))
        report = check_store(
            source,
            arrays=arrays,
            progress=bar.advance if bar else None,
            allow_missing=allow_missing,
        )
    if json_output:
        print_json(report.to_dict())
    else:
        render_integrity(report)
    if not report.ok:
        first = report.problems[0]
        raise BadDataError(
            f"{len(report.problems)} bad chunk(s) of {report.nchunks} in {report.location}; "
            f"first: {first.message}"
        )


def render_integrity(report: IntegrityReport) -> None:
    """A table of chunk counts per array, then one line per bad chunk."""
    rows = [
        [
            a.path,
            a.nchunks,
            a.missing,
            a.unreadable,
            a.corrupt,
            a.not_stored,
            "yes" if a.checksummed else "no",
        ]
        for a in report.arrays
    ]
    columns = [
        Column("array"),
        Column("chunks", numeric=True),
        Column("missing", numeric=True),
        Column("unreadable", numeric=True),
        Column("corrupt", numeric=True),
        Column("not stored", numeric=True),
        Column("checksum"),
    ]
    Output.table(f"Chunks of {report.location}", columns, rows)
    for problem in report.problems:
        Output.text(f"{problem.kind}: {problem.message}")
    verdict = "all chunks read and decoded" if report.ok else f"{len(report.problems)} bad chunk(s)"
    Output.text(f"{verdict}: {report.nchunks} checked in {report.elapsed:.1f} s")
    if report.not_stored:
        why = "as the writer intends" if report.writer_skips_fill else "as --allow-missing asks"
        Output.text(f"{report.not_stored} chunks not stored (fill value, {why})")


def render_verify(report: VerifyReport) -> None:
    Output.text(
        f"identical: {len(report.arrays)} array(s), {format_size(report.nbytes)} compared "
        f"in {report.elapsed:.1f} s ({report.source} vs {report.target})"
    )


@app.command()
@reports_errors
def verify(
    source: Annotated[
        str, typer.Argument(metavar="SRC", help="The original store, or the store to check.")
    ],
    target: Annotated[
        str | None,
        typer.Argument(
            metavar="[TARGET]", help="The store to compare with SRC.", show_default=False
        ),
    ] = None,
    array: Annotated[
        list[str] | None,
        typer.Option("--array", help="Array to check, repeatable; default: every array."),
    ] = None,
    max_mem: MaxMemOpt = DEFAULT_MAX_MEM,
    allow_missing: MissingOpt = None,
    progress: ProgressOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Check a store's chunks, or that TARGET holds the same data as SRC.

    With one store: reads and decodes every chunk through zarrgeno's checked path and lists
    each missing, unreadable or corrupt chunk (checksum filters are verified), with counts.

    With two: compares shapes, dtypes, fill values, attributes and decoded contents chunk
    by chunk in bounded memory, and names the first differing region (array, variants,
    samples).

    Exits with code 4 when anything is wrong.

    Example: zarrgeno verify data/AG1000G-AO data/rechunk
    """
    if target is None:
        _check_integrity(source, array, progress, json_output, allow_missing)
        return
    with _progress("blocks", progress) as bar:
        report = verify_stores(
            source,
            target,
            arrays=array,
            max_mem=max_mem,
            progress=bar,
            allow_missing=allow_missing,
        )
    print_json(report.to_dict()) if json_output else render_verify(report)
