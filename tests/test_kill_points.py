"""Every writer killed (SIGKILL) or interrupted (SIGINT) early, in the middle and late.

Each run is stopped at an exact point (see tests/killing.py): *early* before the first file
of the output is written, *middle* with part of it written, *late* with all of it written,
before the staging directory is renamed to the target. Then: nothing under the target's
name, the source byte-identical, Ctrl-C exits 130 promptly leaving nothing behind, SIGKILL
leaves only the staging directory, and a rerun writes the same output as an uninterrupted
run and removes every staging directory.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from killing import digest, leftovers, staging_dirs, start, wait_paused
from writers import WRITERS, References, Writer, run, same_output, small_source

from zarrgeno.io.writing import clean_stale

pytestmark = pytest.mark.fault

POINTS = ("early", "middle", "late")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_source(tmp_path_factory.mktemp("kill-points") / "src.zarr")


@pytest.fixture(scope="module")
def reference(source: Path, tmp_path_factory: pytest.TempPathFactory) -> References:
    return References(source, tmp_path_factory.mktemp)


def _pause(writer: Writer, point: str) -> str:
    return {"early": "write:", "middle": f"write:{writer.middle}", "late": "rename"}[point]


@dataclass
class Stopped:
    """A run of a writer, paused at a point: its process and what it had written there."""

    process: subprocess.Popen[str]
    target: Path
    staging: Path
    written: list[Path]


@pytest.fixture
def launched() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; any still running at its end (a failed test) are killed."""
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _stop_at(
    writer: Writer, point: str, source: Path, where: Path, launched: list[subprocess.Popen[str]]
) -> list[Stopped]:
    """Run ``writer`` twice at once (into ``where/killed`` and ``where/interrupted``), each
    paused at ``point``; check what each staging directory holds there."""
    runs = []
    for name in ("killed", "interrupted"):
        target = where / name / writer.target
        target.parent.mkdir(parents=True)
        paused = where / f"{name}.paused"
        process = start(writer.args(source, target), pause=_pause(writer, point), paused=paused)
        launched.append(process)
        runs.append((process, target, paused))
    stopped = []
    for process, target, paused in runs:
        at = wait_paused(process, paused)
        [staging] = staging_dirs(target)
        assert not target.exists()
        written = [p for p in staging.rglob("*") if p.is_file()]
        if point == "early":
            assert at.startswith("write ") and written == []
        elif point == "middle":
            assert at.startswith(f"write {writer.middle.replace(chr(92), '')}"), at
            assert written
        else:
            assert at == "rename"
        stopped.append(Stopped(process, target, staging, written))
    return stopped


def _rerun(writer: Writer, source: Path, target: Path, expected: Path) -> None:
    result = run(writer.args(source, target))
    assert result.exit_code == 0, result.output
    assert leftovers(target.parent, target) == []
    same_output(writer, target, expected)


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("name", list(WRITERS))
def test_sigkill_and_ctrl_c(
    name: str, point: str, source: Path, reference, tmp_path: Path, launched
) -> None:
    """Two runs stopped at the same point: one SIGKILLed, one interrupted (Ctrl-C)."""
    writer, expected = WRITERS[name], reference(name)
    before = digest(source)
    killed, interrupted = _stop_at(writer, point, source, tmp_path, launched)
    n_files = len(digest(expected))
    if point == "middle":
        assert 0 < len(killed.written) < n_files
    if point == "late":  # complete, not renamed yet
        assert sorted(digest(killed.staging)) == sorted(digest(expected))

    killed.process.send_signal(signal.SIGKILL)
    sent = time.monotonic()
    interrupted.process.send_signal(signal.SIGINT)
    _, err = interrupted.process.communicate(timeout=30)
    assert time.monotonic() - sent < 10
    assert interrupted.process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "Error: interrupted"
    assert list(interrupted.target.parent.iterdir()) == []  # no target, no staging
    killed.process.wait(timeout=30)
    assert killed.process.returncode == -signal.SIGKILL
    # Nothing under the target's name; the staging directory waits for the next run.
    assert not killed.target.exists() and staging_dirs(killed.target) == [killed.staging]
    assert digest(source) == before

    _rerun(writer, source, killed.target, expected)
    _rerun(writer, source, interrupted.target, expected)
    assert digest(source) == before


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_stopped_while_replacing_keeps_the_old_target(
    sig: signal.Signals, source: Path, reference, tmp_path: Path, launched
) -> None:
    """--overwrite: stopped after the old target was moved aside, before the new one took
    its place. Ctrl-C puts the old one back at once; after SIGKILL the next run does."""
    writer = WRITERS["rechunk"]
    target = tmp_path / "out" / writer.target
    # An earlier output of the same command (--overwrite replaces no other), other chunks.
    earlier = run(["rechunk", str(source), str(target), "--chunks", "300,7,2"])
    assert earlier.exit_code == 0, earlier.output
    old = digest(target)
    args = [*writer.args(source, target), "--overwrite"]
    paused = tmp_path / "paused"
    process = start(args, pause="swap", paused=paused)
    launched.append(process)
    assert wait_paused(process, paused) == "swap"
    assert not target.exists()  # the window: the old target is in the trash
    process.send_signal(sig)
    _, err = process.communicate(timeout=30)
    if sig == signal.SIGINT:
        assert process.returncode == 130, err
        assert leftovers(target.parent, target) == []
    else:
        staging = staging_dirs(target)
        assert not target.exists() and len(staging) == 1
        assert len(leftovers(target.parent, target)) == 2  # the staging and the trash
        assert clean_stale(target) == staging  # what the next run does first
    assert digest(target) == old
    result = run(args)
    assert result.exit_code == 0, result.output
    assert leftovers(target.parent, target) == []
    same_output(writer, target, reference("rechunk"))


@pytest.mark.parametrize("name", list(WRITERS))
def test_sigterm_stops_like_ctrl_c(
    name: str, source: Path, reference, tmp_path: Path, launched
) -> None:
    """SIGTERM (`kill`, `timeout`, a batch scheduler's time limit) mid-way: exit 143, the
    same clean-up as Ctrl-C, and a rerun writes the same output."""
    writer, expected = WRITERS[name], reference(name)
    before = digest(source)
    target = tmp_path / "out" / writer.target
    target.parent.mkdir()
    paused = tmp_path / "paused"
    process = start(writer.args(source, target), pause=_pause(writer, "middle"), paused=paused)
    launched.append(process)
    wait_paused(process, paused)
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert time.monotonic() - sent < 10
    assert process.returncode == 143, err
    assert err.strip().splitlines()[-1] == "Error: terminated (SIGTERM)"
    assert list(target.parent.iterdir()) == []  # no target, no staging
    assert digest(source) == before
    _rerun(writer, source, target, expected)
    assert digest(source) == before
