"""Safe output: refuse to clobber, write to a staging directory, rename into place when complete."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from zarrgeno.errors import StoreIOError, TargetExistsError, UsageError
from zarrgeno.store import StoreRef, is_url

STAGING_TAG = ".zarrgeno-staging-"
TRASH_TAG = ".zarrgeno-trash-"


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a killed but not yet reaped process (a zombie) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _related(a: Path, b: Path) -> bool:
    """True when ``a`` equals, lies inside, or contains ``b``."""
    return a == b or a in b.parents or b in a.parents


def check_target(
    target: str | os.PathLike[str],
    *,
    overwrite: bool,
    sources: tuple[StoreRef, ...] = (),
) -> Path:
    """Resolve a local output path and refuse unsafe ones.

    Refused always: a URL (zarrgeno writes local stores only), a target equal to, inside,
    or containing a source (after resolving symlinks). Refused without ``overwrite``: an
    existing target.
    """
    text = os.fspath(target)
    if not text:
        raise UsageError("the target path is empty")
    if is_url(text):
        raise UsageError(f"target {text}: zarrgeno writes local directories only")
    path = Path(text).expanduser().absolute()
    real = path.resolve()
    for source in sources:
        if source.is_local and source.location is not None:
            src = Path(source.location).resolve()
            if _related(real, src):
                raise TargetExistsError(
                    f"target {path} is the source {src}, or inside it or contains it; "
                    "choose another target"
                )
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise TargetExistsError(f"target {path} already exists; pass --overwrite to replace it")
        if not path.is_dir() and path.suffix != ".zip":
            raise TargetExistsError(f"target {path} is a file, not a store; refusing to replace it")
    return path


def clean_stale(target: Path) -> list[Path]:
    """Remove staging and trash left next to ``target`` by runs that were killed."""
    removed = []
    parent = target.parent
    if not parent.is_dir():
        return removed
    for tag in (STAGING_TAG, TRASH_TAG):
        for leftover in parent.glob(f".{target.name}{tag}*"):
            pid_text = leftover.name.rsplit("-", 1)[-1]
            if pid_text.isdigit() and int(pid_text) != os.getpid() and _pid_alive(int(pid_text)):
                continue  # another run is writing it right now
            shutil.rmtree(leftover, ignore_errors=True)
            removed.append(leftover)
    return removed


@contextlib.contextmanager
def staged_directory(target: Path, *, overwrite: bool) -> Iterator[Path]:
    """Yield a staging directory beside ``target``; on success it becomes ``target``.

    The staging directory sits in the same parent, so the final step is one ``rename`` on
    one file system: a killed run never leaves a partial store under the final name, and
    the next run removes what it left. An existing target (allowed by ``overwrite``) is
    moved aside first and deleted only after the new one is in place.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target)
    staging = target.parent / f".{target.name}{STAGING_TAG}{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
    except OSError as exc:
        raise StoreIOError(f"cannot create {staging}: {exc.strerror or exc}") from None
    try:
        yield staging
        trash = None
        if target.exists() or target.is_symlink():
            if not overwrite:  # appeared while we were writing
                raise TargetExistsError(f"target {target} appeared while writing; not replaced")
            trash = target.parent / f".{target.name}{TRASH_TAG}{os.getpid()}"
            os.replace(target, trash)
        os.replace(staging, target)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, StoreIOError | TargetExistsError):
            raise
        where = exc.filename or target
        raise StoreIOError(
            f"writing {where}: {exc.strerror or exc}; nothing was left at {target}"
        ) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
