"""A rechunk killed (SIGKILL) or interrupted (SIGINT) mid-way leaves no target; a rerun works."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from killing import digest, leftovers, start, wait_for_chunks

from zarrgeno.rewrite.verify import verify_stores
from zarrgeno.simulate.genotypes import simulate_store

pytestmark = pytest.mark.fault

#: About 240 MB raw: rechunking it into ~650 small chunk files takes a few seconds.
SCALE = 0.03
CHUNKS = "20000,10,2"


@pytest.fixture(scope="module")
def made_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    path = tmp_path_factory.mktemp("kill") / "src.zarr"
    simulate_store(str(path), contigs=("2L",), scale=SCALE, seed=3)
    return path, digest(path)


@pytest.fixture
def source(made_source: tuple[Path, dict[str, str]]) -> Iterator[Path]:
    """The source store; after each test, every byte of it is checked unchanged."""
    path, before = made_source
    yield path
    assert digest(path) == before


def _start(source: Path, target: Path, *extra: str) -> subprocess.Popen[str]:
    return start(["rechunk", str(source), str(target), "--chunks", CHUNKS, *extra])


def test_killed_run_leaves_no_target_and_a_rerun_succeeds(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.zarr"
    process = _start(source, target, "--backend", "sequential")
    staging = wait_for_chunks(target, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert not target.exists()  # nothing under the final name
    assert staging.exists()  # the half-written staging is left for the next run to remove
    rerun = _start(source, target, "--verify")
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert "verified identical to the source" in out
    assert leftovers(tmp_path, target) == []
    report = verify_stores(source, target)
    assert [a.path for a in report.arrays] == ["2L/calldata/GT", "samples"]


@pytest.mark.parametrize("backend", ["sequential", "dask"])
def test_ctrl_c_exits_130_promptly_and_cleans_up(
    source: Path, tmp_path: Path, backend: str
) -> None:
    target = tmp_path / "out.zarr"
    process = _start(source, target, "--backend", backend, "--workers", "2")
    wait_for_chunks(target, process)
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert time.monotonic() - sent < 10
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "Error: interrupted"
    assert not target.exists() and leftovers(tmp_path, target) == []
