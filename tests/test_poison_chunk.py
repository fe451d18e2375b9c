"""A worker that dies on one chunk: a transient death is retried and the counts stay exact; a
chunk that kills every worker is named (exit 7); Ctrl-C still stops everything.

Nothing in zarrgeno knows about these tests: a ``sitecustomize.py`` put on PYTHONPATH for
the worker processes wraps the chunk read (``zarrgeno.stats.chunks.read_raw``) and acts
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

import zarrgeno.stats.chunks as _chunks

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

    def hanging_pid(self, process: subprocess.Popen[str], timeout: float = 60) -> int:
        """Wait until a worker hangs on the poison chunk; its pid."""
        marker = self.state / "hanging"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker.exists() and marker.read_text():
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
    import zarrgeno.backends.processes as processes

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


@pytest.mark.parametrize("when", ["in the pool", "in the rerun alone"])
def test_ctrl_c_stops_everything(store: Path, poison: Poison, when: str) -> None:
    """A worker hangs on the chunk (in the pool, or in the rerun after a death): SIGINT to
    the command exits 130 within seconds and no worker process is left."""
    poison.arm(*(["hang"] if when == "in the pool" else ["kill", "hang"]))
    process = _cli("stats", str(store), "-b", "multiprocessing", "--workers", "2")
    pid = poison.hanging_pid(process)
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


def test_distributed_reruns_a_transient_death_exactly(
    store: Path, gt: np.ndarray, poison: Poison, one_row_per_unit: None
) -> None:
    poison.arm("kill", "pass")
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        result = genotype_stats(str(store), backend="distributed", workers=2)
    assert poison.strikes == 2
    assert_matches(result, "2L", gt)
