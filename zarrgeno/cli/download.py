"""`zarrgeno download`: mirror a remote store to a local directory."""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from zarrgeno.cli.common import JsonOpt, app, print_json, reports_errors
from zarrgeno.defaults import (
    DEFAULT_JOBS,
    FETCH_CONCURRENCY_ENV,
    MAX_FETCH_CONCURRENCY,
    TUTORIAL_EXCLUDE,
)
from zarrgeno.render import Column, Output
from zarrgeno.sizes import format_size

if TYPE_CHECKING:
    from zarrgeno.download.fetch import DownloadReport, ProgressFn
    from zarrgeno.download.plan import DownloadPlan

_URL_HELP = "The remote store: gs://BUCKET/PATH (read anonymously), s3://BUCKET/PATH or https://."
_DEST_HELP = (
    "Local directory to mirror into; default data/NAME, NAME being the URL's last part "
    "(the tutorial's URL lands on data/AG1000G-AO, zarrgeno's default store)."
)
_EXCLUDE_HELP = (
    "Skip keys matching this Python regular expression (matched at the start of the key "
    "relative to the store root, like gsutil rsync -x); repeatable."
)
_INCLUDE_HELP = (
    "Fetch only keys matching this regular expression (group metadata is always fetched); "
    "repeatable."
)


@contextlib.contextmanager
def _progress(plan: DownloadPlan) -> Iterator[ProgressFn | None]:
    """A bar on stderr when it is a terminal: bytes (when the sizes are known) or files."""
    if not plan.fetch or not Output.err_is_terminal():
        yield None
        return
    # rich's bar only when one is drawn: --help imports this module.
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    n, total = len(plan.fetch), plan.fetch_bytes
    by_bytes = total is not None
    middle = (
        [DownloadColumn(), TransferSpeedColumn(), TextColumn("{task.fields[files]} files")]
        if by_bytes
        else [MofNCompleteColumn(), TextColumn("files, {task.fields[nbytes]}")]
    )
    done = {"files": 0, "bytes": 0}
    started = time.perf_counter()
    with Progress(
        TextColumn("downloading"),
        BarColumn(),
        *middle,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Output.err_console(),
        transient=True,
    ) as bar:
        task = bar.add_task("", total=total if by_bytes else n, files=f"0/{n}", nbytes="0 B")

        def advance(n_files: int, n_bytes: int) -> None:
            done["files"] += n_files
            done["bytes"] += n_bytes
            bar.update(
                task,
                advance=n_bytes if by_bytes else n_files,
                files=f"{done['files']}/{n}",
                nbytes=f"{format_size(done['bytes'])} at {_rate(done['bytes'], started)}",
            )

        yield advance


@app.command()
@reports_errors
def download(
    url: Annotated[str, typer.Argument(metavar="URL", help=_URL_HELP)],
    dest: Annotated[str | None, typer.Argument(metavar="DEST", help=_DEST_HELP)] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", "-x", help=_EXCLUDE_HELP)
    ] = None,
    include: Annotated[
        list[str] | None, typer.Option("--include", "-i", help=_INCLUDE_HELP)
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", "-n", help="List what would be fetched and its size only."),
    ] = False,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            "-j",
            "--fetch-concurrency",
            min=1,
            max=MAX_FETCH_CONCURRENCY,
            envvar=FETCH_CONCURRENCY_ENV,
            show_envvar=True,
            help="Files transferred at once (requests in flight).",
        ),
    ] = DEFAULT_JOBS,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify/--no-verify",
            help="Decode every chunk as it arrives; a chunk that does not decode is an error.",
        ),
    ] = True,
    timeout: Annotated[
        float | None,
        typer.Option(help="Connect and read timeout, seconds (default: 10 connect, 30 read)."),
    ] = None,
    retries: Annotated[
        int | None,
        typer.Option(min=0, help="Retries of a failed request, waits doubling (default: 4)."),
    ] = None,
    deadline: Annotated[
        float | None,
        typer.Option(min=0.1, help="Seconds one file may take, retries included (default: 120)."),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Delete DEST first and download afresh (a finished mirror, or a directory "
            "that is not a download of URL).",
        ),
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Mirror a remote Zarr store to a local directory, with parallel transfers.

    Resumable: rerun the same command after an interruption and only what is missing is
    fetched; a file appears under its final name only once complete (and, for a chunk, once
    it decodes). A finished mirror holds the source's files and nothing else. Requests that
    time out or fail (5xx, dropped connections, short bodies) are retried with back-off; what
    still fails stops the download with an error.

    The Ag1000G tutorial's gsutil rsync, without gsutil:

    Example: zarrgeno download gs://vo_agam_release/v3/snp_genotypes/all/AG1000G-AO/
    data/AG1000G-AO --exclude '.*/calldata/(AD|GQ|MQ)/.*'
    """
    from zarrgeno.download.fetch import execute_download
    from zarrgeno.download.plan import plan_download
    from zarrgeno.io.remote_options import RemoteOptions

    options = RemoteOptions.from_env(retries=retries, deadline=deadline).with_timeout(timeout)
    plan = plan_download(
        url,
        dest,
        include=include or (),
        exclude=exclude or (),
        overwrite=overwrite,
        options=options,
        sizes=dry_run,
        jobs=jobs,
    )
    if plan.kept and not json_output:
        Output.note(f"also fetching {', '.join(plan.kept)}: the store needs them (--exclude drops)")
    if dry_run:
        if json_output:
            print_json(plan.to_dict())
        else:
            _render_plan(plan)
        return
    with _progress(plan) as progress:
        report = execute_download(plan, jobs=jobs, verify=verify, progress=progress)
    if json_output:
        print_json(report.to_dict())
    else:
        _render_report(report)


def _rate(nbytes: int, started: float) -> str:
    seconds = time.perf_counter() - started
    return f"{format_size(nbytes / seconds)}/s" if seconds > 0 else "?"


def _node(key: str) -> str:
    """The array or group a key belongs to: its directory (``/`` for the root)."""
    parent = key.rsplit("/", 1)[0] if "/" in key else "/"
    return parent


def _render_plan(plan: DownloadPlan) -> None:
    rows: dict[str, list[int | None]] = defaultdict(lambda: [0, 0])
    for f in plan.fetch:
        row = rows[_node(f.key)]
        row[0] += 1  # type: ignore[operator]
        row[1] = None if row[1] is None or f.size is None else row[1] + f.size
    verb = {"new": "new", "resume": "resuming", "replace": "replacing"}[plan.mode]
    Output.text(f"Would download {plan.url} -> {plan.dest} ({verb})")
    if rows:
        Output.table(
            None,
            [Column("array or group"), Column("files", True), Column("bytes", True)],
            [[k, n, "?" if b is None else format_size(b)] for k, (n, b) in sorted(rows.items())],
            [
                "total",
                len(plan.fetch),
                "?" if plan.fetch_bytes is None else format_size(plan.fetch_bytes),
            ],
        )
    lines = [f"would fetch {len(plan.fetch):,} files ({_size(plan.fetch_bytes)})"]
    if plan.complete:
        done = format_size(plan.complete_bytes)
        lines.append(f"{len(plan.complete):,} already complete ({done})")
    if plan.excluded:
        lines.append(f"{len(plan.excluded):,} excluded")
    if plan.absent:
        lines.append(f"{len(plan.absent):,} chunk keys absent on the server")
    Output.text("; ".join(lines))


def _size(n: int | None) -> str:
    return "size unknown" if n is None else f"{n:,} bytes, {format_size(n)}"


def _render_report(report: DownloadReport) -> None:
    Output.text(f"Downloaded {report.url} -> {report.dest}")
    rows = [
        ["fetched", report.fetched_files, format_size(report.fetched_bytes)],
        ["already complete", report.complete_files, format_size(report.complete_bytes)],
        ["excluded", report.excluded_files, ""],
        ["absent on the server", len(report.absent), ""],
    ]
    Output.table(None, [Column(""), Column("files", True), Column("bytes", True)], rows)
    rate = format_size(report.bytes_per_second)
    Output.text(
        f"{report.seconds:.1f} s, {rate}/s; {report.verified_chunks:,} chunks decoded and "
        f"verified; {report.retries:,} requests retried"
    )
    if report.dropped_consolidated:
        Output.text(
            f".zmetadata: dropped the {report.dropped_consolidated:,} entries of excluded "
            "documents, so excluded arrays do not appear in the mirror"
        )
    if report.absent:
        from zarrgeno.io.store import StoreRef, skips_fill_chunks

        skipped = skips_fill_chunks(StoreRef.from_source(str(report.dest)).mapping_store())
        reads = (
            "the store's writer leaves out fill-value chunks, and zarrgeno reads them so"
            if skipped
            else "zarr reads them as the fill value, zarrgeno only with --allow-missing"
        )
        Output.note(
            f"{len(report.absent):,} chunk keys do not exist on the server (e.g. "
            f"{report.absent[0]}); {reads}"
        )
    if report.stale_consolidated:
        Output.note(
            f"the server's .zmetadata lists {len(report.stale_consolidated):,} documents it "
            f"does not have (e.g. {report.stale_consolidated[0]}); run `zarrgeno consolidate "
            f"{report.dest}` to rewrite it from the documents present"
        )


__all__ = ["TUTORIAL_EXCLUDE", "download"]
