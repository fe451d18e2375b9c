"""The ``multiprocessing`` backend: a spawned process pool over chunk-aligned intervals."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

from zarrgeno.errors import ClusterError, UsageError
from zarrgeno.runtime.mainguard import check_main_guard
from zarrgeno.stats.backends.base import Backend, backend_workers
from zarrgeno.stats.backends.isolation import TIMEOUT_HINT, how_it_died, rerun_alone
from zarrgeno.stats.plan import Partial, StatsPlan, WorkUnit

if TYPE_CHECKING:
    from multiprocessing.synchronize import Event as EventType


#: Pool deaths (or pools stopped for --unit-timeout) a run survives; the next one stops it
#: (workers that keep dying are no accident).
MAX_POOL_DEATHS = 3
#: Units handed to the pool per worker: a second one queued means a worker never waits for
#: this process between units; when a worker dies, every unit in flight is a suspect.
IN_FLIGHT_PER_WORKER = 2
#: The module of the task function: what a worker imports as it starts (numpy, zarr, ...).
TASK_MODULE = "zarrgeno.stats.unit"


class ProcessBackend(Backend):
    """Worker processes started with ``spawn``; each opens the store itself.

    Tasks carry a store reference and an interval, never arrays; each worker decompresses
    with one Blosc thread, so workers x 1 thread fills the cores without oversubscribing.
    When a worker dies (killed, out of memory), the units it may have been running are
    rerun alone in fresh processes and the run goes on; a unit that kills its process
    again stops the run with a ClusterError naming the chunk (see docs/reliability.md).
    With ``unit_timeout``, a pool in which no unit finished for that many seconds is
    stopped the same way, its units in flight rerun alone with the same limit.
    """

    name = "multiprocessing"
    summary = "a pool of spawned worker processes, each reading the store itself"
    options = frozenset({"workers", "unit_timeout"})

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        self.workers = backend_workers(self.config.get("workers"))
        self._used = self.workers
        timeout = self.config.get("unit_timeout")
        if timeout is not None and not float(timeout) > 0:  # type: ignore[arg-type]
            raise UsageError(f"--unit-timeout must be more than 0 seconds, got {timeout}")
        #: Seconds without a finished unit before the units in flight are suspects; None: no limit.
        self.unit_timeout = None if timeout is None else float(timeout)  # type: ignore[arg-type]

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
        """Run ``units`` on the pool; when a worker dies, or nothing finishes within
        ``unit_timeout``, rerun the units it may have been running alone
        (:mod:`zarrgeno.stats.backends.isolation`), then go on with a new pool."""
        if not units:
            return
        self._used = min(self.workers, len(units))
        todo = deque(units)
        deaths = stalls = 0
        while todo:
            try:
                yield from self._pool(func, todo)
            except _PoolDied as died:
                deaths += 1
                stalls += died.timeout is not None
                if deaths > MAX_POOL_DEATHS:
                    raise ClusterError(died.message(deaths, stalls)) from None
                for unit in died.suspects:
                    yield rerun_alone(
                        func,
                        unit,
                        died.exitcode,
                        timeout=self.unit_timeout,
                        timed_out=died.timeout is not None,
                    )

    def _pool(
        self, func: Callable[[WorkUnit], Partial], todo: deque[WorkUnit]
    ) -> Iterator[Partial]:
        """Run units taken from ``todo`` on a new pool, at most IN_FLIGHT_PER_WORKER per
        worker at a time, so that the units in flight when a worker dies are known: raises
        :class:`_PoolDied`, also when no unit finished for ``unit_timeout`` seconds (the
        pool's workers are then killed)."""
        executor, started = _take_warm(self._used, func) or _new_pool(self._used, func)
        running: dict[Future[Partial], WorkUnit] = {}
        try:
            while todo or running:
                done: set[Future[Partial]] = set()
                stuck = False
                broken = not _submit(executor, func, todo, running, self._used)
                if not broken:
                    done, _ = wait(running, timeout=self.unit_timeout, return_when=FIRST_COMPLETED)
                    if not done and not started.is_set():
                        continue  # no worker is up yet: starting processes is not a unit's time
                    stuck = not done
                    broken = stuck or any(
                        isinstance(f.exception(), BrokenProcessPool) for f in done
                    )
                if stuck:
                    # Nothing finished in time: a worker is stuck (a read that never
                    # returns, a decoder looping). Kill them all: the units in flight are
                    # suspects, as when a worker dies.
                    _kill(executor, hard=True)
                if broken:
                    died = _PoolDied.collect(
                        executor, running, timeout=self.unit_timeout if stuck else None
                    )
                    yield from died.results
                    raise died
                for future in done:
                    del running[future]
                    yield future.result()
        finally:
            # Workers left idle are stopped too: nothing of theirs is pending, and a
            # worker's own exit (tearing down numpy and zarr) would only add to the run's time.
            _kill(executor)
            executor.shutdown(wait=True, cancel_futures=True)
            # An exception's traceback keeps this frame, and with it the pool's queues,
            # alive until exit, where multiprocessing then warns of "leaked semaphores".
            running = {}
            del executor, started


class _PoolDied(Exception):
    """A pool worker died, or the pool was stopped because no unit finished within
    ``timeout`` seconds: the units that were in flight (the suspects), the results that
    made it back before the pool stopped, and how the worker died."""

    def __init__(
        self,
        suspects: list[WorkUnit],
        results: list[Partial],
        exitcode: int | None,
        timeout: float | None = None,
    ) -> None:
        super().__init__(suspects, exitcode, timeout)
        self.suspects = suspects
        self.results = results
        self.exitcode = exitcode
        self.timeout = timeout

    @classmethod
    def collect(
        cls,
        executor: ProcessPoolExecutor,
        running: dict[Future[Partial], WorkUnit],
        timeout: float | None = None,
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
        if timeout is not None:  # the exit codes are those of our kill
            return cls(suspects, results, None, timeout)
        return cls(suspects, results, codes[0] if codes else None)

    def message(self, deaths: int, stalls: int = 0) -> str:
        """Why the run stops after ``deaths`` pool failures, ``stalls`` of them time-outs."""
        units = ", ".join(u.describe() for u in self.suspects[:2])
        more = len(self.suspects) - 2
        verb = "died" if not stalls else "stalled" if stalls == deaths else "died or stalled"
        if self.timeout is None:
            how, hint = how_it_died(self.exitcode), "out of memory? try fewer --workers"
        else:
            how, hint = f"nothing finished within {self.timeout:g} s", TIMEOUT_HINT
        times = f"{deaths} time{'s' if deaths != 1 else ''}"
        return (
            f"worker processes {verb} {times} in this run, the last one ({how}) while "
            f"computing {units}{f' and {more} other unit(s)' if more > 0 else ''}; the run "
            f"was stopped ({hint})"
        )


def _submit(
    executor: ProcessPoolExecutor,
    func: Callable[[WorkUnit], Partial],
    todo: deque[WorkUnit],
    running: dict[Future[Partial], WorkUnit],
    workers: int,
) -> bool:
    """Move units from ``todo`` to the pool until IN_FLIGHT_PER_WORKER per worker are in
    flight; False if the pool is broken (a worker died since the last wait)."""
    while todo and len(running) < workers * IN_FLIGHT_PER_WORKER:
        try:
            future = executor.submit(func, todo[0])
        except BrokenProcessPool:
            return False
        running[future] = todo.popleft()
    return True


def _new_pool(
    workers: int, func: Callable[..., object] | str
) -> tuple[ProcessPoolExecutor, EventType]:
    """A pool of ``workers`` spawned processes, and the event the first one up sets."""
    # spawn, not fork: a forked child would inherit this process's threads and locks
    # (dask, Blosc) in whatever state they were in.
    check_main_guard("the multiprocessing backend")
    context = multiprocessing.get_context("spawn")
    started = context.Event()  # set by the first worker up: unit_timeout counts from then
    module = func if isinstance(func, str) else func.__module__
    executor = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_start_worker,
        initargs=(started, module),
    )
    return executor, started


def _start_worker(started: EventType, module: str) -> None:
    """Pool initializer: one Blosc thread per worker, then tell the pool a worker is up.

    ``module`` (the task function's) is imported first, so that a worker that says it is up
    is ready to count.
    """
    import importlib

    # For start-up cost only (numcodecs): this module is imported before numpy is.
    from zarrgeno.stats.backends.blosc import single_threaded_blosc

    importlib.import_module(module)
    single_threaded_blosc()
    started.set()


#: A pool started ahead of its run by :func:`warm_up`: (pool, its start event, workers, the
#: environment it was started with).
_WARM: list[tuple[ProcessPoolExecutor, EventType, int, dict[str, str]]] = []


def warm_up(workers: int | None = None) -> None:
    """Start the worker processes of the next run now, in the background.

    A worker spends most of its start importing numpy, zarr and numcodecs; the command line
    calls this as it starts, so those imports run on the other cores while this process
    imports its own, parses the options and plans the work. The next run on as many
    workers in the same environment takes the pool; one that differs starts its own, and
    a pool never taken is stopped at exit.
    """
    if _WARM:
        return
    n = backend_workers(workers)
    executor, started = _new_pool(n, TASK_MODULE)
    for _ in range(n):  # the processes start with the first task
        executor.submit(int)
    _WARM.append((executor, started, n, dict(os.environ)))
    # Registered like the pool's own exit hook and so run before it (they run in reverse
    # order): an unused pool is stopped at once rather than waited for.
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        register(_drop_warm)


def _take_warm(
    workers: int, func: Callable[..., object]
) -> tuple[ProcessPoolExecutor, EventType] | None:
    """The pool :func:`warm_up` started, if it fits a run of ``workers`` processes of
    ``func`` in this environment (``--cache`` may have changed it since)."""
    if not _WARM:
        return None
    executor, started, n, environ = _WARM.pop()
    if n == workers and environ == dict(os.environ) and func.__module__ == TASK_MODULE:
        return executor, started
    _stop(executor)
    return None


def _drop_warm() -> None:
    while _WARM:
        _stop(_WARM.pop()[0])


def _stop(executor: ProcessPoolExecutor) -> None:
    """Stop a pool that no run will take, without waiting for it."""
    _kill(executor)
    executor.shutdown(wait=False, cancel_futures=True)


def _kill(executor: ProcessPoolExecutor, *, hard: bool = False) -> None:
    """Stop workers now (Ctrl-C, an error, the end of a run): never wait for queued tasks
    to run, nor for idle workers to tear down their interpreters. ``hard``:
    SIGKILL rather than SIGTERM, for workers that may be stuck."""
    processes = getattr(executor, "_processes", None) or {}
    for process in list(processes.values()):
        if not process.is_alive():
            continue
        if hard:
            process.kill()
        else:
            process.terminate()
