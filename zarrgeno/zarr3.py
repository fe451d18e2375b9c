"""Zarr format 3 stores read through zarrgeno's own checked path, while zarr stays on 2.18.

A format-3 store (``zarr.json`` per node) is shown to zarr 2.18 as the format-2 store it
is equivalent to: :class:`V3Store` answers ``.zgroup``, ``.zarray`` and ``.zattrs`` from
each node's ``zarr.json`` and maps format-2 chunk keys (``2L/calldata/GT/3.1.0``) to the
store's own (``2L/calldata/GT/c/3/1/0``). Only metadata that has a format-2 equivalent is
accepted, after validation as strict as :mod:`zarrgeno.validation`: a regular chunk grid,
``default`` or ``v2`` chunk keys, the ``bytes`` codec (any endianness) or ``vlen-utf8``
for strings, and at most one of ``blosc``, ``zstd``, ``gzip``. Anything else
(``sharding_indexed``, ``transpose``, ``crc32c``, storage transformers, unknown
extensions) is refused by name in one line. Pure apart from reading keys: nothing is
ever written.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import zarr.storage

from zarrgeno.errors import BadDataError, UsageError
from zarrgeno.validation import _listdir, _load

#: The metadata document of every format-3 node.
ZARR_JSON = "zarr.json"
#: Format-3 data types with a format-2 equivalent (endianness comes from the bytes codec).
DATA_TYPES = {
    **{f"int{8 * n}": f"i{n}" for n in (1, 2, 4, 8)},
    **{f"uint{8 * n}": f"u{n}" for n in (1, 2, 4, 8)},
    **{f"float{8 * n}": f"f{n}" for n in (2, 4, 8)},
    **{f"complex{8 * n}": f"c{n}" for n in (8, 16)},
    "bool": "b1",
}
#: Blosc's shuffle names in format 3 and numbers in numcodecs.
BLOSC_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}
BLOSC_CNAMES = ("lz4", "lz4hc", "blosclz", "zstd", "zlib", "snappy")
COMPRESSORS = ("blosc", "zstd", "gzip")
#: What to tell a user whose store zarrgeno cannot read or copy in format 3.
CONVERT_HINT = (
    "convert it to format 2 with zarr-python 3 (zarr_format=2) or bio2zarr --zarr-format 2"
)
_CHUNK_NAME = re.compile(r"^\d+(\.\d+)*$")
_KNOWN_ARRAY_KEYS = {
    "zarr_format", "node_type", "shape", "data_type", "chunk_grid", "chunk_key_encoding",
    "fill_value", "codecs", "attributes", "dimension_names", "storage_transformers",
}  # fmt: skip
_KNOWN_GROUP_KEYS = {"zarr_format", "node_type", "attributes", "consolidated_metadata"}


def is_zarr3(store: Mapping[str, bytes]) -> bool:
    """True when the store's root is a format-3 node (``zarr.json``, no ``.zgroup``)."""
    try:
        return ZARR_JSON in store and ".zgroup" not in store and ".zarray" not in store
    except OSError:
        return False


@dataclass(frozen=True)
class V3Array:
    """One format-3 array's metadata, validated, with its format-2 equivalent."""

    path: str
    zarray: dict[str, Any]
    attributes: dict[str, Any]
    #: ``"c"`` for the default chunk key encoding, ``""`` for ``v2``.
    key_prefix: str
    separator: str

    @property
    def ndim(self) -> int:
        return len(self.zarray["shape"])

    def native_key(self, index: tuple[str, ...]) -> str:
        """The store key of the chunk at grid ``index`` (decimal strings)."""
        name = self.separator.join(index)
        if self.key_prefix:
            name = self.key_prefix + (self.separator + name if name else "")
        elif not name:
            name = "0"
        return f"{self.path}/{name}" if self.path else name


def _where(name: str, path: str) -> str:
    return f"{name}/{path}" if path else name


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _named(item: Any, where: str, what: str) -> tuple[str, dict[str, Any]]:
    """``{"name": ..., "configuration": {...}}`` (or a bare name) -> ``(name, configuration)``."""
    if isinstance(item, str):
        return item, {}
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise BadDataError(f"{where}: {what} {item!r} is not a named object")
    config = item.get("configuration", {})
    if not isinstance(config, dict):
        raise BadDataError(f"{where}: {what} {item['name']} configuration is not an object")
    return item["name"], config


def _refuse_unknown(meta: dict[str, Any], known: set[str], where: str) -> None:
    """An extension key is acceptable only when it says ``"must_understand": false``."""
    for key, value in meta.items():
        if key in known:
            continue
        if isinstance(value, dict) and value.get("must_understand") is False:
            continue
        raise BadDataError(f"{where}: Zarr format 3 extension {key!r} is not supported")


def _compressor(name: str, config: dict[str, Any], where: str) -> dict[str, Any]:
    """The numcodecs (format 2) configuration of a format-3 compression codec."""
    level = config.get("clevel" if name == "blosc" else "level", 5 if name == "gzip" else 0)
    if not _is_int(level) or not -131072 <= level <= 22:
        raise BadDataError(f"{where}: codec {name} level {level!r} is not an integer level")
    if name == "gzip":
        if not 0 <= level <= 9:
            raise BadDataError(f"{where}: codec gzip level {level} must be 0-9")
        return {"id": "gzip", "level": level}
    if name == "zstd":
        checksum = config.get("checksum", False)
        if not isinstance(checksum, bool):
            raise BadDataError(f"{where}: codec zstd checksum {checksum!r} must be true or false")
        return {"id": "zstd", "level": level, "checksum": checksum}
    cname, shuffle = config.get("cname", "lz4"), config.get("shuffle", "noshuffle")
    blocksize = config.get("blocksize", 0)
    if cname not in BLOSC_CNAMES:
        raise BadDataError(f"{where}: codec blosc cname {cname!r} is not one of Blosc's")
    if shuffle not in BLOSC_SHUFFLE:
        raise BadDataError(f"{where}: codec blosc shuffle {shuffle!r} is not one of Blosc's")
    if not 0 <= level <= 9 or not _is_int(blocksize) or blocksize < 0:
        raise BadDataError(f"{where}: codec blosc clevel or blocksize out of range")
    if "typesize" in config and not (_is_int(config["typesize"]) and config["typesize"] > 0):
        raise BadDataError(f"{where}: codec blosc typesize {config['typesize']!r} is invalid")
    return {
        "id": "blosc",
        "cname": cname,
        "clevel": level,
        "shuffle": BLOSC_SHUFFLE[shuffle],
        "blocksize": blocksize,
    }


def _codecs(codecs: Any, data_type: str, where: str) -> tuple[str, list[Any], Any]:
    """Check the codec pipeline; return ``(dtype, filters, compressor)`` in format-2 terms."""
    if not isinstance(codecs, list) or not codecs:
        raise BadDataError(f"{where}: codecs must be a non-empty list")
    names = [_named(c, where, "codec") for c in codecs]
    first, config = names[0]
    if first == "sharding_indexed":
        raise BadDataError(
            f"{where}: sharded array (codec sharding_indexed) is not supported; {CONVERT_HINT}"
        )
    filters: list[Any] = []
    if data_type == "string":
        if first != "vlen-utf8":
            raise BadDataError(f"{where}: a string array needs codec vlen-utf8, found {first}")
        dtype, filters = "|O", [{"id": "vlen-utf8"}]
    elif first == "bytes":
        endian = config.get("endian", "little")
        if endian not in ("little", "big"):
            raise BadDataError(f"{where}: codec bytes endian {endian!r} must be little or big")
        code = DATA_TYPES[data_type]
        dtype = ("|" if code[1:] == "1" else "<" if endian == "little" else ">") + code
    else:
        raise BadDataError(
            f"{where}: codec {first} is not supported (zarrgeno reads bytes, vlen-utf8, "
            f"{', '.join(COMPRESSORS)}); {CONVERT_HINT}"
        )
    rest = names[1:]
    for name, _ in rest:
        if name not in COMPRESSORS:
            raise BadDataError(
                f"{where}: codec {name} is not supported (zarrgeno reads bytes, vlen-utf8, "
                f"{', '.join(COMPRESSORS)}); {CONVERT_HINT}"
            )
    if len(rest) > 1:
        raise BadDataError(f"{where}: more than one compression codec ({[n for n, _ in rest]})")
    compressor = _compressor(rest[0][0], rest[0][1], where) if rest else None
    return dtype, filters, compressor


def parse_array(meta: dict[str, Any], path: str, name: str) -> V3Array:
    """Validate a format-3 array document; refuse what has no format-2 equivalent."""
    where = _where(name, path)
    _refuse_unknown(meta, _KNOWN_ARRAY_KEYS, where)
    data_type = meta.get("data_type")
    if not isinstance(data_type, str) or (data_type not in DATA_TYPES and data_type != "string"):
        raise BadDataError(f"{where}: data_type {data_type!r} is not supported")
    grid_name, grid = _named(meta.get("chunk_grid"), where, "chunk_grid")
    if grid_name != "regular":
        raise BadDataError(f"{where}: chunk_grid {grid_name!r} is not supported (only regular)")
    shape, chunks = meta.get("shape"), grid.get("chunk_shape")
    if not isinstance(shape, list) or not isinstance(chunks, list):
        raise BadDataError(f"{where}: shape {shape!r} and chunk_shape {chunks!r} must be lists")
    if meta.get("storage_transformers", []) != []:
        raise BadDataError(f"{where}: storage_transformers are not supported; {CONVERT_HINT}")
    encoding, key_config = _named(
        meta.get("chunk_key_encoding", "default"), where, "chunk_key_encoding"
    )
    if encoding not in ("default", "v2"):
        raise BadDataError(f"{where}: chunk_key_encoding {encoding!r} is not supported")
    separator = key_config.get("separator", "/" if encoding == "default" else ".")
    if separator not in ("/", "."):
        raise BadDataError(f"{where}: chunk key separator {separator!r} must be '/' or '.'")
    dtype, filters, compressor = _codecs(meta.get("codecs"), data_type, where)
    fill = meta.get("fill_value")
    if data_type == "string" and not isinstance(fill, str):
        raise BadDataError(f"{where}: fill_value {fill!r} of a string array must be a string")
    if data_type != "string" and not _fill_ok(fill, data_type):
        raise BadDataError(f"{where}: fill_value {fill!r} does not fit data_type {data_type}")
    attributes = meta.get("attributes", {})
    names = meta.get("dimension_names")
    if not isinstance(attributes, dict):
        raise BadDataError(f"{where}: attributes must be an object")
    if names is not None:
        if not isinstance(names, list) or len(names) != len(shape):
            raise BadDataError(f"{where}: dimension_names must list one name per dimension")
        attributes = {"_ARRAY_DIMENSIONS": names, **attributes}
    zarray = {
        "zarr_format": 2,
        "shape": shape,
        "chunks": chunks,
        "dtype": dtype,
        "fill_value": fill,
        "order": "C",
        "filters": filters or None,
        "compressor": compressor,
        "dimension_separator": ".",
    }
    return V3Array(path, zarray, attributes, "c" if encoding == "default" else "", separator)


def _fill_ok(fill: Any, data_type: str) -> bool:
    if data_type == "bool":
        return isinstance(fill, bool)
    if data_type[0] in "iu":
        return _is_int(fill)
    if isinstance(fill, str):
        return fill in ("NaN", "Infinity", "-Infinity") or fill.startswith("0x")
    if data_type.startswith("complex"):
        return isinstance(fill, list) and len(fill) == 2
    return isinstance(fill, int | float) and not isinstance(fill, bool)


class V3Store(zarr.storage.Store):
    """A read-only format-2 view of a format-3 store, for zarr 2.18 and zarrgeno.

    Metadata keys are answered from each node's ``zarr.json`` (validated when first
    read); chunk keys of the format-2 view are mapped to the store's own, and the store's
    own chunk keys (as :class:`zarrgeno.chunkio.ChunkLayout` names them) pass through.
    """

    _erasable = False

    def __init__(self, store: Mapping[str, bytes], name: str) -> None:
        self.base = store
        self.name = name
        self._nodes: dict[str, V3Array | dict[str, Any] | None] = {}
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
        where = _where(self.name, path)
        if meta.get("zarr_format") != 3:
            raise BadDataError(f"{where}: zarr.json is not Zarr format 3 metadata")
        kind = meta.get("node_type")
        found: V3Array | dict[str, Any]
        if kind == "array":
            found = parse_array(meta, path, self.name)
        elif kind == "group":
            _refuse_unknown(meta, _KNOWN_GROUP_KEYS, where)
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
                return array.native_key(tuple(leaf.split(".")) if array.ndim else ())
        return key

    def key_encoding(self, path: str) -> tuple[str, str] | None:
        """``(prefix, separator)`` of the array at ``path``'s own chunk keys, or None."""
        array = self.node(path)
        return (array.key_prefix, array.separator) if isinstance(array, V3Array) else None

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
        """Every stored chunk of ``array`` as a format-2 name (``3.1.0``), from listings."""
        base = f"{array.path}/" if array.path else ""
        if array.separator == ".":
            prefix = f"{array.key_prefix}." if array.key_prefix else ""
            for leaf in _listdir(self.base, array.path):
                if leaf.startswith(prefix) and _CHUNK_NAME.match(leaf[len(prefix) :]):
                    yield leaf[len(prefix) :]
            return
        start = f"{base}{array.key_prefix}".rstrip("/")
        level = [(start, ())]
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
        remote = sys.modules.get("zarrgeno.remote")  # its getsize sums a listing, one request
        if remote is not None and isinstance(self.base, remote.RemoteStore):
            return int(self.base.getsize(path))
        keys = [f"{path}/{ZARR_JSON}" if path else ZARR_JSON]
        keys += [self.native_key(_join(path, c)) for c in self._chunk_names(node)]
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


def format3_refusal(name: str, command: str) -> UsageError:
    """The one-line error of a command that does not take a format-3 store."""
    return UsageError(
        f"{name} is a Zarr format 3 store and `zarrgeno {command}` works on format 2 only; "
        f"{CONVERT_HINT}"
    )


def refuse_zarr3(store: Any, name: str, command: str) -> None:
    """Refuse a format-3 source for a command that copies or rewrites stores, by name."""
    if isinstance(store, V3Store) or (isinstance(store, Mapping) and is_zarr3(store)):
        raise format3_refusal(name, command)
