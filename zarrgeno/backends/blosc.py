"""Blosc's own thread pool, set deliberately so processes x threads never exceeds the cores."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numcodecs.blosc


@contextmanager
def blosc_threads(use: bool | None) -> Iterator[None]:
    """Within the block, Blosc uses its threads (True), never (False) or only when called
    from the main thread (None, numcodecs' default). Restores the previous setting."""
    previous = numcodecs.blosc.use_threads
    numcodecs.blosc.use_threads = use
    try:
        yield
    finally:
        numcodecs.blosc.use_threads = previous


def single_threaded_blosc() -> None:
    """Process-pool initializer: each worker process decompresses on its own core only."""
    numcodecs.blosc.use_threads = False
    numcodecs.blosc.set_nthreads(1)
