"""How the ``zarrgeno`` process ends: Ctrl-C or SIGTERM at any moment, a closed stdout.

:func:`install` is the first thing :func:`zarrgeno.cli.main` does, before typer, numpy or
zarr load, so that Ctrl-C while they load stops the command like Ctrl-C anywhere else: one
``Error: interrupted`` line and exit 130 (SIGTERM: 143). The handler raises
KeyboardInterrupt in the main thread, so every writer's clean-up runs (no staging left, an
old target put back). Only the command line installs it: a library caller keeps its own
signal handling. The console script imports this module before :func:`install` runs, so
at its top it imports only modules built into Python or loaded as it starts, and ``signal``.
"""

from __future__ import annotations

import _thread
import atexit
import os
import signal
import sys
import time

TYPE_CHECKING = False  # not typing's (see the module docstring)
if TYPE_CHECKING:
    from types import FrameType

    from zarrgeno.errors import ExitCode

#: The signals that stop a command: the line each prints, and its exit code's name.
STOPS = {
    signal.SIGINT: ("interrupted", "INTERRUPTED"),
    signal.SIGTERM: ("terminated (SIGTERM)", "TERMINATED"),
}


class Run:
    """What this process has been through: the stop signal it got, and whether the command
    is over (from then on a signal no longer raises, so it cannot cut the exit short)."""

    def __init__(self) -> None:
        #: The first stop signal received (None: none).
        self.signum: int | None = None
        #: Set by :func:`zarrgeno.cli.main` once the command has returned or was stopped;
        #: a plain attribute store, so that setting it cannot itself be interrupted.
        self.over = False
        #: Signals received once the command was over.
        self.late = 0
        #: The exit code, once known.
        self.code: int | None = None
        #: Whether the stop's one line was printed.
        self.reported = False
        #: A signal that arrived where it could not stop the command yet (_must_wait).
        self.waiting: int | None = None
        #: A duplicate of standard output as it was at the start, to see whether its
        #: reader went away after a library (rich) replaced it with /dev/null.
        self.stdout: int | None = None


#: This process's run (a new one for each :func:`install`).
run = Run()
_previous_hook = sys.unraisablehook


def install() -> None:
    """Stop the command on SIGINT and SIGTERM, from now on, wherever the main thread is.

    A signal the parent process set to be ignored (``nohup``, ``cmd &`` in a script) stays
    ignored. An interrupt that Python drops (raised inside a weak-reference callback, as
    the import system runs one for each module it loads, or inside a ``__del__``) is
    raised again, so it is never lost.
    """
    global run, _previous_hook
    run = Run()
    run.stdout = _duplicate_stdout()
    try:
        for signum in STOPS:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                signal.signal(signum, _on_signal)
    except ValueError:  # not the main thread: signals are the main thread's to handle
        return
    if sys.unraisablehook is not _on_unraisable:
        _previous_hook = sys.unraisablehook
        sys.unraisablehook = _on_unraisable
    atexit.unregister(_exit_with_the_code)
    atexit.register(_exit_with_the_code)  # the first registered runs last


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if run.over:  # shutting down: let it finish, unless asked twice
        run.late += 1
        if run.late > 1:
            os._exit(run.code if run.code is not None else 128 + signum)
        return
    if _must_wait(frame):
        _deliver_later(signum)
        return
    run.waiting = None
    if run.signum is None:
        run.signum = signum
    raise KeyboardInterrupt


def _on_unraisable(hook_args: sys.UnraisableHookArgs) -> None:
    """Raise again, in the main thread, an interrupt that Python could not propagate."""
    if isinstance(hook_args.exc_value, KeyboardInterrupt) and not run.over:
        _deliver_later(run.signum or signal.SIGINT)
        return
    _previous_hook(hook_args)


def _deliver_later(signum: int) -> None:
    """Deliver ``signum`` to the main thread again in a moment, from another thread.
    (Delivered from the handler itself, it would be handled at once, inside the handler,
    again and again.) If the main thread must still wait, its handler calls this again."""
    if run.waiting is not None:  # already on its way
        return
    run.waiting = signum

    def deliver() -> None:
        time.sleep(0.002)
        waiting, run.waiting = run.waiting, None
        if waiting is not None and not run.over:
            _thread.interrupt_main(signal.Signals(waiting))

    _thread.start_new_thread(deliver, ())


#: Where an interrupt waits until the main thread is out (a module, a function in it).
#: Stopped half-way, each would leave work running that its caller does not know of, so
#: that no clean-up can wait for it: a worker process being started (left running, it
#: prints a traceback once it finds this process gone), a task being submitted to a
#: thread pool (it runs anyway, and may write into a staging directory after the clean-up
#: removed it).
WAIT_IN = (
    ("multiprocessing.process", "BaseProcess.start"),
    ("concurrent.futures.process", "ProcessPoolExecutor._spawn_process"),
    ("concurrent.futures.thread", "ThreadPoolExecutor.submit"),
    ("zarrgeno.io.writing", "WriterPool.submit"),
)


def _must_wait(frame: FrameType | None) -> bool:
    """Whether the main thread, at ``frame``, is where an interrupt must wait: in
    :func:`_on_unraisable` (raised there, it would be dropped again), or in
    :data:`WAIT_IN`."""
    waits = {_on_unraisable.__code__}
    for module, path in WAIT_IN:  # in loaded modules only: the others are not running
        found: object = sys.modules.get(module)
        for name in path.split("."):
            found = getattr(found, name, None)
        code = getattr(found, "__code__", None)
        if code is not None:
            waits.add(code)
    while frame is not None:
        if frame.f_code in waits:
            return True
        frame = frame.f_back
    return False


def _exit_with_the_code() -> None:
    """Last at exit: make the exit status the code :func:`finish` decided.

    Python 3.11 exits by killing itself with SIGINT when an interrupt went through code
    that ``eval()`` or ``exec()`` ran (typer, typing and dataclasses evaluate strings),
    even an interrupt that was handled: after a stop, this exits with its code at once.
    Otherwise the stop signals are ignored for the rest of Python's exit, which would set
    their handling back to the default (ending the process by the signal).
    """
    import contextlib

    if run.signum is None or run.code is None:
        for signum in STOPS:
            signal.signal(signum, signal.SIG_IGN)
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(run.code)


def stopped_by() -> tuple[str, ExitCode]:
    """The line and exit code of a command stopped by KeyboardInterrupt: Ctrl-C or SIGTERM."""
    from zarrgeno.errors import ExitCode

    message, name = STOPS[signal.SIGTERM if run.signum == signal.SIGTERM else signal.SIGINT]
    return message, ExitCode[name]


def report_stop() -> ExitCode:
    """Print the stop's one line and return its exit code (a command's clean-up is done)."""
    from zarrgeno.render import Output

    message, code = stopped_by()
    Output.error(message)
    run.reported = True
    return code


def finish(code: int | None) -> int:
    """The exit code of a command that returned ``code`` (None: a KeyboardInterrupt stopped
    it), once what is left to print is printed.

    A stop signal decides the code, and prints its line unless the command did, when the
    command returned 0 (it ran on after the signal) or typer's 130; an error the command
    reported itself keeps its code. Standard output is flushed here, so that a reader that
    went away is seen: exit 141, quietly.
    """
    from zarrgeno.errors import ExitCode

    stops = (ExitCode.OK, ExitCode.INTERRUPTED, ExitCode.TERMINATED)
    if code is None or (run.signum is not None and code in stops):
        code = int(stopped_by()[1] if run.reported else report_stop())
        _stop_children()
    run.code = code
    try:
        sys.stdout.flush()
    except OSError as exc:
        if not is_closed_stdout(exc):
            raise
        pipe = closed_stdout()
        run.code = pipe if code == 0 else code
    return run.code


def _stop_children() -> None:
    """Kill the worker processes a stopped command left running (a pool stopped while it
    started them): each would print a traceback once it found this process gone."""
    multiprocessing = sys.modules.get("multiprocessing")
    if multiprocessing is None:  # never loaded: no worker was started
        return
    children = multiprocessing.active_children()
    for child in children:
        child.kill()
    for child in children:
        child.join(5)


def is_closed_stdout(exc: BaseException | None) -> bool:
    """Whether ``exc`` is the failure of writing to a standard output nobody reads any more
    (``zarrgeno info | head -1``): a broken pipe, with stdout a pipe whose reader is gone
    (not some other pipe, such as a worker process's)."""
    import errno
    import select

    if not (isinstance(exc, OSError) and exc.errno == errno.EPIPE):
        return False
    try:
        poll = select.poll()
        poll.register(_stdout_fd() if run.stdout is None else run.stdout, select.POLLOUT)
        events = poll.poll(0)
    except (OSError, ValueError):
        return False
    return any(mask & (select.POLLERR | select.POLLHUP) for _, mask in events)


def closed_stdout() -> int:
    """Stop writing to a standard output whose reader is gone, quietly, as Unix tools do
    (``cat big | head -1``): later writes, and Python's own flush at exit, go nowhere, and
    the exit code is 141, the code a shell shows for a tool SIGPIPE stopped."""
    from zarrgeno.errors import ExitCode

    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, _stdout_fd())
    finally:
        os.close(devnull)
    return int(ExitCode.PIPE_CLOSED)


def _duplicate_stdout() -> int | None:
    try:
        return os.dup(_stdout_fd())
    except OSError:  # no standard output (zarrgeno >&-)
        return None


def _stdout_fd() -> int:
    return sys.__stdout__.fileno() if sys.__stdout__ is not None else 1
