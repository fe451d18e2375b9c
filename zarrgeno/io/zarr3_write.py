"""Zarr format 3 metadata (``zarr.json``) for groups and arrays, from a format-2 description.

:func:`array_document` writes what zarr-python 3 writes for the same array, limited to what
:mod:`zarrgeno.io.zarr3_meta` reads back: a regular chunk grid, default chunk keys (``c/``
and ``/``), the data types with a format-2 equivalent, ``bytes`` (or ``vlen-utf8`` for
strings) and at most one of ``blosc``, ``zstd``, ``gzip``, optionally wrapped in
``sharding_indexed`` (index at the end, ``bytes`` + ``crc32c``). A chunk's bytes are the
same as in format 2 (C order, then the compressor); only its key differs. Pure: no I/O.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from zarrgeno.errors import BadDataError, UsageError
from zarrgeno.io.shards import shard_problem
from zarrgeno.io.zarr3_meta import BLOSC_SHUFFLE, COMPRESSORS, DATA_TYPES, NULL_TERMINATED_BYTES

#: numpy's type codes (``i1``, ``f8``) -> format-3 data type names.
_DATA_TYPE_NAMES = {code: name for name, code in DATA_TYPES.items()}
_SHUFFLE_NAMES = {number: name for name, number in BLOSC_SHUFFLE.items()}
#: The format-3 name of the one format-2 filter zarrgeno writes (strings).
_VLEN_UTF8 = "vlen-utf8"


def _index_codecs() -> list[dict[str, Any]]:
    """zarr-python 3's index codecs: the index little-endian, then its crc32c checksum."""
    return [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}]


def group_document(attributes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A group's ``zarr.json``."""
    return {"attributes": dict(attributes or {}), "zarr_format": 3, "node_type": "group"}


def dumps(document: Mapping[str, Any]) -> bytes:
    """A ``zarr.json``'s bytes, indented as zarr-python 3 writes them (NaN is refused: fill
    values are already encoded)."""
    return json.dumps(document, indent=2, allow_nan=False).encode()


def chunk_key(index: Sequence[int]) -> str:
    """A chunk's (or shard's) key below its array, with the default encoding.

    >>> chunk_key((3, 1, 0))
    'c/3/1/0'
    >>> chunk_key(())
    'c'
    """
    return "/".join(["c", *(str(int(i)) for i in index)])


def _config(codec: Any) -> dict[str, Any] | None:
    """A numcodecs codec, or its configuration, as a configuration dict (None stays None)."""
    if codec is None:
        return None
    return dict(codec.get_config()) if hasattr(codec, "get_config") else dict(codec)


def _data_type(dtype: np.dtype, filters: list[dict[str, Any]], where: str) -> tuple[Any, str]:
    """``(data_type, endian)`` of a format-2 dtype; the endian is ``""`` for one byte."""
    if dtype.hasobject:
        if [f.get("id") for f in filters] != [_VLEN_UTF8]:
            raise UsageError(
                f"{where}: an object array needs the vlen-utf8 filter alone in Zarr format 3, "
                f"found {[f.get('id') for f in filters]}"
            )
        return "string", ""
    if filters:
        raise UsageError(
            f"{where}: filters {[f.get('id') for f in filters]} have no Zarr format 3 "
            "equivalent that zarrgeno reads (bytes, then one of blosc, zstd, gzip)"
        )
    if dtype.kind == "S":
        return {
            "name": NULL_TERMINATED_BYTES,
            "configuration": {"length_bytes": dtype.itemsize},
        }, ""
    name = _DATA_TYPE_NAMES.get(f"{dtype.kind}{dtype.itemsize}")
    if name is None or dtype.kind == "V":
        raise UsageError(f"{where}: data type {dtype.str} has no Zarr format 3 equivalent here")
    if dtype.itemsize == 1 or dtype.kind == "b":
        return name, ""
    return name, "big" if dtype.byteorder == ">" else "little"


def _float(value: Any, where: str) -> float | str:
    """A float fill value as zarr 3 writes it: a number, or NaN / Infinity / -Infinity."""
    if isinstance(value, str):
        if value in ("NaN", "Infinity", "-Infinity") or value.startswith("0x"):
            return value
        raise UsageError(f"{where}: fill value {value!r} is not a number")
    number = float(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    return number


def fill_value(value: Any, dtype: np.dtype, where: str) -> Any:
    """A format-2 fill value (as in ``.zarray``, or a Python value) encoded as zarr 3 does;
    null becomes the data type's zero, as zarr-python 3 reads it."""
    kind = dtype.kind
    if kind == "O":  # zarr-python 3 reads a string array's null (or numeric) fill as ""
        return value if isinstance(value, str) else ""
    if kind == "S":
        raw = value if isinstance(value, bytes) else base64.b64decode(value or "")
        if len(raw) > dtype.itemsize:
            raise BadDataError(f"{where}: fill value {value!r} is longer than {dtype.str}")
        return base64.b64encode(raw).decode()
    if value is None:
        value = 0
    if kind == "b":
        return bool(value)
    if kind in "iu":
        if isinstance(value, float) and not value.is_integer():
            raise BadDataError(f"{where}: fill value {value!r} of {dtype.str} is not an integer")
        number = int(value)
        info = np.iinfo(dtype)
        if not info.min <= number <= info.max:
            raise BadDataError(f"{where}: fill value {number} does not fit {dtype.str}")
        return number
    if kind == "c":
        if isinstance(value, list | tuple):
            real, imag = value
        else:
            real, imag = complex(value).real, complex(value).imag
        return [_float(real, where), _float(imag, where)]
    return _float(value, where)


def compressor_codec(config: Mapping[str, Any], dtype: np.dtype, where: str) -> dict[str, Any]:
    """The format-3 codec of a numcodecs compressor configuration (blosc, zstd, gzip)."""
    codec_id = config.get("id")
    if codec_id == "zstd":
        return {
            "name": "zstd",
            "configuration": {
                "level": int(config.get("level", 0)),
                "checksum": bool(config.get("checksum", False)),
            },
        }
    if codec_id == "gzip":
        return {"name": "gzip", "configuration": {"level": int(config.get("level", 5))}}
    if codec_id == "blosc":
        shuffle = int(config.get("shuffle", 1))
        itemsize = 1 if dtype.hasobject else dtype.itemsize
        if shuffle == -1:  # numcodecs' AUTOSHUFFLE, decided as numcodecs does when encoding
            shuffle = 2 if itemsize == 1 else 1
        if shuffle not in _SHUFFLE_NAMES:
            raise BadDataError(f"{where}: blosc shuffle {shuffle} is not one of Blosc's")
        return {
            "name": "blosc",
            "configuration": {
                "typesize": itemsize,
                "cname": config.get("cname", "lz4"),
                "clevel": int(config.get("clevel", 5)),
                "shuffle": _SHUFFLE_NAMES[shuffle],
                "blocksize": int(config.get("blocksize", 0)),
            },
        }
    raise UsageError(
        f"{where}: compressor {codec_id} has no Zarr format 3 equivalent that zarrgeno reads "
        f"({', '.join(COMPRESSORS)})"
    )


def array_document(
    zarray: Mapping[str, Any],
    attributes: Mapping[str, Any] | None = None,
    *,
    shards: Sequence[int] | None = None,
    where: str = "array",
) -> dict[str, Any]:
    """An array's ``zarr.json`` from its format-2 description.

    ``zarray`` holds ``shape``, ``chunks``, ``dtype``, ``fill_value``, ``compressor`` and
    ``filters`` (configurations or numcodecs codecs) and ``order`` (``C`` only), as in
    ``.zarray``; ``attributes`` as in ``.zattrs`` (``_ARRAY_DIMENSIONS`` becomes
    ``dimension_names``). With ``shards``, the chunk grid is the shards and each shard
    holds inner chunks of ``chunks`` (``sharding_indexed``). What format 3 cannot say as
    zarrgeno reads it is a :class:`~zarrgeno.errors.UsageError` naming ``where``.
    """
    shape = [int(n) for n in zarray["shape"]]
    chunks = [int(n) for n in zarray["chunks"]]
    if len(chunks) != len(shape) or any(c <= 0 for c in chunks):
        raise UsageError(f"{where}: chunks {chunks} do not fit shape {shape}")
    if zarray.get("order", "C") != "C":
        raise UsageError(f"{where}: order {zarray.get('order')} is not written in Zarr format 3")
    dtype = np.dtype(zarray["dtype"])
    filters = [_config(f) for f in zarray.get("filters") or []]
    data_type, endian = _data_type(dtype, [f for f in filters if f is not None], where)
    codecs: list[dict[str, Any]] = [
        {"name": _VLEN_UTF8, "configuration": {}}
        if dtype.hasobject
        else {"name": "bytes", **({"configuration": {"endian": endian}} if endian else {})}
    ]
    compressor = _config(zarray.get("compressor"))
    if compressor is not None:
        codecs.append(compressor_codec(compressor, dtype, where))
    attrs = dict(attributes or {})
    names = attrs.pop("_ARRAY_DIMENSIONS", None)
    if names is not None and (
        not isinstance(names, list)
        or len(names) != len(shape)
        or not all(isinstance(n, str) for n in names)
    ):
        raise BadDataError(f"{where}: _ARRAY_DIMENSIONS {names!r} must name each dimension")
    grid = chunks
    if shards is not None:
        grid = [int(n) for n in shards]
        problem = shard_problem(grid, chunks)
        if problem:
            raise UsageError(f"{where}: {problem}")
        codecs = [
            {
                "name": "sharding_indexed",
                "configuration": {
                    "chunk_shape": chunks,
                    "codecs": codecs,
                    "index_codecs": _index_codecs(),
                    "index_location": "end",
                },
            }
        ]
    document: dict[str, Any] = {
        "shape": shape,
        "data_type": data_type,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": grid}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": fill_value(zarray.get("fill_value"), dtype, where),
        "codecs": codecs,
        "attributes": attrs,
    }
    if names is not None:
        document["dimension_names"] = names
    document.update(zarr_format=3, node_type="array", storage_transformers=[])
    return document
