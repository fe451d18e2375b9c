"""The backend registry, and each backend on real stores: processes, dask, distributed."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_stats_api import assert_matches
from test_stats_reference import chunkings, genotype_arrays, write_gt

import zarrgeno.stats.api as stats_api
import zarrgeno.stats.backends as registry
from zarrgeno.errors import ClusterError, UsageError
from zarrgeno.runtime.cluster import dask_client, normalize_address
from zarrgeno.stats.api import genotype_stats
from zarrgeno.stats.backends import Backend, backend_names, create_backend, describe_backends
from zarrgeno.stats.plan import Partial, WorkUnit
from zarrgeno.stats.results import same_counts

pytestmark = pytest.mark.filterwarnings(
    # distributed closes its comms after a killed run in ways it warns about
    "ignore::pytest.PytestUnraisableExceptionWarning",
    "ignore:.*Creating scratch directories.*:UserWarning",
)


@pytest.fixture(scope="module")
def disk_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """Two contigs on disk, samples split 5 + 2 across chunks, partial last chunks."""
    rng = np.random.default_rng(11)
    arrays = {
        "2L": rng.choice(np.array([0, 0, 1, 2, -1], "i1"), size=(1000, 7, 2)),
        "X": rng.choice(np.array([0, 1, -1], "i1"), size=(450, 7, 2)),
    }
    arrays["2L"][100:300] = -1
    path = tmp_path_factory.mktemp("backends") / "store.zarr"
    write_gt(str(path), arrays, (300, 5))
    return path, arrays


def test_the_five_builtin_backends_are_registered() -> None:
    names = backend_names()
    assert names[:5] == ["sequential", "threads", "multiprocessing", "dask", "distributed"]
    infos = {i.name: i for i in describe_backends()}
    assert all(infos[n].available and infos[n].summary for n in names[:5])
    assert "scheduler" in infos["distributed"].options


@pytest.mark.parametrize("name", backend_names())
def test_every_advertised_backend_runs_and_reports_progress(name: str, disk_store) -> None:
    path, arrays = disk_store
    done: list[int] = []
    result = genotype_stats(
        str(path), backend=name, workers=2 if name != "sequential" else None, progress=done.append
    )
    for contig, gt in arrays.items():
        assert_matches(result, contig, gt)
    assert result.backend.startswith(name)
    assert sum(done) == 1450 and len(done) == 2  # one call per unit (2L, X: one unit each)


@pytest.mark.hostile
def test_options_a_backend_does_not_take_are_refused() -> None:
    with pytest.raises(UsageError, match="--scheduler does not apply to the sequential backend"):
        create_backend("sequential", scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(UsageError, match="--persist does not apply to the dask backend"):
        create_backend("dask", persist=True)
    with pytest.raises(UsageError, match="--workers must be at least 1"):
        create_backend("multiprocessing", workers=0)
    with pytest.raises(UsageError, match="--unit-timeout does not apply to the dask backend"):
        create_backend("dask", unit_timeout=5)
    with pytest.raises(UsageError, match="--unit-timeout must be more than 0 seconds, got -1"):
        create_backend("multiprocessing", unit_timeout=-1)
    with pytest.raises(UsageError, match="cannot be combined"):
        create_backend("distributed", scheduler="tcp://127.0.0.1:8786", workers=2)
    with pytest.raises(UsageError, match="unknown backend 'ray'"):
        create_backend("ray")


class ReversedBackend(Backend):
    """A third-party backend: runs units last to first, in this process."""

    name = "reversed"
    summary = "units in reverse order (a test plug-in)"

    def map(
        self, func: Callable[[WorkUnit], Partial], units: tuple[WorkUnit, ...]
    ) -> Iterator[Partial]:
        for unit in reversed(units):
            yield func(unit)


class HollowBackend(Backend):
    """A plug-in that implements neither ``map`` nor ``run``."""

    name = "hollow"


def test_a_backend_implements_map_or_overrides_run(memory_store) -> None:
    store, _ = memory_store
    plan = stats_api.plan_stats(store)
    with pytest.raises(NotImplementedError, match="hollow backend implements neither"):
        list(HollowBackend().run(plan))
    assert len(list(ReversedBackend().run(plan))) == len(plan.units)


def test_a_third_party_backend_is_found_through_the_entry_point_group(
    monkeypatch: pytest.MonkeyPatch, memory_store
) -> None:
    extra = EntryPoint("reversed", f"{__name__}:ReversedBackend", registry.ENTRY_POINT_GROUP)
    broken = EntryPoint("broken", "no_such_module_xyz:Backend", registry.ENTRY_POINT_GROUP)
    real = registry.entry_points
    monkeypatch.setattr(registry, "entry_points", lambda group: [*real(group=group), extra, broken])
    assert backend_names()[-2:] == ["broken", "reversed"]
    infos = {i.name: i for i in describe_backends()}
    assert infos["reversed"].available
    assert not infos["broken"].available and "no_such_module_xyz" in (infos["broken"].error or "")
    store, _ = memory_store
    assert same_counts(genotype_stats(store, backend="reversed"), genotype_stats(store))
    with pytest.raises(UsageError, match="cannot be imported"):
        genotype_stats(store, backend="broken")


def test_a_built_in_name_loads_without_reading_entry_points(
    monkeypatch: pytest.MonkeyPatch, memory_store
) -> None:
    """Each `zarrgeno stats` resolves its backend: a built-in name must not scan every
    installed distribution's entry points, and a plug-in cannot take a built-in name."""

    def no_scan(group: str) -> list[EntryPoint]:
        raise AssertionError(f"entry points of {group} were read")

    monkeypatch.setattr(registry, "entry_points", no_scan)
    for name in registry.BUILTIN:
        assert registry.is_backend_name(name)
        assert registry.load_backend(name).name == name
    store, _ = memory_store
    genotype_stats(store, backend="threads")

    shadow = EntryPoint("threads", f"{__name__}:ReversedBackend", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [shadow])
    assert registry.load_backend("threads").__module__ == "zarrgeno.stats.backends.threads"
    assert backend_names() == list(registry.BUILTIN)
    ignored = [i for i in describe_backends() if not i.available]
    assert [(i.name, i.target) for i in ignored] == [("threads", shadow.value)]
    assert "built-in backend name" in (ignored[0].error or "")


@pytest.mark.hostile
def test_process_backend_refuses_an_in_memory_url() -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    root = zarr.open_group(zarr.storage.FSStore("memory://zg-proc-test"), mode="w")
    root.create_dataset("2L/calldata/GT", data=np.zeros((4, 3, 2), "i1"))
    try:
        with pytest.raises(UsageError, match="worker processes cannot see"):
            genotype_stats("memory://zg-proc-test", backend="multiprocessing")
    finally:
        fs.rm("/zg-proc-test", recursive=True)


@pytest.mark.fault
def test_a_worker_killed_mid_run_is_replaced_and_the_counts_stay_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many small units; a worker is SIGKILLed after the first one: the units it may have
    been running are rerun alone, a new pool finishes the rest, nothing is lost."""
    monkeypatch.setattr(stats_api, "UNIT_CALLS", 1)  # one stored chunk per unit
    gt = np.random.default_rng(3).choice(np.array([0, 1, -1], "i1"), size=(4_000, 4, 2))
    path = tmp_path / "many.zarr"
    write_gt(str(path), {"2L": gt}, (10, 4))
    killed: list[int] = []

    def kill_a_worker(_: int) -> None:
        if not killed:
            children = psutil.Process().children(recursive=True)
            workers = [c for c in children if "spawn_main" in " ".join(c.cmdline())]
            assert workers, "no worker process found"
            victim = workers[-1]
            killed.append(victim.pid)
            os.kill(victim.pid, signal.SIGKILL)

    import zarrgeno.stats.backends.processes as processes

    reruns: list[WorkUnit] = []

    def rerun_alone(
        func: Callable[[WorkUnit], Partial], unit: WorkUnit, code: int | None, **options: Any
    ):
        assert code == -signal.SIGKILL
        assert options == {"timeout": None, "timed_out": False}  # no --unit-timeout
        reruns.append(unit)
        return real_rerun(func, unit, code, **options)

    real_rerun = processes.rerun_alone
    monkeypatch.setattr(processes, "rerun_alone", rerun_alone)
    result = genotype_stats(str(path), backend="multiprocessing", workers=2, progress=kill_a_worker)
    assert killed
    # the units in flight: at most IN_FLIGHT_PER_WORKER per worker
    assert 1 <= len(reruns) <= 2 * processes.IN_FLIGHT_PER_WORKER
    assert_matches(result, "2L", gt)


@pytest.mark.fault
def test_worker_errors_keep_their_type_and_message(tmp_path: Path) -> None:
    path = tmp_path / "bad.zarr"
    write_gt(str(path), {"2L": np.zeros((40, 4, 2), "i1")}, (10, 4))
    (path / "2L" / "calldata" / "GT" / "3.0.0").write_bytes(b"garbage" * 10)
    from zarrgeno.errors import BadDataError

    for backend in ("threads", "multiprocessing", "dask"):
        with pytest.raises(BadDataError, match=r"2L/calldata/GT/3\.0\.0"):
            genotype_stats(str(path), backend=backend)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8786", "tcp://127.0.0.1:8786"),
        ("tcp://host:1", "tcp://host:1"),
        ("tls://10.0.0.5:8786", "tls://10.0.0.5:8786"),
    ],
)
def test_scheduler_addresses(text: str, expected: str) -> None:
    assert normalize_address(text) == expected


@pytest.mark.hostile
@pytest.mark.parametrize(
    "text", ["8786", "http://h:1", "tcp://h", "tcp://h:99999", "h:p", "tls://h", "ucx://h:1"]
)
def test_bad_scheduler_addresses_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        with dask_client(text):
            pass


@pytest.mark.fault
def test_an_unreachable_scheduler_is_a_cluster_error_within_the_timeout() -> None:
    with psutil_free_port() as port:
        started = time.monotonic()
        with pytest.raises(ClusterError, match=f"tcp://127.0.0.1:{port} within 1 s"):
            with dask_client(f"tcp://127.0.0.1:{port}", timeout=1.0):
                pass
        assert time.monotonic() - started < 8


class psutil_free_port:
    """A TCP port nobody listens on (bound, then released)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        return None


def test_the_documented_backends_are_the_registered_ones() -> None:
    """docs/stats.md's backend table lists exactly the built-in backends, in order."""
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "stats.md").read_text()
    table = doc.split("## Backends", 1)[1].split("\n\n", 3)[2]
    names = re.findall(r"^\| `([a-z]+)`", table, flags=re.MULTILINE)
    assert names == [n for n in backend_names() if n in registry.BUILTIN]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_process_pool_equals_the_reference_on_random_arrays(data: st.DataObject) -> None:
    """Hypothesis-drawn arrays and chunkings, on disk, through the process pool."""
    gt = data.draw(genotype_arrays(max_variants=70, max_samples=12).filter(lambda a: len(a) > 0))
    chunks = data.draw(chunkings(gt))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.zarr"
        write_gt(str(path), {"2L": gt}, chunks)
        with monkeypatch_unit_calls(1):  # one stored chunk per unit: many tasks
            result = genotype_stats(str(path), backend="multiprocessing", workers=2)
    assert_matches(result, "2L", gt)


@contextlib.contextmanager
def monkeypatch_unit_calls(value: int) -> Iterator[None]:
    saved = stats_api.UNIT_CALLS
    stats_api.UNIT_CALLS = value
    try:
        yield
    finally:
        stats_api.UNIT_CALLS = saved


def test_the_default_backend_is_threads_except_for_a_dask_graph() -> None:
    assert registry.default_backend("data/AG1000G-AO") == registry.DEFAULT_BACKEND
    assert registry.DEFAULT_BACKEND == "threads"
    assert registry.default_backend("memory://x") == "threads"  # same process: it sees it
    assert registry.default_backend("data/x", visualize=True) == "dask"


def test_a_warm_pool_is_taken_by_the_next_run_and_only_if_it_fits(
    disk_store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """warm_up starts a pool that the next run on as many workers takes (same counts);
    a run that does not fit (other worker count, changed environment) starts its own."""
    import zarrgeno.stats.backends.processes as processes

    path, _ = disk_store
    reference = genotype_stats(str(path), backend="sequential")
    processes.warm_up(2)
    pool = processes._WARM[0][0]
    taken: list[object] = []
    new_pool = processes._new_pool
    monkeypatch.setattr(processes, "_new_pool", lambda *a: taken.append("new") or new_pool(*a))
    result = genotype_stats(str(path), backend="multiprocessing", workers=2)
    assert same_counts(result, reference)
    assert not processes._WARM and taken == []
    assert pool._shutdown_thread  # the run shut the warm pool down when it was done
    processes.warm_up(2)
    taken.clear()
    monkeypatch.setenv("ZARRGENO_TEST_CHANGED", "1")
    result = genotype_stats(str(path), backend="multiprocessing", workers=2)
    assert same_counts(result, reference)
    assert not processes._WARM and taken == ["new"]


def test_the_dask_backend_keeps_one_buffer_pool_for_all_contigs(disk_store) -> None:
    """Contigs with the same chunk shape share one pool of decoded chunks (POOL_SIZE
    buffers in all): five contigs of 30 MB chunks kept 611 MB before, 258 MB after."""
    from zarrgeno.stats.api import compute_stats, plan_stats

    path, _ = disk_store
    plan = plan_stats(str(path))
    assert len(plan.readers) == 2 and plan.readers[0]._pool is not plan.readers[1]._pool
    result = compute_stats(plan, backend="dask")
    assert same_counts(result, genotype_stats(str(path), backend="sequential"))
    assert plan.readers[0]._pool is plan.readers[1]._pool
    assert 0 < len(plan.readers[0]._pool) <= 3
    other = plan_stats(str(path)).readers[0]
    other.chunks = (7, 5, 2)
    with pytest.raises(ValueError, match="different shapes"):
        other.share_buffers(plan.readers[0])
