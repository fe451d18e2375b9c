"""Safe output: refusals, staging, atomic replacement, cleanup after failures and kills."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from zarrgeno.errors import MissingInputError, StoreIOError, TargetExistsError, UsageError
from zarrgeno.io.store import StoreRef
from zarrgeno.io.writing import (
    MARKER,
    STAGING_TAG,
    TRASH_TAG,
    WriterPool,
    check_target,
    clean_stale,
    staged_directory,
)


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.hostile
def test_refuses_source_relations(tmp_path: Path) -> None:
    src = tmp_path / "src.zarr"
    (src / "2L").mkdir(parents=True)
    ref = StoreRef.from_source(src)
    link = tmp_path / "link.zarr"
    link.symlink_to(src)
    cases = {
        src: "is the source store",
        src / "2L" / "out": "lies inside the source store",
        tmp_path: "contains the source store",
        link: "is the source store",
        link / "2L": "lies inside the source store",
        src / ".." / "src.zarr" / "2L": "lies inside the source store",
    }
    for target, says in cases.items():
        with pytest.raises(TargetExistsError, match=says):
            check_target(target, overwrite=True, sources=(ref,))
    # The source given as a file:// URL is the same directory.
    url = StoreRef.from_source(f"file://{src}")
    with pytest.raises(TargetExistsError, match="contains the source store"):
        check_target(tmp_path, overwrite=True, sources=(url,))
    assert check_target(tmp_path / "other", overwrite=False, sources=(ref,)) == tmp_path / "other"


def test_written_path_is_where_the_kernel_writes(tmp_path: Path) -> None:
    """``..`` after a link climbs from where the link points, as the kernel does."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "a" / "b")
    assert check_target(tmp_path / "link" / ".." / "out", overwrite=False) == tmp_path / "a" / "out"
    # A link as the target itself is kept: --overwrite replaces the link, not what it names.
    assert check_target(tmp_path / "link", overwrite=True) == tmp_path / "link"


@pytest.mark.hostile
def test_overwrite_replaces_only_an_empty_directory_or_the_same_commands_output(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TargetExistsError, match="an empty directory; pass --overwrite"):
        check_target(empty, overwrite=False, command="rechunk")
    assert check_target(empty, overwrite=True, command="rechunk") == empty
    mine = tmp_path / "mine"
    with staged_directory(mine, overwrite=False, command="rechunk", source="src") as staging:
        (staging / "data").write_text("x")
    assert json.loads((mine / MARKER).read_text())["command"] == "rechunk"
    assert check_target(mine, overwrite=True, command="rechunk") == mine
    with pytest.raises(TargetExistsError, match=r"written by `zarrgeno rechunk`.*deleting all"):
        check_target(mine, overwrite=False, command="rechunk")
    with pytest.raises(TargetExistsError, match="earlier output of `zarrgeno recompress`"):
        check_target(mine, overwrite=True, command="recompress")
    other = tmp_path / "other"
    other.mkdir()
    (other / "thesis.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(TargetExistsError, match=r"a directory \(1 entry; 1 file; 7 B\)"):
            check_target(other, overwrite=overwrite, command="rechunk")
        with pytest.raises(TargetExistsError, match="remove it yourself"):
            with staged_directory(other, overwrite=overwrite, command="rechunk"):
                pass
    assert (other / "thesis.txt").read_text() == "keep me"
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(TargetExistsError, match=r"a file \(7 B\)"):
        check_target(tmp_path / "notes.txt", overwrite=True)
    with pytest.raises(UsageError, match="local directories only"):
        check_target("s3://bucket/out", overwrite=True)


@pytest.mark.hostile
def test_a_target_that_appears_while_writing_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(TargetExistsError, match="remove it yourself"):
        with staged_directory(target, overwrite=True, command="rechunk"):
            target.mkdir()
            (target / "theirs").write_text("theirs")
    assert _listing(tmp_path) == ["out", "out/theirs"]


def _own_output(target: Path, name: str) -> None:
    """An earlier output of the command ``test`` at ``target``, holding the file ``name``."""
    with staged_directory(target, overwrite=False, command="test") as staging:
        (staging / name).write_text("data")


def test_staged_success_replaces_atomically(tmp_path: Path) -> None:
    target = tmp_path / "out"
    _own_output(target, "old")
    with staged_directory(target, overwrite=True, command="test") as staging:
        assert staging.parent == tmp_path and STAGING_TAG in staging.name
        (staging / "new").write_text("new")
        assert (target / "old").exists()  # the old target stays until the new one is complete
    assert _listing(tmp_path) == ["out", f"out/{MARKER}", "out/new"]


@pytest.mark.fault
def test_failure_leaves_no_target_and_no_staging(tmp_path: Path) -> None:
    target = tmp_path / "out"
    full = f"writing {target}: the disk is full (No space left on device); nothing was left at"
    with pytest.raises(StoreIOError, match=re.escape(full)) as excinfo:
        with staged_directory(target, overwrite=False) as staging:
            (staging / "chunk").write_bytes(b"x")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert excinfo.value.disk_full
    assert _listing(tmp_path) == []
    # zarr's DirectoryStore turns a directory it cannot create into a KeyError.
    with pytest.raises(StoreIOError, match=re.escape(full)):
        with staged_directory(target, overwrite=False):
            try:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError as exc:
                raise KeyError("2L/calldata/GT/0.0.0") from exc
    # A copy task's error, already a one-line StoreIOError, is reworded to name the target.
    with pytest.raises(StoreIOError, match=re.escape(full)):
        with staged_directory(target, overwrite=False):
            raise StoreIOError("copy failed: the disk is full", errno.ENOSPC)
    assert _listing(tmp_path) == []
    with pytest.raises(KeyboardInterrupt):
        with staged_directory(target, overwrite=False):
            raise KeyboardInterrupt
    assert _listing(tmp_path) == []


@pytest.mark.fault
def test_failure_keeps_existing_target(tmp_path: Path) -> None:
    target = tmp_path / "out"
    _own_output(target, "precious")
    kept = ["out", f"out/{MARKER}", "out/precious"]
    with pytest.raises(RuntimeError):
        with staged_directory(target, overwrite=True, command="test"):
            raise RuntimeError("boom")
    assert _listing(tmp_path) == kept
    with pytest.raises(StoreIOError, match=f"disk is full .*; {target} was kept as it was$"):
        with staged_directory(target, overwrite=True, command="test"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert _listing(tmp_path) == kept


@pytest.mark.fault
def test_errors_that_name_their_own_place_pass_through(tmp_path: Path) -> None:
    target = tmp_path / "out"
    for error in (
        StoreIOError("chunk 2L/calldata/GT/0.0.0: Input/output error", errno.EIO),
        MissingInputError("no such store"),
        KeyError("not an OSError"),
    ):
        with pytest.raises(type(error)) as excinfo:
            with staged_directory(target, overwrite=False):
                raise error
        assert excinfo.value is error
    assert _listing(tmp_path) == []


@pytest.mark.fault
def test_interrupted_replacement_puts_the_old_target_back(tmp_path: Path) -> None:
    """Killed between moving the old target aside and renaming the new one into place."""
    target = tmp_path / "out"
    trash = tmp_path / f".out{TRASH_TAG}999999999"
    trash.mkdir()
    (trash / "precious").write_text("data")
    staging = tmp_path / f".out{STAGING_TAG}999999999"
    staging.mkdir()
    assert clean_stale(target) == [staging]
    assert _listing(tmp_path) == ["out", "out/precious"]
    # Once the target is back, a rerun without --overwrite must not replace it.
    with pytest.raises(TargetExistsError, match="--overwrite"):
        with staged_directory(target, overwrite=False):
            pass
    # A trash beside a target that is in place is only garbage.
    trash.mkdir()
    assert clean_stale(target) == [trash]
    assert _listing(tmp_path) == ["out", "out/precious"]


@pytest.mark.fault
def test_stale_staging_from_a_dead_run_is_removed(tmp_path: Path) -> None:
    target = tmp_path / "out"
    dead = tmp_path / f".out{STAGING_TAG}999999999"
    dead.mkdir()
    (dead / "half").write_text("x")
    live = tmp_path / f".out{STAGING_TAG}{os.getppid()}"
    live.mkdir()
    assert clean_stale(target) == [dead]
    assert live.exists()


@pytest.mark.fault
def test_a_writer_pool_drains_running_tasks_through_an_interrupt(tmp_path: Path) -> None:
    """Ctrl-C while waiting for the pool: the running task still finishes (it writes into
    the staging, which the clean-up removes next), the queued one is cancelled, and the
    interruption is re-raised after."""
    pool = WriterPool(1, thread_name_prefix="test-writer")
    started = threading.Event()

    def task() -> None:
        started.set()
        time.sleep(0.5)
        (tmp_path / "written").write_text("chunk")

    pool.submit(task)
    queued = pool.submit(task)
    assert started.wait(10)
    main = threading.main_thread().ident
    assert main is not None
    threading.Timer(0.1, signal.pthread_kill, (main, signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt):
        pool.drain()
    assert (tmp_path / "written").read_text() == "chunk"
    assert queued.cancelled()
