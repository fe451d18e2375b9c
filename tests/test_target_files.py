"""What each writer leaves behind: a finished target holds Zarr's own keys and nothing else,
the command that wrote it named in its root attributes (a finished download: the source's
files, file for file by SHA-256, and nothing else), and nothing is left beside it (no
staging, no trash), also after ``--overwrite``."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import zarr
from httpserver import Fault, StoreServer
from killing import digest, start
from writers import WRITERS, run, small_source

from zarrgeno.download.fetch import MARKER
from zarrgeno.io.mark import MARK_ATTR
from zarrgeno.io.writing import MARKER as WRITTEN_BY
from zarrgeno.io.writing import TRASH_TAG

#: The documents zarr reads beside a node, and the consolidated metadata of the root.
NODE_KEYS = (".zgroup", ".zarray", ".zattrs")
CONSOLIDATED = ".zmetadata"


def files(root: Path) -> set[str]:
    """Every file under ``root``, by key (its path relative to ``root``)."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def zarr_keys(root: Path) -> tuple[set[str], set[str]]:
    """The keys zarr expects of the store at ``root``: (required, allowed).

    Found through zarr's own view of the per-node documents: every group's ``.zgroup``,
    every array's ``.zarray`` and every chunk of its grid (zarrgeno's writers write every
    chunk, fill value or not); allowed adds any node's ``.zattrs`` and the root's
    ``.zmetadata``. Anything else is a key no Zarr tool knows.
    """
    store = zarr.storage.DirectoryStore(str(root))
    group = zarr.open_group(store, mode="r")
    required, allowed = {".zgroup"}, {".zattrs", CONSOLIDATED}
    nodes: list[tuple[str, object]] = []
    group.visititems(lambda path, node: nodes.append((path, node)))
    for path, node in nodes:
        allowed.add(f"{path}/.zattrs")
        if isinstance(node, zarr.Group):
            required.add(f"{path}/.zgroup")
            continue
        assert isinstance(node, zarr.Array)
        required.add(f"{path}/.zarray")
        for index in itertools.product(*map(range, node.cdata_shape)):
            required.add(node._chunk_key(index))  # zarr's own, path and separator included
    return required, required | allowed


def assert_only_zarr_keys(root: Path, command: str | None = None) -> None:
    """``root`` holds every key zarr expects and nothing else; with ``command``, its root
    attributes name it (and no ``.zarrgeno.json`` is left); its ``.zmetadata``, if any,
    lists exactly the node documents present, the root's attributes as they are."""
    required, allowed = zarr_keys(root)
    present = files(root)
    assert WRITTEN_BY not in present
    if command is not None:
        attrs = json.loads((root / ".zattrs").read_text())
        assert attrs[MARK_ATTR]["command"] == command
    assert present - allowed == set(), "files no Zarr tool knows"
    assert required - present == set(), "keys zarr expects, missing"
    if CONSOLIDATED in present:
        listed = json.loads((root / CONSOLIDATED).read_text())["metadata"]
        assert set(listed) == {k for k in present if k.rsplit("/", 1)[-1] in NODE_KEYS}
        if ".zattrs" in present:
            assert listed[".zattrs"] == json.loads((root / ".zattrs").read_text())


def assert_alone(target: Path) -> None:
    """Nothing beside ``target`` in its directory: no staging, no trash, no state."""
    assert os.listdir(target.parent) == [target.name]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small two-contig store, consolidated, alone in its directory."""
    return small_source(tmp_path_factory.mktemp("src") / "store.zarr")


#: The command each writer records in its output's root attributes.
COMMANDS = {
    "rechunk": "rechunk",
    "recompress": "recompress",
    "simulate": "simulate",
    "stats-zarr": "stats --output",
}


@pytest.mark.parametrize("name", ["rechunk", "recompress", "simulate", "stats-zarr"])
def test_writer_leaves_only_zarr_keys(name: str, source: Path, tmp_path: Path) -> None:
    writer = WRITERS[name]
    target = tmp_path / writer.target
    for extra in ([], ["--overwrite"]):  # a new target, then one replaced
        before = digest(source)
        command, *args = writer.args(source, target)
        result = run([command, *extra, *args])  # options before any `--`
        assert result.exit_code == 0, result.output
        assert_only_zarr_keys(target, COMMANDS[name])
        assert (target / CONSOLIDATED).is_file()  # the source had it, or the writer writes it
        assert_alone(target)
        assert digest(source) == before


def test_consolidate_adds_only_zmetadata(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "store.zarr"
    shutil.copytree(source, target)
    (target / CONSOLIDATED).unlink()
    before = digest(target)
    result = run(["consolidate", str(target)])
    assert result.exit_code == 0, result.output
    after = digest(target)
    assert set(after) == set(before) | {CONSOLIDATED}
    assert {k: v for k, v in after.items() if k != CONSOLIDATED} == before
    assert_only_zarr_keys(target)
    assert_alone(target)


def dirs(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir()}


def assert_mirror(dest: Path, source: Path) -> None:
    """``dest`` holds the source's files, same bytes, and the same directories."""
    assert digest(dest) == digest(source)
    assert dirs(dest) == dirs(source)


def test_download_is_the_source_file_for_file(source: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "mirror.zarr"
    dest.parent.mkdir()
    trash = dest.parent / f".{dest.name}{TRASH_TAG}999999999"  # of a killed --overwrite
    (trash / "old").mkdir(parents=True)
    with StoreServer(source.parent) as server:
        url = server.url(source.name)
        result = run(["download", url, str(dest)])
        assert result.exit_code == 0, result.output
        assert_mirror(dest, source)
        assert_alone(dest)
        assert_only_zarr_keys(dest)
        # A finished mirror keeps no mark: it is never deleted, even with --overwrite.
        for extra in ([], ["--overwrite"]):
            result = run(["download", url, str(dest), *extra])
            assert result.exit_code == 5 and "holds no unfinished download" in result.stderr
    assert_mirror(dest, source)
    assert_alone(dest)


@pytest.mark.fault
def test_killed_download_resumes_to_the_source_file_for_file(source: Path, tmp_path: Path) -> None:
    """SIGKILL while a chunk is in flight: the marker stays, every file kept is whole;
    the rerun completes the mirror and removes the marker."""
    dest = tmp_path / "out" / "mirror.zarr"
    stalled = r"/X/calldata/GT/1\.0\.0$"
    with StoreServer(source.parent) as server:
        url = server.url(source.name)
        server.inject(Fault("stall", stalled, stall_seconds=60, methods=("GET",)))
        process = start(["download", url, str(dest), "--jobs", "2", "--timeout", "30"])
        deadline = time.monotonic() + 120  # a loaded machine starts slowly
        while not any(o == "stall" for _, _, o in server.log.entries):
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.communicate()
        # The other thread may have been cut in the middle of a part file: the rerun removes it.
        kept = {k: v for k, v in digest(dest).items() if ".part-" not in k}
        assert json.loads((dest / MARKER).read_text())["source"] == url
        del kept[MARKER]
        wanted = digest(source)
        assert "X/calldata/GT/1.0.0" not in kept and all(wanted[k] == v for k, v in kept.items())
        server.clear_faults()
        result = run(["download", url, str(dest)])
        assert result.exit_code == 0, result.output
    assert_mirror(dest, source)
    assert_alone(dest)
