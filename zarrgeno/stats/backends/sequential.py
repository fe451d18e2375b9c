"""The ``sequential`` backend: a plain loop in this process, the reference for the others."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from zarrgeno.stats.backends.base import Backend
from zarrgeno.stats.backends.blosc import blosc_threads
from zarrgeno.stats.plan import Partial, WorkUnit


class SequentialBackend(Backend):
    """One unit after another on one core; Blosc decompresses single-threaded too."""

    in_process = True
    name = "sequential"
    summary = "a plain loop on one core, the reference"

    def map(
        self, func: Callable[[WorkUnit], Partial], units: tuple[WorkUnit, ...]
    ) -> Iterator[Partial]:
        with blosc_threads(False):
            for unit in units:
                yield func(unit)
