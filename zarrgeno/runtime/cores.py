"""How many cores this process may use: the one count every default worker number uses."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity mask where the platform has one
    (``taskset``, SLURM and container CPU sets restrict it), else every core; at least 1.

    ``os.cpu_count()`` counts the machine's cores, so worker counts derived from it
    oversubscribe a process restricted to fewer.
    """
    getaffinity = getattr(os, "sched_getaffinity", None)
    if getaffinity is not None:
        try:
            return max(1, len(getaffinity(0)))
        except OSError:  # a platform that has the call but refuses it
            pass
    return max(1, os.cpu_count() or 1)
