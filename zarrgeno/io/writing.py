"""Safe output: refuse to clobber, write to a staging directory, rename into place when complete.

Which targets are refused, and what ``--overwrite`` may replace, is zarrgeno.io.targets.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, TypeVar

from zarrgeno.errors import DISK_FULL, MissingInputError, StoreIOError, TargetExistsError, os_reason
from zarrgeno.io.mark import MARKER, write_mark
from zarrgeno.io.partfiles import pid_alive
from zarrgeno.io.store import StoreRef
from zarrgeno.io.targets import (
    check_replaceable,
    exists,
    refusal,
    replaceable,
    resolve_target,
)

T = TypeVar("T")

STAGING_TAG = ".zarrgeno-staging-"
TRASH_TAG = ".zarrgeno-trash-"

__all__ = [
    "MARKER",
    "STAGING_TAG",
    "TRASH_TAG",
    "WriterPool",
    "check_target",
    "clean_stale",
    "staged_directory",
]


def check_target(
    target: str | os.PathLike[str],
    *,
    overwrite: bool,
    command: str | None = None,
    sources: Iterable[StoreRef] = (),
) -> Path:
    """Resolve a local output path and refuse unsafe ones (:func:`resolve_target`).

    An existing target is refused without ``overwrite``; with it, only an empty directory
    or an earlier output of the same ``command`` (its mark says so, zarrgeno.io.mark) may
    be replaced (:func:`check_replaceable`).
    """
    path = resolve_target(target, sources=sources)
    check_replaceable(path, overwrite=overwrite, command=command)
    return path


def _stale(target: Path, tag: str) -> list[Path]:
    """Leftovers of ``target`` with ``tag`` whose run is over (not another run's, still going)."""
    found = []
    for leftover in sorted(target.parent.glob(f".{target.name}{tag}*")):
        pid_text = leftover.name.rsplit("-", 1)[-1]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and pid_alive(int(pid_text)):
            continue  # another run is writing it right now
        found.append(leftover)
    return found


class WriterPool(ThreadPoolExecutor):
    """A thread pool whose tasks write into a staging directory.

    :meth:`drain` cancels queued tasks and waits for the running ones to finish, even when
    Ctrl-C or SIGTERM interrupts the wait, before the caller's clean-up removes the staging:
    a task still writing a chunk afterwards would recreate it. (Python 3.11's
    ``Thread.join``, interrupted by a signal, marks a still-running thread as stopped, so
    the pool's own ``shutdown(wait=True)`` cannot be retried; the futures can.)
    """

    def __init__(self, max_workers: int, thread_name_prefix: str = "") -> None:
        super().__init__(max_workers, thread_name_prefix=thread_name_prefix)
        self._submitted: set[Future[Any]] = set()
        self._submitted_lock = threading.Lock()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future = super().submit(fn, *args, **kwargs)
        with self._submitted_lock:
            self._submitted.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: Future[Any]) -> None:
        with self._submitted_lock:
            self._submitted.discard(future)

    def drain(self) -> None:
        """Cancel queued tasks, wait for running ones (through any interruption), shut
        down; then re-raise the interruption, if there was one."""
        interrupted: BaseException | None = None
        while True:
            with self._submitted_lock:
                left = list(self._submitted)
            for future in left:
                future.cancel()
            try:
                wait(left)
            except KeyboardInterrupt as exc:
                interrupted = exc
                continue
            with self._submitted_lock:
                if not self._submitted:
                    break
        self.shutdown(wait=False)
        if interrupted is not None:
            raise interrupted


def clean_stale(target: Path) -> list[Path]:
    """Remove staging and trash left next to ``target`` by runs that were killed.

    A run killed between moving the old target aside and renaming the new one into place
    leaves no target but the old one in the trash: that one is put back, not deleted.
    """
    removed: list[Path] = []
    if not target.parent.is_dir():
        return removed
    for leftover in _stale(target, STAGING_TAG):
        shutil.rmtree(leftover, ignore_errors=True)
        removed.append(leftover)
    for leftover in _stale(target, TRASH_TAG):
        if not exists(target):
            with contextlib.suppress(OSError):  # if it cannot go back, keep it rather than lose it
                os.replace(leftover, target)
            continue
        _remove(leftover)
        removed.append(leftover)
    return removed


def _remove(path: Path) -> None:
    """Delete a directory tree, or just the link when ``path`` is a symbolic link."""
    if path.is_symlink():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _os_error(exc: BaseException) -> OSError | None:
    """The operating-system error behind ``exc``, if it is one.

    zarr's ``DirectoryStore`` reports a directory it could not create (a full disk) as a
    ``KeyError`` raised from the ``OSError``.
    """
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, KeyError) and isinstance(exc.__cause__, OSError):
        return exc.__cause__
    return None


def _failure(exc: BaseException, target: Path, existed: bool) -> BaseException:
    """What a failed write reports: an ``OSError`` becomes one line naming ``target``."""
    cause = _os_error(exc)
    if cause is None or isinstance(cause, TargetExistsError | MissingInputError):
        return exc
    if isinstance(cause, StoreIOError) and not cause.disk_full:
        return exc  # already says what and where (a chunk of the source, a server)
    kept = f"{target} was kept as it was" if existed else f"nothing was left at {target}"
    if cause.errno in DISK_FULL:
        reason = os_reason(OSError(cause.errno, os.strerror(cause.errno)))
    else:
        reason = os_reason(cause) + (f": {cause.filename}" if cause.filename else "")
    return StoreIOError(f"writing {target}: {reason}; {kept}", cause.errno)


@contextlib.contextmanager
def staged_directory(
    target: Path, *, overwrite: bool, command: str | None = None, source: str | None = None
) -> Iterator[Path]:
    """Yield a staging directory beside ``target``; on success it becomes ``target``.

    The staging directory sits in the same parent, so the final step is one ``rename`` on
    one file system: a killed run never leaves a partial store under the final name, and
    the next run removes what it left. An existing target (allowed by ``overwrite``, and
    only when empty or written by the same ``command``) is moved aside first and deleted
    only after the new one is in place; if the run fails or is interrupted in between, it
    is moved back. With ``command``, the new target gets a mark naming it and ``source``
    (in a Zarr store's root attributes, else in :data:`MARKER`; zarrgeno.io.mark), so that
    the same command may replace it later.

    An ``OSError`` (a full disk...) becomes a :class:`StoreIOError` naming ``target``.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreIOError(f"cannot create {target.parent}: {os_reason(exc)}", exc.errno) from None
    clean_stale(target)
    existed = exists(target)
    # An interrupted replacement was undone by clean_stale: the old target counts again.
    check_replaceable(target, overwrite=overwrite, command=command)
    staging = target.parent / f".{target.name}{STAGING_TAG}{os.getpid()}"
    trash = target.parent / f".{target.name}{TRASH_TAG}{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
    except OSError as exc:
        raise StoreIOError(f"cannot create {staging}: {os_reason(exc)}", exc.errno) from None
    except BaseException:  # Ctrl-C just as it was made
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        yield staging
        if command is not None:
            write_mark(staging, command, source)  # the last write: a marked target is whole
        if exists(target):
            if not (overwrite and replaceable(target, command)):  # appeared while writing
                raise TargetExistsError(refusal(target, overwrite=overwrite, command=command))
            os.replace(target, trash)
        os.replace(staging, target)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if exists(trash) and not exists(target):  # stopped between the two renames
            with contextlib.suppress(OSError):
                os.replace(trash, target)  # the old target comes back
        failure = _failure(exc, target, existed)
        if failure is exc:
            raise
        raise failure from None
    _remove(trash)
