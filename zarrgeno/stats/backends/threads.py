"""The ``threads`` backend: a pool of threads in this process, no scheduler, no start-up.

Blosc decompression (numcodecs) and the counting kernel (zarrgeno/stats/_kernel.c) both
release the GIL, so threads in one process use every core on the hot path, while nothing
is spawned, pickled or imported twice: on a small store the whole command is dominated by
the interpreter's own start, and on a large one the pool is the same from the first unit
of the first contig to the last unit of the last.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from itertools import islice
from typing import Any

from zarrgeno.stats.backends.base import Backend, backend_workers
from zarrgeno.stats.backends.blosc import blosc_threads
from zarrgeno.stats.backends.sequential import SequentialBackend
from zarrgeno.stats.plan import Partial, WorkUnit

#: Units queued per thread: one running, one waiting, so a thread never idles between units
#: while the results are summed; more would only hold more partial results in memory.
IN_FLIGHT_PER_THREAD = 2


class ThreadBackend(Backend):
    """``workers`` threads (default: every usable core), each reading and counting whole
    units with single-threaded Blosc into its own reusable chunk buffer.

    A unit that raises stops the run with its error; on Ctrl-C or an error, units not yet
    started are cancelled and the ones running finish their unit first (a thread cannot be
    killed). A crash inside a decoder takes the process with it: for isolation of a
    poisoned chunk use ``--backend multiprocessing`` (see docs/reliability.md).
    """

    in_process = True
    name = "threads"
    summary = "a pool of threads in this process (Blosc and the kernel release the GIL)"
    options = frozenset({"workers"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.workers = backend_workers(self.config.get("workers"))
        self._used = self.workers

    def describe(self) -> str:
        return f"{self.name} ({self._used} thread{'s' if self._used != 1 else ''})"

    def map(
        self, func: Callable[[WorkUnit], Partial], units: tuple[WorkUnit, ...]
    ) -> Iterator[Partial]:
        """Apply ``func`` to every unit on the pool, at most IN_FLIGHT_PER_THREAD units per
        thread queued at a time; results in the order they finish."""
        self._used = max(1, min(self.workers, len(units)))
        if self._used == 1:  # no pool for one thread: the sequential loop, in this thread
            yield from SequentialBackend().map(func, units)
            return
        todo = iter(units)
        limit = self._used * IN_FLIGHT_PER_THREAD
        running: set[Future[Partial]] = set()
        # Pool threads already keep Blosc single-threaded (numcodecs' default, None, means
        # "not from the main thread"); say so explicitly rather than rely on it.
        executor = ThreadPoolExecutor(self._used, thread_name_prefix="zarrgeno-stats")
        try:
            with blosc_threads(False):
                while True:
                    for unit in islice(todo, limit - len(running)):
                        running.add(executor.submit(func, unit))
                    if not running:
                        return
                    done, running = wait(running, return_when=FIRST_COMPLETED)
                    yield from (f.result() for f in done)
        except BaseException:
            # Imported here for start-up cost only (numpy), as in Backend.run.
            from zarrgeno.stats.unit import abandon_reads

            abandon_reads(units)  # the threads must not wait for a slow server to answer
            raise
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
