"""Blosc's own thread pool, set deliberately so processes x threads never exceeds the cores."""

from __future__ import annotations

import threading

import numcodecs.blosc

from zarrgeno.io.chunks import blosc_threads

__all__ = ["blosc_threads", "single_threaded_blosc", "thread_mutex"]


def single_threaded_blosc() -> None:
    """Process-pool initializer: each worker process decompresses on its own core only."""
    numcodecs.blosc.use_threads = False
    numcodecs.blosc.set_nthreads(1)
    thread_mutex()


def thread_mutex() -> None:
    """Give numcodecs a thread lock before it makes its own ``multiprocessing.Lock``.

    numcodecs creates that lock on the first decode: a named semaphore registered with
    the parent's resource tracker. A worker killed by a signal (the OOM killer) never
    unregisters it, and the tracker then warns of "leaked semaphore objects" when
    zarrgeno exits, after the one-line error. The lock only guards Blosc's global state
    between the threads of this process, which a thread lock does as well.
    """
    if getattr(numcodecs.blosc, "_MUTEX_IS_INIT", True):  # another numcodecs, or set already
        return
    numcodecs.blosc._MUTEX = threading.Lock()
    numcodecs.blosc._MUTEX_IS_INIT = True
