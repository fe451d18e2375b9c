"""``--output PREFIX --format plink2``: plink2's report files, written while the pass runs.

Per-variant reports (``.afreq``, ``.gcount``, ``.hardy``, ``.vmiss``) are written unit by
unit, in variant order, as the units' partials arrive: a unit that arrives before the ones
above it waits (in memory up to :data:`PENDING_BYTES`, then in a file beside the target),
so a contig's histograms are never all held. Units in order are formatted by a few
threads in blocks of :data:`BLOCK` variants, a bounded number of blocks ahead of the one
being written: a unit's labels are read once, and a thread holds the statistics and text
of one block at a time, whatever the size of a unit or a contig. Per-sample reports
(``.smiss``, ``.het``) are written at the end. Every file is written as
``NAME.part-PID-THREAD`` and renamed into place once all are complete; a run that fails
or is stopped leaves none of them.

An existing file is never replaced without ``overwrite``, and with it only when it is the
same report (its first line is the header this report writes: an earlier run's, or
plink2's own); a file inside a source store is never written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from zarrgeno.errors import StoreIOError, TargetExistsError, os_reason
from zarrgeno.io.partfiles import pid_alive, remove_dead_parts
from zarrgeno.io.store import StoreRef
from zarrgeno.io.targets import resolve_target
from zarrgeno.runtime.cores import usable_cores
from zarrgeno.stats.plan import QcRequest, StatsPlan
from zarrgeno.stats.qc import plink2
from zarrgeno.stats.qc.alleles import AlleleFreqs
from zarrgeno.stats.qc.counting import variant_alleles
from zarrgeno.stats.qc.fields import (
    REPORTS,
    SAMPLE_GENOTYPES,
    VARIANT_GENOTYPES,
    Axis,
    Report,
    SampleInputs,
    VariantInputs,
    is_autosome,
)
from zarrgeno.stats.qc.results import QcResult

#: Per-variant partials held in memory while they wait for the units before them.
PENDING_BYTES = 256 << 20
#: Write buffer of each report file.
BUFFER = 1 << 20
#: Threads formatting units' rows at most (numpy's joins and sorts release the GIL).
RENDER_THREADS = 4
#: Blocks formatted ahead of the one being written, per formatting thread.
RENDER_AHEAD = 2
#: Variants formatted at once: what bounds the statistics and text held per thread.
BLOCK = plink2.BLOCK


def report_paths(prefix: str | os.PathLike[str], reports: Sequence[str]) -> dict[str, Path]:
    """Each report's file: ``PREFIX`` and the report's suffix (``PREFIX.afreq``...)."""
    base = os.fspath(prefix)
    return {name: Path(base + REPORTS[name].suffix) for name in reports}


def header(report: Report) -> str:
    """The first line of ``report``'s file."""
    columns = {
        "afreq": plink2.AFREQ_COLUMNS,
        "gcount": plink2.GCOUNT_COLUMNS,
        "hardy": (*plink2.HARDY_COLUMNS, "P"),
        "hardy-midp": (*plink2.HARDY_COLUMNS, "MIDP"),
        "vmiss": plink2.VMISS_COLUMNS,
        "smiss": plink2.SMISS_COLUMNS,
        "het": plink2.HET_COLUMNS,
    }[report.name]
    return "\t".join(columns) + "\n"


def check_report_files(
    prefix: str | os.PathLike[str],
    reports: Sequence[str],
    *,
    overwrite: bool,
    sources: Sequence[StoreRef] = (),
) -> dict[str, Path]:
    """The report files of ``prefix``, refused before anything is computed when one lies
    in a source, or exists (without ``overwrite``; with it, when it is not that report)."""
    paths = {}
    for name, path in report_paths(prefix, reports).items():
        target = resolve_target(path, sources=sources)
        if target.exists() or target.is_symlink():
            _check_replaceable(target, REPORTS[name], overwrite=overwrite)
        paths[name] = target
    return paths


def _check_replaceable(target: Path, report: Report, *, overwrite: bool) -> None:
    if not overwrite:
        raise TargetExistsError(
            f"target {target} already exists; pass --overwrite to replace it with a new "
            f"{report.suffix} report"
        )
    first = ""
    if target.is_file() and not target.is_symlink():
        try:
            with open(target, encoding="utf-8", errors="replace") as f:
                first = f.readline(4096)
        except OSError:
            first = ""
    if first not in {header(r) for r in REPORTS.values() if r.suffix == report.suffix}:
        raise TargetExistsError(
            f"target {target} already exists and is not a plink2 {report.suffix} report: "
            "--overwrite replaces only such a report; choose another --output prefix, or "
            "remove it yourself"
        )


class Plink2Files:
    """The report files of one run: a sink for the units' partials (:meth:`add`), then
    :meth:`finish` with the result, or :meth:`abort`."""

    def __init__(self, paths: Mapping[str, Path], plan: StatsPlan, overwrite: bool = False) -> None:
        self.paths, self.plan, self.overwrite = dict(paths), plan, overwrite
        self.order = [(u.contig, u.start) for u in plan.units]
        self.next = 0
        self.pending: dict[tuple[str, int], tuple[int, np.ndarray | Path]] = {}
        self.pending_bytes = 0
        self.spill: Path | None = None
        self.parts: dict[str, Path] = {}
        self.files: dict[str, IO[str]] = {}
        self.done = False
        #: Per-cohort .afreq files (plink2 --loop-cats naming), when cohorts are asked for.
        self.cohorts = cohort_reports(self.paths, plan, overwrite)
        self.paths |= self.cohorts
        self.variant_reports = [n for n in self.paths if _report(n).axis is Axis.VARIANT]
        self.written: dict[str, bool] = dict.fromkeys(self.paths, False)
        self.threads = max(1, min(RENDER_THREADS, usable_cores()))
        self.pool: ThreadPoolExecutor | None = None
        self.rendering: deque[Future[list[tuple[str, str]]]] = deque()
        try:
            for name, final in self.paths.items():
                final.parent.mkdir(parents=True, exist_ok=True)
                remove_dead_parts(final.parent, of=final.name)
                _remove_dead_spills(final)
                part = final.with_name(f"{final.name}.part-{os.getpid()}-{threading.get_ident()}")
                self.parts[name] = part
                # kept open across add() calls; closed by finish() or abort()
                self.files[name] = open(  # noqa: SIM115
                    part, "w", encoding="utf-8", newline="\n", buffering=BUFFER
                )
            for name in self.variant_reports:
                self._write(name, header(_report(name)))
        except OSError as exc:
            self.abort()
            raise _io_error(exc, final) from None

    def add(self, contig: str, start: int, stop: int, partials: Mapping[str, np.ndarray]) -> None:
        """Take one unit's partials; write every unit now in order."""
        if not self.variant_reports:
            return
        hist = np.asarray(partials[VARIANT_GENOTYPES.name])
        if self.cohorts:  # one array per unit, to wait or spill as one
            hist = with_cohort_counts(hist, partials)
        self.pending[(contig, start)] = (stop, hist)
        self.pending_bytes += hist.nbytes
        while self.next < len(self.order) and self.order[self.next] in self.pending:
            key = self.order[self.next]
            stop, held = self.pending.pop(key)
            if isinstance(held, Path):
                data = np.load(held)
                held.unlink()
            else:
                data = held
                self.pending_bytes -= held.nbytes
            self._submit(key[0], key[1], stop, data)
            self.next += 1
        self._write_rendered(wait=False)
        if self.pending_bytes > PENDING_BYTES:
            self._spill()

    def _submit(self, contig: str, start: int, stop: int, hist: np.ndarray) -> None:
        """Format a unit's rows on the pool, block by block; write those formatted when
        too many wait. The unit's labels are read once, by the first job."""
        if self.pool is None:
            self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="zarrgeno-plink2")
        # FIFO: a block's job starts after its unit's, so waiting for it cannot deadlock
        unit = self.pool.submit(self._prepare, contig, start, stop, hist)
        for lo in range(0, stop - start, BLOCK):
            hi = min(stop - start, lo + BLOCK)
            self.rendering.append(self.pool.submit(self._render, unit, lo, hi))
            while len(self.rendering) > RENDER_AHEAD * self.threads:
                self._write_one()

    def _write_one(self) -> None:
        for name, text in self.rendering.popleft().result():
            self._write(name, text)
            self.written[name] = True

    def _write_rendered(self, *, wait: bool) -> None:
        """Write the formatted units in order: those done, or (``wait``) all of them."""
        while self.rendering and (wait or self.rendering[0].done()):
            self._write_one()

    def _spill(self) -> None:
        """Move the waiting units' histograms to files (the last in order first)."""
        if self.spill is None:
            first = next(iter(self.paths.values()))
            prefix = f".{first.name}{SPILL_TAG}{os.getpid()}-"
            self.spill = Path(tempfile.mkdtemp(prefix=prefix, dir=first.parent))
        for key in sorted(self.pending, key=self.order.index, reverse=True):
            stop, held = self.pending[key]
            if isinstance(held, Path):
                continue
            path = self.spill / f"{key[0]}-{key[1]}.npy"
            np.save(path, held)
            self.pending[key] = (stop, path)
            self.pending_bytes -= held.nbytes
            if self.pending_bytes <= PENDING_BYTES // 2:
                break

    def _prepare(self, contig: str, start: int, stop: int, hist: np.ndarray) -> _Unit:
        """A unit's histograms, per-cohort counts, alleles and labels (read once)."""
        request = self.plan.qc[contig]
        by_cohort = None
        if self.cohorts:
            hist, by_cohort = split_cohort_counts(hist, request)
        n_alleles = variant_alleles(request, start, stop, hist)
        source = request.labels
        assert source is not None
        labels = source.labels(start, stop, n_alleles, request.max_alleles)
        return _Unit(contig, request, hist, by_cohort, n_alleles, labels)

    def _render(self, prepared: Future[_Unit], lo: int, hi: int) -> list[tuple[str, str]]:
        """The per-variant reports' rows of variants ``lo:hi`` of a unit."""
        unit = prepared.result()
        hist, n_alleles = unit.hist[lo:hi], unit.n_alleles[lo:hi]
        by_cohort = None if unit.by_cohort is None else unit.by_cohort[lo:hi]
        labels = _rows(unit.labels, slice(lo, hi))
        if self.plan.site_filters:
            # A counted variant's histogram holds every sample (a call is missing or a
            # genotype); a filtered one's is empty.
            keep = np.asarray(hist.any(axis=1))
            if not keep.all():
                hist, labels, n_alleles = hist[keep], _rows(labels, keep), n_alleles[keep]
                by_cohort = None if by_cohort is None else by_cohort[keep]
        inputs = VariantInputs({VARIANT_GENOTYPES.name: hist}, labels, self.plan.n_samples)
        out = []
        for name in self.variant_reports:
            if name in self.cohorts:
                assert by_cohort is not None
                out.append((name, cohort_afreq(name, labels, by_cohort, n_alleles, unit.request)))
                continue
            report = REPORTS[name]
            if report.autosomes_only and not is_autosome(unit.contig):
                continue
            out.append((name, "".join(report.text(inputs, header=False))))
        return out

    def _write(self, name: str, text: str) -> None:
        try:
            self.files[name].write(text)
        except OSError as exc:
            raise _io_error(exc, self.paths[name]) from None

    def finish(self, result: QcResult) -> list[str]:
        """Write the per-sample reports, close every file and rename them into place.
        Returns notes on reports left out (``--het`` and ``--hardy`` without autosomes)."""
        if self.next != len(self.order):
            raise StoreIOError(f"{len(self.order) - self.next} units were never written")
        self._write_rendered(wait=True)
        self._stop_pool()
        s = result.samples
        notes = []
        for name in self.paths:
            report = _report(name)
            if report.axis is Axis.VARIANT:
                continue
            if report.autosomes_only:
                if s.autosomal is None:
                    continue
                inputs = SampleInputs(s.autosomal, s.samples, s.n_autosomal)
            else:
                genotypes = {SAMPLE_GENOTYPES.name: s.genotypes}
                inputs = SampleInputs(genotypes, s.samples, s.n_variants)
            for text in report.text(inputs):
                self._write(name, text)
            self.written[name] = True
        skipped = [n for n in self.paths if _report(n).autosomes_only and not self.written[n]]
        for name in skipped:  # plink2 reports --hardy and --het on autosomes only
            notes.append(
                f"{self.paths[name]} not written: plink2's {REPORTS[name].flag} covers "
                "autosomes only, and no autosome was counted"
            )
            self._drop(name)
        try:
            for f in self.files.values():
                f.close()
            for name, final in self.paths.items():  # a file that appeared meanwhile
                if final.exists() or final.is_symlink():
                    _check_replaceable(final, _report(name), overwrite=self.overwrite)
            for name, part in self.parts.items():
                os.replace(part, self.paths[name])
        except TargetExistsError:  # an OSError too: said as it is
            self.abort()
            raise
        except OSError as exc:
            self.abort()
            raise _io_error(exc, self.paths[name]) from None
        self.done = True
        self._clean_spill()
        return notes

    def written_paths(self) -> list[Path]:
        return list(self.paths.values())

    def _drop(self, name: str) -> None:
        self.files.pop(name).close()
        self.parts.pop(name).unlink(missing_ok=True)
        del self.paths[name]

    def _stop_pool(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        self.rendering.clear()

    def abort(self) -> None:
        """Remove every part file (nothing is left under a report's name)."""
        self._stop_pool()
        for f in self.files.values():
            with contextlib.suppress(OSError):
                f.close()
        for part in self.parts.values():
            part.unlink(missing_ok=True)
        self._clean_spill()

    def _clean_spill(self) -> None:
        if self.spill is not None:
            shutil.rmtree(self.spill, ignore_errors=True)
            self.spill = None


@dataclass(frozen=True)
class _Unit:
    """What a unit's blocks are formatted from (rows in the unit's order)."""

    contig: str
    request: QcRequest
    hist: np.ndarray
    by_cohort: np.ndarray | None
    n_alleles: np.ndarray
    labels: plink2.VariantLabels


def _rows(labels: plink2.VariantLabels, keep: np.ndarray | slice) -> plink2.VariantLabels:
    """The labels of the rows ``keep`` selects."""
    ids = None if labels.ids is None else labels.ids[keep]
    chrom = labels.chrom if isinstance(labels.chrom, str) else labels.chrom[keep]
    return plink2.VariantLabels(chrom, labels.ref[keep], labels.alt[keep], ids)


#: Separates a report's name from its cohort in the keys of :class:`Plink2Files`.
COHORT_KEY = "@"


def _report(name: str) -> Report:
    """The report of a file key: ``afreq``, or ``afreq@COHORT`` for a cohort's file."""
    return REPORTS[name.split(COHORT_KEY, 1)[0]]


def cohort_reports(paths: Mapping[str, Path], plan: StatsPlan, overwrite: bool) -> dict[str, Path]:
    """``PREFIX.COHORT.afreq`` of each cohort (plink2 ``--loop-cats`` naming) by key
    ``afreq@COHORT``, when the run has cohorts and writes ``.afreq``; an existing one is
    refused as :func:`check_report_files` refuses it."""
    request = next(iter(plan.qc.values()), None)
    if request is None or request.cohorts is None or "afreq" not in paths:
        return {}
    afreq = paths["afreq"]
    prefix = str(afreq)[: -len(REPORTS["afreq"].suffix)]
    out = {}
    for name in request.cohorts.names:
        target = Path(f"{prefix}.{name}{REPORTS['afreq'].suffix}")
        if target.exists() or target.is_symlink():
            _check_replaceable(target, REPORTS["afreq"], overwrite=overwrite)
        out[f"afreq{COHORT_KEY}{name}"] = target
    return out


def with_cohort_counts(hist: np.ndarray, partials: Mapping[str, np.ndarray]) -> np.ndarray:
    """A unit's histogram and its per-cohort allele counts side by side, in one array."""
    from zarrgeno.stats.qc.cohort_counts import COHORT_ALLELE_COUNT

    counts = np.asarray(partials[COHORT_ALLELE_COUNT])
    dtype = np.promote_types(hist.dtype, counts.dtype)
    flat = counts.reshape(len(counts), -1)
    return np.concatenate([hist.astype(dtype, copy=False), flat.astype(dtype, copy=False)], axis=1)


def split_cohort_counts(joined: np.ndarray, request: QcRequest) -> tuple[np.ndarray, np.ndarray]:
    """:func:`with_cohort_counts` undone: the histogram and (variants, cohorts, K) counts."""
    k, n_cohorts = request.max_alleles, request.cohorts.n_cohorts
    cut = joined.shape[1] - n_cohorts * k
    return joined[:, :cut], joined[:, cut:].reshape(len(joined), n_cohorts, k)


def cohort_afreq(
    key: str,
    labels: plink2.VariantLabels,
    by_cohort: np.ndarray,
    n_alleles: np.ndarray,
    request: QcRequest,
) -> str:
    """The ``.afreq`` rows of one cohort (file key ``afreq@COHORT``)."""
    cohort = request.cohorts.names.index(key.split(COHORT_KEY, 1)[1])
    counts = np.asarray(by_cohort[:, cohort], dtype=np.int64)
    return "".join(plink2.afreq(labels, AlleleFreqs(counts, n_alleles), header=False))


#: A spill directory is ``.NAME.spill-PID-RANDOM`` beside the report ``NAME``.
SPILL_TAG = ".spill-"


def _remove_dead_spills(final: Path) -> None:
    """Remove the spill directories that killed runs left beside ``final``."""
    for leftover in final.parent.glob(f".{final.name}{SPILL_TAG}*"):
        pid = leftover.name[len(f".{final.name}{SPILL_TAG}") :].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


def _io_error(exc: OSError, path: Path) -> StoreIOError:
    return StoreIOError(f"writing {path}: {os_reason(exc)}; nothing was written", exc.errno)


@contextlib.contextmanager
def open_reports(
    paths: Mapping[str, Path], plan: StatsPlan, *, overwrite: bool = False
) -> Iterator[Plink2Files]:
    """The report files, removed if the block does not :meth:`Plink2Files.finish` them."""
    files = Plink2Files(paths, plan, overwrite)
    try:
        yield files
    except BaseException:
        files.abort()
        raise
    if not files.done:
        files.abort()
