"""A disk that fills up while writing: every writer, on a real small tmpfs.

Each writer runs with its target on a tmpfs that has room for about half of its output,
so the disk fills in the middle of the write. Then: exit code 6 with one line that names
the target and says the disk is full, nothing under the target's name (``download``,
which resumes instead, keeps only complete files), the source byte-identical, and once
there is room again the same command succeeds and leaves no staging behind.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from httpserver import StoreServer
from killing import digest, leftovers
from writers import WRITERS, References, run, same_output, small_source

from zarrgeno.download.fetch import MARKER

pytestmark = pytest.mark.fault

#: The tmpfs: far more than any output here needs, once the filler is gone.
SIZE = "4m"
PAGE = 4096


class Tmpfs:
    """A mounted tmpfs whose free space a test sets with a filler file."""

    def __init__(self, root: Path):
        self.root = root
        self.filler = root / "filler"

    def free(self) -> int:
        stat = os.statvfs(self.root)
        return stat.f_bavail * stat.f_frsize

    def fill(self, leave: int) -> None:
        """Take all the free space but ``leave`` bytes (rounded down to pages)."""
        size = self.free() - leave // PAGE * PAGE
        with open(self.filler, "wb") as out:
            os.posix_fallocate(out.fileno(), 0, size)
        assert self.free() <= leave

    def make_room(self) -> None:
        self.filler.unlink()


def _mount_error(root: Path) -> str | None:
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    if shutil.which("mount") is None:
        return "no mount command"
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(root)],
        capture_output=True,
        text=True,
    )
    return f"cannot mount a tmpfs: {done.stderr.strip()}" if done.returncode else None


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Tmpfs]:
    """A small tmpfs mounted in tmp_path for the test, unmounted afterwards."""
    root = tmp_path / "tmpfs"
    root.mkdir()
    error = _mount_error(root)
    if error is not None:
        pytest.skip(error)
    try:
        yield Tmpfs(root)
    finally:
        if subprocess.run(["umount", str(root)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(root)], check=True)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_source(tmp_path_factory.mktemp("enospc") / "src.zarr")


@pytest.fixture(scope="module")
def reference(source: Path, tmp_path_factory: pytest.TempPathFactory) -> References:
    return References(source, tmp_path_factory.mktemp)


def _pages(root: Path) -> int:
    """Bytes that the files under ``root`` take on a tmpfs (whole pages)."""
    return sum(math.ceil(p.stat().st_size / PAGE) * PAGE for p in root.rglob("*") if p.is_file())


def _disk_full_line(result, target: Path) -> str:
    """The run failed with exit code 6 and a single line naming ``target``; return it."""
    assert result.exit_code == 6, (result.exit_code, result.output, result.exception)
    [line] = result.stderr.splitlines()
    assert line.startswith(f"Error: writing {target}") and "the disk is full" in line, line
    return line


@pytest.mark.parametrize("name", list(WRITERS))
def test_writer_fills_the_disk(name: str, source: Path, reference, tmpfs: Tmpfs) -> None:
    writer, expected = WRITERS[name], reference(name)
    before = digest(source)
    target = tmpfs.root / "out" / writer.target
    target.parent.mkdir()
    room = _pages(expected) // 2
    assert room >= 4 * PAGE  # room for the first files: the disk fills in the middle
    tmpfs.fill(leave=room)

    result = run(writer.args(source, target))
    line = _disk_full_line(result, target)
    assert line == (
        f"Error: writing {target}: the disk is full (No space left on device); "
        f"nothing was left at {target}"
    )
    assert list(target.parent.iterdir()) == []  # no target, no staging
    assert digest(source) == before

    tmpfs.make_room()
    result = run(writer.args(source, target))
    assert result.exit_code == 0, result.output
    assert leftovers(target.parent, target) == []
    same_output(writer, target, expected)
    assert digest(source) == before


def test_full_disk_keeps_the_target_that_overwrite_would_replace(
    source: Path, reference, tmpfs: Tmpfs
) -> None:
    writer = WRITERS["rechunk"]
    target = tmpfs.root / writer.target
    # An earlier output of the same command (--overwrite replaces no other), other chunks.
    earlier = run(["rechunk", str(source), str(target), "--chunks", "300,7,2"])
    assert earlier.exit_code == 0, earlier.output
    old = digest(target)
    tmpfs.fill(leave=_pages(reference("rechunk")) // 2)
    result = run([*writer.args(source, target), "--overwrite"])
    assert _disk_full_line(result, target).endswith(f"; {target} was kept as it was")
    assert digest(target) == old and leftovers(tmpfs.root, target) == []


def test_download_fills_the_disk_then_resumes(source: Path, tmpfs: Tmpfs) -> None:
    """A download resumes rather than starting over: what it wrote stays, every file whole."""
    dest = tmpfs.root / "mirror"
    wanted = digest(source)
    tmpfs.fill(leave=_pages(source) // 2)
    with StoreServer(source.parent) as server:
        url = server.url(source.name)
        result = run(["download", url, str(dest), "--jobs", "2"])
        line = _disk_full_line(result, dest)
        assert "rerun the same command to resume" in line
        kept = {k: v for k, v in digest(dest).items() if k != MARKER}
        assert kept and all(wanted[k] == v for k, v in kept.items()) and kept != wanted
        assert not list(dest.rglob("*.part-*"))
        assert json.loads((dest / MARKER).read_text())["source"] == url

        tmpfs.make_room()
        result = run(["download", url, str(dest)])
        assert result.exit_code == 0, result.output
    assert digest(dest) == wanted  # the resume marker is gone: the source's files only
    assert digest(source) == wanted


def test_consolidate_on_a_full_disk_changes_nothing(source: Path, tmpfs: Tmpfs) -> None:
    store = tmpfs.root / "store.zarr"
    shutil.copytree(source, store)
    (store / ".zmetadata").unlink()
    before = digest(store)
    tmpfs.fill(leave=0)
    result = run(["consolidate", str(store)])
    assert result.exit_code == 6, result.output
    assert result.stderr.splitlines() == [
        f"Error: writing {store}/.zmetadata: the disk is full (No space left on device); "
        "the store was not changed"
    ]
    assert digest(store) == before  # nor any temporary file left in it
    tmpfs.make_room()
    result = run(["consolidate", str(store)])
    assert result.exit_code == 0, result.output
    assert set(digest(store)) == {*before, ".zmetadata"}
