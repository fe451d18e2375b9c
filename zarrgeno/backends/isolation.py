"""Rerun a work unit alone in a fresh process after its worker died.

A worker that dies once may have been unlucky (the OOM killer, a stray ``kill``): the unit
is rerun alone and, if it succeeds, the run goes on with an exact result. A unit that kills
its process again is narrowed to the stored chunk that was being read, and the run stops
with a :class:`ClusterError` naming that chunk.
"""

from __future__ import annotations

import multiprocessing
import signal
from typing import TYPE_CHECKING, Any

from zarrgeno.backends.blosc import single_threaded_blosc
from zarrgeno.errors import ClusterError

if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from zarrgeno.stats.api import Partial, WorkUnit

#: Seconds a process that has answered may take to exit before it is killed.
EXIT_GRACE = 5.0

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
    """A process running a task alone died before it answered.

    ``chunk`` is the grid index ``(i, j)`` of the last chunk it started to read, if any.
    """

    def __init__(self, exitcode: int | None, chunk: tuple[int, int] | None) -> None:
        super().__init__(exitcode, chunk)
        self.exitcode = exitcode
        self.chunk = chunk

    @property
    def how(self) -> str:
        return how_it_died(self.exitcode)


def _child(conn: Connection, target: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """The isolated process: report each chunk read, then send the result or the error."""
    from zarrgeno.stats.chunks import reporting_reads

    single_threaded_blosc()
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


def run_alone(target: Callable[..., Any], *args: Any) -> Any:
    """``target(*args)`` in a fresh spawned process: its result, or its exception re-raised.

    Raises :class:`WorkerDied` if the process dies before answering. Any way out of here
    (Ctrl-C included) kills the process first.
    """
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
        while True:
            try:
                kind, payload = receiver.recv()
            except EOFError:
                process.join(EXIT_GRACE)
                raise WorkerDied(process.exitcode, last) from None
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
    func: Callable[[WorkUnit], Partial], unit: WorkUnit, exitcode: int | None
) -> Partial:
    """Rerun ``unit`` alone after the pool worker running it died (``exitcode``).

    Its result if the rerun succeeds; if the rerun dies too, a ClusterError naming the
    chunk that killed it (narrowed to one stored chunk when the unit spans several).
    """
    try:
        result: Partial = run_alone(func, unit)
    except WorkerDied as died:
        raise ClusterError(_poison_message(unit, exitcode, died)) from None
    return result


def _poison_message(unit: WorkUnit, first: int | None, died: WorkerDied) -> str:
    """Name what killed its worker twice: the chunk, or the unit when no chunk explains it."""
    from zarrgeno.stats.api import count_chunk

    reader = unit.reader
    codes = [first, died.exitcode]
    if died.chunk is None:
        what = f"{unit.describe()} of {reader.path} killed the worker process twice"
        tail = "before any chunk was read"
    else:
        i, j = died.chunk
        what = reader.describe_chunk(i, j) + " killed the worker process twice"
        tail = ""
        if len(reader.chunk_indexes(unit.start, unit.stop)) > 1:
            # The unit spans several chunks: the one it died on, read alone, must kill too.
            try:
                run_alone(count_chunk, unit, i, j)
            except WorkerDied as again:
                codes = [died.exitcode, again.exitcode]
            else:
                what = f"{unit.describe()} of {reader.path} killed the worker process twice"
                tail = (
                    f"the second time while reading {reader.describe_chunk(i, j)}, "
                    "which alone did not"
                )
    how = how_it_died(codes[0])
    if codes[1] != codes[0]:
        how += f", then {how_it_died(codes[1])}"
    return f"{what} ({how}){'; ' + tail if tail else ''}; the run was stopped ({_hint(codes[-1])})"
