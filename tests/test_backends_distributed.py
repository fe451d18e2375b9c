"""The distributed backend on a real cluster: ``dask scheduler`` and ``dask worker`` processes
started here on 127.0.0.1 (as the Ag1000G tutorial starts them) and stopped afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_stats_api import assert_matches
from test_stats_reference import chunkings, genotype_arrays, write_gt

from zarrgeno.cli import app
from zarrgeno.stats.api import genotype_stats

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

DASK = Path(sys.executable).parent / "dask"


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + 10
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def dask_cluster(
    tmp: Path,
    *,
    nworkers: int = 2,
    scheduler_args: Sequence[str | Path] = (),
    worker_args: Sequence[str | Path] = (),
    security: Any = None,
) -> Iterator[str]:
    """``dask scheduler`` on a free port of 127.0.0.1 and one ``dask worker`` command with
    ``nworkers`` processes of 1 thread, logging to ``tmp/cluster.log``; yields the scheduler
    address and stops both on exit. ``*_args`` are extra options (e.g. TLS), ``security``
    what this process connects with while waiting for the workers."""
    if not DASK.exists():
        pytest.skip("the dask command is not installed next to this Python")
    info = tmp / "scheduler.json"
    procs: list[subprocess.Popen[bytes]] = []
    with open(tmp / "cluster.log", "wb") as log:
        common: dict[str, Any] = {"stdout": log, "stderr": subprocess.STDOUT, "cwd": tmp}
        try:
            procs.append(
                subprocess.Popen(
                    [
                        DASK,
                        "scheduler",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        "0",
                        "--no-dashboard",
                        "--scheduler-file",
                        info,
                        *scheduler_args,
                    ],
                    **common,
                )
            )
            address = _wait_for_address(info, procs[0])
            procs.append(
                subprocess.Popen(
                    [
                        DASK,
                        "worker",
                        address,
                        "--nworkers",
                        str(nworkers),
                        "--nthreads",
                        "1",
                        "--no-dashboard",
                        "--host",
                        "127.0.0.1",
                        "--memory-limit",
                        "1GiB",
                        "--local-directory",
                        tmp,
                        *worker_args,
                    ],
                    **common,
                )
            )
            _wait_for_workers(address, nworkers, security=security)
            yield address
        finally:
            _stop(procs[1:])
            _stop(procs[:1])


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real cluster of 2 worker processes x 1 thread; yields the scheduler address."""
    with dask_cluster(tmp_path_factory.mktemp("cluster")) as address:
        yield address


def _wait_for_address(info: Path, proc: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("dask scheduler exited at start")
        try:
            return str(json.loads(info.read_text())["address"])
        except (OSError, ValueError, KeyError):
            time.sleep(0.1)
    raise RuntimeError("dask scheduler did not write its address")


def _wait_for_workers(address: str, n: int, *, security: Any = None) -> None:
    from distributed import Client

    with Client(address, timeout=20, security=security) as client:
        client.wait_for_workers(n, timeout=30)


@pytest.fixture(scope="module")
def disk_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(21)
    arrays = {
        "2L": rng.choice(np.array([0, 0, 1, -1], "i1"), size=(1000, 7, 2)),
        "X": rng.choice(np.array([0, 1, 2, -1], "i1"), size=(450, 7, 2)),
    }
    path = tmp_path_factory.mktemp("dist") / "store.zarr"
    write_gt(str(path), arrays, (300, 5))
    return path, arrays


@pytest.mark.parametrize("persist", [False, True])
def test_stats_on_a_running_cluster(scheduler: str, disk_store, persist: bool) -> None:
    path, arrays = disk_store
    notes: list[str] = []
    result = genotype_stats(
        str(path), backend="distributed", scheduler=scheduler, persist=persist, notify=notes.append
    )
    for contig, gt in arrays.items():
        assert_matches(result, contig, gt)
    assert scheduler in result.backend and "2 workers" in result.backend
    assert notes and scheduler in notes[0]


def test_stats_cli_on_a_running_cluster(scheduler: str, disk_store) -> None:
    from typer.testing import CliRunner

    path, arrays = disk_store
    res = CliRunner().invoke(
        app,
        [
            "stats",
            str(path),
            "-b",
            "distributed",
            "--scheduler",
            scheduler,
            "--json",
            "--samples",
            "S001,S006",
            "-c",
            "X",
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["contigs"][0]["total_pos"] == 450
    assert [s["sample"] for s in data["contigs"][0]["samples"]] == ["S001", "S006"]
    assert data["contigs"][0]["n_missing"] == int((arrays["X"][:, [1, 6], 0] == -1).sum())


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_cluster_equals_the_reference_on_random_arrays(scheduler: str, data: st.DataObject) -> None:
    """Hypothesis-drawn arrays and chunkings, on disk, counted by the real cluster's workers."""
    gt = data.draw(genotype_arrays(max_variants=70, max_samples=12).filter(lambda a: len(a) > 0))
    chunks = data.draw(chunkings(gt))
    persist = data.draw(st.booleans())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.zarr"
        write_gt(str(path), {"X": gt}, chunks)
        result = genotype_stats(
            str(path), backend="distributed", scheduler=scheduler, persist=persist
        )
    assert_matches(result, "X", gt)


@pytest.mark.fault
def test_a_killed_dask_worker_is_retried_and_the_counts_stay_exact(
    scheduler: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL one worker process mid-run: dask reruns its tasks elsewhere, nothing is lost."""
    import os
    import signal

    import psutil

    from zarrgeno.stats import api as stats_api

    monkeypatch.setattr(stats_api, "UNIT_CALLS", 1)  # one stored chunk row per unit
    rng = np.random.default_rng(5)
    gt = rng.choice(np.array([0, 0, 1, -1], "i1"), size=(6000, 7, 2))
    path = tmp_path / "many.zarr"
    write_gt(str(path), {"2L": gt}, (50, 7))
    killed: list[int] = []

    def kill_one(_: int) -> None:
        if killed:
            return
        # Only this test session's own `dask worker` processes (descendants of pytest).
        for proc in psutil.Process().children(recursive=True):
            try:
                cmd = " ".join(proc.cmdline())
                parent = " ".join(proc.parent().cmdline())
            except psutil.Error:
                continue
            if ("spawn_main" in cmd or "forkserver" in cmd) and "worker" in parent:
                os.kill(proc.pid, signal.SIGKILL)
                killed.append(proc.pid)
                return

    result = genotype_stats(
        str(path), backend="distributed", scheduler=scheduler, progress=kill_one
    )
    assert killed, "no dask worker process was found to kill"
    assert_matches(result, "2L", gt)
    _wait_for_workers(scheduler, 2)  # the nanny restarts the worker for the next tests


@pytest.mark.slow
def test_a_local_cluster_says_how_long_its_start_took(disk_store) -> None:
    """Without --scheduler: the note and the backend line give the start time; there is no
    dashboard (nor a made-up link to one) unless --dashboard is given."""
    path, _ = disk_store
    args = ["stats", str(path), "-c", "X", "-b", "distributed", "--workers", "1", "--json"]
    run = subprocess.run(
        [sys.executable, "-m", "zarrgeno", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "(local cluster started in " in run.stderr and "dashboard" not in run.stderr
    backend = json.loads(run.stdout)["backend"]
    assert backend.startswith("distributed (1 worker at tcp://127.0.0.1:")
    seconds = float(backend.split(", started in ")[1].split(" s")[0])
    assert 0 < seconds < 120


def test_a_cluster_failure_that_is_not_zarrgenos_is_one_line_naming_the_scheduler() -> None:
    """A scheduler that cannot unpickle the graph (another zarrgeno or dask on the cluster)
    raises RuntimeError in the client: it becomes a ClusterError, a task's BadDataError not."""
    from zarrgeno.errors import BadDataError, ClusterError
    from zarrgeno.stats.backends.distributed import _task_error

    bad = BadDataError("chunk 2L/calldata/GT/0.0.0: cannot decode")
    assert _task_error(bad, "tcp://127.0.0.1:1") is bad
    message = (
        "Error during deserialization of the task graph. This frequently\n"
        "occurs if the Scheduler and Client have different environments."
    )
    err = _task_error(RuntimeError(message), "tcp://127.0.0.1:1")
    assert isinstance(err, ClusterError)
    assert str(err) == (
        "the dask cluster at tcp://127.0.0.1:1 failed a task (RuntimeError: Error during "
        "deserialization of the task graph); the scheduler and workers must run the same "
        "zarrgeno, dask and Python"
    )


@given(
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=5),
    threads=st.integers(1, 16),
    max_units=st.integers(1, 20),
)
def test_batches_are_consecutive_units_of_one_array(
    sizes: list[int], threads: int, max_units: int
) -> None:
    """Every unit once, in order; a batch never spans two arrays nor exceeds max_units; and
    there are at least as many batches as BATCHES_PER_THREAD x threads where units allow."""
    from types import SimpleNamespace

    from zarrgeno.stats.plan import BATCHES_PER_THREAD, batch_units

    units = [
        SimpleNamespace(reader=f"reader-{r}", start=k)
        for r, n in enumerate(sizes)
        for k in range(n)
    ]
    batches = batch_units(units, threads, max_units)  # type: ignore[arg-type]
    assert [u for b in batches for u in b] == units
    assert all(b and len(b) <= max_units and len({u.reader for u in b}) == 1 for b in batches)
    assert len(batches) >= min(len(units), BATCHES_PER_THREAD * threads)


def test_task_keys_belong_to_their_run(disk_store) -> None:
    """Two plans of one store never share a task key: a running cluster reuses a key's
    result, so a second run (or another store with the same contigs) must not get it."""
    from zarrgeno.stats.api import plan_stats
    from zarrgeno.stats.graph import batch_key

    first, second = (plan_stats(str(disk_store[0])) for _ in range(2))
    keys = [{batch_key((u,)) for u in plan.units} for plan in (first, second)]
    assert len(keys[0]) == len(first.units) and not keys[0] & keys[1]


def test_the_drawn_distributed_graph_is_the_batches_that_run(
    disk_store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--visualize on distributed draws one read-and-count task per batch of units, with
    the keys the backend submits: here 6 units (one per chunk row) in 2 batches, one per
    contig, for one thread and one batch per thread."""
    from zarrgeno.stats import api as stats_api
    from zarrgeno.stats import plan as stats_plan
    from zarrgeno.stats.api import plan_stats
    from zarrgeno.stats.graph import backend_tasks, batch_key

    monkeypatch.setattr(stats_api, "UNIT_CALLS", 1)
    monkeypatch.setattr(stats_plan, "BATCHES_PER_THREAD", 1)
    plan = plan_stats(str(disk_store[0]))
    tasks = backend_tasks(plan, "distributed", threads=1)
    assert len(plan.units) == 6
    batches = [plan.units[:4], plan.units[4:]]
    assert [t.key for t in tasks] == [batch_key(b) for b in batches]
    assert tasks[0].key.startswith("count-2L-0-") and tasks[0].key.endswith("-1000")
