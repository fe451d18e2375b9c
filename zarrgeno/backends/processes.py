"""The ``multiprocessing`` backend: a spawned process pool over chunk-aligned intervals."""

from __future__ import annotations

import multiprocessing
import signal
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

from zarrgeno.backends.base import Backend, cpu_count
from zarrgeno.backends.blosc import single_threaded_blosc
from zarrgeno.backends.isolation import how_it_died, rerun_alone
from zarrgeno.errors import ClusterError, UsageError

if TYPE_CHECKING:
    from zarrgeno.stats.api import Partial, StatsPlan, WorkUnit

#: Pool deaths a run survives; the next one stops it (workers that keep dying are no accident).
MAX_POOL_DEATHS = 3
#: Units handed to the pool per worker: a second one queued means a worker never waits for
#: this process between units; when a worker dies, every unit in flight is a suspect.
IN_FLIGHT_PER_WORKER = 2


class ProcessBackend(Backend):
    """Worker processes started with ``spawn``; each opens the store itself.

    Tasks carry a store reference and an interval, never arrays; each worker decompresses
    with one Blosc thread, so workers x 1 thread fills the cores without oversubscribing.
    When a worker dies (killed, out of memory), the units it may have been running are
    rerun alone in fresh processes and the run goes on; a unit that kills its process
    again stops the run with a ClusterError naming the chunk (see docs/reliability.md).
    """

    name = "multiprocessing"
    summary = "a pool of spawned worker processes, each reading the store itself"
    options = frozenset({"workers"})

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        self.workers = int(self.config.get("workers") or cpu_count())  # type: ignore[call-overload]
        self._used = self.workers

    def describe(self) -> str:
        return f"{self.name} ({self._used} process{'es' if self._used != 1 else ''})"

    def run(self, plan: StatsPlan, **kwargs: object) -> Iterator[Partial]:  # type: ignore[override]
        for reader in plan.readers:
            location = reader.ref.location or ""
            if location.startswith("memory://"):
                raise UsageError(
                    f"{location} lives in this process's memory, which worker processes cannot "
                    "see; use --backend sequential or dask"
                )
        return super().run(plan, **kwargs)  # type: ignore[arg-type]

    def map(
        self, func: Callable[[WorkUnit], Partial], units: tuple[WorkUnit, ...]
    ) -> Iterator[Partial]:
        """Run ``units`` on the pool; when a worker dies, rerun the units it may have been
        running alone (:mod:`zarrgeno.backends.isolation`), then go on with a new pool."""
        if not units:
            return
        self._used = min(self.workers, len(units))
        todo = deque(units)
        deaths = 0
        while todo:
            try:
                yield from self._pool(func, todo)
            except _PoolDied as died:
                deaths += 1
                if deaths > MAX_POOL_DEATHS:
                    raise ClusterError(died.message(deaths)) from None
                for unit in died.suspects:
                    yield rerun_alone(func, unit, died.exitcode)

    def _pool(
        self, func: Callable[[WorkUnit], Partial], todo: deque[WorkUnit]
    ) -> Iterator[Partial]:
        """Run units taken from ``todo`` on a new pool, at most IN_FLIGHT_PER_WORKER per
        worker at a time, so that the units in flight when a worker dies are known: raises
        :class:`_PoolDied`."""
        # spawn, not fork: a forked child would inherit this process's threads and locks
        # (dask, Blosc) in whatever state they were in.
        executor = ProcessPoolExecutor(
            max_workers=self._used,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=single_threaded_blosc,
        )
        finished = False
        running: dict[Future[Partial], WorkUnit] = {}
        try:
            while todo or running:
                while todo and len(running) < self._used * IN_FLIGHT_PER_WORKER:
                    unit = todo.popleft()
                    running[executor.submit(func, unit)] = unit
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                if any(isinstance(f.exception(), BrokenProcessPool) for f in done):
                    died = _PoolDied.collect(executor, running)
                    yield from died.results
                    raise died
                for future in done:
                    del running[future]
                    yield future.result()
            finished = True
        finally:
            if not finished:
                _kill(executor)
            executor.shutdown(wait=True, cancel_futures=True)
            # An exception's traceback keeps this frame, and with it the pool's queues,
            # alive until exit, where multiprocessing then warns of "leaked semaphores".
            running = {}
            del executor


class _PoolDied(Exception):
    """A pool worker died: the units that were in flight (the suspects), the results that
    made it back before the pool stopped, and how the worker died."""

    def __init__(
        self, suspects: list[WorkUnit], results: list[Partial], exitcode: int | None
    ) -> None:
        super().__init__(suspects, exitcode)
        self.suspects = suspects
        self.results = results
        self.exitcode = exitcode

    @classmethod
    def collect(
        cls, executor: ProcessPoolExecutor, running: dict[Future[Partial], WorkUnit]
    ) -> _PoolDied:
        processes = list((getattr(executor, "_processes", None) or {}).values())
        executor.shutdown(wait=True)  # now every future has its result or the pool's error
        # The cause first: once one worker dies, the pool stops the others with SIGTERM.
        codes = sorted(
            (p.exitcode for p in processes if p.exitcode not in (None, 0)),
            key=lambda code: code == -signal.SIGTERM,
        )
        suspects, results = [], []
        for future, unit in running.items():
            exc = future.exception()
            if exc is None:
                results.append(future.result())
            elif isinstance(exc, BrokenProcessPool):
                suspects.append(unit)
            else:
                raise exc
        running.clear()
        return cls(suspects, results, codes[0] if codes else None)

    def message(self, deaths: int) -> str:
        units = ", ".join(u.describe() for u in self.suspects[:2])
        more = len(self.suspects) - 2
        return (
            f"worker processes died {deaths} times in this run, the last one "
            f"({how_it_died(self.exitcode)}) while computing {units}"
            f"{f' and {more} other unit(s)' if more > 0 else ''}; the run was stopped "
            "(out of memory? try fewer --workers)"
        )


def _kill(executor: ProcessPoolExecutor) -> None:
    """Stop workers now (Ctrl-C, an error): never wait for queued tasks to run."""
    processes = getattr(executor, "_processes", None) or {}
    for process in list(processes.values()):
        if process.is_alive():
            process.terminate()
