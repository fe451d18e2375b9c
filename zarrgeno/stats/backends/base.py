"""What a backend is: something that runs every work unit of a plan and yields partial results."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from zarrgeno.errors import UsageError

if TYPE_CHECKING:
    from zarrgeno.stats.api import Partial, ProgressCallback, StatsPlan, WorkUnit

Notify = Callable[[str], None]


def option_flag(option: str) -> str:
    """The command-line option(s) that set a backend option (``threads_per_worker`` ->
    ``--threads-per-worker``; ``security`` -> the ``--tls-*`` files)."""
    return "--tls-*" if option == "security" else "--" + option.replace("_", "-")


def cpu_count() -> int:
    """Cores this process may use (the affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class Backend(ABC):
    """A way to run work units. Subclasses set ``name``, ``summary`` and ``options``.

    A backend receives a plan of chunk-aligned units and yields one :class:`Partial` per
    unit, in any order; the caller sums them. The simplest backend implements
    :meth:`map` (apply a function to each unit); graph-based ones override :meth:`run`.
    Third-party backends register a subclass under the ``zarrgeno.stats.backends`` entry point.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    #: Keyword options this backend accepts (``workers``, ``scheduler``, ...).
    options: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, **options: Any) -> None:
        unknown = sorted(
            k for k, v in options.items() if v not in (None, False) and k not in self.options
        )
        if unknown:
            flags = ", ".join(option_flag(k) for k in unknown)
            raise UsageError(f"{flags} does not apply to the {self.name} backend")
        workers = options.get("workers")
        if workers is not None and workers < 1:
            raise UsageError(f"--workers must be at least 1, got {workers}")
        self.config = {k: v for k, v in options.items() if k in self.options}

    def describe(self) -> str:
        """How this backend ran, for the summary line (e.g. ``multiprocessing (2 processes)``)."""
        return self.name

    def run(
        self,
        plan: StatsPlan,
        *,
        progress: ProgressCallback | None = None,
        notify: Notify | None = None,
    ) -> Iterator[Partial]:
        """Yield the partial result of every unit of ``plan``."""
        from zarrgeno.stats.api import run_unit

        for part in self.map(run_unit, plan.units):
            if progress is not None:
                progress(part.stop - part.start)
            yield part

    @abstractmethod
    def map(
        self, func: Callable[[WorkUnit], Partial], units: tuple[WorkUnit, ...]
    ) -> Iterator[Partial]:
        """Apply ``func`` to every unit, yielding results as they complete."""
