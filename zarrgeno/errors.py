"""Package exceptions, each mapped to one documented exit code."""

from __future__ import annotations

import errno as _errno
from enum import IntEnum

#: ``errno`` values that mean the file system has no room left (space, or the user's quota).
DISK_FULL = (_errno.ENOSPC, _errno.EDQUOT)


class ExitCode(IntEnum):
    """The process exit codes of the ``zarrgeno`` command (see docs/reliability.md)."""

    OK = 0
    #: An unexpected internal error: a bug, reported with a traceback.
    BUG = 1
    #: Bad command-line usage: an unknown option, a malformed chunk or codec spec.
    USAGE = 2
    #: The input (store, array, contig, file) does not exist.
    MISSING_INPUT = 3
    #: The input exists but is invalid, hostile or corrupt (bad metadata, a bad chunk).
    BAD_DATA = 4
    #: The target exists and ``--overwrite`` was not given, or would clobber the source.
    TARGET_EXISTS = 5
    #: An operating-system I/O failure: a full disk, a permission error, a network error.
    IO_ERROR = 6
    #: A dask scheduler could not be reached, or the workers died.
    CLUSTER = 7
    #: Interrupted by the user (Ctrl-C), as shells report SIGINT.
    INTERRUPTED = 130
    #: Standard output was closed by its reader (``zarrgeno info | head -1``): the code
    #: shells show for a tool that SIGPIPE stopped; nothing is printed.
    PIPE_CLOSED = 141
    #: Stopped by SIGTERM (``kill``, ``timeout``, a batch scheduler's time limit), as shells
    #: report it; cleaned up as after Ctrl-C.
    TERMINATED = 143


class ZarrgenoError(Exception):
    """Base class of every error zarrgeno reports as a one-line message."""

    exit_code: ExitCode = ExitCode.BUG


class UsageError(ZarrgenoError, ValueError):
    """A value given by the user cannot be parsed or is out of range."""

    exit_code = ExitCode.USAGE


class MissingInputError(ZarrgenoError, FileNotFoundError):
    """A store, array, contig or file named by the user does not exist."""

    exit_code = ExitCode.MISSING_INPUT


class BadDataError(ZarrgenoError):
    """A store's metadata or chunk data is invalid, unsupported or corrupt."""

    exit_code = ExitCode.BAD_DATA


class TargetExistsError(ZarrgenoError, FileExistsError):
    """Writing would replace existing data without ``--overwrite``, or touch the source."""

    exit_code = ExitCode.TARGET_EXISTS


class StoreIOError(ZarrgenoError, OSError):
    """An operating-system or network failure while reading or writing.

    ``errno`` keeps the cause's error number (``ENOSPC``...), so that a caller further up
    can still tell a full disk from another failure once the message is written.
    """

    exit_code = ExitCode.IO_ERROR

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)
        self.errno = errno

    def __reduce__(self) -> tuple[type[StoreIOError], tuple[str, int | None]]:
        return type(self), (str(self), self.errno)

    @property
    def disk_full(self) -> bool:
        """True when the cause was a full disk (or quota)."""
        return self.errno in DISK_FULL


class RemoteStoppedError(StoreIOError):
    """A request to a remote store not made, because an earlier one failed for good.

    A caller that notes a bad chunk and goes on (``verify``) stops at this one instead of
    waiting out every other key of a server that does not answer.
    """


def os_reason(exc: OSError) -> str:
    """What an ``OSError`` means, in words for a one-line message.

    A full disk (or quota) says so first: ``the disk is full (No space left on device)``.
    """
    text = exc.strerror or str(exc)
    if exc.errno in DISK_FULL:
        return f"the disk is full ({text})"
    return text


class ClusterError(ZarrgenoError):
    """The compute backend failed: an unreachable scheduler, a killed worker."""

    exit_code = ExitCode.CLUSTER
