"""Output that cannot be written: a standard output its reader closed, and a --plot or
--visualize file that cannot be written.

A reader that goes away (``zarrgeno info STORE | head -1``) ends the command quietly with
exit 141, as a shell reports a Unix tool that SIGPIPE stopped: no message, no traceback.
Each printing command writes to a pipe whose reading end is closed before it starts, with
Python's output buffered and unbuffered (``PYTHONUNBUFFERED``), so that the broken pipe
shows at the first write or at the last flush.

A --plot or --visualize file that cannot be written, on a read-only file system (a tmpfs
mounted read-only) or in a directory that refuses new files (/sys, which refuses them
even to root; a directory of mode 0555 otherwise): the statistics are printed first, then
one line says which file could not be written and why, with exit 6.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile import Tree, assert_refused, run_cli

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


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A directory on a tmpfs mounted read-only (writes fail with EROFS)."""
    root = tmp_path / "ro"
    root.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(root)], capture_output=True
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield root
    finally:
        subprocess.run(["umount", str(root)], capture_output=True)


@pytest.fixture
def denied(tmp_path: Path) -> Iterator[Path]:
    """A directory in which creating a file fails with EACCES: /sys for root, whom file
    modes do not stop; a directory of mode 0555 for anyone else."""
    if os.geteuid() == 0:
        where = Path("/sys")
    else:
        where = tmp_path / "denied"
        where.mkdir()
        where.chmod(0o555)
    probe = where / "zarrgeno-probe"
    try:
        probe.open("wb").close()
    except PermissionError:
        pass
    else:
        probe.unlink()
        pytest.skip(f"{where} lets this user create files")
    yield where
    if where != Path("/sys"):
        where.chmod(0o755)


def _can_draw_graphs() -> bool:
    if shutil.which("dot") is None:
        return False
    try:
        import graphviz  # noqa: F401
    except ImportError:
        return False
    return True


DRAWINGS = {
    "plot": (["--plot", "{dir}/rates.png"], "cannot write {dir}/rates.png: "),
    "visualize": (
        ["-b", "dask", "--visualize", "{dir}/graph.svg"],
        "cannot write the task graph to {dir}/graph.svg: ",
    ),
}


@pytest.mark.parametrize("fs", ["read-only", "denied"])
@pytest.mark.parametrize("drawing", list(DRAWINGS))
def test_a_drawing_that_cannot_be_written(
    drawing: str, fs: str, store: Path, request: pytest.FixtureRequest
) -> None:
    pytest.importorskip("matplotlib")
    if drawing == "visualize" and not _can_draw_graphs():
        pytest.skip("Graphviz's dot or the graphviz package is not installed")
    where: Path = request.getfixturevalue("read_only" if fs == "read-only" else "denied")
    before = Tree(where) if where != Path("/sys") else None
    args, says = DRAWINGS[drawing]
    reason = "Read-only file system" if fs == "read-only" else "Permission denied"
    result = run_cli("stats", store, *(a.format(dir=where) for a in args))
    assert_refused(result, 6, says=says.format(dir=where) + reason)
    assert result.out.startswith(f"Genotype statistics of {store}: 12 samples")
    assert "total" in result.out  # the table is complete
    if before is not None:
        before.assert_unchanged()
    else:
        assert not list(where.glob("rates.png*")) and not list(where.glob("graph.svg*"))


def test_both_drawings_fail_in_one_line(store: Path, read_only: Path) -> None:
    """A plot that cannot be written does not keep the graph from being tried: one line
    names both."""
    pytest.importorskip("matplotlib")
    if not _can_draw_graphs():
        pytest.skip("Graphviz's dot or the graphviz package is not installed")
    plot, graph = read_only / "rates.png", read_only / "graph.svg"
    result = run_cli("stats", store, "-b", "dask", "--plot", plot, "--visualize", graph)
    assert_refused(
        result,
        6,
        says=(f"cannot write {plot}: Read-only", f"; cannot write the task graph to {graph}"),
    )
    assert result.out.startswith(f"Genotype statistics of {store}")
