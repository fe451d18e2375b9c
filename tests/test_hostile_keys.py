"""Keys that lead out of a store, and zip archives that escape, hang or bomb, met as a user
meets them: the command runs as a process, is refused with exit 4 and one line naming the
store and the key, and leaves the source, and canary files beside the target, as they were.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
import zarr
from hostile import Result, Tree, assert_refused, run_cli
from httpserver import StoreServer
from test_zipstore import CHUNK, add_entry, break_stream, store_dir, zip_store

from zarrgeno.io.writing import MARKER

COMMANDS = {
    "info": ["info", "{src}"],
    "stats": ["stats", "{src}"],
    "verify": ["verify", "{src}"],
    "rechunk": ["rechunk", "{src}", "{out}", "--chunks", "600,7,2", "--max-mem", "200MB"],
    "recompress": ["recompress", "{src}", "{out}", "--compressor", "zstd:3"],
    "consolidate": ["consolidate", "{src}"],
}
ZIP_COMMANDS = ["info", "stats", "verify", "rechunk", "recompress"]
#: Zip entry names that are no safe store key, as a hostile archive holds them.
SLIPS = ["../victim", "../../ESCAPED", "/abs", "a\\b", "a\x00b", "./x", "a//b"]
BOMB_BYTES = 512 << 20


def _workplace(tmp_path: Path) -> Path:
    """``tmp/a/work``, where the source and the target live, with canaries beside them:
    ``../victim`` from the target's staging directory is ``work/victim``, a directory."""
    work = tmp_path / "a" / "work"
    (work / "victim").mkdir(parents=True)
    (work / "victim" / "keep.txt").write_text("keep")
    (work / "canary.txt").write_text("canary")
    return work


def _args(command: str, src: Path) -> list[str]:
    return [a.format(src=src, out=src.parent / "out.zarr") for a in COMMANDS[command]]


def _run(command: str, src: Path) -> Result:
    return run_cli(*_args(command, src), timeout=60)


def _refused_untouched(root: Path, command: str, src: Path, says: str) -> None:
    """``command`` on ``src`` exits 4 with one line saying ``says``; nothing under ``root``
    (the source, the canaries, where a target or an escaped file would land) changed."""
    before = Tree(root)
    assert_refused(_run(command, src), 4, says=says)
    before.assert_unchanged()


@pytest.mark.hostile
@pytest.mark.parametrize("name", SLIPS, ids=[repr(n) for n in SLIPS])
@pytest.mark.parametrize("command", ZIP_COMMANDS)
def test_a_zip_entry_that_leaves_the_store_refuses_it_before_anything_is_written(
    tmp_path: Path, command: str, name: str
) -> None:
    work = _workplace(tmp_path)
    src = zip_store(store_dir(tmp_path / "src.zarr"), work / "src.zip", extra=[(name, b"hostile")])
    shutil.rmtree(tmp_path / "src.zarr")
    _refused_untouched(tmp_path, command, src, f"{src}: unsafe zip entry {name!r}")


@pytest.mark.hostile
@pytest.mark.parametrize("key", ["../outside", "/outside", "out\\side"])
@pytest.mark.parametrize("command", ["info", "stats", "rechunk"])
def test_consolidated_metadata_naming_an_array_outside_the_store_is_refused(
    tmp_path: Path, command: str, key: str
) -> None:
    work = _workplace(tmp_path)
    src = store_dir(work / "src.zarr")
    doc = json.loads((src / ".zmetadata").read_text())
    meta = doc["metadata"]
    meta[f"{key}/.zgroup"] = meta[f"{key}/calldata/.zgroup"] = {"zarr_format": 2}
    meta[f"{key}/calldata/GT/.zarray"] = meta["2L/calldata/GT/.zarray"]
    (src / ".zmetadata").write_text(json.dumps(doc))
    says = f"{src}: unsafe .zmetadata key {key + '/.zgroup'!r}"
    _refused_untouched(tmp_path, command, src, says)


@pytest.mark.hostile
@pytest.mark.parametrize("command", ["info", "rechunk", "consolidate"])
def test_a_directory_store_with_a_backslash_name_is_refused(tmp_path: Path, command: str) -> None:
    """A backslash is a plain character on Linux and a separator on Windows."""
    work = _workplace(tmp_path)
    src = store_dir(work / "src.zarr")
    (src / "2L" / "odd\\name").write_text("x")
    _refused_untouched(tmp_path, command, src, f"{src}: unsafe key '2L/odd\\\\name'")


@pytest.mark.hostile
def test_a_backslash_name_inside_an_array_copied_raw_is_refused(tmp_path: Path) -> None:
    """Keys no metadata walk lists are checked by the raw copy, before it writes one."""
    work = _workplace(tmp_path)
    src = store_dir(work / "src.zarr")
    (src / "samples" / "odd\\name").write_text("x")
    _refused_untouched(tmp_path, "rechunk", src, f"{src}: unsafe key 'samples/odd\\\\name'")


@pytest.mark.hostile
@pytest.mark.parametrize(
    "key", ["../x", "/abs", "a\x00b", "C:/x", "./x"], ids=["dotdot", "abs", "nul", "drive", "dot"]
)
def test_download_refuses_an_unsafe_key_of_consolidated_metadata(tmp_path: Path, key: str) -> None:
    served = tmp_path / "srv"
    src = store_dir(served / "store.zarr")
    doc = json.loads((src / ".zmetadata").read_text())
    doc["metadata"][f"{key}/.zattrs"] = {}
    (src / ".zmetadata").write_text(json.dumps(doc))
    (tmp_path / "canary.txt").write_text("canary")
    before = Tree(tmp_path)
    with StoreServer(served) as server:
        url = server.url("store.zarr")
        result = run_cli("download", url, tmp_path / "m", "--retries", "0")
    assert_refused(result, 4, says=(f"{url}: unsafe key {key + '/.zattrs'!r}",))
    before.assert_unchanged()


@pytest.mark.hostile
def test_download_refuses_a_listed_file_with_a_backslash(tmp_path: Path) -> None:
    src = store_dir(tmp_path / "store.zarr")
    (src / "2L" / "odd\\name").write_text("x")
    before = Tree(tmp_path)
    result = run_cli("download", f"file://{src}", tmp_path / "m")
    assert_refused(result, 4, says=(f"file://{src}: unsafe key '2L/odd\\\\name'",))
    before.assert_unchanged()


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small store as a directory; every archive below is made from it."""
    return store_dir(tmp_path_factory.mktemp("clean") / "src.zarr")


@pytest.fixture(scope="module")
def bombs(clean: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Archives whose genotype chunk, samples chunk or consolidated metadata inflates to
    512 MiB (its header honest, or claiming 4000 bytes), or fails its CRC or its deflate
    stream."""
    out = tmp_path_factory.mktemp("bombs")
    made = {}
    for kind, key in [
        ("gt-bomb", CHUNK),
        ("gt-lying", CHUNK),
        ("samples-bomb", "samples/0"),
        ("meta-bomb", ".zmetadata"),
        ("bad-crc", CHUNK),
        ("broken", CHUNK),
    ]:
        archive = zip_store(clean, out / f"{kind}.zip", skip=[key])
        data = (clean / key).read_bytes()
        if kind.endswith("bomb"):
            add_entry(archive, key, zeros=BOMB_BYTES)
        elif kind == "gt-lying":
            add_entry(archive, key, zeros=BOMB_BYTES, file_size=4000)
        else:
            add_entry(archive, key, data=bytes(range(256)) * 40 + data, bad_crc=kind == "bad-crc")
            if kind == "broken":
                break_stream(archive, key)
        made[kind] = archive
    assert made["gt-bomb"].stat().st_size < 2 << 20
    return made


BOMB_CASES = [
    ("gt-bomb", "stats", "holds more than"),
    ("gt-bomb", "verify", "holds more than"),
    ("gt-bomb", "rechunk", "holds more than"),
    ("gt-bomb", "recompress", "holds more than"),
    ("gt-lying", "stats", "fails its CRC-32 check"),
    ("gt-lying", "rechunk", "fails its CRC-32 check"),
    ("samples-bomb", "stats", "holds more than"),
    ("samples-bomb", "rechunk", "holds more than"),
    ("meta-bomb", "info", "holds more than 67,108,864 bytes"),
    ("bad-crc", "stats", "fails its CRC-32 check"),
    ("bad-crc", "verify", "fails its CRC-32 check"),
    ("bad-crc", "rechunk", "fails its CRC-32 check"),
    ("broken", "stats", "is corrupt"),
    ("broken", "verify", "is corrupt"),
]


@pytest.mark.hostile
@pytest.mark.parametrize(("kind", "command", "says"), BOMB_CASES)
def test_a_zip_entry_that_inflates_past_its_chunk_or_fails_its_crc_is_refused(
    bombs: dict[str, Path], tmp_path: Path, kind: str, command: str, says: str
) -> None:
    work = _workplace(tmp_path)
    src = shutil.copy(bombs[kind], work / "src.zip")
    key = {"samples-bomb": "samples/0", "meta-bomb": ".zmetadata"}.get(kind, CHUNK)
    before = Tree(tmp_path)
    result = _run(command, Path(src))
    if command == "verify":  # verify lists every bad chunk, then says how many
        assert result.code == 4 and f"zip entry {key} {says}" in result.out, str(result)
        assert "Traceback" not in result.err and result.peak_rss_mb < 300, str(result)
    else:
        assert_refused(result, 4, says=f"zip entry {key} {says}")
    before.assert_unchanged()


def _zip_r(src: Path, out: Path) -> Path:
    """The archive ``zip -r`` makes (directory entries, deflate); shutil's alike without it."""
    if shutil.which("zip"):
        subprocess.run(["zip", "-qr", str(out), "."], cwd=src, check=True)
    else:
        shutil.make_archive(str(out.with_suffix("")), "zip", root_dir=src)
    assert "2L/calldata/" in zipfile.ZipFile(out).namelist()
    return out


@pytest.mark.parametrize("backend", ["dask", "distributed"])
@pytest.mark.parametrize("command", ["rechunk", "recompress"])
def test_a_zip_made_by_zip_r_rewrites_and_verifies_against_its_source(
    clean: Path, tmp_path: Path, command: str, backend: str
) -> None:
    src = _zip_r(clean, tmp_path / "src.zip")
    out = tmp_path / "out.zarr"
    result = run_cli(*_args(command, src), "--backend", backend, timeout=180)
    assert result.code == 0, str(result)
    names = {p.name for p in out.iterdir()} - {MARKER}  # the mark of the writing command
    assert names == {p.name for p in clean.iterdir()}  # no directory entry became a key
    check = run_cli("verify", src, out)
    assert check.code == 0 and "identical" in check.out, str(check)
    assert zarr.open_consolidated(str(out))["samples"][:].tolist() == [
        f"S{i:03d}".encode() for i in range(7)
    ]


def test_stats_on_a_zip_store_count_as_on_its_directory(clean: Path, tmp_path: Path) -> None:
    """Worker processes open the archive from its reference and read it as the parent does."""
    src = _zip_r(clean, tmp_path / "src.zip")
    want = run_cli("stats", clean, "--json", "--backend", "sequential")
    assert want.code == 0, str(want)
    for backend in ("threads", "multiprocessing"):
        got = run_cli("stats", src, "--json", "--backend", backend, timeout=120)
        assert got.code == 0, str(got)
        assert json.loads(got.out)["contigs"] == json.loads(want.out)["contigs"]
