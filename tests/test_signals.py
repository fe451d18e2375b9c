"""Ctrl-C (SIGINT) and SIGTERM at any moment: one line, exit 130 or 143, nothing left.

Each command runs as a real process and gets the signal at a spread of moments after
zarrgeno started handling signals (``main()``'s first line, seen in /proc as SIGTERM
caught): while typer, numpy and zarr load, while it plans, while it writes, as it
finishes. Before that moment Python itself is starting (site-packages, ``.pth`` files);
an interrupt there ends the process as Python does (docs/reliability.md). Then: exit 130
(143 for SIGTERM) with one ``Error:`` line, or 0 when the command had finished; no
traceback; no staging directory, part file or partial target; the source byte for byte
as it was; an existing target either as it was or, on exit 0, the new one. The other
tests each put the signal exactly where Python used to drop or misreport it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hostile import Tree

from zarrgeno.cli import exits
from zarrgeno.simulate.genotypes import simulate_store

pytestmark = [
    pytest.mark.fault,
    pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc"),
]

#: Seconds after zarrgeno handles signals: imports, planning, writing, the end (each
#: command takes about a second here). Each command gets every third one, spread over the
#: whole range; together they cover all of it.
OFFSETS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.65, 0.8, 1.0, 1.2, 1.5, 2.0)
STOPPED = {
    signal.SIGINT: (130, "Error: interrupted"),
    signal.SIGTERM: (143, "Error: terminated (SIGTERM)"),
}
#: What a run may leave beside its target: nothing but the target itself.
DEBRIS = (".zarrgeno-", ".part-", ".tmp")


@dataclass(frozen=True)
class Command:
    """A command line, for a source and a target (None: the command writes nothing)."""

    name: str
    args: tuple[str, ...]
    target: str | None = "out.zarr"
    existing: bool = False  # the target exists before the run (with --overwrite)

    def argv(self, source: Path, target: Path) -> list[str]:
        return [a.format(src=source, tgt=target) for a in self.args]


COMMANDS = (
    Command("rechunk", ("rechunk", "{src}", "{tgt}", "--chunks", "20000,10,2")),
    Command(
        "rechunk-overwrite",
        ("rechunk", "{src}", "{tgt}", "--chunks", "20000,10,2", "--overwrite"),
        existing=True,
    ),
    Command("recompress", ("recompress", "--compressor", "zstd:3", "--", "{src}", "{tgt}")),
    Command("stats-threads-plot", ("stats", "{src}", "--plot", "{tgt}"), target="rates.png"),
    Command("stats-multiprocessing", ("stats", "{src}", "-b", "multiprocessing", "-w", "2"), None),
    Command(
        "simulate",
        (
            "simulate",
            "-c",
            "2L",
            "--scale",
            "0.002",
            "--samples",
            "8",
            "--seed",
            "1",
            "--",
            "{tgt}",
        ),
    ),
)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 2L of about 80 MB raw, 4 MB stored: each command takes a second or so."""
    path = tmp_path_factory.mktemp("signals") / "src.zarr"
    simulate_store(str(path), contigs=("2L",), scale=0.01, seed=3)
    before = Tree(path)
    yield path
    before.assert_unchanged()


@pytest.fixture(scope="module")
def references(source: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """What each writing command writes when nothing stops it."""
    made = {}
    for command in COMMANDS:
        if command.target is not None and not command.existing:
            target = tmp_path_factory.mktemp(f"reference-{command.name}") / command.target
            done = subprocess.run(_python(command.argv(source, target)), capture_output=True)
            assert done.returncode == 0, done.stderr
            made[command.name] = target
    made["rechunk-overwrite"] = made["rechunk"]
    # The target that `rechunk --overwrite` finds: an earlier rechunk, with other chunks.
    earlier = tmp_path_factory.mktemp("reference-earlier") / "out.zarr"
    argv = ["rechunk", str(source), str(earlier), "--chunks", "10000,10,2"]
    done = subprocess.run(_python(argv), capture_output=True)
    assert done.returncode == 0, done.stderr
    made["earlier-rechunk"] = earlier
    return made


def _python(argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "zarrgeno", *argv]


def _handles_signals(pid: int, timeout: float = 60) -> bool:
    """Wait until process ``pid`` catches SIGTERM (zarrgeno's handlers are installed),
    or ends; whether it got there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            return False
        caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
        if int(caught.split()[1], 16) >> (signal.SIGTERM - 1) & 1:
            return True
        time.sleep(0.001)
    raise AssertionError(f"process {pid} never handled signals")


@dataclass
class Stopped:
    offset: float
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return (
            f"signal {self.offset} s in: exit {self.code}\n"
            f"stdout: {self.out[-1500:]}\nstderr: {self.err[-3000:]}"
        )


def _stop(argv: list[str], sig: signal.Signals, offset: float) -> Stopped:
    """Run ``zarrgeno ARGV``; ``offset`` seconds after it handles signals, send ``sig`` to
    it (as ``kill`` does; Ctrl-C in a terminal sends SIGINT the same way)."""
    process = subprocess.Popen(
        _python(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "ZARRGENO_STORE"},
    )
    try:
        if _handles_signals(process.pid):
            time.sleep(offset)
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return Stopped(offset, process.returncode, out, err)


def _check(run: Stopped, sig: signal.Signals) -> None:
    """Exit 130/143 with its one line, or 0 and no line; never a traceback."""
    code, line = STOPPED[sig]
    assert run.code in (0, code), str(run)
    assert "Traceback" not in run.err and "Exception ignored" not in run.err, str(run)
    errors = [ln for ln in run.err.splitlines() if ln.startswith("Error:")]
    assert errors == ([] if run.code == 0 else [line]), str(run)


def _contents(path: Path) -> dict[str, tuple[str, int, str]]:
    """Every file and directory of a store, or a file, with its kind, size and SHA-256."""
    return Tree(path).entries


def _left(parent: Path) -> list[Path]:
    """Staging directories, part files and temporary files anywhere under ``parent``."""
    return [p for p in parent.rglob("*") if any(mark in p.name for mark in DEBRIS)]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "sig"),
    [pytest.param(c, signal.SIGINT, id=f"{c.name}-SIGINT") for c in COMMANDS]
    + [
        pytest.param(c, signal.SIGTERM, id=f"{c.name}-SIGTERM")
        for c in COMMANDS
        if c.name in ("rechunk-overwrite", "stats-multiprocessing", "simulate")
    ],
)
def test_a_stop_signal_at_any_moment(
    command: Command,
    sig: signal.Signals,
    source: Path,
    references: dict[str, Path],
    tmp_path: Path,
) -> None:
    """Each command stopped at moments spread over its run (SIGTERM, handled as Ctrl-C
    is but for its line and code, on three of them)."""
    k = [c.name for c in COMMANDS].index(command.name)
    offsets = OFFSETS[k % 3 :: 3] if sig == signal.SIGINT else OFFSETS[k % 5 :: 5]
    old = references["earlier-rechunk"]
    for n, offset in enumerate(offsets):
        parent = tmp_path / f"run{n}"
        parent.mkdir()
        target = parent / (command.target or "none")
        if command.existing:
            shutil.copytree(old, target)
        run = _stop(command.argv(source, target), sig, offset)
        _check(run, sig)
        assert _left(parent) == [], f"{_left(parent)}\n{run}"
        if command.target is None:
            assert list(parent.iterdir()) == [], str(run)
            continue
        expected = references[command.name]
        if command.existing:  # an existing target is never lost
            assert target.exists(), str(run)
        if run.code == 0:  # finished before the signal
            assert _contents(target) == _contents(expected), str(run)
        elif target.exists():  # stopped after the new target was in place, or before any
            assert _contents(target) in (
                _contents(expected),
                _contents(old) if command.existing else None,
            ), str(run)
        assert [p.name for p in parent.iterdir()] in ([], [target.name]), str(run)


def _run_script(script: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``python -m probe ARGV``, where ``probe`` runs ``SCRIPT`` (which sets up the moment
    of the signal), then zarrgeno's ``main``: as ``python -m zarrgeno`` does, since Python
    ends a ``-m`` run otherwise than a script's."""
    code = textwrap.dedent(script) + textwrap.dedent(
        """
        import sys
        from zarrgeno.cli import main

        if __name__ == "__main__":  # worker processes re-run this module
            sys.argv = ["zarrgeno", *sys.argv[1:]]
            main()
        """
    )
    with tempfile.TemporaryDirectory() as where:
        Path(where, "signalprobe.py").write_text(code)
        return subprocess.run(
            [sys.executable, "-m", "signalprobe", *argv],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=where,
        )


def _one_line(done: subprocess.CompletedProcess[str], code: int, line: str) -> None:
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    assert [ln for ln in done.stderr.splitlines() if ln.strip()] == [line], done.stderr


def test_an_interrupt_that_python_drops_is_raised_again(source: Path) -> None:
    """Ctrl-C while the main thread runs a weak-reference callback (the import system runs
    one for every module it loads) or a ``__del__``: Python reports the KeyboardInterrupt
    as "Exception ignored" and carries on, so the command ran to its end with exit 0."""
    script = """
    import os, signal, time, weakref
    import zarrgeno.stats.api as api

    plan_stats = api.plan_stats

    class Bait:
        pass

    def callback(ref):  # the signal is handled here, where Python cannot raise it
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.5)

    def planned(*args, **kwargs):
        bait = Bait()
        ref = weakref.ref(bait, callback)
        del bait  # runs the callback
        return plan_stats(*args, **kwargs)

    api.plan_stats = planned
    """
    _one_line(_run_script(script, ["stats", str(source)]), 130, "Error: interrupted")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_while_typer_evaluates_annotations(sig: signal.Signals, source: Path) -> None:
    """The signal while typer evaluates the command's annotations (eval() of strings):
    typer turned the KeyboardInterrupt into exit 130 with no message, and Python 3.11,
    having seen it leave code run by eval(), ended the process by SIGINT: exit status -2,
    for SIGTERM too."""
    script = f"""
    import inspect, os, signal, time

    get_annotations = inspect.get_annotations

    def evaluated(*args, **kwargs):
        eval("os.kill(os.getpid(), {int(sig)}) or time.sleep(0.5)")
        return get_annotations(*args, **kwargs)

    inspect.get_annotations = evaluated
    """
    _one_line(_run_script(script, ["stats", str(source)]), *STOPPED[sig])


def test_a_signal_while_python_exits_after_the_command(source: Path) -> None:
    """The command has finished and printed its counts; a signal while Python exits
    neither prints a traceback nor changes the exit code."""
    script = """
    import atexit, os, signal, time

    atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(0.3)))
    """
    done = _run_script(script, ["stats", str(source)])
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "Genotype statistics" in done.stdout


def test_an_interrupt_while_a_worker_process_starts(source: Path) -> None:
    """Ctrl-C while a worker process is being started (between its fork and the data it
    is sent): the worker was left running unknown to its pool, and printed a traceback
    after zarrgeno's line once it found zarrgeno gone."""
    script = """
    import os, signal, time
    import multiprocessing.util as util

    spawn = util.spawnv_passfds

    def spawned(*args, **kwargs):
        pid = spawn(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.5)
        return pid

    util.spawnv_passfds = spawned
    """
    argv = ["stats", str(source), "-b", "multiprocessing", "-w", "2"]
    _one_line(_run_script(script, argv), 130, "Error: interrupted")


def test_an_interrupt_as_the_staging_directory_is_made(tmp_path: Path) -> None:
    """Ctrl-C just after the staging directory was created, before the writer's clean-up
    covers it: it was left behind."""
    script = """
    import os, pathlib, signal, time

    mkdir = pathlib.Path.mkdir

    def made(self, *args, **kwargs):
        mkdir(self, *args, **kwargs)
        if "zarrgeno-staging" in self.name:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)

    pathlib.Path.mkdir = made
    """
    target = tmp_path / "out.zarr"
    argv = ["simulate", "-c", "X", "--scale", "0.001", "--samples", "4", "--", str(target)]
    _one_line(_run_script(script, argv), 130, "Error: interrupted")
    assert list(tmp_path.iterdir()) == []


def test_every_place_an_interrupt_waits_in_exists() -> None:
    """exits.WAIT_IN names functions of the standard library and of zarrgeno: a renamed
    one would silently stop protecting its moment."""
    for module, path in exits.WAIT_IN:
        found: object = importlib.import_module(module)
        for name in path.split("."):
            found = getattr(found, name)
        assert callable(found) and hasattr(found, "__code__"), (module, path)
