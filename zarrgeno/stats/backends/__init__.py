"""Backends by name, from the ``zarrgeno.backends`` entry-point group, imported lazily."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

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


def _entry_points() -> dict[str, str]:
    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    merged = {name: found.pop(name, target) for name, target in BUILTIN.items()}
    merged.update(sorted(found.items()))
    return merged


def backend_names() -> list[str]:
    """Names of every registered backend: the built-in five first, then third-party ones."""
    return list(_entry_points())


def load_backend(name: str) -> type[Backend]:
    """Import the backend class registered as ``name``; errors name what to install."""
    targets = _entry_points()
    if name not in targets:
        raise UsageError(f"unknown backend {name!r}; choose one of: {', '.join(targets)}")
    target = targets[name]
    try:
        obj = EntryPoint(name=name, value=target, group=ENTRY_POINT_GROUP).load()
    except ImportError as exc:
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


def default_backend(location: str, *, visualize: bool = False) -> str:
    """The backend ``zarrgeno stats`` runs on when none is named: DEFAULT_BACKEND (threads
    in this process, so a ``memory://`` store works too), except ``dask`` for
    ``--visualize`` (it draws a dask graph)."""
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
    "load_backend",
]
