"""``zarrgeno stats``: check the options, plan and count in one pass, render the counts."""

from __future__ import annotations

import contextlib
import copy
import functools
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
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
from zarrgeno.defaults import DEFAULT_SAMPLE_COLUMN, DEFAULT_STORE, Semantics
from zarrgeno.errors import MissingInputError, StoreIOError, UsageError
from zarrgeno.render import Column, Output

if TYPE_CHECKING:
    from zarrgeno.stats.results import StatsResult

DASK_BACKENDS = ("dask", "distributed")

# The --help panels of `zarrgeno stats`.
SELECTION, STATISTICS, OUTPUT, BACKEND = "Selection", "Statistics", "Output", "Backend"
COHORTS_FILTERS = "Cohorts and filters"


def _in_panel(alias: Any, panel: str) -> Any:
    """The ``typer.Option`` of a shared ``Annotated`` option, shown in ``panel`` of this
    command's --help."""
    info = copy.copy(typing.get_args(alias)[1])
    info.rich_help_panel = panel
    return info


StatsMaxMemOpt = Annotated[str, _in_panel(MaxMemOpt, BACKEND)]
StatsJsonOpt = Annotated[bool, _in_panel(JsonOpt, OUTPUT)]
StatsMissingOpt = Annotated[bool | None, _in_panel(MissingOpt, SELECTION)]
StatsProgressOpt = Annotated[bool | None, _in_panel(ProgressOpt, OUTPUT)]

QcOpt = Annotated[
    bool,
    typer.Option(
        "--qc",
        help=(
            "Also compute QC statistics in the same pass, as plink2 does: allele counts "
            "and frequencies, genotype counts, HWE p, hom-alt calls and F per sample "
            "(in --json and a Zarr --output; --format plink2 implies it)."
        ),
        rich_help_panel=STATISTICS,
    ),
]
HardyMidpOpt = Annotated[
    bool,
    typer.Option(
        "--hardy-midp",
        help="The .hardy file's HWE mid-p (plink2 --hardy midp) instead of p.",
        rich_help_panel=STATISTICS,
    ),
]

SiteFiltersOpt = Annotated[
    str | None,
    typer.Option(
        "--site-filters",
        metavar="STORE",
        help=(
            "Count only the sites that pass: a site-filter store (MalariaGEN layout, "
            "CONTIG/variants/filter_pass, one bool per variant), local or a URL."
        ),
        rich_help_panel=COHORTS_FILTERS,
    ),
]
SiteFilterOpt = Annotated[
    str | None,
    typer.Option(
        "--site-filter",
        metavar="ARRAY",
        help=(
            "Count only the sites that pass the bool array ARRAY of the store "
            "(CONTIG/variants/ARRAY, e.g. FILTER_PASS; VCF Zarr: variant_filter, its PASS "
            "column); with --site-filters, ARRAY of that store."
        ),
        rich_help_panel=COHORTS_FILTERS,
    ),
]

WindowBpOpt = Annotated[
    int | None,
    typer.Option(
        "--window-bp",
        min=1,
        metavar="N",
        help="Windows of N bp (positions: the store's or --sites') instead of --window.",
        rich_help_panel=OUTPUT,
    ),
]
WindowsOutputOpt = Annotated[
    Path | None,
    typer.Option(
        "--windows-output",
        metavar="FILE",
        help="Write the table of windows (rates, MAF...) to FILE.tsv or FILE.json.",
        rich_help_panel=OUTPUT,
    ),
]

SampleMetadataOpt = Annotated[
    Path | None,
    typer.Option(
        "--sample-metadata",
        metavar="FILE",
        help=("Sample table, CSV or TSV (as MalariaGEN's samples.meta.csv), for --cohort-by."),
        rich_help_panel=COHORTS_FILTERS,
    ),
]
SampleColumnOpt = Annotated[
    str,
    typer.Option(
        "--sample-column",
        metavar="NAME",
        help="The --sample-metadata column of sample ids.",
        rich_help_panel=COHORTS_FILTERS,
    ),
]
CohortByOpt = Annotated[
    str | None,
    typer.Option(
        "--cohort-by",
        metavar="COLUMN[,COLUMN]",
        help=(
            "Per-cohort allele counts, frequencies and summaries, a cohort per value of "
            "these --sample-metadata columns (country,year: Angola_2009); implies --qc. "
            "--format plink2 adds PATH.COHORT.afreq files."
        ),
        rich_help_panel=COHORTS_FILTERS,
    ),
]
MinCohortSizeOpt = Annotated[
    int,
    typer.Option(
        "--min-cohort-size",
        min=1,
        metavar="N",
        help="Leave out cohorts of fewer than N selected samples (a note names them).",
        rich_help_panel=COHORTS_FILTERS,
    ),
]


def _cohort_spec(
    metadata: Path | None, cohort_by: str | None, sample_column: str, min_size: int
) -> Any:
    """The :class:`zarrgeno.stats.cohorts.CohortSpec` the options ask for, or None."""
    if metadata is None and cohort_by is None:
        if sample_column != DEFAULT_SAMPLE_COLUMN or min_size != 1:
            raise UsageError("--sample-column and --min-cohort-size apply to --cohort-by")
        return None
    if cohort_by is None:
        raise UsageError("--sample-metadata needs --cohort-by COLUMN[,COLUMN]")
    if metadata is None:
        raise UsageError("--cohort-by needs --sample-metadata FILE (CSV or TSV)")
    from zarrgeno.stats.cohorts import CohortSpec

    return CohortSpec(metadata, tuple(cohort_by.split(",")), sample_column, min_size)


@functools.cache
def _builtin_backends() -> tuple[str, tuple[str, ...]]:
    """The default backend and the built-in ones, for the help of --backend: read when the
    command is built, not when this module is imported (`zarrgeno --help` imports it).
    Plug-ins are left to `zarrgeno backends`: listing them reads every installed
    distribution's entry points, which each `zarrgeno stats` would pay for."""
    from zarrgeno.stats.backends import BUILTIN, DEFAULT_BACKEND

    return DEFAULT_BACKEND, tuple(BUILTIN)


def _backend(value: str | None) -> str | None:
    if value is None:  # not given: chosen once the store is open (see default_backend)
        return None
    from zarrgeno.stats.backends import backend_names, is_backend_name

    if not is_backend_name(value):
        raise typer.BadParameter(f"{value!r} is not one of: {', '.join(backend_names())}")
    return value


def _samples(value: str | None) -> list[str] | None:
    """``A,B,C`` or ``@file`` (one name per line) -> names."""
    if value is None:
        return None
    if value.startswith("@"):
        path = Path(value[1:]).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise MissingInputError(f"--samples: no file {path}") from None
        except OSError as exc:
            raise UsageError(f"--samples: cannot read {path}: {exc.strerror or exc}") from None
        names = [
            line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
        ]
    else:
        names = [part.strip() for part in value.split(",") if part.strip()]
    if not names:
        raise UsageError("--samples names no sample")
    return names


@app.command()
@reports_errors
def stats(
    store: StoreArg = DEFAULT_STORE,
    contig: Annotated[
        list[str] | None,
        typer.Option(
            "--contig",
            "-c",
            metavar="CONTIG",
            help="Contig to count (repeatable). Default: every contig found.",
            rich_help_panel=SELECTION,
        ),
    ] = None,
    variant_range: Annotated[
        str | None,
        typer.Option(
            "--range",
            metavar="START:STOP",
            help="Variants START:STOP (0-based, within each contig).",
            rich_help_panel=SELECTION,
        ),
    ] = None,
    samples: Annotated[
        str | None,
        typer.Option(
            metavar="NAMES",
            help="Samples to count: A,B,C or @FILE with one name per line.",
            rich_help_panel=SELECTION,
        ),
    ] = None,
    region: Annotated[
        list[str] | None,
        typer.Option(
            "--region",
            metavar="CONTIG[:START-END]",
            help=(
                "Variants by position, 1-based, both ends included, as malariagen_data: "
                "2L:20,000,000-21,000,000 or X (repeatable, one per contig; not with -c or "
                "--range). Positions come from --sites or the store's own POS."
            ),
            rich_help_panel=SELECTION,
        ),
    ] = None,
    sites: Annotated[
        str | None,
        typer.Option(
            "--sites",
            metavar="SITES_STORE",
            help=(
                "Store of variant positions (MalariaGEN sites layout, CONTIG/variants/POS) "
                "for --region and the POS column of --output."
            ),
            rich_help_panel=SELECTION,
        ),
    ] = None,
    semantics: Annotated[
        Semantics,
        typer.Option(
            case_sensitive=False,
            help=(
                "tutorial: missing = allele 0 is -1, het = alleles differ. "
                "sgkit: missing = any allele < 0, het = called and different."
            ),
            rich_help_panel=STATISTICS,
        ),
    ] = Semantics.TUTORIAL,
    json_output: StatsJsonOpt = False,
    per_sample: Annotated[
        bool,
        typer.Option(
            "--per-sample", help="Also print the per-sample table.", rich_help_panel=OUTPUT
        ),
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            metavar="PATH",
            help="Write per-variant and per-sample counts: PATH.zarr (Zarr) or PATH/ (TSV files).",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    output_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            metavar="zarr|tsv|plink2",
            help=(
                "Format of --output (default: from its name); plink2: PATH is a prefix, "
                "and PATH.afreq, .gcount, .hardy, .vmiss, .smiss and .het are written as "
                "plink2 2.0 writes them."
            ),
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE.png",
            help="Draw missing rate and heterozygosity along each contig (.png, .svg or .pdf).",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    window: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="Variants per window of --plot, --windows-output (default: ~600 windows).",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    visualize: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE.svg",
            help="dask backends: also draw the task graph (needs Graphviz's dot).",
            rich_help_panel=BACKEND,
        ),
    ] = None,
    qc: QcOpt = False,
    hardy_midp: HardyMidpOpt = False,
    site_filters: SiteFiltersOpt = None,
    site_filter: SiteFilterOpt = None,
    window_bp: WindowBpOpt = None,
    windows_output: WindowsOutputOpt = None,
    sample_metadata: SampleMetadataOpt = None,
    sample_column: SampleColumnOpt = DEFAULT_SAMPLE_COLUMN,
    cohort_by: CohortByOpt = None,
    min_cohort_size: MinCohortSizeOpt = 1,
    allow_missing: StatsMissingOpt = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace an existing --output, --plot, --windows-output or --visualize file.",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            "-b",
            metavar="NAME",
            callback=_backend,
            show_default=_builtin_backends()[0],
            help=f"How to run: {', '.join(_builtin_backends()[1])}, or a plug-in (see "
            "`zarrgeno backends`); default dask with --visualize.",
            rich_help_panel=BACKEND,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-w",
            min=1,
            metavar="N",
            help=(
                "Threads (threads, dask) or processes (multiprocessing, local cluster); "
                "default: cores."
            ),
            rich_help_panel=BACKEND,
        ),
    ] = None,
    threads_per_worker: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="Threads per worker of the local distributed cluster (default 1).",
            rich_help_panel=BACKEND,
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            metavar="tcp|tls://HOST:PORT",
            help="Use this running `dask scheduler` (implies --backend distributed) instead "
            "of a local cluster.",
            rich_help_panel=BACKEND,
        ),
    ] = None,
    tls_ca_file: TlsCaFileOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    unit_timeout: Annotated[
        float | None,
        typer.Option(
            min=0.1,
            metavar="SECONDS",
            help=(
                "multiprocessing: when no unit finishes for this long, kill the workers and "
                "rerun their units alone with this limit; a unit that exceeds it again stops "
                "the run naming its chunk. Default: no limit."
            ),
            rich_help_panel=BACKEND,
        ),
    ] = None,
    persist: Annotated[
        bool,
        typer.Option(
            "--persist",
            help="distributed: keep the genotypes in worker memory, then count (as the tutorial).",
            rich_help_panel=BACKEND,
        ),
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=0.1,
            metavar="SECONDS",
            help="distributed: give up on --scheduler after this long (10).",
            rich_help_panel=BACKEND,
        ),
    ] = None,
    max_mem: StatsMaxMemOpt = DEFAULT_MAX_MEM,
    fetch_concurrency: FetchConcurrencyOpt = None,
    dashboard: Annotated[
        bool,
        typer.Option(
            "--dashboard",
            help="distributed: serve the local cluster's dask dashboard and print its link "
            "(its start takes longer).",
            rich_help_panel=BACKEND,
        ),
    ] = False,
    progress: StatsProgressOpt = None,
) -> None:
    """Per-variant and per-sample missing, hom-ref and het counts, in one pass over the data.

    Prints, per contig, the Ag1000G tutorial's numbers (total_pos, complete_data,
    more_anc_hom) and the totals; --json adds per-sample counts (call rate,
    heterozygosity), --output writes per-variant ones. Every backend reads each stored
    chunk once and gives identical results.

    Example: zarrgeno stats data/AG1000G-AO -c 2L --backend dask --plot 2L.png
    """
    from zarrgeno.io.store import StoreRef, open_store
    from zarrgeno.runtime.cluster import tls_security
    from zarrgeno.stats.api import compute_stats, parse_range, plan_stats

    use_fetch_concurrency(fetch_concurrency)

    backend, options = _run_options(
        store,
        backend,
        visualize=visualize is not None,
        dashboard=dashboard,
        security=tls_security(scheduler, ca_file=tls_ca_file, cert=tls_cert, key=tls_key),
        workers=workers,
        threads_per_worker=threads_per_worker,
        scheduler=scheduler,
        persist=persist or None,
        timeout=timeout,
        unit_timeout=unit_timeout,
    )
    cohorts = _cohort_spec(sample_metadata, cohort_by, sample_column, min_cohort_size)
    reports = _qc_reports(qc or cohorts is not None, hardy_midp, output_format)
    if windows_output is not None and not reports:  # segregating sites and MAF per window
        reports = WINDOW_REPORTS
    files = _Files(
        output, output_format, plot, window, visualize, overwrite, reports,
        window_bp=window_bp, windows_output=windows_output,
    )  # fmt: skip
    files.check(backend)  # everything that can be refused is, before the long computation
    ref, group = open_store(store)
    sources: tuple[StoreRef, ...] = (ref,) if sites is None else (ref, StoreRef.from_source(sites))
    if site_filters is not None:  # never written into either
        sources += (StoreRef.from_source(site_filters),)
    files.check_output(sources)
    plan = plan_stats(
        ref,
        contigs=contig,
        variants=parse_range(variant_range),
        samples=_samples(samples),
        semantics=semantics,
        per_variant=files.per_variant,
        allow_missing=allow_missing,
        **_only_given(
            qc=reports,
            cohorts=cohorts,
            regions=region,
            sites=sites,
            site_filters=site_filters,
            site_filter=site_filter,
        ),
        **files.windows(),
    )
    _note_empty_regions(plan)
    _note_cohorts(plan)
    show = progress if progress is not None else Output.err_is_terminal()
    with files.reports(plan) as sink:
        with _progress_bar(plan.total_variants, show and not json_output) as advance:
            result = compute_stats(
                plan,
                backend=backend,
                progress=advance,
                notify=Output.note,
                max_mem=max_mem,
                **({"sink": sink} if sink is not None else {}),
                **options,
            )
        files.finish_reports(sink, result)
    files.write_output(result, plan, sources=sources, group=group)
    files.write_windows(result)
    if json_output:
        print_json(result.to_dict())
    else:
        render_stats(result, per_sample=per_sample)
    # Once the counts are printed: a drawing that cannot be written loses none of them.
    files.draw(result, plan, backend, persist=persist, threads=_local_threads(options))


#: The QC reports --windows-output counts alone: the genotype histograms of its allele
#: statistics (and the per-sample classes every QC result has).
WINDOW_REPORTS = ("afreq", "smiss")


def _qc_reports(qc: bool, hardy_midp: bool, fmt: str | None) -> tuple[str, ...]:
    """The plink2 reports a run computes: none, or all of them (--qc, --hardy-midp,
    --format plink2), with --hardy-midp's .hardy in place of --hardy's."""
    if not (qc or hardy_midp or fmt == "plink2"):
        return ()
    from zarrgeno.stats.qc.reduce import ALL_REPORTS

    hardy = "hardy-midp" if hardy_midp else "hardy"
    return tuple(hardy if name == "hardy" else name for name in ALL_REPORTS)


def _run_options(
    store: str,
    backend: str | None,
    *,
    visualize: bool,
    dashboard: bool,
    security: Any,
    **given: Any,
) -> tuple[str, dict[str, Any]]:
    """The backend (chosen from the store when not given) and the options the user gave
    it; a backend refuses the ones it does not take. ``given`` holds the options whose
    unset value is None (workers, threads_per_worker, scheduler, persist,
    timeout, unit_timeout)."""
    if backend is None:
        from zarrgeno.stats.backends import default_backend

        backend = default_backend(store, visualize=visualize, scheduler=given.get("scheduler"))
    options = {name: value for name, value in given.items() if value is not None}
    if dashboard:
        options["dashboard"] = True
    if security is not None:
        options["security"] = security
    return backend, options


def _local_threads(options: dict[str, Any]) -> int | None:
    """Worker threads of the local cluster ``--workers`` asks for (None: one per core)."""
    if options.get("workers") is None:
        return None
    return int(options["workers"]) * int(options.get("threads_per_worker") or 1)


@dataclass(frozen=True)
class _Files:
    """The files a run writes besides its report: counts (--output), a plot (--plot) and
    the task graph (--visualize), each checked before the counting starts."""

    output: Path | None
    output_format: str | None
    plot: Path | None
    window: int | None
    visualize: Path | None
    overwrite: bool
    #: The QC reports computed (none without --qc, --hardy-midp or --format plink2).
    qc_reports: tuple[str, ...] = ()
    window_bp: int | None = None
    windows_output: Path | None = None

    @property
    def per_variant(self) -> bool:
        """Whether the run must keep per-variant counts (the output and the plot need them)."""
        return self.output is not None or self.plot is not None or self.windows_output is not None

    def windows(self) -> dict[str, Any]:
        """The windows for plan_stats: asked for by --plot or --windows-output."""
        if self.plot is None and self.windows_output is None:
            return {}
        return {"windows": True, "window": self.window, "window_bp": self.window_bp}

    def write_windows(self, result: StatsResult) -> None:
        if self.windows_output is not None:
            from zarrgeno.stats.windows import write_windows

            written = write_windows(result.windows, self.windows_output, overwrite=self.overwrite)
            Output.note(f"{len(result.windows):,} windows written to {written}")

    @property
    def plink2(self) -> bool:
        return self.output is not None and self.output_format == "plink2"

    def check(self, backend: str) -> None:
        """Refuse options that do not go together, and a plot or graph that cannot be drawn."""
        if self.visualize is not None and backend not in DASK_BACKENDS:
            raise UsageError(
                "--visualize draws the dask task graph: use it with --backend dask or distributed"
            )
        if self.output_format is not None and self.output is None:
            raise UsageError("--format applies to --output")
        windowed = self.plot is not None or self.windows_output is not None
        for given, name in ((self.window, "--window"), (self.window_bp, "--window-bp")):
            if given is not None and not windowed:
                raise UsageError(f"{name} applies to --plot and --windows-output")
        if self.window is not None and self.window_bp is not None:
            raise UsageError("give windows in variants (--window) or in bp (--window-bp), not both")
        if self.windows_output is not None:
            from zarrgeno.stats.windows import check_windows_file

            check_windows_file(self.windows_output, overwrite=self.overwrite)
        if self.plot is not None:
            from zarrgeno.stats import plot as plot_mod

            plot_mod.require_matplotlib()
            plot_mod.check_plot_path(self.plot, overwrite=self.overwrite)
        if self.visualize is not None:
            from zarrgeno.stats.graph import check_graph_file

            check_graph_file(self.visualize, overwrite=self.overwrite)

    def check_output(self, sources: tuple[Any, ...]) -> None:
        """Refuse an --output that exists (without --overwrite) or would replace a source,
        and any file (--output, --plot, --visualize) in a source, under any name."""
        from zarrgeno.io.targets import resolve_target

        for drawing in (self.plot, self.visualize, self.windows_output):
            if drawing is not None:
                resolve_target(drawing, sources=sources)
        if self.output is not None:
            from zarrgeno.stats import output as out_mod

            out_mod.output_format(self.output, self.output_format)
            if self.plink2:
                from zarrgeno.stats.qc.files import check_report_files

                check_report_files(
                    self.output, self.qc_reports, overwrite=self.overwrite, sources=sources
                )
            else:
                out_mod.check_output(self.output, overwrite=self.overwrite, sources=sources)

    @contextlib.contextmanager
    def reports(self, plan: Any) -> Iterator[Any]:
        """The plink2 report files written as the units arrive (``--format plink2``), or
        None; removed unless :meth:`finish_reports` completes them."""
        if not self.plink2:
            yield None
            return
        from zarrgeno.stats.qc.files import check_report_files, open_reports

        assert self.output is not None
        paths = check_report_files(self.output, self.qc_reports, overwrite=self.overwrite)
        with open_reports(paths, plan, overwrite=self.overwrite) as files:
            yield files

    def finish_reports(self, sink: Any, result: StatsResult) -> None:
        """Write the per-sample reports and move every report file into place."""
        if sink is None:
            return
        assert result.qc is not None
        for note in sink.finish(result.qc):
            Output.note(note)
        Output.note(f"plink2 reports written: {', '.join(str(p) for p in sink.written_paths())}")

    def write_output(
        self, result: StatsResult, plan: Any, *, sources: tuple[Any, ...], group: Any
    ) -> None:
        """Write --output from the counts (plink2 reports are written as they come)."""
        if self.output is not None and not self.plink2:
            from zarrgeno.stats import output as out_mod

            written = out_mod.write_output(
                result,
                self.output,
                fmt=self.output_format,
                overwrite=self.overwrite,
                sources=sources,
                source_group=group,
                positions=plan.positions,
            )
            Output.note(f"counts written to {written}")

    def draw(
        self,
        result: StatsResult,
        plan: Any,
        backend: str,
        *,
        persist: bool,
        threads: int | None = None,
    ) -> None:
        """Draw --plot from the counts and --visualize, the plan's task graph on
        ``backend`` (``distributed``: its batches for ``threads`` worker threads, default
        one per core). One that cannot be written does not stop the other; the failures
        are one StoreIOError."""
        failures: list[StoreIOError] = []
        if self.plot is not None:
            from zarrgeno.stats import plot as plot_mod

            try:  # the x axis is the position when the plan found positions
                drawn = plot_mod.plot_stats(result, self.plot, overwrite=self.overwrite)
                Output.note(f"plot written to {drawn}")
            except StoreIOError as exc:
                failures.append(exc)
        if self.visualize is not None:
            from zarrgeno.stats.graph import draw_graph

            try:
                drawn = draw_graph(
                    plan,
                    backend,
                    self.visualize,
                    persist=persist,
                    threads=threads,
                    overwrite=self.overwrite,
                )
                Output.note(f"task graph written to {drawn}")
            except StoreIOError as exc:
                failures.append(exc)
        if failures:
            raise StoreIOError("; ".join(str(f) for f in failures), failures[0].errno)


def _only_given(**options: Any) -> dict[str, Any]:
    """The options given (neither None nor empty): a plain run passes none of them."""
    return {k: v for k, v in options.items() if v is not None and v != ()}


def _note_empty_regions(plan: Any) -> None:
    """Say so when a region holds no variant: its row of counts is all zero."""
    for a in plan.arrays:
        region = plan.regions.get(a.contig)
        if region is not None and not region.whole and a.n_variants == 0:
            Output.note(f"region {region} holds no variants")


def _note_cohorts(plan: Any) -> None:
    """Say which samples are in no cohort and which cohorts were left out."""
    request = next(iter(plan.qc.values()), None)
    if request is not None and request.cohorts is not None:
        for note in request.cohorts.notes():
            Output.note(note)


@contextlib.contextmanager
def _progress_bar(total: int, show: bool) -> Iterator[Any]:
    """A rich progress bar of variants done, on stderr; a no-op when hidden."""
    if not show:
        yield None
        return
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("counting"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} variants"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Output.err_console(),
        transient=True,
    )
    with bar:
        task = bar.add_task("count", total=total)
        yield lambda n: bar.advance(task, n)


def _rate(x: float) -> str:
    return "n/a" if x != x else f"{x:.4f}"


def _or_nan(x: float | None) -> float:
    """A rate from a ``to_dict``-style mapping, where None means undefined (no calls):
    0.0 is a rate like any other and prints as one."""
    return float("nan") if x is None else x


def _render_qc(result: StatsResult) -> None:
    """One line of the QC statistics (--json and --output have all of them)."""
    import statistics  # here: see render_stats

    qc = result.qc
    assert qc is not None
    seen = [c.summary() for c in qc.contigs]
    multi = sum(c["n_variants_multiallelic"] for c in seen)
    line = (
        f"QC: {int(qc.samples.n_hom_alt.sum()):,} hom-alt calls, {multi:,} variants of 3+ alleles"
    )
    f = qc.samples.inbreeding
    values = [x for x in f.f.tolist() if x == x] if f is not None else []
    if values:
        line += (
            f"; F (autosomes) median {statistics.median(values):.4f}, "
            f"{min(values):.4f} to {max(values):.4f}"
        )
    Output.text(line + "; --json and --output give every statistic")


def _render_filtered(result: StatsResult) -> None:
    """How many sites passed the site filter, when one was applied."""
    if not any(c.n_sites_pass is not None for c in result.contigs):
        return
    counted = sum(c.total_pos for c in result.contigs)
    total = sum(c.n_variants for c in result.contigs)
    share = f" ({counted / total:.1%})" if total else ""
    Output.text(
        f"Site filter: {counted:,} of {total:,} variants pass{share}; total_pos and every "
        "statistic count these sites only"
    )


def _render_cohorts(cohorts: Any) -> None:
    """The per-cohort summary table (--json and --output have the allele counts)."""
    by = ",".join(cohorts.cohorts.by)
    Output.table(
        f"Cohorts by {by}",
        [
            Column("cohort"),
            Column("samples", numeric=True),
            Column("called", numeric=True),
            Column("missing rate", numeric=True),
            Column("heterozygosity", numeric=True),
        ],
        [
            [s.name, s.n_samples, s.n_called, _rate(s.missing_rate), _rate(s.heterozygosity)]
            for s in cohorts.summaries
        ],
    )


def render_stats(result: StatsResult, *, per_sample: bool = False) -> None:
    """The summary table, a line about samples, and optionally the per-sample table."""
    n_samples = len(result.sample_names)
    Output.text(
        f"Genotype statistics of {result.store}: {n_samples} samples, {result.semantics} "
        f"semantics ({result.backend}, {result.elapsed:.2f} s)"
    )
    columns = [
        Column("contig"),
        Column("total_pos", numeric=True),
        Column("complete_data", numeric=True),
        Column("more_anc_hom", numeric=True),
        Column("missing calls", numeric=True),
        Column("hom-ref calls", numeric=True),
        Column("het calls", numeric=True),
        Column("missing rate", numeric=True),
        Column("heterozygosity", numeric=True),
    ]
    rows = [
        [
            c.contig,
            c.total_pos,
            c.complete_data,
            c.more_anc_hom,
            c.n_missing,
            c.n_hom_ref,
            c.n_het,
            _rate(c.missing_rate),
            _rate(c.heterozygosity),
        ]
        for c in result.contigs
    ]
    footer = None
    if len(result.contigs) > 1:
        t = result.totals()
        footer = [
            "total",
            t["total_pos"],
            t["complete_data"],
            t["more_anc_hom"],
            t["n_missing"],
            t["n_hom_ref"],
            t["n_het"],
            _rate(_or_nan(t["missing_rate"])),
            _rate(_or_nan(t["heterozygosity"])),
        ]
    if any(c.n_sites_pass is not None for c in result.contigs):
        columns.insert(1, Column("variants", numeric=True))
        for row, c in zip(rows, result.contigs, strict=True):
            row.insert(1, c.n_variants)
        if footer is not None:
            footer.insert(1, sum(c.n_variants for c in result.contigs))
    if any(c.region is not None for c in result.contigs):
        columns.insert(1, Column("region"))
        for row, c in zip(rows, result.contigs, strict=True):
            row.insert(1, c.region or "")
        if footer is not None:
            footer.insert(1, "")
    Output.table(None, columns, rows, footer)
    _render_filtered(result)
    for note in result.notes():
        Output.text(note)
    s = result.samples
    rates = [r for r in s.call_rate.tolist() if r == r]
    if rates:
        worst = int(
            min(
                range(len(s.samples)),
                key=lambda j: s.call_rate[j] if s.call_rate[j] == s.call_rate[j] else 2,
            )
        )
        hets = [h for h in s.heterozygosity.tolist() if h == h]
        import statistics  # here: its import (fractions, random) costs --help a few ms

        Output.text(
            f"Samples: call rate {min(rates):.4f}-{max(rates):.4f} (lowest {s.samples[worst]}), "
            f"median heterozygosity {statistics.median(hets) if hets else float('nan'):.4f}"
            + ("" if per_sample else "; --per-sample lists each sample, --json gives everything")
        )
    if result.qc is not None:
        _render_qc(result)
        if result.qc.cohorts is not None:
            _render_cohorts(result.qc.cohorts)
    if per_sample:
        Output.table(
            None,
            [
                Column("sample"),
                Column("missing", numeric=True),
                Column("hom-ref", numeric=True),
                Column("het", numeric=True),
                Column("called", numeric=True),
                Column("call rate", numeric=True),
                Column("heterozygosity", numeric=True),
            ],
            [
                [
                    r["sample"],
                    r["n_missing"],
                    r["n_hom_ref"],
                    r["n_het"],
                    r["n_called"],
                    _rate(_or_nan(r["call_rate"])),
                    _rate(_or_nan(r["heterozygosity"])),
                ]
                for r in s.rows()
            ],
        )
