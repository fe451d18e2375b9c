"""The ``threads`` backend: a bounded pool in this process, the default of ``zarrgeno stats``."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import zarr
from test_backends import monkeypatch_unit_calls
from test_stats_api import assert_matches
from test_stats_reference import write_gt

from zarrgeno.errors import BadDataError
from zarrgeno.stats.api import genotype_stats
from zarrgeno.stats.backends import create_backend
from zarrgeno.stats.backends.threads import IN_FLIGHT_PER_THREAD, ThreadBackend
from zarrgeno.stats.plan import WorkUnit
from zarrgeno.stats.results import same_counts


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """Two contigs, samples split 5 + 2, 10-variant chunks: many units when a unit is a chunk."""
    rng = np.random.default_rng(5)
    arrays = {
        "2L": rng.choice(np.array([0, 0, 1, -1], "i1"), size=(395, 7, 2)),
        "X": rng.choice(np.array([0, 1, 1, -1], "i1"), size=(121, 7, 2)),
    }
    path = tmp_path_factory.mktemp("threads") / "s.zarr"
    write_gt(str(path), arrays, (10, 5))
    return path, arrays


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_many_units_on_any_thread_count_give_the_reference(store, workers: int) -> None:
    path, arrays = store
    done: list[int] = []
    with monkeypatch_unit_calls(1):  # one chunk row per unit: 52 units over two contigs
        result = genotype_stats(str(path), backend="threads", workers=workers, progress=done.append)
    for contig, gt in arrays.items():
        assert_matches(result, contig, gt)
    assert len(done) == 40 + 13 and sum(done) == 395 + 121
    assert same_counts(result, genotype_stats(str(path), backend="sequential"))
    assert result.backend == f"threads ({workers} thread{'s' if workers > 1 else ''})"


def test_units_run_on_pool_threads_at_most_two_per_thread_queued(store) -> None:
    """Units run off the main thread, never more than IN_FLIGHT_PER_THREAD per thread at once."""
    from zarrgeno.stats.unit import run_unit

    path, _ = store
    lock = threading.Lock()
    started: list[str] = []
    state = {"now": 0, "most": 0}

    def task(unit):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
            started.append(threading.current_thread().name)
        try:
            return run_unit(unit)
        finally:
            with lock:
                state["now"] -= 1

    from zarrgeno.stats.api import plan_stats

    with monkeypatch_unit_calls(1):
        plan = plan_stats(str(path))
    backend = ThreadBackend(workers=2)
    parts = list(backend.map(task, plan.units))
    assert len(parts) == len(plan.units) == 53
    assert all(name.startswith("zarrgeno-stats") for name in started)
    assert state["most"] <= 2  # two threads: at most two units run at once
    assert backend.describe() == "threads (2 threads)"


def test_submitted_but_unstarted_units_stay_bounded(store, monkeypatch) -> None:
    """The pool never holds more than workers x IN_FLIGHT_PER_THREAD units: while the
    running units are stuck, no more are submitted (the results' memory stays bounded)."""
    from concurrent.futures import ThreadPoolExecutor

    import zarrgeno.stats.backends.threads as threads_module
    from zarrgeno.stats.api import plan_stats
    from zarrgeno.stats.unit import run_unit

    path, _ = store
    with monkeypatch_unit_calls(1):
        plan = plan_stats(str(path))
    submitted: list[WorkUnit] = []

    class CountingPool(ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):
            submitted.append(args[0])
            return super().submit(fn, *args, **kwargs)

    monkeypatch.setattr(threads_module, "ThreadPoolExecutor", CountingPool)
    gate = threading.Event()
    seen: list[int] = []

    def release() -> None:
        seen.append(len(submitted))  # what was queued while every running unit was stuck
        gate.set()

    def slow(unit):
        gate.wait(5)
        return run_unit(unit)

    results = ThreadBackend(workers=2).map(slow, plan.units)
    timer = threading.Timer(0.5, release)
    timer.start()
    first = next(results)  # blocks until the gate opens
    rest = list(results)
    timer.join()
    assert first is not None and len(rest) == len(plan.units) - 1
    assert seen == [2 * IN_FLIGHT_PER_THREAD] < [len(plan.units)]
    assert len(submitted) == len(plan.units)


@pytest.mark.hostile
def test_a_bad_chunk_stops_the_run_naming_it_and_cancels_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "bad.zarr"
    write_gt(str(path), {"2L": np.zeros((200, 4, 2), "i1")}, (10, 4))
    (path / "2L" / "calldata" / "GT" / "3.0.0").write_bytes(b"garbage" * 10)
    with monkeypatch_unit_calls(1), pytest.raises(BadDataError, match=r"2L/calldata/GT/3\.0\.0"):
        genotype_stats(str(path), backend="threads", workers=2)


def test_an_in_memory_store_runs_on_threads() -> None:
    """Threads share this process's memory: a MemoryStore (or memory:// URL) just works."""
    store = zarr.storage.MemoryStore()
    gt = np.random.default_rng(2).choice(np.array([0, 1, -1], "i1"), size=(90, 6, 2))
    zarr.open_group(store, mode="w").create_dataset("2L/calldata/GT", data=gt, chunks=(20, 4, 2))
    with monkeypatch_unit_calls(1):
        result = genotype_stats(store, backend="threads", workers=2)
    assert_matches(result, "2L", gt)


@pytest.mark.hostile
def test_threads_take_only_workers() -> None:
    from zarrgeno.errors import UsageError

    with pytest.raises(UsageError, match="--unit-timeout does not apply to the threads backend"):
        create_backend("threads", unit_timeout=5)
    with pytest.raises(UsageError, match="--workers must be at least 1"):
        create_backend("threads", workers=0)


def test_a_run_stopped_early_cancels_the_units_not_started(store) -> None:
    """Ctrl-C (or an error downstream) closes the generator: queued units never start and
    the pool's threads are gone when close() returns."""
    from zarrgeno.stats.api import plan_stats
    from zarrgeno.stats.unit import run_unit

    path, _ = store
    with monkeypatch_unit_calls(1):
        plan = plan_stats(str(path))
    ran: list[int] = []

    def task(unit):
        ran.append(unit.start)
        return run_unit(unit)

    results = ThreadBackend(workers=2).map(task, plan.units)
    next(results)
    results.close()
    assert len(ran) <= 1 + 2 * IN_FLIGHT_PER_THREAD < len(plan.units)
    assert not [t for t in threading.enumerate() if t.name.startswith("zarrgeno-stats")]
