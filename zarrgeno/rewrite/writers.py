"""Target arrays and groups in Zarr format 2 or 3: their metadata, and the layout their
chunks (or shards) are written with.

Format 2 arrays are created by zarr 2.18; format 3 documents come from
:func:`zarrgeno.io.zarr3_write.array_document` (chunks are the same bytes, under ``c/``
keys; with shards, ``sharding_indexed`` with a crc32c index, as zarr-python 3 writes).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import numpy as np
import zarr
from numcodecs.abc import Codec

from zarrgeno.io.chunks import ChunkLayout
from zarrgeno.io.compression import OBJECT_CODEC_IDS
from zarrgeno.io.mark import without_mark
from zarrgeno.io.shards import ShardSpec
from zarrgeno.io.zarr3 import ZARR_JSON, V3Store
from zarrgeno.io.zarr3_write import array_document, dumps, group_document


def _filter_args(filters: list[Any]) -> dict[str, Any]:
    """``zarr.create``'s filter arguments: zarr wants an object codec (the first filter of
    an object array) apart, as ``object_codec``, and puts it first again itself."""
    if filters and filters[0].codec_id in OBJECT_CODEC_IDS:
        return {"object_codec": filters[0], "filters": filters[1:] or None}
    return {"filters": filters or None}


def _join(path: str, name: str) -> str:
    return f"{path}/{name}" if path else name


def _v3_fill(value: Any, dtype: np.dtype) -> Any:
    """The fill value zarr-python 3 reads for a format-2 one: null is the dtype's zero
    (the empty string for strings)."""
    if value is not None:
        return value
    return "" if dtype.hasobject else np.zeros((), dtype=dtype).item()


def create_array(
    store: MutableMapping[str, bytes],
    path: str,
    *,
    shape: Sequence[int],
    chunks: Sequence[int],
    dtype: str | np.dtype,
    compressor: Codec | None,
    filters: Sequence[Codec],
    fill_value: Any,
    attributes: Mapping[str, Any],
    zarr_format: int,
    shards: Sequence[int] | None = None,
    separator: str = ".",
) -> ChunkLayout:
    """Write an array's metadata (``.zarray``/``.zattrs``, or ``zarr.json``) and return the
    layout its chunks are written with (its ``shard`` set when sharded)."""
    dtype = np.dtype(dtype)
    if zarr_format == 2:
        dst = zarr.create(
            store=store,
            path=path,
            shape=tuple(shape),
            chunks=tuple(chunks),
            dtype=dtype,
            compressor=compressor,
            **_filter_args(list(filters)),
            fill_value=fill_value,
            order="C",
            dimension_separator=separator,
        )
        dst.attrs.put(dict(attributes))
        return ChunkLayout.of(dst)
    zarray = {
        "shape": list(shape),
        "chunks": list(chunks),
        "dtype": dtype.str,
        "fill_value": fill_value,
        "compressor": compressor,
        "filters": list(filters),
        "order": "C",
    }
    document = array_document(zarray, attributes, shards=shards, where=path)
    store[_join(path, ZARR_JSON)] = dumps(document)
    return ChunkLayout(
        path=path,
        shape=tuple(int(n) for n in shape),
        chunks=tuple(int(c) for c in chunks),
        dtype=dtype,
        compressor=compressor,
        filters=tuple(filters),
        fill_value=_v3_fill(fill_value, dtype),
        separator="/",
        key_prefix="c",
        shard=ShardSpec(tuple(shards), tuple(int(c) for c in chunks)) if shards else None,
    )


def write_groups(
    group: zarr.hierarchy.Group, store: MutableMapping[str, bytes], zarr_format: int
) -> int:
    """Every group of the source ``group`` (the root included) with its attributes, in
    ``zarr_format``: what a copy into another format holds besides its arrays."""
    paths = [""]
    group.visititems(
        lambda name, obj: paths.append(name) if isinstance(obj, zarr.hierarchy.Group) else None
    )
    for path in paths:
        node = group[path] if path else group
        # The mark of the command that wrote the source is not the copy's (zarrgeno.io.mark).
        attrs = node.attrs.asdict() if path else without_mark(node.attrs.asdict())
        if zarr_format == 3:
            store[_join(path, ZARR_JSON)] = dumps(group_document(attrs))
            continue
        store[_join(path, ".zgroup")] = json.dumps({"zarr_format": 2}, indent=4).encode()
        if attrs:
            store[_join(path, ".zattrs")] = json.dumps(attrs, indent=4, sort_keys=True).encode()
    return len(paths)


def open_written(store: MutableMapping[str, bytes], path: str, zarr_format: int) -> zarr.Array:
    """An array just written, opened read-only (a format-3 one through its format-2 view)."""
    if zarr_format == 3:
        view = V3Store(store, "target")
        return zarr.open_array(view, path=path, mode="r", chunk_store=view)
    return zarr.open_array(store, path=path, mode="r")
