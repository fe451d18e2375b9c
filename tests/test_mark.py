"""The mark of the command that wrote an output (zarrgeno.io.mark): in a Zarr store's root
attributes, so that zarr-python 3 (tests/zarr3venv.py) opens rechunk and recompress outputs
in either format without a warning about an object it does not recognise; in a file for
any other output; ignored by ``verify``, left out of copies and mirrors, and read back
without trusting the documents it is in."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import zarr
from writers import run, small_source
from zarr3venv import needs_zarr3, run_json, run_tool

from conftest import build_store
from zarrgeno import __version__
from zarrgeno.io.consolidate import v3_mismatches
from zarrgeno.io.mark import MARK_ATTR, MARKER, read_mark, unmarked, write_mark, written_by
from zarrgeno.io.validation import consolidated_mismatches
from zarrgeno.rewrite.rechunk import rechunk

DATA = Path(__file__).parent / "data"
#: zarr-python 3 opens each store (consolidated metadata used if there, then not),
#: every warning an error; per store: its format, members, root attributes, the sum of
#: one genotype array.
OPEN_WITH_ZARR3 = """
import json, sys, warnings
warnings.simplefilter("error")
import zarr
out = {}
for path in sys.argv[1:]:
    views = []
    for use_consolidated in (None, False):
        group = zarr.open_group(path, mode="r", use_consolidated=use_consolidated)
        views.append(sorted(name for name, _ in group.members(max_depth=None)))
    assert views[0] == views[1], views
    out[path] = {
        "format": group.metadata.zarr_format,
        "members": views[0],
        "attrs": group.attrs.asdict(),
        "gt_sum": int(group["2L/calldata/GT"][...].sum()),
    }
print(json.dumps(out))
"""


def _writes(source: Path, target: Path, command: str, fmt: int) -> list[str]:
    if command == "rechunk":
        return ["rechunk", str(source), str(target), "--chunks", "100,7,2", "-b", "sequential",
                "--zarr-format", str(fmt)]  # fmt: skip
    return ["recompress", "--compressor", "zstd:3", "--zarr-format", str(fmt), "-b",
            "sequential", "--", str(source), str(target)]  # fmt: skip


def _members(path: Path) -> list[str]:
    names: list[str] = []
    zarr.open_group(str(path), mode="r").visit(names.append)
    return sorted(names)


@needs_zarr3
def test_zarr_python_3_opens_every_output_without_a_warning(tmp_path: Path) -> None:
    sources = {"plain": tmp_path / "plain.zarr", "consolidated": tmp_path / "cons.zarr"}
    build_store(str(sources["plain"]))
    small_source(sources["consolidated"])
    attrs = zarr.open_group(str(sources["plain"]), mode="r").attrs.asdict()
    gt_sum = int(zarr.open_group(str(sources["plain"]), mode="r")["2L/calldata/GT"][:].sum())
    outputs = {}
    for kind, source in sources.items():
        for command in ("rechunk", "recompress"):
            for fmt in (2, 3):
                target = tmp_path / f"{command}-{kind}-v{fmt}.zarr"
                result = run(_writes(source, target, command, fmt))
                assert result.exit_code == 0, result.output
                assert not (target / MARKER).exists()
                assert written_by(target) == command
                if kind == "consolidated" and fmt == 2:
                    assert consolidated_mismatches(zarr.DirectoryStore(str(target))) == []
                    assert MARK_ATTR.encode() in (target / ".zmetadata").read_bytes()
                elif kind == "consolidated":
                    assert "consolidated_metadata" in json.loads((target / "zarr.json").read_text())
                    assert v3_mismatches(zarr.DirectoryStore(str(target))) == []
                result = run(["verify", str(source), str(target)])
                assert result.exit_code == 0, result.output
                outputs[str(target)] = (command, source, fmt)
    seen = run_json(OPEN_WITH_ZARR3, *outputs)
    expected_members = _members(sources["plain"])
    for path, (command, source, fmt) in outputs.items():
        assert seen[path]["format"] == fmt
        assert seen[path]["members"] == expected_members
        assert seen[path]["gt_sum"] == gt_sum
        mark = seen[path]["attrs"].pop(MARK_ATTR)
        assert seen[path]["attrs"] == attrs
        assert (mark["command"], mark["source"]) == (command, str(source))


@needs_zarr3
@pytest.mark.parametrize("fmt", [2, 3])
def test_vcztools_reads_a_rechunked_vcf_zarr_store_without_a_warning(
    fmt: int, tmp_path: Path
) -> None:
    target = tmp_path / "out.vcz"
    result = run(["rechunk", str(DATA / "bio2zarr_v2.vcz"), str(target), "--chunks",
                  "variants=3", "--zarr-format", str(fmt)])  # fmt: skip
    assert result.exit_code == 0, result.output
    done = run_tool("vcztools", "view", "--no-version", target)
    assert done.returncode == 0 and done.stdout.startswith("##fileformat=VCF"), done.stderr
    assert done.stderr == ""


def test_verify_ignores_the_mark_and_only_the_mark(tmp_path: Path) -> None:
    """The mark names the command that wrote a store, not its data: a source and its copy
    compare equal; any other root attribute that differs is still a difference."""
    source = tmp_path / "src.zarr"
    build_store(str(source))
    target = tmp_path / "out.zarr"
    assert run(_writes(source, target, "rechunk", 2)).exit_code == 0
    assert run(["verify", str(source), str(target)]).exit_code == 0
    assert run(["verify", str(target), str(source)]).exit_code == 0
    zarr.open_group(str(target), mode="r+").attrs["description"] = "another"
    result = run(["verify", str(source), str(target)])
    assert result.exit_code != 0 and "group /: attributes differ" in result.output


def test_an_output_that_is_no_zarr_store_keeps_its_mark_file(tmp_path: Path) -> None:
    source = tmp_path / "src.zarr"
    build_store(str(source))
    target = tmp_path / "counts"
    for extra in ([], ["--overwrite"]):
        result = run(["stats", str(source), "--output", str(target), "--format", "tsv", *extra])
        assert result.exit_code == 0, result.output
        doc = json.loads((target / MARKER).read_text())
        assert (doc["command"], doc["source"]) == ("stats --output", str(source))
        assert read_mark(target) == doc


@pytest.mark.parametrize("fmt", [2, 3])
def test_a_copy_does_not_inherit_the_mark_of_its_source(fmt: int, tmp_path: Path) -> None:
    """A rechunk of a marked store into a mapping (no mark of its own) carries the
    source's root attributes less its mark, in the same format or the other one."""
    source = tmp_path / "src.zarr"
    build_store(str(source))
    marked = tmp_path / "marked.zarr"
    assert run(_writes(source, marked, "rechunk", 2)).exit_code == 0
    target = zarr.MemoryStore()
    rechunk(str(marked), target, chunks="50,7,2", max_mem="100MB", zarr_format=fmt)
    root = json.loads(target["zarr.json" if fmt == 3 else ".zattrs"])
    attrs = root["attributes"] if fmt == 3 else root
    assert attrs == {"description": "test store"}


def test_write_mark_by_what_the_directory_holds(tmp_path: Path) -> None:
    """A format-2 store: the root ``.zattrs`` (created when absent) and its entry in
    ``.zmetadata``; a format-3 store: the root ``zarr.json``'s attributes, consolidated
    metadata untouched; anything else: the file."""
    v2 = tmp_path / "v2"
    root = zarr.open_group(str(v2), mode="w")
    root.create_dataset("x", data=np.arange(4), chunks=2)
    zarr.consolidate_metadata(str(v2))
    assert not (v2 / ".zattrs").exists()
    write_mark(v2, "rechunk", "s")
    assert json.loads((v2 / ".zattrs").read_text()) == {
        MARK_ATTR: {"command": "rechunk", "version": __version__, "source": "s"}
    }
    assert consolidated_mismatches(zarr.DirectoryStore(str(v2))) == []
    assert sorted(os.listdir(v2)) == [".zattrs", ".zgroup", ".zmetadata", "x"]

    v3 = tmp_path / "v3"
    v3.mkdir()
    document = {
        "attributes": {"a": 1},
        "zarr_format": 3,
        "consolidated_metadata": {"kind": "inline", "must_understand": False, "metadata": {}},
        "node_type": "group",
    }
    (v3 / "zarr.json").write_text(json.dumps(document))
    write_mark(v3, "recompress", None)
    written = json.loads((v3 / "zarr.json").read_text())
    assert written.pop("attributes") == {
        "a": 1,
        MARK_ATTR: {"command": "recompress", "version": __version__, "source": None},
    }
    assert written == {k: v for k, v in document.items() if k != "attributes"}
    assert os.listdir(v3) == ["zarr.json"]

    other = tmp_path / "other"
    other.mkdir()
    (other / "variants.tsv").write_text("x\n")
    write_mark(other, "stats --output", "s")
    assert sorted(os.listdir(other)) == [MARKER, "variants.tsv"]
    assert written_by(other) == "stats --output"


def test_read_mark_trusts_no_document(tmp_path: Path) -> None:
    """A mark is read from the root attributes, else from the file; a document that is no
    JSON object, too large, a FIFO, or a mark naming no command is no mark."""
    store = tmp_path / "s"
    zarr.open_group(str(store), mode="w")
    assert read_mark(store) is None
    mark = {"command": "rechunk", "version": "x", "source": None}
    for attrs, expected in (
        ({MARK_ATTR: mark}, mark),
        ({MARK_ATTR: "rechunk"}, None),
        ({MARK_ATTR: {"command": 3}}, None),
        ({"other": 1}, None),
    ):
        (store / ".zattrs").write_text(json.dumps(attrs))
        assert read_mark(store) == expected
    (store / ".zattrs").write_text("[1, 2")
    assert read_mark(store) is None
    # The attribute wins over a file; the file is read when the attributes say nothing.
    (store / MARKER).write_text(json.dumps({"command": "recompress"}))
    assert written_by(store) == "recompress"
    (store / ".zattrs").write_text(json.dumps({MARK_ATTR: mark}))
    assert written_by(store) == "rechunk"
    (store / ".zattrs").unlink()
    os.mkfifo(store / ".zattrs")  # read, it would block forever
    assert written_by(store) == "recompress"
    (store / MARKER).write_bytes(b" " * (64 * 1024 + 1))
    assert written_by(store) is None


def test_unmarked_drops_the_mark_from_root_documents_only() -> None:
    mark = {"command": "rechunk"}
    zattrs = json.dumps({"a": 1, MARK_ATTR: mark}).encode()
    assert json.loads(unmarked(".zattrs", zattrs, "w")) == {"a": 1}
    zarr_json = json.dumps({"attributes": {MARK_ATTR: mark}, "node_type": "group"}).encode()
    assert json.loads(unmarked("zarr.json", zarr_json, "w")) == {
        "attributes": {},
        "node_type": "group",
    }
    consolidated = {"metadata": {".zattrs": {MARK_ATTR: mark}, "x/.zattrs": {MARK_ATTR: 1}}}
    assert json.loads(unmarked(".zmetadata", json.dumps(consolidated).encode(), "w")) == {
        "metadata": {".zattrs": {}, "x/.zattrs": {MARK_ATTR: 1}}
    }
    for key, data in (("x/.zattrs", zattrs), (".zattrs", b'{"a": 1}'), ("x/zarr.json", zarr_json)):
        assert unmarked(key, data, "w") is data  # the same bytes, not parsed again
