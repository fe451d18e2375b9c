"""What a backend is: something that runs every work unit of a plan and yields partial results."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from zarrgeno.errors import UsageError
from zarrgeno.runtime.cores import usable_cores
from zarrgeno.stats.plan import Partial, ProgressCallback, StatsPlan, WorkUnit

Notify = Callable[[str], None]


def option_flag(option: str) -> str:
    """The command-line option(s) that set a backend option (``threads_per_worker`` ->
    ``--threads-per-worker``; ``security`` -> the ``--tls-*`` files)."""
    return "--tls-*" if option == "security" else "--" + option.replace("_", "-")


def backend_workers(workers: int | None = None) -> int:
    """The worker count a backend uses: ``workers`` if given, else every usable core
    (:func:`zarrgeno.runtime.cores.usable_cores`, which honours the affinity mask)."""
    return int(workers or usable_cores())


class Backend:
    """A way to run work units. Subclasses set ``name``, ``summary`` and ``options``.

    A backend receives a plan of chunk-aligned units and yields one :class:`Partial` per
    unit, in any order; the caller sums them. The simplest backend implements
    :meth:`map` (apply a function to each unit), which the default :meth:`run` calls;
    graph-based ones override :meth:`run` instead and need no ``map``.
    Third-party backends register a subclass in the ``zarrgeno.backends`` entry-point group.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    #: Keyword options this backend accepts (``workers``, ``scheduler``, ...).
    options: ClassVar[frozenset[str]] = frozenset()
    #: True when the units run in this process: then the chunks of the whole plan are
    #: fetched ahead, in order, by this process's window (remote stores); else each worker
    #: fetches ahead the chunks of the units it is given.
    in_process: ClassVar[bool] = False

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
        """Yield the partial result of every unit of ``plan``: :meth:`map` of the unit task."""
        # Imported here for start-up cost only (it imports numpy): the process backend
        # imports this module to start its workers before numpy is loaded.
        from zarrgeno.stats.unit import read_ahead, run_unit

        if self.in_process:
            read_ahead(plan.units)
        for part in self.map(run_unit, plan.units):
            if progress is not None:
                progress(part.stop - part.start)
            yield part

    def map(
        self, func: Callable[[WorkUnit], Partial], units: tuple[WorkUnit, ...]
    ) -> Iterator[Partial]:
        """Apply ``func`` to every unit, yielding results as they complete: what a
        backend implements unless it overrides :meth:`run`."""
        raise NotImplementedError(
            f"the {self.name or type(self).__name__} backend implements neither map() nor run()"
        )
