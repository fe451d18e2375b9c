"""Metadata documents read with a size cap and a nesting cap, then parsed.

Every JSON document of a store (``.zarray``, ``.zgroup``, ``.zattrs``, ``.zmetadata``,
``zarr.json``) is read through :func:`read_document` before anything parses it: at most
:func:`zarrgeno.io.bounded.metadata_limit` bytes, from a regular file only, and nested at
most :data:`MAX_JSON_DEPTH` deep. Python's JSON parser, zarr's comparisons of documents
and ``json.dumps`` all recurse once per level, so a 100,000-level document made them raise
``RecursionError``; the depth is counted here without recursion.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from zarrgeno.errors import BadDataError
from zarrgeno.io.bounded import metadata_limit, read_bounded

#: Deepest nesting of arrays and objects in one node document. A genotype store's deepest
#: document is a few levels (``.zattrs`` holding a list of records); Python recurses once
#: per level in every parse, comparison and dump, and stops at 1,000 levels.
MAX_JSON_DEPTH = 64
#: ``.zmetadata`` holds each node document two levels down (``metadata`` -> key -> document).
CONSOLIDATED_DEPTH = MAX_JSON_DEPTH + 2
_BLOCK = 1 << 20
_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_STEP = np.zeros(256, dtype=np.int32)  # +1 for an opening bracket, -1 for a closing one
_STEP[list(b"[{")], _STEP[list(b"]}")] = 1, -1


def _escaped(block: np.ndarray, run: int) -> tuple[np.ndarray | None, int]:
    """Which bytes follow an odd run of backslashes (``run`` of them ended the previous
    block), and the run that ends this block; None when the block has no backslash."""
    backslash = block == _BACKSLASH
    if not backslash.any():
        return (None if not run % 2 else np.arange(block.size) == 0), 0
    index = np.arange(block.size)
    last_plain = np.maximum.accumulate(np.where(backslash, -1 - run, index))
    before = np.empty_like(last_plain)  # the last non-backslash before each byte
    before[0], before[1:] = -1 - run, last_plain[:-1]
    end = int(last_plain[-1])
    return (index - before) % 2 == 0, block.size - 1 - end if end >= 0 else run + block.size


def json_depth(data: bytes | memoryview) -> int:
    """The deepest nesting of ``[`` and ``{`` in a JSON text, counted without recursion.

    Brackets inside strings do not count (a quote after an odd run of backslashes is
    escaped). Vectorised over blocks of 1 MiB, carrying the state across blocks, so a
    64 MiB document takes about a second and a few tens of MB of temporaries.

    >>> json_depth(b'{"a\\\\"[": [1, {"b": "[[[["}]}')
    3
    """
    codes = np.frombuffer(data, dtype=np.uint8)
    depth = deepest = run = inside = 0  # inside: 1 when the previous block ended in a string
    for start in range(0, codes.size, _BLOCK):
        block = codes[start : start + _BLOCK]
        escaped, run = _escaped(block, run)
        quotes = block == _QUOTE
        if escaped is not None:
            quotes &= ~escaped
        step = _STEP[block]
        if inside or quotes.any():
            parity = np.cumsum(quotes, dtype=np.int32) + inside
            step[parity % 2 == 1] = 0
            inside = int(parity[-1] % 2)
        running = np.cumsum(step, dtype=np.int64) + depth
        deepest = max(deepest, int(running.max()))
        depth = int(running[-1])
    return deepest


def read_document(
    store: Mapping[str, Any], key: str, where: str, *, depth: int = MAX_JSON_DEPTH
) -> bytes | memoryview:
    """The bytes of metadata document ``key``, refused (naming ``where`` and ``key``) when it
    holds more than the metadata cap or nests deeper than ``depth``; ``KeyError`` if absent."""
    try:
        raw = read_bounded(store, key, metadata_limit(), what="metadata")
    except KeyError:
        raise
    except BadDataError as exc:
        raise BadDataError(f"{where}: {exc}") from None
    except OSError as exc:
        raise BadDataError(f"{where}/{key}: unreadable: {exc}") from None
    check_depth(raw, f"{where}: {key}", depth)
    return raw


def check_depth(raw: bytes | memoryview, label: str, depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse a JSON text nested deeper than ``depth``, naming it by ``label``."""
    found = json_depth(raw)
    if found > depth:
        raise BadDataError(
            f"{label} is nested {found} levels deep (zarrgeno reads at most {depth})"
        )


def parse_document(
    raw: bytes | memoryview, label: str, *, depth: int = MAX_JSON_DEPTH
) -> dict[str, Any]:
    """A metadata document's bytes (from any source) parsed as a JSON object, within the
    size and nesting caps; errors name it by ``label``."""
    limit = metadata_limit()
    if len(raw) > limit:
        raise BadDataError(f"{label} holds more than {limit:,} bytes (corrupt or hostile)")
    check_depth(raw, label, depth)
    return _object(raw, label)


def _object(raw: bytes | memoryview, label: str) -> dict[str, Any]:
    try:
        data = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadDataError(f"{label} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BadDataError(f"{label} is not a JSON object")
    return data


def load_document(
    store: Mapping[str, Any], key: str, where: str, *, depth: int = MAX_JSON_DEPTH
) -> dict[str, Any]:
    """Metadata document ``key`` parsed, after :func:`read_document`; it must be an object."""
    return _object(read_document(store, key, where, depth=depth), f"{where}: {key}")
