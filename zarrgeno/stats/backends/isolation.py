"""Rerun a work unit alone in a fresh process after its worker died or hung.

A worker that dies once may have been unlucky (the OOM killer, a stray ``kill``), and one
that did not finish within the time limit may have met a passing stall of the storage: the
unit is rerun alone (with the same time limit) and, if it succeeds, the run goes on with an
exact result. A unit that kills its process again, or exceeds the limit again, is narrowed
to the stored chunk that was being read, and the run stops with a :class:`ClusterError`
naming that chunk.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
from typing import TYPE_CHECKING, Any

from zarrgeno.errors import ClusterError
from zarrgeno.runtime.mainguard import check_main_guard
from zarrgeno.stats.plan import Partial, WorkUnit

if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess


#: Seconds a process that has answered may take to exit before it is killed.
EXIT_GRACE = 5.0

#: Why a task may not finish in time (the ``--unit-timeout`` message).
TIMEOUT_HINT = (
    "a stuck read, or data that hangs the decoder? raise --unit-timeout if the storage is just slow"
)

#: Signals that mean the process crashed on its own (bad memory access, abort).
_CRASHES = {signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGILL, signal.SIGFPE}


def how_it_died(exitcode: int | None) -> str:
    """``signal 9``, ``exit code 1``: a dead process's exit status as a message says it."""
    if exitcode is None:
        return "cause unknown"
    return f"signal {-exitcode}" if exitcode < 0 else f"exit code {exitcode}"


def _hint(exitcode: int | None) -> str:
    if exitcode == -signal.SIGKILL:
        return "out of memory, or killed by someone?"
    if exitcode is not None and exitcode < 0 and -exitcode in _CRASHES:
        return "a crash while decoding or counting it: corrupt or hostile data?"
    return "see the worker's standard error"


class WorkerDied(Exception):
    """A process running a task died before it answered, or was killed because it had not
    answered within ``timeout`` seconds (then ``timeout`` is set).

    ``chunk`` is the grid index ``(i, j)`` of the last chunk it started to read, if any.
    """

    def __init__(
        self,
        exitcode: int | None,
        chunk: tuple[int, int] | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        super().__init__(exitcode, chunk, timeout)
        self.exitcode = exitcode
        self.chunk = chunk
        self.timeout = timeout

    @property
    def how(self) -> str:
        """``signal 9``, or ``the worker was killed`` after a time-out."""
        return "the worker was killed" if self.timeout is not None else how_it_died(self.exitcode)

    @property
    def what(self) -> str:
        """What the task did to its process: ``killed the worker process`` or ``did not
        finish within 5 s``."""
        if self.timeout is not None:
            return f"did not finish within {self.timeout:g} s"
        return "killed the worker process"

    @property
    def hint(self) -> str:
        return TIMEOUT_HINT if self.timeout is not None else _hint(self.exitcode)


def _child(conn: Connection, target: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """The isolated process: say it has started, report each chunk read, then send the
    result or the error."""
    # Imported in the child, for start-up cost only (numcodecs, zarr): no cycle.
    from zarrgeno.stats.backends.blosc import single_threaded_blosc
    from zarrgeno.stats.reader import reporting_reads

    single_threaded_blosc()
    conn.send(("started", None))
    try:
        with reporting_reads(lambda key, i, j: conn.send(("read", (i, j)))):
            result = target(*args)
        conn.send(("ok", result))
    except BaseException as exc:  # sent to the parent, which raises it
        try:
            conn.send(("error", exc))
        except Exception:  # an exception that does not pickle
            conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        conn.close()


def run_alone(target: Callable[..., Any], *args: Any, timeout: float | None = None) -> Any:
    """``target(*args)`` in a fresh spawned process: its result, or its exception re-raised.

    Raises :class:`WorkerDied` if the process dies before answering, or has not answered
    within ``timeout`` seconds of its start (it is then killed; the time a new process
    takes to start does not count). Any way out of here (Ctrl-C included) kills the
    process first.
    """
    check_main_guard("rerunning a unit alone")
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(
        target=_child, args=(sender, target, args), name="zarrgeno-alone", daemon=True
    )
    answered = False
    last: tuple[int, int] | None = None
    try:
        process.start()
        sender.close()  # the child holds the only write end: its death is our EOF
        deadline = None  # set once the process has started
        while True:
            if deadline is not None and not receiver.poll(max(0.0, deadline - time.monotonic())):
                _stop(process, grace=0.0)  # the finally below finds it stopped
                raise WorkerDied(process.exitcode, last, timeout=timeout)
            try:
                kind, payload = receiver.recv()
            except EOFError:
                process.join(EXIT_GRACE)
                raise WorkerDied(process.exitcode, last) from None
            if kind == "started":
                if timeout is not None:
                    deadline = time.monotonic() + timeout
                continue
            if kind == "read":
                last = payload
                continue
            answered = True
            if kind == "error":
                raise payload
            return payload
    finally:
        sender.close()
        receiver.close()
        _stop(process, grace=EXIT_GRACE if answered else 0.0)


def _stop(process: BaseProcess, *, grace: float) -> None:
    if process.pid is None:  # never started
        return
    process.join(grace)
    if process.is_alive():
        process.kill()
        process.join()


def rerun_alone(
    func: Callable[[WorkUnit], Partial],
    unit: WorkUnit,
    exitcode: int | None,
    *,
    timeout: float | None = None,
    timed_out: bool = False,
) -> Partial:
    """Rerun ``unit`` alone after the pool worker running it died (``exitcode``), or after
    the pool was stopped because no unit finished within ``timeout`` seconds (``timed_out``).

    The rerun gets the same ``timeout``. Its result if it succeeds; if it dies or times out
    too, a ClusterError naming the chunk responsible (narrowed to one stored chunk when the
    unit spans several).
    """
    first = WorkerDied(exitcode, timeout=timeout if timed_out else None)
    try:
        result: Partial = run_alone(func, unit, timeout=timeout)
    except WorkerDied as died:
        raise ClusterError(_poison_message(unit, first, died, timeout)) from None
    return result


def _poison_message(
    unit: WorkUnit, first: WorkerDied, died: WorkerDied, timeout: float | None
) -> str:
    """Name what failed its worker twice: the chunk, or the unit when no chunk explains it."""
    # Imported here for start-up cost only (numpy): the process backend imports this module.
    from zarrgeno.stats.unit import count_chunk

    reader = unit.reader
    failures = [first, died]
    if died.chunk is None:
        what = f"{unit.describe()} of {reader.path}"
        tail = "before any chunk was read"
    else:
        i, j = died.chunk
        what = reader.describe_chunk(i, j)
        tail = ""
        if len(reader.chunk_indexes(unit.start, unit.stop)) > 1:
            # The unit spans several chunks: the one it failed on, read alone, must fail too.
            try:
                run_alone(count_chunk, unit, i, j, timeout=timeout)
            except WorkerDied as again:
                failures = [died, again]
            else:
                what = f"{unit.describe()} of {reader.path}"
                tail = (
                    f"the second time while reading {reader.describe_chunk(i, j)}, "
                    f"which alone {'finished' if died.timeout is not None else 'did not'}"
                )
    return (
        f"{what} {_twice(*failures)}{'; ' + tail if tail else ''}; "
        f"the run was stopped ({failures[-1].hint})"
    )


def _twice(first: WorkerDied, second: WorkerDied) -> str:
    """``killed the worker process twice (signal 9)``, ``did not finish within 5 s twice
    (the worker was killed)``, or each failure in turn when they differ in kind."""
    if first.what != second.what:
        return f"{first.what} ({first.how}), then {second.what} ({second.how})"
    how = first.how if second.how == first.how else f"{first.how}, then {second.how}"
    return f"{first.what} twice ({how})"
