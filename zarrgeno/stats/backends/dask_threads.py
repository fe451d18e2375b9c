"""The ``dask`` backend: dask.array on the threaded scheduler, chunks aligned with the store's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from zarrgeno.stats.backends.base import Backend, Notify, backend_workers
from zarrgeno.stats.backends.blosc import blosc_threads
from zarrgeno.stats.plan import Partial, ProgressCallback, StatsPlan

#: Units per worker thread computed at once when the run counts QC statistics.
QC_WAVE_PER_THREAD = 8


class DaskBackend(Backend):
    """The plan as a dask graph (genotype arrays chunked like the store, one count task per
    unit) run by dask's threaded scheduler. Blosc and the counting kernel release the GIL;
    Blosc runs single-threaded inside each of the ``workers`` threads."""

    in_process = True
    name = "dask"
    summary = "dask.array on the threaded scheduler, chunks aligned with the store's"
    options = frozenset({"workers"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.workers = backend_workers(self.config.get("workers"))

    def describe(self) -> str:
        return f"{self.name} ({self.workers} thread{'s' if self.workers != 1 else ''})"

    def run(
        self,
        plan: StatsPlan,
        *,
        progress: ProgressCallback | None = None,
        notify: Notify | None = None,
    ) -> Iterator[Partial]:
        # Imported on first use for start-up cost and an optional dependency: dask is an
        # extra, and `zarrgeno backends` imports this module to list it.
        import dask
        from dask.callbacks import Callback

        from zarrgeno.stats.graph import unit_key, unit_tasks
        from zarrgeno.stats.unit import read_ahead

        _share_buffers(plan)
        read_ahead(plan.units)
        tasks = unit_tasks(plan)
        sizes = {unit_key(u): u.n_variants for u in plan.units}

        class _Progress(Callback):
            def _posttask(
                self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any
            ) -> None:
                if progress is not None and key in sizes:
                    progress(sizes[key])

        # Tasks run in pool threads, where numcodecs' default (None) already keeps Blosc
        # single-threaded; say so explicitly rather than rely on it.
        # A QC run's partials carry per-variant histograms (11 bytes a variant): computed in
        # waves of units, they reach the caller (which writes them out) as they come, rather
        # than all at the end.
        wave = QC_WAVE_PER_THREAD * self.workers if plan.qc else len(tasks)
        for start in range(0, len(tasks), max(1, wave)):
            with blosc_threads(False), _Progress():
                results = dask.compute(
                    *tasks[start : start + wave], scheduler="threads", num_workers=self.workers
                )
            yield from results


def _share_buffers(plan: StatsPlan) -> None:
    """The contigs' readers share their pools of decoded chunks: five contigs would otherwise
    keep five pools (with 30 MB chunks, 450 MB) until the run ends."""
    first: dict[tuple[Any, ...], Any] = {}
    for reader in plan.readers:
        key = (reader.chunks, reader.dtype.str)
        if key in first:
            if first[key] is not reader:
                reader.share_buffers(first[key])
        else:
            first[key] = reader
