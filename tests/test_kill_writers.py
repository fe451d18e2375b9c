"""simulate and recompress killed (SIGKILL) or interrupted (SIGINT) mid-way: no target under
the final name, no staging left after the next run, and the rerun writes a complete store."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from killing import digest, leftovers, start, wait_for_chunks

from zarrgeno.io.integrity import check_store
from zarrgeno.rewrite.verify import verify_stores
from zarrgeno.simulate.genotypes import simulate_store

pytestmark = pytest.mark.fault

CHUNKS = "20000,81,2"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("kill-writers") / "src.zarr"
    simulate_store(str(path), contigs=("2L",), scale=0.03, seed=4, chunks=CHUNKS)
    return path


def _command(kind: str, source: Path, target: Path) -> list[str]:
    if kind == "simulate":
        args = ["simulate", "--contig", "2L", "--scale", "0.03", "--seed", "4", "--chunks", CHUNKS]
        return [*args, "--", str(target)]
    return ["recompress", "--compressor", "zstd:3", "--", str(source), str(target)]


@pytest.mark.parametrize("kind", ["simulate", "recompress"])
def test_sigkill_then_rerun(source: Path, tmp_path: Path, kind: str) -> None:
    target = tmp_path / f"{kind}.zarr"
    before = digest(source)
    process = start(_command(kind, source, target))
    staging = wait_for_chunks(target, process, n=5)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert not target.exists() and staging.exists()
    rerun = start(_command(kind, source, target))
    _, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert leftovers(target.parent, target) == []
    assert check_store(str(target)).ok
    # simulate: the same seed and chunks give the source again; recompress: same contents.
    verify_stores(source, target)
    assert digest(source) == before


@pytest.mark.parametrize("kind", ["simulate", "recompress"])
def test_ctrl_c_exits_130_and_cleans_up(source: Path, tmp_path: Path, kind: str) -> None:
    target = tmp_path / f"{kind}.zarr"
    process = start(_command(kind, source, target))
    wait_for_chunks(target, process, n=5)
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert time.monotonic() - sent < 10
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "Error: interrupted"
    assert not target.exists() and leftovers(target.parent, target) == []
