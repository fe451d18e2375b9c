"""Write a Zarr format 3 store with zarrgeno's pure modules, for the oracles to read back.

The metadata comes from :func:`zarrgeno.io.zarr3_write.array_document`, each chunk is
encoded with numcodecs (filters, then the compressor: the same bytes as in format 2), and
each shard with :func:`zarrgeno.io.shards.encode_shard_array`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np

from zarrgeno.io.shards import ShardSpec, encode_shard_array
from zarrgeno.io.zarr3_write import array_document, chunk_key, dumps, group_document


def write_group(root: Path, path: str = "", attributes: dict[str, Any] | None = None) -> None:
    node = root / path
    node.mkdir(parents=True, exist_ok=True)
    (node / "zarr.json").write_bytes(dumps(group_document(attributes)))


def write_array(
    root: Path,
    path: str,
    data: np.ndarray,
    chunks: tuple[int, ...],
    *,
    compressor: numcodecs.abc.Codec | None = None,
    fill_value: Any = None,
    attributes: dict[str, Any] | None = None,
    shards: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """Write ``data`` at ``root/path`` (its groups must exist); return its zarr.json."""
    filters = [numcodecs.VLenUTF8()] if data.dtype.hasobject else []
    zarray = {
        "shape": list(data.shape),
        "chunks": list(chunks),
        "dtype": "|O" if data.dtype.hasobject else data.dtype.str,
        "fill_value": fill_value,
        "compressor": compressor,
        "filters": filters,
        "order": "C",
    }
    document = array_document(zarray, attributes, shards=shards, where=path)
    node = root / path
    node.mkdir(parents=True, exist_ok=True)
    (node / "zarr.json").write_bytes(dumps(document))
    fill = document["fill_value"]
    if data.dtype.kind == "S":
        fill = b""  # the document's is base64
    elif data.dtype.kind == "f" and isinstance(fill, str):
        fill = float(fill.replace("Infinity", "inf"))

    def encode(chunk: np.ndarray) -> bytes:
        out: Any = chunk
        for codec in filters:
            out = codec.encode(out)
        if compressor is not None:
            out = compressor.encode(np.ascontiguousarray(out))
        return bytes(memoryview(out).cast("B")) if not isinstance(out, bytes) else out

    grid = shards or chunks
    for index in np.ndindex(*(math.ceil(n / g) for n, g in zip(data.shape, grid, strict=True))):
        block = data[tuple(slice(i * g, (i + 1) * g) for i, g in zip(index, grid, strict=True))]
        if shards is not None:
            raw = encode_shard_array(ShardSpec(tuple(shards), tuple(chunks)), block, encode, fill)
            if raw is None:
                continue
        else:
            full = np.full(chunks, fill, dtype=data.dtype)
            full[tuple(slice(0, n) for n in block.shape)] = block
            raw = encode(full)
        target = node / chunk_key(index)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(raw)
    return document


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
