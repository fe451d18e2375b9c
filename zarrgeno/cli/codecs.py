"""`zarrgeno codecs`: measure candidate codecs on a sample of a store's chunks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from zarrgeno.cli.common import JsonOpt, StoreArg, app, print_json, reports_errors
from zarrgeno.defaults import DEFAULT_STORE
from zarrgeno.render import Column, Output
from zarrgeno.sizes import format_size

if TYPE_CHECKING:
    from zarrgeno.rewrite.measure import CodecReport


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
    from zarrgeno.rewrite.measure import RULE

    Output.text(f"recommended: {report.recommended} ({RULE}; speeds are one thread's CPU time)")


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
    from zarrgeno.rewrite.measure import measure_codecs

    report = measure_codecs(store, array=array, sample=sample, candidates=codec, checksum=checksum)
    print_json(report.to_dict()) if json_output else render_codecs(report)
