"""A worker that dies on one chunk: a transient death is retried and the counts stay exact; a
chunk that kills every worker is named (exit 7); Ctrl-C still stops everything. A worker
that hangs on one chunk: with --unit-timeout, the same (the hung processes are killed).

Nothing in zarrgeno knows about these tests: a ``sitecustomize.py`` put on PYTHONPATH for
the worker processes wraps the chunk read (``zarrgeno.io.chunks.read_raw``) and acts
when it sees the poison chunk's key: SIGKILL its own process, let the read through, or
hang. Each time the poison chunk is read a numbered "strike" file is created first, so the
test knows how often it was read and each action can depend on the strike number.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dask
import distributed  # noqa: F401  (its config defaults must be loaded before dask.config.set)
import numpy as np
import psutil
import pytest
from test_stats_api import assert_matches
from test_stats_reference import write_gt

import zarrgeno.stats.api as stats_api
from zarrgeno.errors import ClusterError
from zarrgeno.stats.api import genotype_stats
from zarrgeno.stats.results import same_counts

pytestmark = [
    pytest.mark.fault,
    pytest.mark.filterwarnings(
        # distributed closes its comms after a killed worker in ways it warns about
        "ignore::pytest.PytestUnraisableExceptionWarning",
        "ignore:.*Creating scratch directories.*:UserWarning",
    ),
]

SITECUSTOMIZE = '''\
"""Test-only (tests/test_poison_chunk.py): act when one of the chunks {keys!r} is read."""
import os
import signal
import time

import zarrgeno.io.chunks as _chunks

_POISON = {keys!r}
_STATE = {state!r}
_ACTIONS = {actions!r}  # by strike number; the last one repeats
_read_raw = _chunks.read_raw


def _strike(key):
    """Record one more read of ``key``; how many came before."""
    n = 0
    while True:
        name = f"strike-{{key.replace('/', '_')}}-{{n}}"
        try:
            os.close(os.open(os.path.join(_STATE, name), os.O_CREAT | os.O_EXCL))
            return n
        except FileExistsError:
            n += 1


def read_raw(store, key, **kwargs):
    if key in _POISON:
        action = _ACTIONS[min(_strike(key), len(_ACTIONS) - 1)]
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        elif action == "exit":
            os._exit(3)
        elif action == "hang":
            with open(os.path.join(_STATE, "hanging"), "w") as f:
                f.write(str(os.getpid()))
            os.close(os.open(os.path.join(_STATE, f"hung-{{os.getpid()}}"), os.O_CREAT))
            time.sleep(600)
    return _read_raw(store, key, **kwargs)


_chunks.read_raw = read_raw
'''

#: 6 chunk rows of 100 variants x 3 sample chunks (4 + 4 + 2 samples).
SHAPE, CHUNKS = (600, 10, 2), (100, 4)
POISON = "2L/calldata/GT/3.1.0"


@pytest.fixture(scope="module")
def gt() -> np.ndarray:
    return np.random.default_rng(8).choice(np.array([0, 0, 1, 2, -1], "i1"), size=SHAPE)


@pytest.fixture
def store(tmp_path: Path, gt: np.ndarray) -> Path:
    path = tmp_path / "store.zarr"
    write_gt(str(path), {"2L": gt}, CHUNKS)
    return path


class Poison:
    """The sitecustomize on PYTHONPATH (for processes started from now on) and its state."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.site = tmp_path / "site"
        self.state = tmp_path / "state"
        self.site.mkdir()
        self.state.mkdir()
        self.monkeypatch = monkeypatch

    def arm(self, *actions: str, keys: tuple[str, ...] = (POISON,)) -> None:
        text = SITECUSTOMIZE.format(keys=set(keys), state=str(self.state), actions=list(actions))
        (self.site / "sitecustomize.py").write_text(text)
        old = os.environ.get("PYTHONPATH")
        path = str(self.site) + (os.pathsep + old if old else "")
        self.monkeypatch.setenv("PYTHONPATH", path)

    @property
    def strikes(self) -> int:
        return len(list(self.state.glob("strike-*")))

    @property
    def hung(self) -> list[int]:
        """The pids of every process that hung on the poison chunk."""
        return [int(p.name.removeprefix("hung-")) for p in self.state.glob("hung-*")]

    def hanging_pid(self, process: subprocess.Popen[str], timeout: float = 60, nth: int = 1) -> int:
        """Wait until the ``nth`` process hangs on the poison chunk; its pid."""
        marker = self.state / "hanging"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker.exists() and marker.read_text() and len(self.hung) >= nth:
                return int(marker.read_text())
            if process.poll() is not None:
                raise AssertionError(f"exited early: {process.communicate()}")
            time.sleep(0.05)
        raise AssertionError("no worker reached the poison chunk")


@pytest.fixture
def poison(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Poison:
    return Poison(tmp_path, monkeypatch)


@pytest.fixture
def one_row_per_unit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stats_api, "UNIT_CALLS", 1)  # a unit = one chunk row, 3 chunks


def _cli(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "ZARRGENO_STORE"}
    return subprocess.Popen(
        [sys.executable, "-m", "zarrgeno", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# multiprocessing


def test_a_transient_death_is_retried_and_the_counts_are_exact(
    store: Path, gt: np.ndarray, poison: Poison, one_row_per_unit: None
) -> None:
    """The first read of the chunk kills its worker; the unit's rerun alone succeeds."""
    poison.arm("kill", "pass")
    result = genotype_stats(str(store), backend="multiprocessing", workers=2)
    assert poison.strikes == 2  # killed in the pool, read again by the rerun
    assert_matches(result, "2L", gt)
    assert same_counts(result, genotype_stats(str(store), backend="sequential"))


def test_a_chunk_that_kills_every_worker_is_named(
    store: Path, poison: Poison, one_row_per_unit: None
) -> None:
    """A unit of 3 chunks: it dies in the pool, dies again alone while reading chunk 3.1.0,
    and that chunk read alone kills a third process: the chunk is named."""
    poison.arm("kill")
    with pytest.raises(ClusterError) as info:
        genotype_stats(str(store), backend="multiprocessing", workers=2)
    assert str(info.value) == (
        f"chunk {POISON} (variants 300-400, samples 4-8) killed the worker process twice "
        "(signal 9); the run was stopped (out of memory, or killed by someone?)"
    )
    assert poison.strikes == 3
    assert info.value.exit_code == 7


@pytest.mark.parametrize(
    ("actions", "message"),
    [
        (
            ("kill", "kill", "pass"),
            "2L variants 300:400 of 2L/calldata/GT killed the worker process twice (signal 9); "
            f"the second time while reading chunk {POISON} (variants 300-400, samples 4-8), "
            "which alone did not; the run was stopped (out of memory, or killed by someone?)",
        ),
        (
            ("kill", "segv"),
            f"chunk {POISON} (variants 300-400, samples 4-8) killed the worker process twice "
            "(signal 11); the run was stopped (a crash while decoding or counting it: corrupt "
            "or hostile data?)",
        ),
        (
            ("exit",),
            f"chunk {POISON} (variants 300-400, samples 4-8) killed the worker process twice "
            "(exit code 3); the run was stopped (see the worker's standard error)",
        ),
    ],
    ids=["the-chunk-alone-survives", "a-crash", "an-exit"],
)
def test_what_the_message_says(
    store: Path, poison: Poison, one_row_per_unit: None, actions: tuple[str, ...], message: str
) -> None:
    poison.arm(*actions)
    with pytest.raises(ClusterError) as info:
        genotype_stats(str(store), backend="multiprocessing", workers=2)
    assert str(info.value) == message
    assert poison.strikes == 3  # the pool, the unit alone, the chunk alone


def test_the_cli_exits_7_naming_the_chunk(store: Path, poison: Poison) -> None:
    """The default partition: one unit of 18 chunks over the whole store."""
    poison.arm("kill")
    process = _cli("stats", str(store), "-b", "multiprocessing", "--workers", "2")
    _, err = process.communicate(timeout=120)
    assert process.returncode == 7, err
    assert err.strip().splitlines()[-1] == (
        f"Error: chunk {POISON} (variants 300-400, samples 4-8) killed the worker process "
        "twice (signal 9); the run was stopped (out of memory, or killed by someone?)"
    )


def test_a_single_chunk_unit_is_named_after_two_deaths(
    tmp_path: Path, gt: np.ndarray, poison: Poison, one_row_per_unit: None
) -> None:
    """All samples in one chunk: the pool death and the rerun's death name the chunk."""
    path = tmp_path / "wide.zarr"
    write_gt(str(path), {"2L": gt}, (100, 10))
    poison.arm("kill", keys=("2L/calldata/GT/5.0.0",))
    with pytest.raises(ClusterError, match=r"^chunk 2L/calldata/GT/5\.0\.0 \(variants 500-600\) "):
        genotype_stats(str(path), backend="multiprocessing", workers=2)
    assert poison.strikes == 2


def test_workers_that_keep_dying_stop_the_run(
    store: Path, poison: Poison, one_row_per_unit: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four chunks of four units each kill their worker once (one worker, one unit in
    flight). Three deaths are survived, each unit rerun alone; the fourth stops the run."""
    import zarrgeno.stats.backends.processes as processes

    # With a queued unit behind each running one, a queued unit would be a suspect whose
    # first read (in its rerun) kills: this test counts pool deaths, so no queue.
    monkeypatch.setattr(processes, "IN_FLIGHT_PER_WORKER", 1)
    keys = tuple(f"2L/calldata/GT/{i}.0.0" for i in (0, 2, 3, 5))
    poison.arm("kill", "pass", keys=keys)
    with pytest.raises(ClusterError) as info:
        genotype_stats(str(store), backend="multiprocessing", workers=1)
    assert str(info.value) == (
        "worker processes died 4 times in this run, the last one (signal 9) while computing "
        "2L variants 500:600; the run was stopped (out of memory? try fewer --workers)"
    )
    assert poison.strikes == 7  # 4 deaths, 3 reruns


@pytest.mark.parametrize(
    "when", ["in the pool", "in the rerun alone", "in the rerun after a time-out"]
)
def test_ctrl_c_stops_everything(store: Path, poison: Poison, when: str) -> None:
    """A worker hangs on the chunk (in the pool, in the rerun after a death, or in the rerun
    after the pool's time-out): SIGINT to the command exits 130 within seconds and no
    worker process is left."""
    timed = when == "in the rerun after a time-out"
    poison.arm(*(["kill", "hang"] if when == "in the rerun alone" else ["hang"]))
    limit = ["--unit-timeout", "2"] if timed else []
    process = _cli("stats", str(store), "-b", "multiprocessing", "--workers", "2", *limit)
    pid = poison.hanging_pid(process, nth=2 if timed else 1)
    children = psutil.Process(process.pid).children(recursive=True)
    workers = [p.pid for p in children if "spawn_main" in " ".join(p.cmdline())]
    assert pid in workers
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert time.monotonic() - sent < 10
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "Error: interrupted"
    assert not any(_running(p) for p in workers)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# multiprocessing: a chunk that hangs its worker (--unit-timeout)

STUCK = (
    "did not finish within 2 s twice (the worker was killed); the run was stopped (a stuck "
    "read, or data that hangs the decoder? raise --unit-timeout if the storage is just slow)"
)


@pytest.mark.timeout(60)  # a regression hangs: fail it sooner than the default
def test_a_chunk_that_hangs_every_worker_is_named(
    store: Path, poison: Poison, one_row_per_unit: None
) -> None:
    """Every read of chunk 3.1.0 hangs. Once no unit has finished for 2 s the pool is
    killed; its unit, rerun alone, hangs past 2 s again, and so does the chunk read alone:
    the chunk is named, and every process that hung was killed."""
    poison.arm("hang")
    started = time.monotonic()
    with pytest.raises(ClusterError) as info:
        genotype_stats(str(store), backend="multiprocessing", workers=2, unit_timeout=2)
    assert time.monotonic() - started < 30  # not a hang (three limits of 2 s, and starts)
    assert str(info.value) == f"chunk {POISON} (variants 300-400, samples 4-8) {STUCK}"
    assert info.value.exit_code == 7
    assert poison.strikes == 3  # the pool, the unit alone, the chunk alone
    assert len(poison.hung) == 3 and not any(_running(p) for p in poison.hung)


@pytest.mark.timeout(60)  # a regression hangs: fail it sooner than the default
def test_a_transient_hang_is_retried_and_the_counts_are_exact(
    store: Path, gt: np.ndarray, poison: Poison, one_row_per_unit: None
) -> None:
    """The first read of the chunk hangs its worker; the unit's rerun alone finishes."""
    poison.arm("hang", "pass")
    result = genotype_stats(str(store), backend="multiprocessing", workers=2, unit_timeout=2)
    assert poison.strikes == 2
    assert len(poison.hung) == 1 and not _running(poison.hung[0])
    assert_matches(result, "2L", gt)
    assert same_counts(result, genotype_stats(str(store), backend="sequential"))


@pytest.mark.timeout(60)  # a regression hangs: fail it sooner than the default
def test_a_hung_pool_counts_as_a_pool_death(
    store: Path, poison: Poison, one_row_per_unit: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no pool death allowed, the first pool in which nothing finishes stops the run."""
    import zarrgeno.stats.backends.processes as processes

    monkeypatch.setattr(processes, "MAX_POOL_DEATHS", 0)
    poison.arm("hang")
    with pytest.raises(ClusterError) as info:
        genotype_stats(str(store), backend="multiprocessing", workers=2, unit_timeout=2)
    assert str(info.value) == (
        "worker processes stalled 1 time in this run, the last one (nothing finished within "
        "2 s) while computing 2L variants 300:400; the run was stopped (a stuck read, or data "
        "that hangs the decoder? raise --unit-timeout if the storage is just slow)"
    )
    assert poison.strikes == 1 and not any(_running(p) for p in poison.hung)


def test_the_cli_stops_a_hung_chunk_with_unit_timeout(store: Path, poison: Poison) -> None:
    """The default partition, one unit of 18 chunks: exit 7 naming the chunk, no worker left."""
    poison.arm("hang")
    process = _cli(
        "stats", str(store), "-b", "multiprocessing", "--workers", "2", "--unit-timeout", "2"
    )
    _, err = process.communicate(timeout=60)
    assert process.returncode == 7, err
    assert err.strip().splitlines()[-1] == (
        f"Error: chunk {POISON} (variants 300-400, samples 4-8) {STUCK}"
    )
    assert len(poison.hung) == 3 and not any(_running(p) for p in poison.hung)


@pytest.mark.parametrize(
    ("actions", "message"),
    [
        (
            ("kill", "hang"),
            f"chunk {POISON} (variants 300-400, samples 4-8) did not finish within 2 s twice "
            "(the worker was killed)",
        ),
        (
            ("hang", "hang", "pass"),
            "2L variants 300:400 of 2L/calldata/GT did not finish within 2 s twice (the worker "
            f"was killed); the second time while reading chunk {POISON} (variants 300-400, "
            "samples 4-8), which alone finished",
        ),
        (
            ("hang", "kill", "hang"),
            f"chunk {POISON} (variants 300-400, samples 4-8) killed the worker process "
            "(signal 9), then did not finish within 2 s (the worker was killed)",
        ),
    ],
    ids=["a-death-then-hangs", "the-chunk-alone-finishes", "a-death-then-a-hang"],
)
@pytest.mark.timeout(60)  # a regression hangs: fail it sooner than the default
def test_what_the_message_says_when_a_chunk_hangs(
    store: Path, poison: Poison, one_row_per_unit: None, actions: tuple[str, ...], message: str
) -> None:
    """The unit is failed by the pool and alone, then the chunk alone is the judge; the
    last failure gives the hint."""
    poison.arm(*actions)
    with pytest.raises(ClusterError) as info:
        genotype_stats(str(store), backend="multiprocessing", workers=2, unit_timeout=2)
    assert str(info.value).startswith(message + "; the run was stopped (")
    assert str(info.value).endswith("raise --unit-timeout if the storage is just slow)")
    assert poison.strikes == 3


# distributed


@pytest.mark.parametrize(
    ("persist", "named"),
    [
        (False, "chunks 2L/calldata/GT/3.0.0 to 3.2.0 (3 chunks, variants 300-400)"),
        (True, f"chunk {POISON} (variants 300-400, samples 4-8)"),
    ],
    ids=["a-task-per-unit", "persist"],
)
def test_distributed_names_the_chunk_that_kills_every_worker(
    store: Path, poison: Poison, one_row_per_unit: None, persist: bool, named: str
) -> None:
    """A local cluster of worker processes; with allowed-failures 1, dask gives up after the
    task killed 2 workers. The message names the unit's chunks (one task reads and counts
    a unit) or, with --persist, where each chunk is a read task, the chunk."""
    poison.arm("kill")
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        with pytest.raises(ClusterError) as info:
            genotype_stats(str(store), backend="distributed", workers=2, persist=persist)
    assert str(info.value) == (
        f"{named} killed 2 dask workers (distributed.scheduler.allowed-failures is 1); the run "
        "was stopped (out of memory, or a chunk that crashes the decoder? see the workers' logs)"
    )
    assert poison.strikes == 2


def test_distributed_reruns_a_killing_batch_unit_by_unit_and_names_the_unit(
    store: Path, poison: Poison, one_row_per_unit: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two tasks of 3 units each: the batch holding the poison kills 2 workers, then its
    units run one task each, and the poisoned unit, killing 2 more, is the one named."""
    from zarrgeno.stats import plan as stats_plan

    monkeypatch.setattr(stats_plan, "BATCHES_PER_THREAD", 1)
    poison.arm("kill")
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        with pytest.raises(ClusterError) as info:
            genotype_stats(str(store), backend="distributed", workers=2)
    assert str(info.value).startswith(
        "chunks 2L/calldata/GT/3.0.0 to 3.2.0 (3 chunks, variants 300-400) killed 2 dask workers"
    )
    assert poison.strikes == 4


def test_distributed_reruns_a_transient_death_exactly(
    store: Path, gt: np.ndarray, poison: Poison, one_row_per_unit: None
) -> None:
    poison.arm("kill", "pass")
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        result = genotype_stats(str(store), backend="distributed", workers=2)
    assert poison.strikes == 2
    assert_matches(result, "2L", gt)


def test_distributed_batches_rerun_a_transient_death_exactly(
    store: Path,
    gt: np.ndarray,
    poison: Poison,
    one_row_per_unit: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch of 3 units whose worker died once is rerun whole, and counted once."""
    from zarrgeno.stats import plan as stats_plan

    monkeypatch.setattr(stats_plan, "BATCHES_PER_THREAD", 1)
    poison.arm("kill", "pass")
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        result = genotype_stats(str(store), backend="distributed", workers=2)
    assert poison.strikes == 2
    assert_matches(result, "2L", gt)
