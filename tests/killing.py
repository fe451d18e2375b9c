"""Shared helpers of the kill tests: run ``zarrgeno`` in a subprocess, stop it at a chosen
point, and look at what it left on disk.

Run as a script (``python tests/killing.py ARGS...``) this module is the ``zarrgeno``
command with one pause point installed from ``$ZARRGENO_TEST_PAUSE`` (see :data:`POINTS`):
when the run reaches it, it writes the file named by ``$ZARRGENO_TEST_PAUSED`` and sleeps
until a signal arrives. A test waits for that file, then kills or interrupts the run at
that exact point, instead of after a guessed delay.
"""

from __future__ import annotations

import builtins
import hashlib
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from zarrgeno.io.writing import STAGING_TAG, TRASH_TAG

PAUSE_ENV = "ZARRGENO_TEST_PAUSE"
PAUSED_ENV = "ZARRGENO_TEST_PAUSED"
#: ``write:REGEX``: before the main thread opens, for writing, the first file whose path
#: inside the staging directory matches REGEX (``write:`` alone: the first file of all).
#: ``rename``: the output is complete, before the staging directory becomes the target.
#: ``swap``: an existing target was moved aside, the new one is not in place yet.
POINTS = ("write:", "rename", "swap")
#: How long a paused run waits for its signal before it carries on regardless.
PAUSE_SECONDS = 120


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("ZARRGENO_STORE", PAUSE_ENV)}


def start(
    args: list[str], *, pause: str | None = None, paused: Path | None = None
) -> subprocess.Popen[str]:
    """Start ``zarrgeno ARGS`` with piped output; with ``pause``, stopping at that point
    and announcing it in the file ``paused`` (see :func:`wait_paused`)."""
    env = _env()
    if pause is None:
        command = [sys.executable, "-m", "zarrgeno", *args]
    else:
        assert paused is not None and pause.startswith(POINTS), pause
        env |= {PAUSE_ENV: pause, PAUSED_ENV: str(paused)}
        command = [sys.executable, __file__, *args]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_paused(process: subprocess.Popen[str], paused: Path, timeout: float = 60) -> str:
    """Wait until ``process`` reaches its pause point; return what it paused before."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if paused.exists() and paused.read_text():
            return paused.read_text()
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    process.kill()
    raise AssertionError(f"the run never reached its pause point: {process.communicate()}")


def wait_for_chunks(
    target: Path, process: subprocess.Popen[str], n: int = 30, array: str = "2L/calldata/GT"
) -> Path:
    """Wait until the staging directory holds ``n`` chunk files of ``array``."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        for staging in target.parent.glob(f".{target.name}{STAGING_TAG}*"):
            gt = staging / array
            if gt.is_dir() and sum(1 for _ in gt.iterdir()) >= n:
                return staging
        time.sleep(0.02)
    raise AssertionError("the run never got going")


def staging_dirs(target: Path) -> list[Path]:
    """The staging directories beside ``target``."""
    return list(target.parent.glob(f".{target.name}{STAGING_TAG}*"))


def leftovers(parent: Path, target: Path) -> list[Path]:
    """Staging and trash directories of ``target`` in ``parent``."""
    return list(parent.glob(f".{target.name}.zarrgeno-*"))


def digest(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root``, by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


# ----------------------------------------------------------------- the paused command


def _pause(where: str) -> None:
    """Announce the pause point, then wait (a signal ends the wait, or the process)."""
    Path(os.environ[PAUSED_ENV]).write_text(where)
    deadline = time.monotonic() + PAUSE_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.02)  # Ctrl-C raises KeyboardInterrupt here, as it would in the write


def _inside_staging(file: Any) -> str | None:
    """The path of ``file`` relative to its staging directory, or None outside one."""
    if not isinstance(file, str | os.PathLike):
        return None
    parts = Path(os.fspath(file)).parts
    inside = [i for i, part in enumerate(parts) if STAGING_TAG in part]
    return "/".join(parts[inside[-1] + 1 :]) if inside else None


def _pause_before_write(pattern: str) -> None:
    regex, real_open, fired = re.compile(pattern), builtins.open, threading.Event()

    def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if (
            not fired.is_set()
            and any(c in mode for c in "wxa")
            and threading.current_thread() is threading.main_thread()
        ):
            relative = _inside_staging(file)
            if relative is not None and regex.match(relative):
                fired.set()
                _pause(f"write {relative}")
        return real_open(file, mode, *args, **kwargs)

    builtins.open = open_


def _pause_at_rename(point: str) -> None:
    import zarrgeno.io.writing

    class _Os:
        """``os`` for zarrgeno.io.writing, pausing around its final renames."""

        def __getattr__(self, name: str) -> Any:
            return getattr(os, name)

        @staticmethod
        def replace(src: Any, dst: Any) -> None:
            if point == "rename" and STAGING_TAG in Path(src).name:
                _pause("rename")
            os.replace(src, dst)
            if point == "swap" and TRASH_TAG in Path(dst).name:
                _pause("swap")

    zarrgeno.io.writing.os = _Os()  # type: ignore[assignment]


def _main() -> None:
    point = os.environ[PAUSE_ENV]
    if point.startswith("write:"):
        _pause_before_write(point[len("write:") :])
    else:
        _pause_at_rename(point)
    from zarrgeno.cli import main

    sys.argv = ["zarrgeno", *sys.argv[1:]]
    main()


if __name__ == "__main__":
    _main()
