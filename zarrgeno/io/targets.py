"""Which target a command may write: never a source under any name, and what ``--overwrite``
may replace (an empty directory, or an earlier output of the same command), with messages
that say what an existing target holds."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from zarrgeno.errors import TargetExistsError, UsageError, ZarrgenoError
from zarrgeno.io.mark import written_by
from zarrgeno.io.store import StoreRef, find_genotypes, is_url
from zarrgeno.sizes import format_size

#: Entries counted, at most, to say how much an existing target holds.
SCAN_LIMIT = 200_000
#: URL schemes that name a local path (fsspec's local file system).
LOCAL_SCHEMES = ("file://", "local://")

_Identity = tuple[int, int]


def local_path(location: str | os.PathLike[str]) -> Path | None:
    """The real local path ``location`` names, or None for a remote URL.

    A ``file://`` (or ``local://``) URL is its path; a path is expanded (``~``) and
    resolved (symbolic links, ``..``) as far as it exists.
    """
    text = os.fspath(location)
    for scheme in LOCAL_SCHEMES:
        if text.startswith(scheme):
            text = text[len(scheme) :]
            break
    else:
        if is_url(text):
            return None
        text = os.path.expanduser(text)
    return Path(os.path.realpath(text))


def _identity(path: Path) -> _Identity | None:
    """``(st_dev, st_ino)`` of what ``path`` names (links followed), None if nothing."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _lineage(path: Path) -> Iterator[tuple[Path, _Identity]]:
    """``path`` and each of its parents that exist, with their identities, nearest first."""
    for p in (path, *path.parents):
        found = _identity(p)
        if found is not None:
            yield p, found


def _relation(target: Path, source: Path) -> str | None:
    """How ``target`` relates to ``source`` (both real paths): ``is``, ``inside``,
    ``contains`` or None, by file identity, so that another name for the same directory
    (a bind mount, a hard link) is seen too; by path when the source does not exist yet."""
    source_id = _identity(source)
    if source_id is None:
        if target == source:
            return "is"
        if source in target.parents:
            return "inside"
        return "contains" if target in source.parents else None
    for path, found in _lineage(target):
        if found == source_id:
            return "is" if path == target else "inside"
    target_id = _identity(target)
    if target_id is not None and any(f == target_id for _, f in _lineage(source.parent)):
        return "contains"
    return None


def _written_path(text: str) -> Path:
    """Where ``text`` writes: its parent resolved, its own name kept (a symbolic link
    there is replaced as a link, never followed into what it points to)."""
    path = Path(os.path.expanduser(text)).absolute()
    if path.name in ("", "..") or path == path.parent:
        return Path(os.path.realpath(path))
    return Path(os.path.realpath(path.parent)) / path.name


def resolve_target(target: str | os.PathLike[str], *, sources: Iterable[StoreRef] = ()) -> Path:
    """The local path a target names, refused when it is a source, lies inside one or
    contains one, however either is spelt: a ``file://`` URL, a relative path, ``~``,
    symbolic links, ``..``, or another mount of the same directory."""
    text = os.fspath(target)
    if not text:
        raise UsageError("the target path is empty")
    if is_url(text):
        raise UsageError(f"target {text}: zarrgeno writes local directories only")
    path = _written_path(text)
    real = Path(os.path.realpath(path))
    for source in sources:
        src = local_path(source.location) if source.location is not None else None
        if src is None:
            continue
        relation = _relation(real, src)
        if relation is not None:
            raise TargetExistsError(f"target {text} {_RELATIONS[relation]} {src}; {_AVOID}")
    return path


_RELATIONS = {
    "is": "is the source store",
    "inside": "lies inside the source store",
    "contains": "contains the source store",
}
_AVOID = "choose a target that is neither the source, inside it, nor a folder holding it"


def exists(path: Path) -> bool:
    """True when ``path`` exists, or is a symbolic link (even a dangling one)."""
    return path.exists() or path.is_symlink()


def _empty_dir(path: Path) -> bool:
    try:
        with os.scandir(path) as entries:
            return next(entries, None) is None
    except OSError:
        return False


def replaceable(path: Path, command: str | None) -> bool:
    """Whether ``--overwrite`` may replace ``path``: an empty directory, or a directory
    (or a link to one) that ``zarrgeno COMMAND`` wrote (its mark, zarrgeno.io.mark)."""
    if not path.is_dir():
        return False
    return _empty_dir(path) or (command is not None and written_by(path) == command)


def check_replaceable(path: Path, *, overwrite: bool, command: str | None) -> None:
    """Refuse an existing ``path`` unless ``overwrite`` and :func:`replaceable`; the
    message says what is there and what replacing it would delete."""
    if not exists(path):
        return
    if overwrite and replaceable(path, command):
        return
    raise TargetExistsError(refusal(path, overwrite=overwrite, command=command))


def refusal(path: Path, *, overwrite: bool, command: str | None) -> str:
    """Why an existing ``path`` is not replaced: what it holds, what replacing it would
    delete, and what the user can do."""
    what = describe(path)
    head = f"target {path} already exists: {what}"
    if replaceable(path, command):
        if _empty_dir(path):
            return f"{head}; pass --overwrite to write into it (nothing is deleted)"
        return f"{head}; pass --overwrite to replace it, deleting all of that"
    shown = f"`zarrgeno {command}`" if command else "the same command"
    verdict = "--overwrite does not replace it" if overwrite else "--overwrite would not replace it"
    return (
        f"{head}; {verdict} (it replaces only an empty directory or an earlier output of "
        f"{shown}): choose another target, or remove it yourself, deleting all of that"
    )


def describe(path: Path) -> str:
    """What ``path`` holds, for a message: a store's contigs, samples, files and bytes, a
    directory's entries, files and bytes, a file's size, and which command wrote it."""
    link = f"a symbolic link to {os.readlink(path)}" if path.is_symlink() else ""
    if link and not path.exists():
        return f"{link}, which does not exist"
    if path.is_dir() and _empty_dir(path):
        return f"{link}: an empty directory" if link else "an empty directory"
    files, size, complete = _inventory(path)
    details = [
        f"{'' if complete else 'more than '}{files:,} file{'s' * (files != 1)}",
        f"{'' if complete else 'at least '}{format_size(size)}",
    ]
    store = _store_summary(path) if path.is_dir() or path.suffix == ".zip" else None
    if store is not None:
        kind, about = store
        details = [*about, *details]
    elif path.is_dir():
        with os.scandir(path) as it:
            top = sum(1 for _ in it)
        kind = "a directory"
        details.insert(0, f"{top:,} entr{'ies' if top != 1 else 'y'}")
    else:
        kind, details = "a file", [format_size(size)]
    text = f"{kind} ({'; '.join(details)})"
    by = written_by(path) if path.is_dir() else None
    text += f" written by `zarrgeno {by}`" if by else ""
    return f"{link}: {text}" if link else text


def _store_summary(path: Path) -> tuple[str, list[str]] | None:
    """``("a genotype store", ["contigs 2L, X", "7 samples"])`` for a genotype store at
    ``path``, ``("a Zarr store", [...])`` for another one, None when it is no Zarr store."""
    if path.is_dir() and not any((path / k).exists() for k in (".zgroup", ".zarray", "zarr.json")):
        return None
    try:
        group = StoreRef.from_source(path).open()
        arrays = find_genotypes(group)
    except (ZarrgenoError, OSError, ValueError, KeyError, TypeError):
        return "a Zarr store", ["that zarrgeno cannot read"]
    if not arrays:
        return "a Zarr store", ["no genotype arrays"]
    contigs = [a.contig for a in arrays]
    shown = ", ".join(contigs[:8]) + (f" and {len(contigs) - 8} more" if len(contigs) > 8 else "")
    samples = "/".join(f"{n:,}" for n in sorted({a.n_samples for a in arrays}))
    return "a genotype store", [f"contig{'s' * (len(contigs) != 1)} {shown}", f"{samples} samples"]


def _inventory(path: Path) -> tuple[int, int, bool]:
    """Files under ``path`` and their bytes, links not followed; False when the count
    stopped at :data:`SCAN_LIMIT` entries."""
    try:
        st = path.stat()
    except OSError:
        return 0, 0, True
    if not path.is_dir():
        return 1, st.st_size, True
    files = size = seen = 0
    stack = [str(path)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    seen += 1
                    if seen > SCAN_LIMIT:
                        return files, size, False
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        files += 1
                        with contextlib.suppress(OSError):
                            size += entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue
    return files, size, True
