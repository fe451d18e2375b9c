"""Output that cannot be written: a standard output its reader closed, and a --plot or
--visualize file that cannot be written.

A reader that goes away (``zarrgeno info STORE | head -1``) ends the command quietly with
exit 141, as a shell reports a Unix tool that SIGPIPE stopped: no message, no traceback.
Each printing command writes to a pipe whose reading end is closed before it starts, with
Python's output buffered and unbuffered (``PYTHONUNBUFFERED``), so that the broken pipe
shows at the first write or at the last flush.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from zarrgeno.errors import ExitCode
from zarrgeno.simulate.genotypes import simulate_store

pytestmark = pytest.mark.fault

#: Every command line that prints to standard output, by what it prints.
PRINTING = {
    "stats": ["stats", "{store}"],
    "info": ["info", "{store}"],
    "info --json": ["info", "--json", "{store}"],
    "verify": ["verify", "{store}"],
    "codecs": ["codecs", "{store}"],
    "backends": ["backends"],
    "--help": ["--help"],
    "stats --help": ["stats", "--help"],
    "--version": ["--version"],
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pipes") / "src.zarr"
    simulate_store(str(path), contigs=("2L", "X"), scale=0.0005, n_samples=12, seed=1)
    return path


def _env(buffered: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ZARRGENO_STORE", "FORCE_COLOR")}
    if buffered:
        env.pop("PYTHONUNBUFFERED", None)
    else:
        env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def closed_pipe() -> Iterator[int]:
    """The writing end of a pipe whose reading end is already closed."""
    read, write = os.pipe()
    os.close(read)
    yield write
    os.close(write)


@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("name", list(PRINTING))
def test_a_closed_stdout_ends_quietly(
    name: str, buffered: bool, store: Path, closed_pipe: int
) -> None:
    argv = [a.format(store=store) for a in PRINTING[name]]
    done = subprocess.run(
        [sys.executable, "-m", "zarrgeno", *argv],
        stdout=closed_pipe,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        env=_env(buffered),
    )
    assert done.returncode == ExitCode.PIPE_CLOSED, done.stderr
    assert done.stderr == ""


def test_a_reader_that_stops_early(store: Path) -> None:
    """``zarrgeno stats STORE --per-sample | head -1``: the first line arrives; then exit
    0 if everything was written before the reader left, 141 if not; never a message."""
    process = subprocess.Popen(
        [sys.executable, "-m", "zarrgeno", "stats", str(store), "--per-sample"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(buffered=False),
    )
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()
    err = process.stderr.read()
    assert process.wait(timeout=120) in (0, ExitCode.PIPE_CLOSED), err
    assert first.startswith(b"Genotype statistics of ")
    assert err == b""
