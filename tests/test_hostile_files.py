"""Chunk and metadata paths that are not regular files, or are larger than any chunk may be:
refused before a byte is read, never a hang or a memory bomb."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hostile import Tree, assert_refused, run_cli

from conftest import build_store
from zarrgeno.errors import BadDataError
from zarrgeno.io.bounded import read_bounded
from zarrgeno.io.chunks import ChunkLayout, read_raw
from zarrgeno.io.store import StoreRef

pytestmark = pytest.mark.hostile

CHUNK = "2L/calldata/GT/0.0.0"
COMMANDS = {
    "stats": ["stats", "{src}"],
    "verify": ["verify", "{src}"],
    "rechunk": ["rechunk", "{src}", "{out}", "--chunks", "600,7,2"],
    "recompress": ["recompress", "{src}", "{out}", "--compressor", "zstd:3"],
}


def _store(tmp_path: Path, damage: str) -> Path:
    src = tmp_path / "src.zarr"
    build_store(str(src))
    chunk = src / CHUNK
    chunk.unlink()
    if damage == "fifo":
        os.mkfifo(chunk)
    elif damage == "device":
        chunk.symlink_to("/dev/zero")
    else:  # a file far larger than any chunk of this array may be
        with open(chunk, "wb") as f:
            f.truncate(64 << 20)  # sparse: 64 MiB, far past what a chunk here may hold
    return src


@pytest.mark.parametrize("damage", ["fifo", "device", "huge"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_chunk_that_is_no_regular_file_is_refused_without_reading_it(
    tmp_path: Path, damage: str, command: str
) -> None:
    src = _store(tmp_path, damage)
    source = Tree(src)
    args = [a.format(src=src, out=tmp_path / "out.zarr") for a in COMMANDS[command]]
    result = run_cli(*args, timeout=60)
    says = {"fifo": "is a FIFO", "device": "is a character device", "huge": "holds more than"}
    if command == "verify":  # verify lists every bad chunk, then says how many
        assert result.code == 4 and says[damage] in result.out, str(result)
        assert "Traceback" not in result.err and result.peak_rss_mb < 300, str(result)
    else:
        assert_refused(result, 4, says=(CHUNK, says[damage]))
    source.assert_unchanged()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.zarr"]  # no staging left


def test_read_bounded_refuses_a_fifo_and_a_file_past_its_limit(tmp_path: Path) -> None:
    src = _store(tmp_path, "fifo")
    store = StoreRef.from_source(str(src)).mapping_store()
    with pytest.raises(BadDataError, match="is a FIFO"):
        read_bounded(store, CHUNK, 1000)
    with pytest.raises(BadDataError, match="holds more than 10 bytes"):
        read_bounded(store, "2L/calldata/GT/.zarray", 10)
    with pytest.raises(KeyError):
        read_bounded(store, "2L/calldata/GT/9.0.0", 1000)
    assert read_bounded(store, "2L/calldata/GT/.zarray", 10_000).startswith(b"{")


def test_read_raw_stops_at_the_layouts_cap(tmp_path: Path) -> None:
    src = _store(tmp_path, "huge")
    group = StoreRef.from_source(str(src)).open()
    layout = ChunkLayout.of(group["2L/calldata/GT"])
    assert layout.raw_cap < 1 << 20
    for reuse in (False, True):
        with pytest.raises(BadDataError, match="holds more than"):
            read_raw(group.chunk_store or group.store, CHUNK, limit=layout.raw_cap, reuse=reuse)
