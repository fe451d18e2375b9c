"""The target is never the source, however either is named, and ``--overwrite`` never costs
a store: every command that writes is run as a process against a source spelt as a
``file://`` URL, a relative path, through a symbolic link to its folder, with ``..``
detours, and through a bind mount of its folder; then against existing targets of every
kind, following what each refusal suggests."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import zarr
from hostile import Result, Tree, assert_refused, run_cli

from conftest import build_store
from zarrgeno.download.plan import MARKER as DOWNLOADING
from zarrgeno.io.mark import MARK_ATTR, read_mark
from zarrgeno.io.writing import MARKER

pytestmark = pytest.mark.hostile


@dataclass(frozen=True)
class Layout:
    """``root/P/src.zarr`` (the source) beside ``root/P/thesis.txt`` (a canary); ``L``, a
    symbolic link to ``P``; ``B``, a bind mount of ``P`` (None where mounting fails);
    ``U/other.zarr``, an unrelated store."""

    root: Path
    bind: Path | None

    @property
    def folder(self) -> Path:
        return self.root / "P"

    @property
    def source(self) -> Path:
        return self.folder / "src.zarr"

    @property
    def unrelated(self) -> Path:
        return self.root / "U" / "other.zarr"

    def trees(self) -> list[Tree]:
        """Snapshots of the source's folder (source and canary) and the unrelated store."""
        return [Tree(self.folder), Tree(self.unrelated)]


def _mount_bind(source: Path, point: Path) -> bool:
    point.mkdir()
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["mount", "--bind", str(source), str(point)], capture_output=True, timeout=30
        )
        if done.returncode == 0:
            return True
    point.rmdir()
    return False


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[Layout]:
    root = tmp_path / "identity"
    build_store(str(root / "P" / "src.zarr"))
    (root / "P" / "thesis.txt").write_text("four years of work\n")
    build_store(str(root / "U" / "other.zarr"), seed=9)
    (root / "L").symlink_to(root / "P")
    bind = root / "B"
    mounted = shutil.which("mount") is not None and _mount_bind(root / "P", bind)
    yield Layout(root, bind if mounted else None)
    if mounted:
        subprocess.run(["umount", str(bind)], check=False, timeout=30)


#: How the folder of the source (``P``) is spelt in a target, and how the source itself
#: is given: (source, folder) as functions of the layout.
SPELLINGS: dict[str, Callable[[Layout], tuple[str, str]]] = {
    # the source as a file:// URL, the target a plain path
    "file-url": lambda lay: (f"file://{lay.source}", str(lay.folder)),
    # relative to the working directory (the layout's root)
    "relative": lambda lay: (str(lay.source), "P"),
    # through a symbolic link to the source's folder
    "symlink": lambda lay: (str(lay.source), str(lay.root / "L")),
    # a detour into the source and out again
    "dotdot": lambda lay: (str(lay.source), f"{lay.source}/2L/../.."),
    # another mount of the same folder: the same device and inode, another path
    "bind": lambda lay: (str(lay.source), str(lay.bind)),
}

#: The target's place relative to the folder: the source itself, inside it, around it.
RELATIONS = {
    "is": ("src.zarr", "is the source store"),
    "inside": ("src.zarr/2L/out.zarr", "lies inside the source store"),
    "contains": ("", "contains the source store"),
}

#: Each writing command, as its arguments for (source, target); all with --overwrite.
COMMANDS: dict[str, Callable[[str, str], list[str]]] = {
    "rechunk": lambda s, t: ["rechunk", s, t, "--chunks", "100,7,2", "--backend", "sequential"],
    "recompress": lambda s, t: ["recompress", s, t, "--compressor", "zstd:3"],
    "stats-output": lambda s, t: ["stats", s, "--output", t, "-b", "sequential"],
}


def _spelt(lay: Layout, spelling: str, rest: str) -> tuple[str, str]:
    if spelling == "bind" and lay.bind is None:
        pytest.skip("mount --bind does not work here")
    source, folder = SPELLINGS[spelling](lay)
    return source, f"{folder}/{rest}" if rest else folder


def _run(lay: Layout, *args: str | Path) -> Result:
    return run_cli(*args, cwd=lay.root)


@pytest.mark.parametrize("relation", list(RELATIONS))
@pytest.mark.parametrize("spelling", list(SPELLINGS))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_target_related_to_the_source_is_refused_however_named(
    command: str, spelling: str, relation: str, layout: Layout
) -> None:
    rest, says = RELATIONS[relation]
    source, target = _spelt(layout, spelling, rest)
    trees = layout.trees()
    result = _run(layout, *COMMANDS[command](source, target), "--overwrite")
    assert_refused(result, 5, says=says)
    for tree in trees:
        tree.assert_unchanged()


@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_plot_inside_the_source_is_refused_however_named(spelling: str, layout: Layout) -> None:
    source, target = _spelt(layout, spelling, "src.zarr/2L/counts.png")
    trees = layout.trees()
    result = _run(layout, "stats", source, "--plot", target, "--overwrite")
    assert_refused(result, 5, says="lies inside the source store")
    for tree in trees:
        tree.assert_unchanged()


@pytest.mark.parametrize("spelling", ["file-url", "bind"])
def test_task_graph_inside_the_source_is_refused(spelling: str, layout: Layout) -> None:
    source, target = _spelt(layout, spelling, "src.zarr/graph.svg")
    trees = layout.trees()
    result = _run(layout, "stats", source, "-b", "dask", "--visualize", target, "--overwrite")
    assert_refused(result, 5, says="lies inside the source store")
    for tree in trees:
        tree.assert_unchanged()


@pytest.mark.parametrize("spelling", ["symlink", "dotdot", "bind"])
def test_download_into_its_file_url_source_is_refused(spelling: str, layout: Layout) -> None:
    trees = layout.trees()
    for rest, says in RELATIONS.values():
        _, target = _spelt(layout, spelling, rest)
        result = _run(layout, "download", f"file://{layout.source}", target, "--overwrite")
        assert_refused(result, 5, says=says)
    for tree in trees:
        tree.assert_unchanged()


def test_one_path_is_the_source_for_recompress_as_for_rechunk(tmp_path: Path) -> None:
    """`recompress MYSTORE` reads MYSTORE: it never takes it for the target and never
    replaces it by a copy of the default store."""
    mine = tmp_path / "MYSTORE"
    build_store(str(mine), seed=4)
    build_store(str(tmp_path / "data" / "AG1000G-AO"), seed=5)
    before, default = Tree(mine), Tree(tmp_path / "data" / "AG1000G-AO")
    for extra in ([], ["--overwrite"]):
        result = run_cli("recompress", "MYSTORE", "--compressor", "zstd:3", *extra, cwd=tmp_path)
        assert result.code == 0, str(result)
        before.assert_unchanged()
        default.assert_unchanged()
    target = tmp_path / "data" / "recompress"
    written, expected = (zarr.open_group(str(p), mode="r") for p in (target, mine))
    assert (written["2L/calldata/GT"][:] == expected["2L/calldata/GT"][:]).all()
    marker = read_mark(target)
    assert marker is not None and not (target / MARKER).exists()
    assert (marker["command"], marker["source"]) == ("recompress", str(mine))


@pytest.mark.parametrize("command", list(COMMANDS))
def test_overwrite_replaces_only_an_empty_directory_or_the_commands_own_output(
    command: str, layout: Layout, tmp_path: Path
) -> None:
    args = COMMANDS[command]
    source = str(layout.source)
    trees = layout.trees()
    target = tmp_path / "out.zarr"
    target.mkdir()
    for _ in range(2):  # an empty directory, then this command's earlier output
        result = run_cli(*args(source, str(target)), "--overwrite")
        assert result.code == 0, str(result)
    written_by = written["command"] if (written := read_mark(target)) else None
    # A store written by someone else, a directory of other files, another command's output.
    other = "recompress" if command == "rechunk" else "rechunk"
    foreign = tmp_path / "foreign"
    assert run_cli(*COMMANDS[other](source, str(foreign))).code == 0
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.txt").write_text("mine")
    cases = {
        layout.unrelated: "a genotype store (contigs 2L, X; 7 samples;",
        notes: "a directory (1 entry; 1 file; 4 B)",
        foreign: f"written by `zarrgeno {other}`",
    }
    for path, says in cases.items():
        kept = Tree(path)
        result = run_cli(*args(source, str(path)), "--overwrite")
        assert_refused(result, 5, says=(says, "--overwrite does not replace it", "remove it"))
        kept.assert_unchanged()
    assert written_by == ("stats --output" if command == "stats-output" else command)
    for tree in trees:
        tree.assert_unchanged()


def _error_line(result: Result) -> str:
    return next(line for line in result.err.splitlines() if line.startswith("Error:"))


def _follow_hint(args: list[str], target: Path, trees: list[Tree], *, cwd: Path) -> None:
    """Run ``args`` (refused), then what the refusal suggests: ``--overwrite`` when it says
    so (and what that deletes), or ``--overwrite`` regardless when it says it would not
    help. Only the intended target may change, and only when the message offered it."""
    first = run_cli(*args, cwd=cwd)
    assert_refused(first, 5)
    line = _error_line(first)
    offered = "pass --overwrite" in line
    if offered:
        assert "deleting all of that" in line or "nothing is deleted" in line, line
    else:
        assert "--overwrite" not in line or "would not replace it" in line, line
    kept = Tree(target)
    second = run_cli(*args, "--overwrite", cwd=cwd)
    if offered:
        assert second.code == 0, str(second)
    else:
        assert_refused(second, 5)
        kept.assert_unchanged()
    for tree in trees:
        tree.assert_unchanged()


def test_following_each_refusal_never_loses_another_store(layout: Layout, tmp_path: Path) -> None:
    source = str(layout.source)
    trees = layout.trees()
    empty = tmp_path / "empty"
    empty.mkdir()
    own = tmp_path / "own.zarr"
    assert run_cli(*COMMANDS["rechunk"](source, str(own))).code == 0
    theirs = tmp_path / "theirs.zarr"
    assert run_cli(*COMMANDS["recompress"](source, str(theirs))).code == 0
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.txt").write_text("mine")
    (tmp_path / "file.txt").write_text("mine")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / DOWNLOADING).write_text(json.dumps({"source": "https://example.org/x"}))
    url = f"file://{layout.source}"
    scenarios = [
        (COMMANDS["rechunk"](source, str(empty)), empty),
        (COMMANDS["rechunk"](source, str(own)), own),
        (COMMANDS["rechunk"](source, str(theirs)), theirs),
        (COMMANDS["recompress"](source, str(layout.unrelated)), layout.unrelated),
        (COMMANDS["stats-output"](source, str(notes)), notes),
        (COMMANDS["rechunk"](source, str(tmp_path / "file.txt")), tmp_path / "file.txt"),
        (COMMANDS["recompress"](source, str(layout.root / "L")), layout.folder),
        (COMMANDS["stats-output"](source, "P/src.zarr/2L/../../src.zarr"), layout.source),
        (["download", url, str(notes)], notes),
        (["download", url, str(layout.unrelated)], layout.unrelated),
        (["download", url, str(unfinished)], unfinished),
    ]
    for args, target in scenarios:
        _follow_hint(args, target, trees, cwd=layout.root)


def test_a_mirror_is_no_output_of_the_command_that_wrote_its_source(
    layout: Layout, tmp_path: Path
) -> None:
    """A download leaves the source's mark out (its root attribute, also in the
    consolidated metadata): the mirror is no rechunk output, so `rechunk --overwrite` does
    not replace it."""
    source = str(layout.source)
    own = tmp_path / "own.zarr"
    assert run_cli(*COMMANDS["rechunk"](source, str(own))).code == 0
    assert run_cli("consolidate", str(own)).code == 0
    mirror = tmp_path / "mirror"
    assert run_cli("download", f"file://{own}", str(mirror)).code == 0
    assert not (mirror / MARKER).exists()
    # Nor its mark in the root attributes, here and in the consolidated copy.
    assert read_mark(own) is not None and read_mark(mirror) is None
    attrs = zarr.open_group(str(own), mode="r").attrs.asdict()
    for document in (".zattrs", ".zmetadata"):
        assert MARK_ATTR.encode() in (own / document).read_bytes()
        assert MARK_ATTR.encode() not in (mirror / document).read_bytes()
    del attrs[MARK_ATTR]
    assert zarr.open_consolidated(str(mirror), mode="r").attrs.asdict() == attrs
    kept = Tree(mirror)
    result = run_cli(*COMMANDS["rechunk"](source, str(mirror)), "--overwrite")
    assert_refused(result, 5, says=("a genotype store", "remove it yourself"))
    kept.assert_unchanged()


def _marked_as_earlier_zarrgeno_did(target: Path) -> str:
    """Move ``target``'s mark where an earlier zarrgeno kept it: out of the root attributes
    (and the consolidated metadata) into a `.zarrgeno.json` file at the root. Its command."""
    root = zarr.open_group(str(target), mode="r+")
    found = root.attrs[MARK_ATTR]
    del root.attrs[MARK_ATTR]
    if (target / ".zmetadata").exists():
        zarr.consolidate_metadata(str(target))
    doc = {"command": found["command"], "zarrgeno": "0.1.0", "source": found["source"]}
    (target / MARKER).write_text(json.dumps(doc, indent=2) + "\n")
    assert read_mark(target) == doc
    return str(found["command"])


@pytest.mark.parametrize("command", list(COMMANDS))
def test_overwrite_replaces_an_output_marked_by_an_earlier_zarrgeno(
    command: str, layout: Layout, tmp_path: Path
) -> None:
    """An earlier zarrgeno kept the mark in a `.zarrgeno.json` at the root of the store:
    the same command's --overwrite still replaces such an output (and the new one has the
    mark in its root attributes instead), another command's still refuses it."""
    args, source = COMMANDS[command], str(layout.source)
    target = tmp_path / "out.zarr"
    assert run_cli(*args(source, str(target))).code == 0
    name = _marked_as_earlier_zarrgeno_did(target)
    other = "recompress" if command == "rechunk" else "rechunk"
    kept = Tree(target)
    result = run_cli(*COMMANDS[other](source, str(target)), "--overwrite")
    assert_refused(result, 5, says=(f"written by `zarrgeno {name}`", "does not replace it"))
    kept.assert_unchanged()
    result = run_cli(*args(source, str(target)), "--overwrite")
    assert result.code == 0, str(result)
    assert not (target / MARKER).exists()
    assert zarr.open_group(str(target), mode="r").attrs[MARK_ATTR]["command"] == name
