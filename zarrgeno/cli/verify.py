"""`zarrgeno verify`: check a store's chunks, or that two stores hold the same data."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from zarrgeno.cli.common import (
    DEFAULT_MAX_MEM,
    FetchConcurrencyOpt,
    JsonOpt,
    MaxMemOpt,
    MissingOpt,
    ProgressOpt,
    app,
    print_json,
    reports_errors,
    use_fetch_concurrency,
)
from zarrgeno.cli.progress import task_progress
from zarrgeno.errors import BadDataError
from zarrgeno.render import Column, Output
from zarrgeno.sizes import format_size

if TYPE_CHECKING:
    from zarrgeno.io.integrity import IntegrityReport
    from zarrgeno.rewrite.verify import VerifyReport


def _check_integrity(
    source: str,
    arrays: list[str] | None,
    progress: bool | None,
    json_output: bool,
    allow_missing: bool | None,
    max_mem: str,
) -> None:
    from zarrgeno.io.integrity import check_store, total_chunks
    from zarrgeno.sizes import parse_size

    with task_progress("chunks", progress) as bar:
        if bar is not None:
            bar.start("checking", total_chunks(source, arrays=arrays))
        report = check_store(
            source,
            arrays=arrays,
            progress=bar.advance if bar else None,
            allow_missing=allow_missing,
            max_mem=parse_size(max_mem),
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
    fetch_concurrency: FetchConcurrencyOpt = None,
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
    use_fetch_concurrency(fetch_concurrency)
    if target is None:
        _check_integrity(source, array, progress, json_output, allow_missing, max_mem)
        return
    from zarrgeno.rewrite.verify import verify_stores

    with task_progress("blocks", progress) as bar:
        report = verify_stores(
            source,
            target,
            arrays=array,
            max_mem=max_mem,
            progress=bar,
            allow_missing=allow_missing,
        )
    print_json(report.to_dict()) if json_output else render_verify(report)
