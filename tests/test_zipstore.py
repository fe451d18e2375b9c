"""zarrgeno's read-only zip store and the one rule for store keys, unit by unit.

The helpers here also build the hostile archives of tests/test_hostile_keys.py: a store
directory zipped with extra entries (names zipfile will not write, such as one holding a
NUL, are patched into the bytes), entries that inflate far past their size, and entries
with a bad CRC or a broken deflate stream.
"""

from __future__ import annotations

import os
import pickle
import re
import struct
import threading
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
import zarr
from hostile import Tree
from hypothesis import given
from hypothesis import strategies as st

from conftest import build_store
from zarrgeno.errors import BadDataError, UsageError
from zarrgeno.io.chunks import ChunkLayout
from zarrgeno.io.keys import check_tree, key_problem
from zarrgeno.io.store import StoreRef
from zarrgeno.io.validation import validate_store
from zarrgeno.io.zipstore import ZipStore
from zarrgeno.rewrite.execute import copy_other_keys

CHUNK = "2L/calldata/GT/0.0.0"
#: Stand-in written for a name zipfile will not write, then patched (same length).
_NUL_STAND_IN = "\x01"


def store_dir(path: Path) -> Path:
    """The small two-contig store of conftest, with consolidated metadata."""
    build_store(str(path))
    zarr.consolidate_metadata(str(path))
    return path


def zip_store(
    src: Path,
    out: Path,
    *,
    extra: Iterable[tuple[str, bytes]] = (),
    skip: Iterable[str] = (),
    compression: int = zipfile.ZIP_STORED,
) -> Path:
    """Zip the files of the store directory ``src`` into ``out`` by their keys, leaving out
    ``skip``, then add ``extra`` entries (a name may hold a NUL character)."""
    skipped = set(skip)
    patches = []
    with zipfile.ZipFile(out, "w", compression=compression) as zf:
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            key = path.relative_to(src).as_posix()
            if key not in skipped:
                zf.write(path, key)
        for name, data in extra:
            if "\x00" in name:  # zipfile cuts a name at NUL: write a stand-in, patch it below
                patches.append(name)
                name = name.replace("\x00", _NUL_STAND_IN)
            zf.writestr(name, data)
    raw = out.read_bytes()
    for name in patches:
        stand_in = name.replace("\x00", _NUL_STAND_IN).encode()
        assert raw.count(stand_in) == 2  # the local header and the central directory
        raw = raw.replace(stand_in, name.encode())
    out.write_bytes(raw)
    return out


def add_entry(
    archive: Path,
    name: str,
    *,
    data: bytes = b"",
    zeros: int = 0,
    file_size: int | None = None,
    bad_crc: bool = False,
) -> None:
    """Append a deflated entry of ``data`` then ``zeros`` zero bytes (written in blocks, so a
    bomb never sits in memory); ``file_size`` and ``bad_crc`` make its central directory
    record lie about its size or checksum."""
    with zipfile.ZipFile(archive, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open(name, "w", force_zip64=True) as f:
            f.write(data)
            block = bytes(1 << 20)
            for start in range(0, zeros, len(block)):
                f.write(block[: min(len(block), zeros - start)])
        info = zf.filelist[-1]
        if file_size is not None:
            info.file_size = file_size
        if bad_crc:
            info.CRC ^= 0xFFFF


def break_stream(archive: Path, name: str) -> None:
    """Make entry ``name``'s deflate stream start with a block of the reserved type."""
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(name)
    with open(archive, "r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", f.read(4))
        f.seek(info.header_offset + 30 + name_len + extra_len)
        f.write(b"\xff")


@pytest.fixture
def src(tmp_path: Path) -> Path:
    return store_dir(tmp_path / "src.zarr")


# -- the rule -------------------------------------------------------------------------

SAFE = ["2L/calldata/GT/0.0.0", ".zattrs", "a/b.c", "x..y", "run::2/.zgroup", "2L/C:x", "é/ü"]
UNSAFE = {
    "": "it is empty",
    "../victim": "it has a '..' segment",
    "../../ESCAPED": "it has a '..' segment",
    "2L/../../x": "it has a '..' segment",
    "./x": "it has a '.' segment",
    "/abs": "it is an absolute path",
    "a//b": "it has an empty segment",
    "a/": "it has an empty segment",
    "a\\b": "it holds a backslash",
    "a\x00b": "it holds a NUL character",
    "C:/x": "it starts with a drive letter",
    "c:x": "it starts with a drive letter",
}


@pytest.mark.parametrize("key", SAFE)
def test_safe_keys_pass_the_rule(key: str) -> None:
    assert key_problem(key) is None


@pytest.mark.parametrize(("key", "problem"), sorted(UNSAFE.items()))
def test_unsafe_keys_are_named_with_why(key: str, problem: str) -> None:
    assert key_problem(key) == problem


def test_a_key_that_is_also_a_directory_is_refused() -> None:
    assert check_tree(["a/b", "c"], "s") == {"a/b", "c"}
    with pytest.raises(BadDataError, match="s: key 'a' is both a file and the directory"):
        check_tree(["a", "a/b/c"], "s")


@given(
    path=st.lists(st.from_regex(r"[A-Za-z0-9_]{1,8}", fullmatch=True), min_size=1, max_size=4),
    index=st.lists(st.integers(0, 10**6), max_size=4),
    separator=st.sampled_from([".", "/"]),
    prefix=st.sampled_from(["", "c"]),
)
def test_chunk_keys_stay_inside_the_store(
    path: list[str], index: list[int], separator: str, prefix: str
) -> None:
    """Every separator validation lets through builds chunk keys that pass the rule."""
    layout = ChunkLayout(
        path="/".join(path),
        shape=tuple(1 for _ in index),
        chunks=tuple(1 for _ in index),
        dtype=np.dtype("i1"),
        compressor=None,
        filters=(),
        fill_value=0,
        separator=separator,
        key_prefix=prefix,
    )
    assert key_problem(layout.key(index)) is None


@pytest.mark.hostile
@pytest.mark.timeout(30)
def test_a_store_without_listdir_holding_an_absolute_key_is_refused_not_walked_forever() -> None:
    store = {".zgroup": b'{"zarr_format": 2}', "/abs": b"x"}
    with pytest.raises(BadDataError, match="s: unsafe key '/abs': it is an absolute path"):
        validate_store(store, "s")


# -- the zip store ----------------------------------------------------------------------


def test_it_reads_as_zarrs_own_zip_store(src: Path, tmp_path: Path) -> None:
    archive = zip_store(src, tmp_path / "s.zip")
    ours, theirs = ZipStore(archive), zarr.storage.ZipStore(str(archive), mode="r")
    assert list(ours) == theirs.keylist() and len(ours) == len(theirs)
    for path in ["", "2L", "2L/calldata/GT", "samples", "nowhere"]:
        assert ours.listdir(path) == theirs.listdir(path)
        assert ours.getsize(path) == theirs.getsize(path)
    assert all(ours[k] == theirs[k] for k in theirs.keylist())
    assert CHUNK in ours and "2L" not in ours


def test_directory_entries_are_ignored(src: Path, tmp_path: Path) -> None:
    archive = zip_store(src, tmp_path / "s.zip", extra=[("2L/", b""), ("2L/calldata/", b"")])
    store = ZipStore(archive)
    assert "2L/" not in store and not any(k.endswith("/") for k in store)
    assert store.listdir("2L") == [".zgroup", "calldata"]
    assert store.listdir("") == ZipStore(zip_store(src, tmp_path / "plain.zip")).listdir("")


@pytest.mark.hostile
@pytest.mark.parametrize(
    "name", ["../victim", "/abs", "a\\b", "a\x00b", "./x", "a//b", "C:/x", "../", "//"]
)
def test_an_unsafe_entry_name_refuses_the_archive_by_name(
    src: Path, tmp_path: Path, name: str
) -> None:
    archive = zip_store(src, tmp_path / "s.zip", extra=[(name, b"x")])
    with pytest.raises(BadDataError, match=r"s\.zip: unsafe zip entry ") as raised:
        ZipStore(archive, name="s.zip")
    assert repr(name) in str(raised.value)


@pytest.mark.hostile
def test_a_file_entry_that_is_also_a_directory_is_refused(src: Path, tmp_path: Path) -> None:
    archive = zip_store(src, tmp_path / "s.zip", extra=[("2L/calldata/GT/0.0.0/x", b"x")])
    with pytest.raises(BadDataError, match=re.escape(f"zip entry '{CHUNK}' is both a file")):
        ZipStore(archive)


def test_a_name_written_twice_reads_as_its_last_entry(src: Path, tmp_path: Path) -> None:
    archive = zip_store(src, tmp_path / "s.zip")
    with pytest.warns(UserWarning, match="Duplicate name"):
        add_entry(archive, ".zattrs", data=b'{"v": 3}')
    assert ZipStore(archive)[".zattrs"] == b'{"v": 3}'


@pytest.mark.hostile
def test_read_bounded_inflates_no_more_than_its_limit(src: Path, tmp_path: Path) -> None:
    archive = zip_store(src, tmp_path / "s.zip", skip=[CHUNK, "2L/calldata/GT/1.0.0"])
    add_entry(archive, CHUNK, zeros=64 << 20)  # honest header: refused before inflating
    add_entry(archive, "2L/calldata/GT/1.0.0", zeros=64 << 20, file_size=4000)  # it lies
    store = ZipStore(archive, name="s.zip")
    too_big = re.escape(f"s.zip: zip entry {CHUNK} holds more than 1,000 bytes")
    with pytest.raises(BadDataError, match=too_big):
        store.read_bounded(CHUNK, 1000)
    lying = re.escape("zip entry 2L/calldata/GT/1.0.0 fails its CRC-32 check")
    with pytest.raises(BadDataError, match=lying):
        store.read_bounded("2L/calldata/GT/1.0.0", 10_000)  # inflated 4000 bytes, CRC fails
    assert len(store.read_bounded(CHUNK, 64 << 20)) == 64 << 20
    with pytest.raises(KeyError):
        store.read_bounded("2L/calldata/GT/9.0.0", 1000)


@pytest.mark.hostile
def test_a_bad_crc_or_a_broken_stream_is_bad_data_naming_the_entry(
    src: Path, tmp_path: Path
) -> None:
    data = (src / CHUNK).read_bytes()
    crc = zip_store(src, tmp_path / "crc.zip", skip=[CHUNK])
    add_entry(crc, CHUNK, data=data * 50, bad_crc=True)
    broken = zip_store(src, tmp_path / "broken.zip", skip=[CHUNK])
    add_entry(broken, CHUNK, data=data * 50)
    break_stream(broken, CHUNK)
    with pytest.raises(BadDataError, match=re.escape(f"zip entry {CHUNK} fails its CRC-32")):
        ZipStore(crc)[CHUNK]
    inflate = re.escape(f"zip entry {CHUNK} is corrupt (cannot inflate: Error -3")
    with pytest.raises(BadDataError, match=inflate):
        ZipStore(broken)[CHUNK]


@pytest.mark.hostile
def test_an_unsupported_method_or_encryption_is_bad_data(src: Path, tmp_path: Path) -> None:
    archive = zip_store(src, tmp_path / "s.zip", extra=[("x/y", b"payload")])
    store = ZipStore(archive)
    store._entries["x/y"].compress_type = 99  # as read from a crafted central directory
    with pytest.raises(BadDataError, match=r"zip entry x/y is corrupt \(NotImplementedError"):
        store["x/y"]
    store._entries["x/y"].flag_bits |= 0x1
    with pytest.raises(BadDataError, match="zip entry x/y is encrypted"):
        store["x/y"]


def test_it_never_writes(src: Path, tmp_path: Path) -> None:
    archive = zip_store(src, tmp_path / "s.zip")
    before = Tree(tmp_path / "s.zip"), archive.stat().st_mtime_ns
    store = ZipStore(archive)
    for call in (lambda: store.__setitem__("k", b"v"), lambda: store.__delitem__(CHUNK)):
        with pytest.raises(UsageError, match="cannot be changed in place"):
            call()
    zarr.open_consolidated(store, mode="r")
    list(store.items())
    store.close()
    before[0].assert_unchanged()
    assert archive.stat().st_mtime_ns == before[1]


def test_it_pickles_as_its_path_and_compares_by_path(src: Path, tmp_path: Path) -> None:
    store = ZipStore(zip_store(src, tmp_path / "s.zip"), name="s.zip")
    assert len(pickle.dumps(store)) < 500
    copy = pickle.loads(pickle.dumps(store))
    assert copy == store and hash(copy) == hash(store) and copy.name == "s.zip"
    assert copy[CHUNK] == store[CHUNK] == (src / CHUNK).read_bytes()
    other = ZipStore(zip_store(src, tmp_path / "t.zip"))
    assert other != store  # the same keys and bytes, but another file
    ref = StoreRef.from_source(str(tmp_path / "s.zip"))
    assert isinstance(pickle.loads(pickle.dumps(ref)).mapping_store(), ZipStore)


def test_a_forked_process_reopens_the_archive(src: Path, tmp_path: Path) -> None:
    store = ZipStore(zip_store(src, tmp_path / "s.zip"))
    first = store._zip
    store._pid = -1  # as a forked child sees it
    assert store[CHUNK] == (src / CHUNK).read_bytes()
    assert store._zip is not first and store._pid == os.getpid()


def test_threads_read_concurrently(src: Path, tmp_path: Path) -> None:
    """16 threads read every entry of a deflated archive 10 times over one handle."""
    archive = zip_store(src, tmp_path / "s.zip", compression=zipfile.ZIP_DEFLATED)
    for i in range(8):
        add_entry(archive, f"big/{i}", data=os.urandom(1 << 18) + bytes(1 << 18))
    expected = {k: v for k, v in ZipStore(archive).items()}
    store = ZipStore(archive)
    wrong: list[str] = []

    def read() -> None:
        for _ in range(10):
            wrong.extend(k for k, v in expected.items() if store.read_bounded(k, 1 << 20) != v)

    threads = [threading.Thread(target=read) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong
    assert store._zip._fileRefCnt == 1  # every entry opened was closed


@pytest.mark.hostile
def test_copy_other_keys_refuses_an_unsafe_key_before_writing_any(tmp_path: Path) -> None:
    source = zarr.MemoryStore()
    build_store(source)
    source["../outside"] = b"x"
    target = zarr.DirectoryStore(str(tmp_path / "t"))
    with pytest.raises(BadDataError, match=re.escape("unsafe key '../outside'")):
        copy_other_keys(source, target, exclude=["2L/calldata/GT"])
    assert sorted(os.listdir(tmp_path)) == []


@pytest.mark.hostile
def test_copy_other_keys_writes_only_below_the_target(tmp_path: Path) -> None:
    """A directory of the target that is a symbolic link leads nowhere outside it."""
    source = zarr.MemoryStore()
    build_store(source)
    (tmp_path / "t").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "t" / "X").symlink_to(tmp_path / "elsewhere")
    target = zarr.DirectoryStore(str(tmp_path / "t"))
    with pytest.raises(BadDataError, match=re.escape("key 'X/.zgroup' would be written outside")):
        copy_other_keys(source, target, exclude=["2L/calldata/GT"])
    assert os.listdir(tmp_path / "elsewhere") == []
