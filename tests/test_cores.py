"""One core count for every default worker number: the affinity mask, not the machine's cores.

Under ``taskset`` or SLURM a process may run on fewer cores than ``os.cpu_count()`` reports;
each default (statistics backends, rechunk, the local dask cluster, simulate) must then use
as many workers as the mask allows. The restricted run is a subprocess pinned to one core.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from zarrgeno.runtime import cores
from zarrgeno.runtime.cores import usable_cores

#: Pins itself to one core, then prints every default worker count it computes.
PINNED = """
import json, os
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
import zarr
import zarrgeno.simulate.genotypes as sim
from zarrgeno.rewrite.executors import resolve_backend
from zarrgeno.runtime.cluster import default_workers
from zarrgeno.runtime.cores import usable_cores
from zarrgeno.stats.backends import create_backend

seen = []
real_run = sim._run
def spy(task, intervals, workers):
    seen.append(workers)
    return real_run(task, intervals, workers)
sim._run = spy
sim.simulate_store(zarr.MemoryStore(), contigs=["2L"], scale=1e-6, n_samples=3)
print(json.dumps({
    "cpu_count": os.cpu_count(),
    "usable": usable_cores(),
    "rechunk_dask": resolve_backend("dask", None, None)[1],
    "rechunk_distributed": resolve_backend(None, "tcp://127.0.0.1:1", None)[1],
    "local_cluster": default_workers(),
    "simulate": sorted(set(seen)),
    "multiprocessing": create_backend("multiprocessing").workers,
    "dask": create_backend("dask").workers,
}))
"""


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs an affinity mask of at least two cores to restrict",
)
def test_every_default_worker_count_follows_the_affinity_mask() -> None:
    run = subprocess.run(
        [sys.executable, "-c", PINNED], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    counts = json.loads(run.stdout)
    assert counts.pop("cpu_count") >= 2  # the machine has more cores than the mask allows
    assert counts == {
        "usable": 1,
        "rechunk_dask": 1,
        "rechunk_distributed": 1,
        "local_cluster": 1,
        "simulate": [1],
        "multiprocessing": 1,
        "dask": 1,
    }


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no affinity mask here")
def test_usable_cores_is_the_size_of_the_mask() -> None:
    assert usable_cores() == len(os.sched_getaffinity(0))


def test_without_an_affinity_call_the_machine_count_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(cores.os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(cores.os, "cpu_count", lambda: 3)
    assert usable_cores() == 3
    monkeypatch.setattr(cores.os, "cpu_count", lambda: None)  # undeterminable
    assert usable_cores() == 1


def test_a_refused_affinity_call_falls_back_to_the_machine_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(pid: int) -> set[int]:
        raise OSError("not permitted")

    monkeypatch.setattr(cores.os, "sched_getaffinity", refuse, raising=False)
    monkeypatch.setattr(cores.os, "cpu_count", lambda: 5)
    assert usable_cores() == 5
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: set(), raising=False)
    assert usable_cores() == 1  # an empty mask still leaves one worker
