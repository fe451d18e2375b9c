"""`zarrgeno simulate`: write an AG1000G-AO-shaped store of simulated genotypes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from zarrgeno.cli.common import JsonOpt, app, print_json, reports_errors
from zarrgeno.defaults import (
    CONTIGS,
    DEFAULT_CHUNKS,
    DEFAULT_SCALE,
    DEFAULT_SPEC,
    REAL_SAMPLES,
)
from zarrgeno.render import Column, Output
from zarrgeno.sizes import format_size

if TYPE_CHECKING:
    from zarrgeno.simulate.genotypes import SimulationReport


@contextlib.contextmanager
def _progress_bar(total: int) -> Iterator[Callable[[int], None] | None]:
    """A rich progress bar on stderr when it is a terminal; nothing otherwise."""
    if not Output.err_is_terminal():
        yield None
        return
    # rich's bar only when one is drawn: --help imports this module.
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("variants"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Output.err_console(), transient=True) as bar:
        task = bar.add_task("simulating", total=total)
        yield lambda n: bar.advance(task, n)


def _render(report: SimulationReport) -> None:
    rows = [
        [
            c.contig,
            " x ".join(str(n) for n in c.shape),
            format_size(c.nbytes),
            format_size(c.nbytes_stored),
            f"{c.ratio:.1f}",
        ]
        for c in report.contigs
    ]
    footer = [
        "total",
        "",
        format_size(report.nbytes),
        format_size(report.nbytes_stored),
        f"{report.ratio:.1f}",
    ]
    Output.table(
        f"{report.dest} (seed {report.seed}, scale {report.scale:g}, {report.compressor})",
        [
            "contig",
            "shape",
            Column("raw", True),
            Column("stored", True),
            Column("ratio", True),
        ],
        rows,
        footer,
    )
    variants = sum(c.shape[0] for c in report.contigs)
    rate = report.nbytes / report.seconds / 1e6 if report.seconds > 0 else float("inf")
    Output.text(f"wrote {variants:,} variants in {report.seconds:.1f} s ({rate:,.0f} MB/s raw)")


_DEST_HELP = "Directory to create; an existing one needs --overwrite."
_OVERWRITE_HELP = (
    "Replace DEST (and SITES_DEST) when it is an empty directory or an earlier output of this "
    "same command (removed only on success); anything else there is never replaced."
)
_SEED_HELP = "Random seed (>= 0); a seed always gives the same genotypes."
_CONTIG_HELP = f"Contig to simulate, repeatable ({', '.join(CONTIGS)}); default: all."
_SCALE_HELP = "Fraction of the real AG1000G-AO sizes; 1 gives 48,525,747 variants for 2L."
_CHUNKS_HELP = "Chunk shape VARIANTS,SAMPLES,PLOIDY (-1 = whole axis), clamped to each contig."
_COMPRESSOR_HELP = "Compressor spec: blosc:CNAME:CLEVEL:SHUFFLE, zstd:3, lz4, zlib:6, none, JSON."
_SITES_HELP = (
    "Also write a sites store here (CONTIG/variants/POS, REF, ALT), for stats --sites --region."
)
_FILTERS_HELP = (
    "Also write a site-filter store here (CONTIG/variants/filter_pass, about 70% of sites "
    "pass, in runs), for stats --site-filters."
)


@app.command()
@reports_errors
def simulate(
    dest: Annotated[str, typer.Argument(metavar="DEST", help=_DEST_HELP)],
    contig: Annotated[list[str] | None, typer.Option("--contig", "-c", help=_CONTIG_HELP)] = None,
    scale: Annotated[float, typer.Option(help=_SCALE_HELP)] = DEFAULT_SCALE,
    samples: Annotated[int, typer.Option(help="Number of samples.")] = REAL_SAMPLES,
    chunks: Annotated[str, typer.Option(help=_CHUNKS_HELP)] = ",".join(map(str, DEFAULT_CHUNKS)),
    compressor: Annotated[str, typer.Option(help=_COMPRESSOR_HELP)] = DEFAULT_SPEC,
    seed: Annotated[int, typer.Option(help=_SEED_HELP)] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=_OVERWRITE_HELP)] = False,
    sites: Annotated[str | None, typer.Option(metavar="SITES_DEST", help=_SITES_HELP)] = None,
    site_filters: Annotated[
        str | None, typer.Option("--site-filters", metavar="FILTERS_DEST", help=_FILTERS_HELP)
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Write a store shaped like AG1000G-AO, filled with realistic simulated genotypes.

    Each contig gets CONTIG/calldata/GT, int8 (variants, samples, 2); the root gets `samples`.

    Calls are mostly hom-ref, with rare-skewed variants and missing calls (-1, -1).

    Prints each contig's shape, raw and stored bytes, storage ratio, and the time taken.

    Example: zarrgeno simulate data/AG1000G-AO --contig 2L --scale 0.1 --seed 1
    """
    from zarrgeno.simulate.genotypes import contig_sizes, simulate_store

    contigs = tuple(contig) if contig else CONTIGS
    total = sum(contig_sizes(contigs, scale).values())  # validates before anything is written
    if sites is not None:
        from zarrgeno.io.store import StoreRef
        from zarrgeno.io.writing import check_target
        from zarrgeno.simulate.sites import SITES_COMMAND, simulate_sites

        check_target(
            sites, overwrite=overwrite, command=SITES_COMMAND, sources=(StoreRef.from_source(dest),)
        )
    if site_filters is not None:
        _check_filters_target(site_filters, dest, overwrite)
    with _progress_bar(total) as progress:
        report = simulate_store(
            dest,
            contigs=contigs,
            scale=scale,
            n_samples=samples,
            chunks=chunks,
            compressor=compressor,
            seed=seed,
            overwrite=overwrite,
            progress=progress,
        )
    written = None
    if sites is not None:
        written = simulate_sites(
            sites, contigs=contigs, scale=scale, seed=seed, genotypes=dest, overwrite=overwrite
        )
        Output.note(f"sites written to {written}")
    filters = None
    if site_filters is not None:
        from zarrgeno.simulate.sitefilters import simulate_site_filters

        filters = simulate_site_filters(
            site_filters, contigs=contigs, scale=scale, seed=seed, genotypes=dest,
            overwrite=overwrite,
        )  # fmt: skip
        Output.note(f"site filters written to {filters}")
    if json_output:
        print_json(
            report.to_dict()
            | ({"sites": str(written)} if written else {})
            | ({"site_filters": str(filters)} if filters else {})
        )
    else:
        _render(report)


def _check_filters_target(site_filters: str, dest: str, overwrite: bool) -> None:
    """Refuse the --site-filters target before anything is written."""
    from zarrgeno.io.store import StoreRef
    from zarrgeno.io.writing import check_target
    from zarrgeno.simulate.sitefilters import FILTERS_COMMAND

    check_target(
        site_filters,
        overwrite=overwrite,
        command=FILTERS_COMMAND,
        sources=(StoreRef.from_source(dest),),
    )
