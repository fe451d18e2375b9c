"""The ``multiprocessing`` backend: a spawned process pool over chunk-aligned intervals."""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

from zarrgeno.backends.base import Backend, cpu_count
from zarrgeno.backends.blosc import single_threaded_blosc
from zarrgeno.errors import ClusterError, UsageError

if TYPE_CHECKING:
    from zarrgeno.stats.api import Partial, StatsPlan, WorkUnit


class ProcessBackend(Backend):
    """Worker processes started with ``spawn``; each opens the store itself.

    Tasks carry a store reference and an interval, never arrays; each worker decompresses
    with one Blosc thread, so workers x 1 thread fills the cores without oversubscribing.
    A worker that dies (killed, out of memory) fails the run at once with a ClusterError.
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
        if not units:
            return
        self._used = min(self.workers, len(units))
        # spawn, not fork: a forked child would inherit this process's threads and locks
        # (dask, Blosc) in whatever state they were in.
        executor = ProcessPoolExecutor(
            max_workers=self._used,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=single_threaded_blosc,
        )
        finished = False
        try:
            pending: dict[Future[Partial], WorkUnit] = {executor.submit(func, u): u for u in units}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    unit = pending.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        raise ClusterError(_broken_message(executor, unit, len(pending))) from None
                    yield result
            finished = True
        finally:
            if not finished:
                _kill(executor)
            executor.shutdown(wait=True, cancel_futures=True)
            # An exception's traceback keeps this frame, and with it the pool's queues,
            # alive until exit, where multiprocessing then warns of "leaked semaphores".
            pending = {}
            del executor


def _exit_codes(executor: ProcessPoolExecutor) -> list[int]:
    """Exit codes of dead workers, the cause first: once one dies, the pool itself stops
    the others with SIGTERM."""
    processes = getattr(executor, "_processes", None) or {}
    codes = [p.exitcode for p in list(processes.values()) if p.exitcode not in (None, 0)]
    return sorted(codes, key=lambda code: code == -signal.SIGTERM)


def _broken_message(executor: ProcessPoolExecutor, unit: WorkUnit, left: int) -> str:
    codes = _exit_codes(executor)
    how = ""
    if codes:
        code = codes[0]
        how = f" (killed by signal {-code})" if code < 0 else f" (exit code {code})"
    return (
        f"a worker process died{how} while the pool was computing {unit.describe()}"
        f"{f' and {left} other task(s)' if left else ''}; the run was stopped "
        "(out of memory? killed?)"
    )


def _kill(executor: ProcessPoolExecutor) -> None:
    """Stop workers now (Ctrl-C, an error): never wait for queued tasks to run."""
    processes = getattr(executor, "_processes", None) or {}
    for process in list(processes.values()):
        if process.is_alive():
            process.terminate()
