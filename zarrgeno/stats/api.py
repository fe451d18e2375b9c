"""Genotype statistics: plan chunk-aligned work units, map them on a backend, reduce, finalize.

The plan's types live in :mod:`zarrgeno.stats.plan` and the unit task in
:mod:`zarrgeno.stats.unit`, below both this module and the backends.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from zarrgeno.chunkgrid import grouped_intervals
from zarrgeno.errors import BadDataError, MissingInputError, UsageError
from zarrgeno.io.sites import (
    Region,
    parse_regions,
    plan_positions,
    restrict_to_region,
    selected_regions,
)
from zarrgeno.io.store import (
    GenotypeArray,
    find_genotypes,
    missing_chunks_allowed,
    open_store,
    refuse_refused_genotypes,
    sample_names,
    select_genotypes,
)
from zarrgeno.sizes import format_size, parse_size
from zarrgeno.stats.backends import create_backend, default_backend, load_backend
from zarrgeno.stats.backends.base import backend_workers
from zarrgeno.stats.filters import PassTally, SitePass, passing_columns, plan_filters
from zarrgeno.stats.kernels import Semantics, parse_semantics, variant_dtype
from zarrgeno.stats.plan import Partial, ProgressCallback, StatsPlan, WorkUnit
from zarrgeno.stats.reader import ChunkReader
from zarrgeno.stats.results import ContigStats, SampleCounts, StatsResult
from zarrgeno.stats.windows import WindowTally, require_positions, window_spec

if TYPE_CHECKING:
    from zarrgeno.stats.cohorts import CohortSpec
    from zarrgeno.stats.qc.reduce import QcReducer, QcSink

#: A work unit covers whole stored chunks adding up to at least this many calls.
UNIT_CALLS = 8_000_000


def parse_range(text: str | None) -> tuple[int, int | None] | None:
    """``"START:STOP"`` (either side may be empty; ``_`` allowed in numbers) -> a range.

    >>> parse_range("1_000:2_000")
    (1000, 2000)
    >>> parse_range("5000:")
    (5000, None)
    """
    if text is None:
        return None
    parts = text.split(":")
    if len(parts) != 2:
        raise UsageError(f"variant range {text!r} is not START:STOP (e.g. 0:1000000)")
    try:
        start = int(parts[0]) if parts[0].strip() else 0
        stop = int(parts[1]) if parts[1].strip() else None
    except ValueError:
        raise UsageError(f"variant range {text!r}: START and STOP must be integers") from None
    if start < 0 or (stop is not None and stop <= start):
        raise UsageError(f"variant range {text!r} must have 0 <= START < STOP")
    return start, stop


def _resolve_samples(
    requested: Sequence[str | int] | None, names: list[str]
) -> tuple[int, ...] | None:
    if requested is None:
        return None
    index = {name: j for j, name in enumerate(names)}
    chosen: list[int] = []
    unknown: list[str] = []
    for item in requested:
        if isinstance(item, int | np.integer):
            if not 0 <= int(item) < len(names):
                raise UsageError(f"sample index {item} out of range 0..{len(names) - 1}")
            chosen.append(int(item))
        elif str(item) in index:
            chosen.append(index[str(item)])
        else:
            unknown.append(str(item))
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise MissingInputError(
            f"unknown sample(s): {shown} (the store has {len(names)} samples, "
            f"e.g. {', '.join(names[:3])})"
        )
    if not chosen:
        raise UsageError("the sample selection is empty")
    if len(set(chosen)) != len(chosen):
        raise UsageError("a sample is selected twice")
    return tuple(chosen)


def plan_stats(
    source: Any = None,
    *,
    contigs: Sequence[str] | None = None,
    variants: tuple[int, int | None] | None = None,
    samples: Sequence[str | int] | None = None,
    semantics: Semantics | str = Semantics.TUTORIAL,
    per_variant: bool = True,
    allow_missing: bool | None = None,
    regions: str | Region | Sequence[str | Region] | None = None,
    sites: Any = None,
    qc: bool | Sequence[str] = False,
    site_filters: Any = None,
    site_filter: str | None = None,
    window: int | None = None,
    window_bp: int | None = None,
    windows: bool = False,
    cohorts: CohortSpec | None = None,
) -> StatsPlan:
    """Open ``source`` read-only and split the selection into chunk-aligned work units.

    ``qc`` asks for QC statistics in the same pass: True for all of them, or the names
    of plink2 reports (``afreq``, ``gcount``, ``hardy``, ``hardy-midp``, ``vmiss``,
    ``smiss``, ``het``; see :data:`zarrgeno.stats.qc.fields.REPORTS`). ``cohorts`` (a
    :class:`zarrgeno.stats.cohorts.CohortSpec`: a sample metadata table and its columns)
    adds per-cohort allele counts and summaries to them, and implies ``qc=True``.

    ``variants`` is a 0-based ``(start, stop)`` range applied within each contig (stop
    None = the end); ``samples`` names or indexes samples (default: all). A chunk missing
    from the store is an error unless ``allow_missing`` (then it reads as the fill value;
    None: when the store's writer leaves out fill-value chunks, see
    :func:`zarrgeno.io.store.skips_fill_chunks`).

    A contig named twice in ``contigs`` is counted once. ``regions`` selects by position
    instead (``"2L:20,000,000-21,000,000"``, ``"X"``, or several, one per contig; 1-based,
    both ends included); positions come from ``sites`` (a store in the MalariaGEN sites
    layout, ``CONTIG/variants/POS``) or, without it, from the genotype store itself. See
    :mod:`zarrgeno.io.sites`.

    ``site_filters`` (a store in MalariaGEN's site-filter layout,
    ``CONTIG/variants/filter_pass``) or ``site_filter`` (the name of a bool array of the
    genotype store: scikit-allel's ``FILTER_PASS``, VCF Zarr's ``variant_filter``, whose
    ``PASS`` column is read; with ``site_filters``, the array's name in that store) count
    only the variants that pass, in the same pass (see :mod:`zarrgeno.io.sitefilters`).

    ``window`` (variants) or ``window_bp`` (base pairs; positions as for ``regions``), or
    ``windows=True`` (about 600 windows of variants), sum the per-variant counts of the
    pass by window (``result.windows``, :mod:`zarrgeno.stats.windows`); their segregating
    sites and mean MAF need the genotype histograms of ``qc``.
    """
    semantics = parse_semantics(semantics)
    windows = windows or window is not None or window_bp is not None
    per_variant = per_variant or windows  # windows sum the per-variant counts
    ref, group = open_store(source)
    region_contigs = [r.contig for r in parse_regions(regions)] if regions else None
    refuse_refused_genotypes(group, ref.name, contigs or region_contigs, positions=bool(regions))
    found = find_genotypes(group)
    allow_missing = missing_chunks_allowed(allow_missing, group)  # travels in each reader
    if contigs:  # a contig named twice is counted once
        contigs = list(dict.fromkeys(contigs))
    chosen_regions = selected_regions(regions, contigs, variants, found)
    if chosen_regions is not None:
        contigs = [r.contig for r in chosen_regions]
    arrays = select_genotypes(found, list(contigs) if contigs else None)
    positions = plan_positions(ref.name, group, arrays, sites, chosen_regions, per_variant)
    if window_bp is not None:
        require_positions(arrays, positions)
    n_samples = {a.n_samples for a in arrays}
    if len(n_samples) != 1:
        raise BadDataError(
            f"the selected contigs have different sample counts: {sorted(n_samples)}"
        )
    for a in arrays:
        # The array's shape: a chunk's says nothing of the array. Without calls (no
        # variant or no sample) the writer could not tell the ploidy, and nothing is counted.
        if a.ploidy != 2 and 0 not in a.shape[:2]:
            raise BadDataError(
                f"{a.path}: statistics need diploid calls (variants, samples, 2); "
                f"the array has shape {a.shape} (ploidy {a.ploidy})"
            )
    names = sample_names(group, arrays[0].n_samples)
    selection = _resolve_samples(samples, names)
    requests = {}
    grouped = _cohorts(cohorts, names, selection, ref.name)
    if qc or grouped is not None:
        # Imported here for start-up cost only: the QC modules load when QC is asked for.
        from zarrgeno.stats.qc.reduce import qc_requests

        # Labels of whole contigs.
        requests = qc_requests(qc or True, arrays, ref, group, sites, cohorts=grouped)
    filters = plan_filters(arrays, ref, group, site_filters, site_filter)  # whole contigs too
    if variants is not None:
        arrays = [_restrict(a, variants) for a in arrays]
    by_contig = {r.contig: r for r in chosen_regions or ()}
    if by_contig:
        arrays = [restrict_to_region(a, by_contig[a.contig], positions) for a in arrays]
    readers: dict[str, ChunkReader] = {}
    units: list[WorkUnit] = []
    width = len(selection) if selection is not None else arrays[0].n_samples
    for a in arrays:
        reader = readers.get(a.path) or readers.setdefault(
            a.path, ChunkReader(ref, a.path, allow_missing=allow_missing)
        )
        per_task = max(1, math.ceil(UNIT_CALLS / max(1, a.chunks[0] * a.n_samples)))
        for start, stop in grouped_intervals(a.start, a.stop, a.chunks[0], per_task):
            units.append(
                WorkUnit(
                    reader,
                    a.contig,
                    start,
                    stop,
                    selection,
                    semantics,
                    per_variant,
                    requests.get(a.contig),
                    filters.get(a.contig),
                )
            )
    chosen = tuple(names[j] for j in selection) if selection is not None else tuple(names)
    assert len(chosen) == width
    spec = None
    if windows:
        spec = window_spec(sum(a.n_variants for a in arrays), window, window_bp)
    return StatsPlan(
        store=ref.name,
        arrays=tuple(arrays),
        readers=tuple(readers[a.path] for a in arrays),
        sample_names=chosen,
        samples=selection,
        semantics=semantics,
        per_variant=per_variant,
        units=tuple(units),
        qc=requests,
        regions=by_contig,
        positions=positions,
        site_filters=filters,
        windows=spec,
    )


def _cohorts(
    spec: CohortSpec | None, names: list[str], selection: tuple[int, ...] | None, store: str
) -> Any:
    """The run's :class:`zarrgeno.stats.cohorts.Cohorts`, or None without ``spec``."""
    if spec is None:
        return None
    from zarrgeno.stats.cohorts import assign_cohorts  # only when cohorts are asked for

    return assign_cohorts(spec, names, selection, store)


def _restrict(a: GenotypeArray, variants: tuple[int, int | None]) -> GenotypeArray:
    start, stop = variants
    if start >= a.n_variants:
        raise UsageError(
            f"variant range starts at {start:,} but contig {a.contig} has {a.n_variants:,} variants"
        )
    new_stop = a.stop if stop is None else min(a.stop, a.start + stop)
    return GenotypeArray(a.contig, a.path, a.start + start, new_stop, a.shape, a.chunks)


class _Reducer:
    """Sums partials as they arrive, in any order; checks every unit came back once. QC
    partials go to a :class:`QcReducer` (per-variant ones to ``sink`` when given: then no
    per-variant array is kept, so that memory does not grow with the store)."""

    def __init__(self, plan: StatsPlan, sink: QcSink | None = None) -> None:
        self.plan = plan
        self.qc: QcReducer | None = None
        if plan.qc:
            # Imported here for start-up cost only, as in plan_stats.
            from zarrgeno.stats.qc.reduce import QcReducer

            self.qc = QcReducer(plan, sink)
        width = plan.n_samples
        self.sample = {a.contig: np.zeros((3, width), np.int64) for a in plan.arrays}
        self.complete = dict.fromkeys(self.sample, 0)
        self.anc_hom = dict.fromkeys(self.sample, 0)
        self.partial_het = dict.fromkeys(self.sample, 0)
        self.covered = dict.fromkeys(self.sample, 0)
        self.variant: dict[str, np.ndarray] = {}
        self.keep = plan.per_variant and sink is None
        if self.keep:
            dtype = variant_dtype(width)
            self.variant = {a.contig: np.zeros((3, a.n_variants), dtype) for a in plan.arrays}
        self.offset = {a.contig: a.start for a in plan.arrays}
        self.passing = PassTally(plan, keep=self.keep)
        self.windows = WindowTally(plan, plan.windows) if plan.windows is not None else None

    def add(self, part: Partial) -> None:
        self.passing.add(part)
        if self.windows is not None:
            self.windows.add(part)
        self.sample[part.contig] += part.sample
        self.complete[part.contig] += part.complete_data
        self.anc_hom[part.contig] += part.more_anc_hom
        self.partial_het[part.contig] += part.partial_het
        self.covered[part.contig] += part.stop - part.start
        if self.qc is not None:
            self.qc.add(part)
        if self.plan.per_variant:
            if part.variant is None:
                raise BadDataError(f"a worker returned no per-variant counts for {part.contig}")
            if self.keep:
                lo = part.start - self.offset[part.contig]
                self.variant[part.contig][:, lo : lo + part.stop - part.start] = part.variant

    def finish(self, backend: str, elapsed: float) -> StatsResult:
        contigs = []
        passing = self.passing.finish()
        for a in self.plan.arrays:
            if self.covered[a.contig] != a.n_variants:
                raise BadDataError(
                    f"{a.contig}: the backend returned results for {self.covered[a.contig]:,} "
                    f"of {a.n_variants:,} variants"
                )
            site: SitePass | None = passing.get(a.contig)
            counted = a.n_variants if site is None else site.n_pass
            samples = SampleCounts(self.plan.sample_names, counted, self.sample[a.contig])
            contigs.append(
                ContigStats(
                    contig=a.contig,
                    path=a.path,
                    start=a.start,
                    stop=a.stop,
                    complete_data=self.complete[a.contig],
                    more_anc_hom=self.anc_hom[a.contig],
                    samples=samples,
                    variant_counts=passing_columns(self.variant.get(a.contig), site, axis=1),
                    region=_region_text(self.plan.regions.get(a.contig)),
                    n_partial_het=self.partial_het[a.contig],
                    n_sites_pass=None if site is None else site.n_pass,
                    site_pass=None if site is None else site.mask,
                )
            )
        return StatsResult(
            store=self.plan.store,
            backend=backend,
            semantics=str(self.plan.semantics),
            contigs=tuple(contigs),
            elapsed=elapsed,
            qc=self.qc.finish(passing) if self.qc is not None else None,
            windows=self.windows.finish() if self.windows is not None else None,
        )


def _region_text(region: Region | None) -> str | None:
    return None if region is None or region.whole else str(region)


def compute_stats(
    plan: StatsPlan,
    *,
    backend: str | None = None,
    progress: ProgressCallback | None = None,
    notify: Callable[[str], None] | None = None,
    max_mem: int | str | None = None,
    sink: QcSink | None = None,
    **options: Any,
) -> StatsResult:
    """Run ``plan`` on the named backend (see ``zarrgeno backends``; default the one
    ``zarrgeno stats`` uses: ``threads``, or ``distributed`` when a ``scheduler`` is
    given) and reduce the results.

    ``options`` go to the backend (``workers``, ``threads_per_worker``, ``scheduler``,
    ``persist``, ``timeout``, ``unit_timeout`` (multiprocessing: seconds without a finished
    unit before the units in flight are rerun alone, then named; default no limit), and
    ``security``, a ``distributed.Security`` for a tls:// scheduler); an option the
    backend does not take is a UsageError. ``notify`` receives
    one-line messages such as the dask dashboard link. ``max_mem`` (``"4GB"`` or bytes)
    bounds the chunk buffers of the run: fewer workers run when theirs would not fit, and a
    budget too small for one is refused before any chunk is read (:func:`worker_memory`).
    ``sink`` receives each unit's per-variant QC partials as they arrive (to write them
    out unit by unit) instead of the result keeping them; the result then keeps no
    per-variant counts either (``variant_counts`` is None), so that the memory of a run
    with a sink does not grow with the number of variants.
    """
    if backend is None:
        backend = default_backend(scheduler=options.get("scheduler"))
    if max_mem is not None:
        options = _fit_workers(plan, backend, parse_size(max_mem), options, notify)
    engine = create_backend(backend, **options)
    reducer = _Reducer(plan, sink)
    started = time.perf_counter()
    try:
        for part in engine.run(plan, progress=progress, notify=notify):
            reducer.add(part)
    except BaseException:
        # Ctrl-C or a failure: requests still in flight are cancelled, not waited for.
        for reader in plan.readers:
            reader.stop_reads(abandon=True)
        raise
    finally:
        for reader in plan.readers:
            reader.stop_reads()  # chunks fetched ahead and never read are freed
    return reducer.finish(engine.describe(), time.perf_counter() - started)


#: Python objects and small temporaries of one worker thread, beyond its chunk buffers.
WORKER_ALLOWANCE = 16_000_000
#: What each worker process of the process backends holds before reading a chunk:
#: an interpreter with numpy, zarr and numcodecs imported.
PROCESS_BASELINE = 100_000_000
#: Backends whose workers are processes of their own (a local cluster for distributed).
PROCESS_BACKENDS = ("multiprocessing", "distributed")


def worker_memory(plan: StatsPlan, backend: str, threads: int = 1) -> int:
    """Bytes one worker of ``backend`` with ``threads`` threads may hold while counting
    ``plan``: per thread, a decoded chunk and its stored bytes (at most about the chunk's
    size) and the per-variant counts of its largest unit; for a worker process, the
    process itself and its window of chunks fetched ahead (:func:`read_ahead_memory`)."""
    chunk = max((r.layout.chunk_nbytes for r in plan.readers), default=0)
    rows = max((u.n_variants for u in plan.units), default=0)
    per_thread = 2 * chunk + 3 * 8 * rows + WORKER_ALLOWANCE
    if backend not in PROCESS_BACKENDS:
        return threads * per_thread
    return threads * per_thread + PROCESS_BASELINE + read_ahead_memory(plan, backend)


def read_ahead_memory(plan: StatsPlan, backend: str) -> int:
    """Bytes of chunk bodies one process may hold fetched ahead of their use (remote
    stores; 0 for local ones): its window (``--fetch-concurrency``) of stored chunks, each
    within its size bound. A worker process fetches ahead within a batch of units only, so
    its window is at most the chunks of that batch."""
    from zarrgeno.stats.plan import MAX_BATCH_UNITS

    most = 0
    for reader in plan.readers:
        window = reader.read_ahead_bytes()
        if window and backend in PROCESS_BACKENDS:
            units = [u for u in plan.units if u.reader is reader]
            per_unit = max(len(reader.chunk_indexes(u.start, u.stop)) for u in units)
            batch = per_unit * (MAX_BATCH_UNITS if backend == "distributed" else 1)
            window = min(window, reader.read_ahead_bytes(batch))
        most = max(most, window)
    return most


def _fit_workers(
    plan: StatsPlan,
    backend: str,
    budget: int,
    options: dict[str, Any],
    notify: Callable[[str], None] | None,
) -> dict[str, Any]:
    """``options`` with ``workers`` lowered so that every worker's buffers fit ``budget``;
    a budget one worker does not fit is refused. A running ``scheduler``'s workers are its
    own, so it is left alone, as is a backend that takes no ``workers``."""
    if options.get("scheduler") is not None:
        return options
    need = worker_memory(plan, backend, int(options.get("threads_per_worker") or 1))
    # The units of an in-process backend share one window of chunks fetched ahead.
    shared = 0 if backend in PROCESS_BACKENDS else read_ahead_memory(plan, backend)
    if need + shared > budget:
        chunk = max(plan.readers, key=lambda r: r.layout.chunk_nbytes).layout
        size = format_size(need + shared)
        ahead = (
            " (with its chunks fetched ahead: lower --fetch-concurrency, or pass"
            if shared or read_ahead_memory(plan, backend)
            else "; pass"
        )
        raise UsageError(
            f"{chunk.path}: --max-mem {format_size(budget)} is too small to count chunks of "
            f"{chunk.chunks} "
            f"({chunk.dtype}): one worker of the {backend} backend needs {size}{ahead} "
            f"--max-mem {size.replace(' ', '')} or more{')' if ahead.startswith(' (') else ''}"
        )
    budget -= shared
    if "workers" not in load_backend(backend).options:
        return options
    wanted = backend_workers(options.get("workers"))
    fits = budget // need
    if wanted <= fits:
        return options
    if notify is not None:
        notify(f"--max-mem {format_size(budget)} fits {fits} of {wanted} workers")
    return {**options, "workers": fits}


def genotype_stats(
    source: Any = None,
    *,
    contigs: Sequence[str] | None = None,
    variants: tuple[int, int | None] | None = None,
    samples: Sequence[str | int] | None = None,
    semantics: Semantics | str = Semantics.TUTORIAL,
    per_variant: bool = True,
    allow_missing: bool | None = None,
    regions: str | Region | Sequence[str | Region] | None = None,
    sites: Any = None,
    qc: bool | Sequence[str] = False,
    site_filters: Any = None,
    site_filter: str | None = None,
    window: int | None = None,
    window_bp: int | None = None,
    cohorts: CohortSpec | None = None,
    backend: str | None = None,
    progress: ProgressCallback | None = None,
    notify: Callable[[str], None] | None = None,
    **options: Any,
) -> StatsResult:
    """Per-variant and per-sample missing / hom-ref / het counts in one chunk-aligned pass.

    >>> import zarr
    >>> from zarrgeno.stats.api import genotype_stats
    >>> root = zarr.group()
    >>> calls = np.zeros((10, 3, 2), dtype="i1")
    >>> gt = root.create_dataset("2L/calldata/GT", data=calls, chunks=(4, 2, 2))
    >>> result = genotype_stats(root)
    >>> c = result.contig("2L")
    >>> (c.total_pos, c.complete_data, c.more_anc_hom, c.n_hom_ref)
    (10, 10, 10, 30)

    ``qc=True`` adds, from the same pass, allele counts and frequencies, genotype counts,
    Hardy-Weinberg p-values and each sample's hom-alt calls and inbreeding coefficient F
    (``result.qc``, :class:`zarrgeno.stats.qc.results.QcResult`), as plink2 computes them:

    >>> qc = genotype_stats(root, qc=True).qc
    >>> qc.contig("2L").variants.allele_count[:2].tolist()  # REF, then 3 ALT assumed
    [[6, 0, 0, 0], [6, 0, 0, 0]]

    ``site_filter`` (or a ``site_filters`` store) counts the variants that pass only:

    >>> passing = root.create_dataset("2L/variants/FILTER_PASS", data=np.arange(10) < 3)
    >>> genotype_stats(root, site_filter="FILTER_PASS").contig("2L").total_pos
    3
    """
    plan = plan_stats(
        source,
        contigs=contigs,
        variants=variants,
        samples=samples,
        semantics=semantics,
        per_variant=per_variant,
        allow_missing=allow_missing,
        regions=regions,
        sites=sites,
        qc=qc,
        site_filters=site_filters,
        site_filter=site_filter,
        window=window,
        window_bp=window_bp,
        cohorts=cohorts,
    )
    return compute_stats(plan, backend=backend, progress=progress, notify=notify, **options)
