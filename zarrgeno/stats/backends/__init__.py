"""Backends by name, from the ``zarrgeno.backends`` entry-point group, imported lazily.

The five built-in names resolve without scanning the installed distributions' entry
points (12 ms under pyinstrument, twice per ``zarrgeno stats`` before); only a name that
is not built in, or a listing, reads them. A plug-in cannot take a built-in name:
``zarrgeno backends`` reports it instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

from zarrgeno.errors import UsageError
from zarrgeno.stats.backends.base import Backend

ENTRY_POINT_GROUP = "zarrgeno.backends"

#: The built-in backends, used when the package's entry points are not installed
#: (running from a source checkout) and to order the listing.
BUILTIN = {
    "sequential": "zarrgeno.stats.backends.sequential:SequentialBackend",
    "threads": "zarrgeno.stats.backends.threads:ThreadBackend",
    "multiprocessing": "zarrgeno.stats.backends.processes:ProcessBackend",
    "dask": "zarrgeno.stats.backends.dask_threads:DaskBackend",
    "distributed": "zarrgeno.stats.backends.distributed:DistributedBackend",
}

#: What ``zarrgeno stats`` runs on when no --backend is given: the fastest whole command
#: (interpreter start to exit) on the five-contig store of ``bench_stats.py --whole``.
DEFAULT_BACKEND = "threads"

#: Which extra to install when a backend's import fails.
_HINTS = {
    "dask": "pip install 'dask[array]'",
    "distributed": "pip install distributed",
}


@dataclass(frozen=True)
class BackendInfo:
    """One installed backend, for ``zarrgeno backends``."""

    name: str
    target: str
    summary: str
    options: tuple[str, ...]
    error: str | None = None

    @property
    def available(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.target,
            "summary": self.summary,
            "options": list(self.options),
            "available": self.available,
            "error": self.error,
        }


def entry_points(group: str) -> list[EntryPoint]:
    """The installed entry points of ``group`` (imports :mod:`importlib.metadata` on use)."""
    from importlib.metadata import entry_points as installed

    return list(installed(group=group))


def _plugins() -> dict[str, EntryPoint]:
    """Third-party backends by name, sorted; entry points of zarrgeno's own names skipped."""
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return {name: found[name] for name in sorted(found) if name not in BUILTIN}


def _shadowing() -> list[EntryPoint]:
    """Entry points that register a built-in name with another target (ignored)."""
    return [
        ep
        for ep in entry_points(group=ENTRY_POINT_GROUP)
        if ep.name in BUILTIN and ep.value != BUILTIN[ep.name]
    ]


def _entry_points() -> dict[str, str]:
    """Every backend name and its ``module:Class`` target, built-in ones first."""
    return {**BUILTIN, **{name: ep.value for name, ep in _plugins().items()}}


def backend_names() -> list[str]:
    """Names of every registered backend: the built-in five first, then third-party ones."""
    return list(_entry_points())


def is_backend_name(name: str) -> bool:
    """True when ``name`` is a backend; a built-in name is checked without the entry points."""
    return name in BUILTIN or name in _plugins()


def load_backend(name: str) -> type[Backend]:
    """Import the backend class registered as ``name``; errors name what to install."""
    target = BUILTIN.get(name)
    if target is None:
        targets = _entry_points()
        if name not in targets:
            raise UsageError(f"unknown backend {name!r}; choose one of: {', '.join(targets)}")
        target = targets[name]
    from importlib.metadata import EntryPoint

    try:
        obj = EntryPoint(name=name, value=target, group=ENTRY_POINT_GROUP).load()
    except (ImportError, AttributeError) as exc:
        hint = _HINTS.get(name, "")
        raise UsageError(
            f"backend {name!r} cannot be imported ({exc})"
            + (f"; install it with `{hint}`" if hint else "")
        ) from None
    if not (isinstance(obj, type) and issubclass(obj, Backend)):
        raise UsageError(f"backend {name!r} ({target}) is not a zarrgeno Backend subclass")
    return obj


def create_backend(name: str, **options: Any) -> Backend:
    """An instance of backend ``name``; options it does not take are a UsageError."""
    return load_backend(name)(**options)


def default_backend(
    location: str = "", *, visualize: bool = False, scheduler: str | None = None
) -> str:
    """The backend ``zarrgeno stats`` runs on when none is named: ``distributed`` when a
    ``scheduler`` is given (only that backend uses one), else DEFAULT_BACKEND (threads in
    this process, so a ``memory://`` store works too), except ``dask`` for
    ``--visualize`` (it draws a dask graph)."""
    if scheduler is not None:
        return "distributed"
    if visualize:
        return "dask"
    return DEFAULT_BACKEND


def describe_backends() -> list[BackendInfo]:
    """Every registered backend with its summary, or the error that stops it loading."""
    infos = []
    for name, target in _entry_points().items():
        try:
            cls = load_backend(name)
        except UsageError as exc:
            infos.append(BackendInfo(name, target, "", (), str(exc)))
            continue
        infos.append(BackendInfo(name, target, cls.summary, tuple(sorted(cls.options))))
    for ep in _shadowing():
        error = f"ignored: {ep.name!r} is a built-in backend name; the plug-in needs another"
        infos.append(BackendInfo(ep.name, ep.value, "", (), error))
    return infos


__all__ = [
    "DEFAULT_BACKEND",
    "ENTRY_POINT_GROUP",
    "Backend",
    "BackendInfo",
    "backend_names",
    "create_backend",
    "default_backend",
    "describe_backends",
    "is_backend_name",
    "load_backend",
]
