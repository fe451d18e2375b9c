"""``zarrgeno info``: the store tree, zarr's ``.info`` per array, and a summary table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from zarrgeno.cli.common import (
    MISMATCH_REASONS,
    JsonOpt,
    StoreArg,
    app,
    print_json,
    reports_errors,
)
from zarrgeno.defaults import DEFAULT_STORE
from zarrgeno.render import Column, Output
from zarrgeno.sizes import format_size

if TYPE_CHECKING:
    from zarrgeno.io.inspection import StoreInfo


@app.command()
@reports_errors
def info(
    store: StoreArg = DEFAULT_STORE,
    path: Annotated[
        str | None,
        typer.Argument(
            metavar="PATH", help="An array or group inside the store, e.g. 2L/calldata/GT."
        ),
    ] = None,
    json_output: JsonOpt = False,
    summary_only: Annotated[
        bool,
        typer.Option("--summary", help="Only the tree and the summary table, no .info blocks."),
    ] = False,
) -> None:
    """Show a store's tree, zarr's .info for each array, and a per-array summary.

    Reads metadata and key listings, and no chunk data but the small contig index of a
    store that keeps all contigs in one array, so it is quick on remote stores. Says
    whether the store has consolidated metadata (.zmetadata) and whether it agrees with
    each array's and group's own metadata, and which variants belong to each contig.

    Example: zarrgeno info data/AG1000G-AO 2L/calldata/GT
    """
    from zarrgeno.io.inspection import inspect_store

    result = inspect_store(store, path)
    if json_output:
        print_json(result.to_dict())
        return
    render_info(result, blocks=not summary_only)
    if result.contigs_problem:  # the tree and the arrays are shown; the contigs cannot be
        Output.text(f"Contigs: cannot be split: {result.contigs_problem}")


def render_info(result: StoreInfo, *, blocks: bool = True) -> None:
    """Print the tree, the .info blocks and the summary table."""
    if not result.consolidated:
        consolidated = "no consolidated metadata"
    elif result.consolidated_agrees:
        consolidated = "consolidated metadata, agrees with the per-array metadata"
    else:
        n = len(result.consolidated_mismatches)
        consolidated = f"consolidated metadata, disagrees on {n} document{'s' * (n != 1)}"
    if result.zarr_format == 3:
        consolidated = "Zarr format 3, read by zarrgeno from each node's zarr.json"
    Output.text(f"Store: {result.location} ({result.store_type}, {consolidated})")
    if result.consolidated_mismatches:
        for key, reason in result.consolidated_mismatches:
            Output.text(f"  {key}: {MISMATCH_REASONS.get(reason, reason)}")
        Output.text(f"  Rewrite it with: zarrgeno consolidate {result.location}")
    Output.text("")
    Output.text(result.tree)
    for path, why in result.refused:  # hidden from zarr, so absent from its tree
        Output.text(f"refused: {path}: {why}")
    Output.text("")
    if blocks:
        for arr in result.arrays:
            width = max(len(k) for k, _ in arr.info_items())
            lines = "\n".join(f"{k:<{width}} : {v}" for k, v in arr.info_items())
            Output.text(lines, hang=width + 3)  # a long value continues under itself
            Output.text("")
    if result.contigs:
        parts = [f"{c} {b - a:,} variants ({p} {a:,}-{b:,})" for c, p, a, b in result.contigs]
        Output.text("Contigs: " + ", ".join(parts))
        Output.text("")
    if not result.arrays:
        Output.text("No arrays.")
        return
    rows = [
        [
            a.path + (" *" if a.is_genotype else ""),
            "x".join(map(str, a.shape)),
            a.dtype,
            "x".join(map(str, a.chunks)),
            format_size(a.nbytes),
            format_size(a.nbytes_stored),
            f"{a.storage_ratio:.1f}",
            f"{a.nchunks_initialized}/{a.nchunks}",
            format_size(a.avg_chunk_stored),
            a.codecs_spec,
        ]
        for a in result.arrays
    ]
    footer = [
        f"total ({len(result.arrays)} array{'s' if len(result.arrays) != 1 else ''})",
        "",
        "",
        "",
        format_size(result.nbytes),
        format_size(result.nbytes_stored),
        f"{result.storage_ratio:.1f}",
        f"{result.nchunks_initialized}/{result.nchunks}",
        "",
        "",
    ]
    columns = [
        Column("array"),
        Column("shape"),
        Column("dtype"),
        Column("chunks"),
        Column("bytes", numeric=True),
        Column("stored", numeric=True),
        Column("ratio", numeric=True),
        Column("chunks init", numeric=True),
        Column("avg chunk", numeric=True),
        Column("compressor"),
    ]
    Output.table("Summary (* = genotype array)", columns, rows, footer)
