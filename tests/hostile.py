"""Run ``zarrgeno`` on a hostile input as a user would, and check every promise at once.

:func:`run_cli` runs the command as a separate process (``python -m zarrgeno``), samples
the peak resident memory of its whole process tree, and kills the tree when it runs past
its time limit; :func:`assert_refused` checks the exit code, the one ``Error:`` line, no
traceback, the memory bound and the time bound. :class:`Tree` snapshots a directory (names,
kinds, sizes, hashes) so that a test can show that a source, or canary files beside a
target, were left exactly as they were.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

#: Peak RSS allowed where no --max-mem budget applies (docs/reliability.md).
DEFAULT_RSS_MB = 300


@dataclass
class Result:
    """How one ``zarrgeno`` process ended."""

    args: tuple[str, ...]
    code: int
    out: str
    err: str
    seconds: float
    peak_rss_mb: float
    timed_out: bool

    def __str__(self) -> str:
        return (
            f"zarrgeno {' '.join(self.args)}: exit {self.code} in {self.seconds:.1f} s, "
            f"peak {self.peak_rss_mb:.0f} MB{' (timed out)' if self.timed_out else ''}\n"
            f"stdout: {self.out[-2000:]}\nstderr: {self.err[-2000:]}"
        )


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        members = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in members:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def run_cli(
    *args: str | os.PathLike[str],
    timeout: float = 60,
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    stdin: int | None = subprocess.DEVNULL,
) -> Result:
    """Run ``python -m zarrgeno ARGS`` to the end (or ``timeout`` seconds, then kill the
    process group), sampling the process tree's resident memory every 20 ms."""
    argv = tuple(os.fspath(a) for a in args)
    full_env = {**os.environ, "COLUMNS": "100", **(env or {})}
    full_env.pop("ZARRGENO_STORE", None)
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "zarrgeno", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=stdin,
        cwd=cwd,
        env=full_env,
        start_new_session=True,
        text=True,
    )
    peak = 0
    watched = psutil.Process(proc.pid)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss(watched))
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_group(proc.pid)
        out, err = proc.communicate()
    finally:
        done.set()
        sampler.join()
    return Result(
        argv,
        proc.returncode,
        out,
        err,
        time.monotonic() - start,
        peak / 2**20,
        timed_out,
    )


def kill_group(pid: int) -> None:
    """SIGKILL a process group started with ``start_new_session``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def assert_refused(
    result: Result,
    code: int,
    *,
    says: str | tuple[str, ...] = (),
    max_rss_mb: float = DEFAULT_RSS_MB,
    max_seconds: float | None = None,
) -> None:
    """The run ended by itself with exit ``code`` and one ``Error:`` line on stderr (which
    contains each of ``says``), no traceback, within the memory and time bounds."""
    assert not result.timed_out, f"hung: {result}"
    assert result.code == code, f"expected exit {code}: {result}"
    assert "Traceback" not in result.err, str(result)
    errors = [line for line in result.err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, f"expected one Error: line: {result}"
    for text in (says,) if isinstance(says, str) else says:
        assert text in errors[0], f"{text!r} not in {errors[0]!r}"
    assert result.peak_rss_mb <= max_rss_mb, f"peak RSS {result.peak_rss_mb:.0f} MB: {result}"
    if max_seconds is not None:
        assert result.seconds <= max_seconds, str(result)


class Tree:
    """A snapshot of a directory tree: each entry's kind, size and (for files) SHA-256.

    Symbolic links are recorded as their targets, never followed; FIFOs and devices by
    their kind only (opening them could block).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.entries = self._scan()

    def _scan(self) -> dict[str, tuple[str, int, str]]:
        entries: dict[str, tuple[str, int, str]] = {}
        if not os.path.lexists(self.root):
            return entries
        paths = [self.root, *sorted(self.root.rglob("*"))] if self.root.is_dir() else [self.root]
        for path in paths:
            rel = str(path.relative_to(self.root)) if path != self.root else "."
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                entries[rel] = ("link", 0, os.readlink(path))
            elif stat.S_ISDIR(mode):
                entries[rel] = ("dir", 0, "")
            elif stat.S_ISREG(mode):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                entries[rel] = ("file", path.stat().st_size, digest)
            else:
                entries[rel] = ("special", 0, oct(stat.S_IFMT(mode)))
        return entries

    def assert_unchanged(self) -> None:
        """The tree holds exactly what it held when the snapshot was taken."""
        now = self._scan()
        added = sorted(set(now) - set(self.entries))
        removed = sorted(set(self.entries) - set(now))
        changed = sorted(k for k in now.keys() & self.entries.keys() if now[k] != self.entries[k])
        assert not (added or removed or changed), (
            f"{self.root} changed: added {added[:10]}, removed {removed[:10]}, "
            f"changed {changed[:10]}"
        )
