"""Zarr format 3 array metadata: validated, and translated to its format-2 equivalent.

:func:`parse_array` accepts what format 2 can express (a regular chunk grid, ``default``
or ``v2`` chunk keys, the ``bytes`` codec or ``vlen-utf8`` for strings, at most one of
``blosc``, ``zstd``, ``gzip``; numeric data types, and ``null_terminated_bytes``, numpy's
``|S{n}``) and refuses anything else by name in one line.
:mod:`zarrgeno.io.zarr3` serves the result to zarr 2.18 as a ``.zarray``.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from dataclasses import dataclass
from typing import Any

from zarrgeno.errors import BadDataError

#: Format-3 data types with a format-2 equivalent (endianness comes from the bytes codec).
DATA_TYPES = {
    **{f"int{8 * n}": f"i{n}" for n in (1, 2, 4, 8)},
    **{f"uint{8 * n}": f"u{n}" for n in (1, 2, 4, 8)},
    **{f"float{8 * n}": f"f{n}" for n in (2, 4, 8)},
    **{f"complex{8 * n}": f"c{n}" for n in (8, 16)},
    "bool": "b1",
}
#: zarr-python 3's name for numpy's fixed-length bytes ``|S{n}`` (MalariaGEN's ``|S24``
#: sample names), with ``{"length_bytes": n}``; its fill value is base64, as in format 2.
NULL_TERMINATED_BYTES = "null_terminated_bytes"
#: Blosc's shuffle names in format 3 and numbers in numcodecs.
BLOSC_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}
BLOSC_CNAMES = ("lz4", "lz4hc", "blosclz", "zstd", "zlib", "snappy")
COMPRESSORS = ("blosc", "zstd", "gzip")
#: What to tell a user whose store zarrgeno cannot read or copy in format 3.
CONVERT_HINT = (
    "convert it to format 2 with zarr-python 3 (zarr_format=2) or bio2zarr --zarr-format 2"
)
_KNOWN_ARRAY_KEYS = {
    "zarr_format", "node_type", "shape", "data_type", "chunk_grid", "chunk_key_encoding",
    "fill_value", "codecs", "attributes", "dimension_names", "storage_transformers",
}  # fmt: skip
KNOWN_GROUP_KEYS = {"zarr_format", "node_type", "attributes", "consolidated_metadata"}


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


def where_of(name: str, path: str) -> str:
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


def refuse_unknown(meta: dict[str, Any], known: set[str], where: str) -> None:
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


def _codecs(codecs: Any, code: str, where: str) -> tuple[str, list[Any], Any]:
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
    if code == "string":
        if first != "vlen-utf8":
            raise BadDataError(f"{where}: a string array needs codec vlen-utf8, found {first}")
        dtype, filters = "|O", [{"id": "vlen-utf8"}]
    elif first == "bytes":
        endian = config.get("endian", "little")
        if endian not in ("little", "big"):
            raise BadDataError(f"{where}: codec bytes endian {endian!r} must be little or big")
        single = code[0] == "S" or code[1:] == "1"  # no byte order
        dtype = ("|" if single else "<" if endian == "little" else ">") + code
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
    where = where_of(name, path)
    refuse_unknown(meta, _KNOWN_ARRAY_KEYS, where)
    data_type = meta.get("data_type")
    code = _data_type_code(data_type, where)
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
    dtype, filters, compressor = _codecs(meta.get("codecs"), code, where)
    fill = meta.get("fill_value")
    if code == "string" and not isinstance(fill, str):
        raise BadDataError(f"{where}: fill_value {fill!r} of a string array must be a string")
    if code[0] == "S" and not _bytes_fill_ok(fill, int(code[1:])):
        raise BadDataError(
            f"{where}: fill_value {fill!r} of {NULL_TERMINATED_BYTES} must be base64 of at "
            f"most {code[1:]} bytes"
        )
    if isinstance(data_type, str) and code != "string" and not _fill_ok(fill, data_type):
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
        "fill_value": _fill_v2(fill, data_type),
        "order": "C",
        "filters": filters or None,
        "compressor": compressor,
        "dimension_separator": ".",
    }
    return V3Array(path, zarray, attributes, "c" if encoding == "default" else "", separator)


def _data_type_code(data_type: Any, where: str) -> str:
    """The format-2 dtype code of a data type without its byte order (``i2``, ``S24``), or
    ``"string"``; a data type with no format-2 equivalent is refused by name."""
    if isinstance(data_type, str) and (data_type in DATA_TYPES or data_type == "string"):
        return DATA_TYPES.get(data_type, "string")
    if isinstance(data_type, dict) and data_type.get("name") == NULL_TERMINATED_BYTES:
        name, config = _named(data_type, where, "data_type")
        length = config.get("length_bytes")
        valid = isinstance(length, int) and _is_int(length) and length >= 1
        if not valid or set(config) != {"length_bytes"}:
            raise BadDataError(
                f"{where}: data_type {name} needs a positive integer length_bytes, got {config!r}"
            )
        return f"S{length}"
    raise BadDataError(f"{where}: data_type {data_type!r} is not supported")


def _bytes_fill_ok(fill: Any, length: int) -> bool:
    """zarr-python 3 writes a bytes fill value as base64 (``""`` for the empty default)."""
    if not isinstance(fill, str):
        return False
    try:
        return len(base64.b64decode(fill, validate=True)) <= length
    except (binascii.Error, ValueError):
        return False


def _fill_v2(fill: Any, data_type: Any) -> Any:
    """A format-3 fill value as format 2 writes it: a float given as the hex of its
    big-endian bytes (``"0x7fc00000"``) becomes its value, or ``"NaN"``/``"Infinity"``.
    Range checks follow in :func:`zarrgeno.io.metadata_checks.fill_value_problem`."""
    if not isinstance(data_type, str):
        return fill
    if data_type.startswith("complex") and isinstance(fill, list):
        part = f"float{int(data_type[7:]) // 2}"
        return [_fill_v2(x, part) for x in fill]
    if not (data_type.startswith("float") and isinstance(fill, str) and fill.startswith("0x")):
        return fill
    width = int(data_type[5:]) // 8
    try:
        raw = bytes.fromhex(fill[2:])
        (value,) = struct.unpack({2: ">e", 4: ">f", 8: ">d"}[width], raw)
    except (ValueError, struct.error):
        return fill  # refused by name as not fitting the dtype
    if math.isnan(value):
        return "NaN"
    return value if math.isfinite(value) else ("Infinity" if value > 0 else "-Infinity")


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
