"""`zarrgeno consolidate`: write consolidated metadata (.zmetadata)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from zarrgeno.cli.common import (
    MISMATCH_REASONS,
    JsonOpt,
    StoreArg,
    app,
    print_json,
    reports_errors,
)
from zarrgeno.defaults import DEFAULT_STORE
from zarrgeno.render import Output

if TYPE_CHECKING:
    from zarrgeno.io.consolidate import ConsolidateReport


@app.command()
@reports_errors
def consolidate(store: StoreArg = DEFAULT_STORE, json_output: JsonOpt = False) -> None:
    """Write consolidated metadata (.zmetadata) so that a store opens with one read.

    Gathers every group's and array's .zgroup, .zarray and .zattrs into .zmetadata (in
    Zarr format 3: every zarr.json into the root zarr.json, where zarr-python 3 reads it),
    replacing an old one that disagrees with them (checked first: nothing is written when
    it agrees). `zarrgeno info` shows whether a store has it and whether it agrees.

    Example: zarrgeno consolidate data/AG1000G-AO
    """
    from zarrgeno.io.consolidate import consolidate_store

    report = consolidate_store(store)
    if json_output:
        print_json(report.to_dict())
        return
    _render_consolidate(report)


def _documents(n: int) -> str:
    return f"{n} document{'s' * (n != 1)}"


def _render_consolidate(report: ConsolidateReport) -> None:
    nodes = f"{report.n_groups} groups and {report.n_arrays} arrays"
    if not report.written:
        Output.text(f"{report.location}: consolidated metadata is up to date ({nodes})")
        return
    was = {
        "absent": "there was none",
        "invalid": "replaced an unreadable .zmetadata",
        "disagreed": f"replaced one that disagreed on {_documents(len(report.mismatches))}",
    }[report.before]
    where = ".zmetadata" if report.document == ".zmetadata" else "the root zarr.json"
    Output.text(f"{report.location}: wrote consolidated metadata in {where} for {nodes} ({was})")
    for key, reason in report.mismatches:
        Output.text(f"  {key}: {MISMATCH_REASONS.get(reason, reason)}")
