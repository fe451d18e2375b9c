"""Zarr format 3 stores read through zarrgeno's own checked path, while zarr stays on 2.18.

A format-3 store (``zarr.json`` per node) is shown to zarr 2.18 as the format-2 store it
is equivalent to: :class:`V3Store` answers ``.zgroup``, ``.zarray`` and ``.zattrs`` from
each node's ``zarr.json`` and maps format-2 chunk keys (``2L/calldata/GT/3.1.0``) to the
store's own (``2L/calldata/GT/c/3/1/0``). Only metadata that has a format-2 equivalent is
accepted, after validation as strict as :mod:`zarrgeno.io.validation`: a regular chunk grid,
``default`` or ``v2`` chunk keys, the ``bytes`` codec (any endianness) or ``vlen-utf8``
for strings, and at most one of ``blosc``, ``zstd``, ``gzip``, optionally inside
``sharding_indexed`` (then the view's chunks are the inner chunks, which
:class:`zarrgeno.io.chunks.ChunkLayout` reads from their shards). Anything else
(``transpose``, ``crc32c`` on chunks, storage transformers, unknown extensions) is refused
by name in one line. Pure apart from reading keys: nothing is ever written.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import numcodecs
import numpy as np
import zarr.storage

from zarrgeno.errors import BadDataError, UsageError
from zarrgeno.io.bounded import read_bounded, too_large
from zarrgeno.io.chunks import ChunkLayout
from zarrgeno.io.shards import ShardSpec, inner_key, is_sharded, parse_sharded
from zarrgeno.io.validation import _listdir, _load, array_meta_problem
from zarrgeno.io.zarr3_meta import (
    KNOWN_GROUP_KEYS,
    V3Array,
    parse_array,
    refuse_unknown,
    where_of,
)

#: The metadata document of every format-3 node.
ZARR_JSON = "zarr.json"
_CHUNK_NAME = re.compile(r"^\d+(\.\d+)*$")


def is_zarr3(store: Mapping[str, bytes]) -> bool:
    """True when the store's root is a format-3 node (``zarr.json``, no ``.zgroup``)."""
    try:
        return ZARR_JSON in store and ".zgroup" not in store and ".zarray" not in store
    except OSError:
        return False


class V3Store(zarr.storage.Store):
    """A read-only format-2 view of a format-3 store, for zarr 2.18 and zarrgeno.

    Metadata keys are answered from each node's ``zarr.json`` (validated when first
    read); chunk keys of the format-2 view are mapped to the store's own, and the store's
    own chunk keys (as :class:`zarrgeno.io.chunks.ChunkLayout` names them) pass through.
    """

    _erasable = False

    def __init__(self, store: Mapping[str, bytes], name: str) -> None:
        self.base = store
        self.name = name
        self._nodes: dict[str, V3Array | dict[str, Any] | None] = {}
        self._shards: dict[str, ShardSpec] = {}
        root = self.node("")
        if not isinstance(root, dict):
            raise BadDataError(f"{name}: the root zarr.json is not a group")

    def node(self, path: str) -> V3Array | dict[str, Any] | None:
        """The node at ``path``: a :class:`V3Array`, a group's attributes, or None."""
        if path in self._nodes:
            return self._nodes[path]
        key = f"{path}/{ZARR_JSON}" if path else ZARR_JSON
        try:
            meta = _load(self.base, key, self.name)  # BadDataError for unreadable or bad JSON
        except KeyError:
            self._nodes[path] = None
            return None
        where = where_of(self.name, path)
        if meta.get("zarr_format") != 3:
            raise BadDataError(f"{where}: zarr.json is not Zarr format 3 metadata")
        kind = meta.get("node_type")
        found: V3Array | dict[str, Any]
        if kind == "array" and is_sharded(meta):
            sharded = parse_sharded(meta, path, self.name)
            found = sharded.inner
            self._shards[path] = sharded.spec
        elif kind == "array":
            found = parse_array(meta, path, self.name)
        elif kind == "group":
            refuse_unknown(meta, KNOWN_GROUP_KEYS, where)
            found = meta.get("attributes", {})
            if not isinstance(found, dict):
                raise BadDataError(f"{where}: attributes must be an object")
        else:
            raise BadDataError(f"{where}: node_type {kind!r} must be array or group")
        self._nodes[path] = found
        return found

    def native_key(self, key: str) -> str:
        """The store's own key for ``key`` of the format-2 view (chunks only; else as is)."""
        parent, _, leaf = key.rpartition("/")
        parts = parent.split("/")
        if "c" in parts and isinstance(self.node("/".join(parts[: parts.index("c")])), V3Array):
            return key  # already the store's own key (default encoding, separator "/")
        if _CHUNK_NAME.match(leaf):
            array = self.node(parent)
            if isinstance(array, V3Array) and len(leaf.split(".")) == max(array.ndim, 1):
                index = tuple(leaf.split(".")) if array.ndim else ()
                spec = self._shards.get(parent)
                if spec is not None:  # an inner chunk: named within its shard, not a key
                    shard, inner = spec.locate([int(i) for i in index])
                    return inner_key(array.native_key(tuple(map(str, shard))), inner)
                return array.native_key(index)
        return key

    def key_encoding(self, path: str) -> tuple[str, str] | None:
        """``(prefix, separator)`` of the array at ``path``'s own chunk keys, or None."""
        array = self.node(path)
        return (array.key_prefix, array.separator) if isinstance(array, V3Array) else None

    def shard_spec(self, path: str) -> ShardSpec | None:
        """The shards of the array at ``path`` (its view's chunks are the inner chunks), or
        None when it is not sharded."""
        self.node(path)
        return self._shards.get(path)

    #: What a store that fetches ahead (a remote one) offers, passed through to it.
    _FETCHING = ("read_ahead", "forget_read_ahead", "abandon", "options")

    def __getattr__(self, name: str) -> Any:
        # Only for names not found otherwise: those of a base store that fetches ahead.
        if name in V3Store._FETCHING:
            base = self.__dict__.get("base")
            if base is not None and hasattr(base, name):
                return getattr(base, name)
        raise AttributeError(name)

    def read_bounded(self, key: str, limit: int) -> bytes | memoryview:
        """``key`` of the view read up to ``limit`` bytes (the protocol of
        :func:`zarrgeno.io.bounded.read_bounded`), from the store's own key."""
        document = self._document(key)
        if document is not None:
            if len(document) > limit:
                raise too_large("metadata", key, limit)
            return document
        return read_bounded(self.base, self.native_key(key), limit)

    def _document(self, key: str) -> bytes | None:
        parent, _, leaf = key.rpartition("/")
        if leaf not in (".zgroup", ".zarray", ".zattrs", ".zmetadata", ZARR_JSON):
            return None
        node = self.node(parent)
        if leaf == ".zgroup" and isinstance(node, dict):
            return json.dumps({"zarr_format": 2}).encode()
        if leaf == ".zarray" and isinstance(node, V3Array):
            return json.dumps(node.zarray).encode()
        if leaf == ".zattrs" and node is not None:
            attrs = node.attributes if isinstance(node, V3Array) else node
            return json.dumps(attrs).encode()
        raise KeyError(key)

    def __getitem__(self, key: str) -> bytes:
        document = self._document(key)
        if document is not None:
            return document
        return self.base[self.native_key(key)]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        try:
            if self._document(key) is not None:
                return True
        except KeyError:
            return False
        return self.native_key(key) in self.base

    def __setitem__(self, key: str, value: Any) -> None:
        raise UsageError(f"{self.name} is a Zarr format 3 store, opened read-only")

    def __delitem__(self, key: str) -> None:
        raise UsageError(f"{self.name} is a Zarr format 3 store, opened read-only")

    def is_writeable(self) -> bool:
        return False

    def listdir(self, path: str = "") -> list[str]:
        """Children of ``path`` in the format-2 view: metadata names, nodes, chunk names."""
        path = path.strip("/")
        node = self.node(path)
        if node is None:
            return []
        if isinstance(node, V3Array):
            return [".zarray", ".zattrs", *sorted(self._chunk_names(node))]
        children = [c for c in _listdir(self.base, path) if c != ZARR_JSON]
        nodes = [c for c in children if self.node(f"{path}/{c}" if path else c) is not None]
        return [".zattrs", ".zgroup", *nodes]

    def _chunk_names(self, array: V3Array) -> Iterator[str]:
        """Every stored chunk of ``array`` as a format-2 name (``3.1.0``), from listings;
        of a sharded array, every inner chunk of each stored shard inside the array (its
        index is not read: an inner chunk the shard left out is counted too)."""
        spec = self._shards.get(array.path)
        if spec is None:
            yield from self._stored_names(array)
            return
        shape = array.zarray["shape"]
        grid = [-(-n // c) for n, c in zip(shape, spec.chunk_shape, strict=True)]
        per = spec.chunks_per_shard
        for name in self._stored_names(array):
            shard = [int(i) for i in name.split(".")] if array.ndim else []
            ranges = [
                range(s * p, min((s + 1) * p, g)) for s, p, g in zip(shard, per, grid, strict=True)
            ]
            for inner in itertools.product(*ranges):
                yield ".".join(str(i) for i in inner)

    def _stored_names(self, array: V3Array) -> Iterator[str]:
        """Every stored chunk (or shard) of ``array`` by its grid index (``3.1.0``)."""
        base = f"{array.path}/" if array.path else ""
        if array.separator == ".":
            prefix = f"{array.key_prefix}." if array.key_prefix else ""
            for leaf in _listdir(self.base, array.path):
                if leaf.startswith(prefix) and _CHUNK_NAME.match(leaf[len(prefix) :]):
                    yield leaf[len(prefix) :]
            return
        start = f"{base}{array.key_prefix}".rstrip("/")
        level: list[tuple[str, tuple[str, ...]]] = [(start, ())]
        for _ in range(max(array.ndim, 1)):
            level = [
                (f"{d}/{c}", (*parts, c))
                for d, parts in level
                for c in _listdir(self.base, d)
                if c.isdigit()
            ]
        for key, parts in level:
            if key in self.base:
                yield ".".join(parts)

    def getsize(self, path: str = "") -> int:
        """Stored bytes of the array at ``path`` (its zarr.json and chunks), or of a key."""
        path = path.strip("/")
        node = self.node(path)
        if not isinstance(node, V3Array):
            return -1
        remote = sys.modules.get("zarrgeno.io.remote")  # its getsize sums a listing, one request
        if remote is not None and isinstance(self.base, remote.RemoteStore):
            return int(self.base.getsize(path))
        keys = [f"{path}/{ZARR_JSON}" if path else ZARR_JSON]
        keys += [
            node.native_key(tuple(c.split(".")) if node.ndim else ())
            for c in self._stored_names(node)
        ]
        sized = getattr(self.base, "getsize", None)
        return sum(sized(k) if sized else len(self.base[k]) for k in keys)

    def __iter__(self) -> Iterator[str]:
        stack = [""]
        while stack:
            path = stack.pop()
            for child in self.listdir(path):
                key = _join(path, child)
                if child.startswith(".") or isinstance(self.node(path), V3Array):
                    yield key
                else:
                    stack.append(key)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def close(self) -> None:
        close = getattr(self.base, "close", None)
        if close is not None:
            close()


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def layout_of_document(meta: dict[str, Any], path: str, name: str) -> ChunkLayout:
    """The chunk layout of a format-3 array document (validated; sharded or not), for
    readers that have the document but no store view (a download's files)."""
    if meta.get("node_type") != "array":
        raise BadDataError(f"{name}/{path}: zarr.json is not an array")
    spec: ShardSpec | None = None
    if is_sharded(meta):
        sharded = parse_sharded(meta, path, name)
        array, spec = sharded.inner, sharded.spec
    else:
        array = parse_array(meta, path, name)
    problem = array_meta_problem(array.zarray)
    if problem is not None:
        raise BadDataError(f"{name}/{path}: {problem}")
    zarray = array.zarray
    compressor = zarray.get("compressor")
    return ChunkLayout(
        path=path,
        shape=tuple(zarray["shape"]),
        chunks=tuple(zarray["chunks"]),
        dtype=np.dtype(zarray["dtype"]),
        compressor=numcodecs.get_codec(dict(compressor)) if compressor else None,
        filters=tuple(numcodecs.get_codec(dict(f)) for f in zarray.get("filters") or ()),
        fill_value=None,
        separator=array.separator,
        key_prefix=array.key_prefix,
        shard=spec,
    )
