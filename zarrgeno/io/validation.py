"""Check a store's Zarr v2 metadata before zarr opens it: hostile or broken stores stop here."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from zarrgeno.errors import BadDataError, StoreIOError, UsageError
from zarrgeno.io.compression import (
    COMPRESSOR_IDS,
    EXTRA_FILTER_IDS,
    FILTER_IDS,
    OBJECT_CODEC_IDS,
)
from zarrgeno.io.documents import CONSOLIDATED_DEPTH, load_document
from zarrgeno.io.keys import check_key
from zarrgeno.io.metadata_checks import (
    codec_config_problem,
    fill_value_problem,
    is_numeric_dtype,
)

#: numcodecs honours this variable by unpickling data from the store; zarrgeno refuses it.
UNSAFE_PICKLE_ENV = "NUMCODECS_ALLOW_UNSAFE_PICKLE_DECODE"
#: Blosc cannot hold a chunk above 2**31 - 16 bytes; no other codec zarrgeno allows needs more.
MAX_CHUNK_BYTES = 2**31 - 16
#: Far above any genome (Ag1000G 2R is 60M variants x 81 samples x 2), far below overflow.
MAX_ARRAY_ITEMS = 2**50
MAX_DIMS = 8
#: Most chunks of one array (a million chunk files).
#: ``stats`` plans about 100 bytes per chunk, so a crafted 10**12-chunk grid in a few bytes
#: of metadata cannot take memory or time without end (docs/reliability.md).
MAX_CHUNKS = 2**20


def refuse_unsafe_environment() -> None:
    """Refuse to run when numcodecs was told to unpickle store data."""
    if os.environ.get(UNSAFE_PICKLE_ENV):
        raise UsageError(
            f"{UNSAFE_PICKLE_ENV} is set, which lets a store run code when opened; "
            "unset it to use zarrgeno"
        )


def _load(store: Mapping[str, bytes], key: str, where: str, **depth: int) -> dict[str, Any]:
    """Metadata document ``key``, read with the size and nesting caps
    (:func:`zarrgeno.io.documents.load_document`)."""
    return load_document(store, key, where, **depth)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_array_meta(meta: Mapping[str, Any], where: str) -> None:
    """Validate one ``.zarray`` document; raise :class:`BadDataError` naming ``where``."""
    problem = array_meta_problem(meta)
    if problem is not None:
        raise BadDataError(f"{where}: {problem}")


def array_meta_problem(meta: Mapping[str, Any]) -> str | None:
    """Why zarrgeno refuses one ``.zarray`` document, or None when it opens."""
    if meta.get("zarr_format") != 2:
        return f"zarr_format {meta.get('zarr_format')!r} is not 2"
    shape, chunks = meta.get("shape"), meta.get("chunks")
    if not isinstance(shape, list) or not all(_is_int(s) and s >= 0 for s in shape):
        return f"shape {shape!r} must be a list of non-negative integers"
    if not isinstance(chunks, list) or not all(_is_int(c) and c >= 0 for c in chunks):
        return f"chunks {chunks!r} must be a list of positive integers"
    if len(shape) != len(chunks) or len(shape) > MAX_DIMS:
        return f"shape {shape} and chunks {chunks} do not match"
    if any(c == 0 < s for s, c in zip(shape, chunks, strict=True)):
        # zarr-python 3 writes a chunk length of 0 along an empty axis (bio2zarr's
        # region_index of a VCF without records) and refuses it anywhere else.
        return f"chunks {chunks} must be positive integers (0 only where shape {shape} is 0)"
    if math.prod(shape) > MAX_ARRAY_ITEMS:
        return f"shape {shape} is implausibly large"
    n_chunks = math.prod(-(-s // c) if c else 0 for s, c in zip(shape, chunks, strict=True))
    if n_chunks > MAX_CHUNKS:
        return (
            f"shape {shape} in chunks {chunks} makes {n_chunks:,} chunks (at most {MAX_CHUNKS:,})"
        )
    dtype_text = meta.get("dtype")
    if not isinstance(dtype_text, str):
        return f"dtype {dtype_text!r} is not supported (structured or missing)"
    try:
        dtype = np.dtype(dtype_text)
    except (TypeError, ValueError):
        return f"dtype {dtype_text!r} is not a valid dtype"
    if dtype.kind not in "biufcSUmMO":
        return f"dtype {dtype_text!r} is not allowed (no structured or void dtypes)"
    if math.prod(chunks) * dtype.itemsize > MAX_CHUNK_BYTES:
        return f"chunk {chunks} of {dtype_text} exceeds 2 GiB"
    if meta.get("order", "C") not in ("C", "F"):
        return f"order {meta.get('order')!r} must be 'C' or 'F'"
    separator = meta.get("dimension_separator", ".")
    if separator not in (None, ".", "/"):
        return f"dimension_separator {separator!r} must be '.' or '/'"
    compressor = meta.get("compressor")
    if compressor is not None:
        problem = _codec_problem(compressor, COMPRESSOR_IDS, "compressor")
        if problem:
            return problem
    filters = meta.get("filters")
    if filters is not None and not isinstance(filters, list):
        return "filters must be a list or null"
    problem = _filters_problem(filters or [], dtype, dtype_text)
    if problem:
        return problem
    for config in [*([compressor] if compressor is not None else []), *(filters or [])]:
        problem = codec_config_problem(config)
        if problem:
            return problem
    return fill_value_problem(meta.get("fill_value"), dtype)


def _filters_problem(filters: list[Any], dtype: np.dtype, dtype_text: str) -> str | None:
    """An object array needs one safe object codec, first in the chain (it encodes first);
    any other array must have none."""
    allowed = FILTER_IDS + EXTRA_FILTER_IDS + OBJECT_CODEC_IDS
    for f in filters:
        problem = _codec_problem(f, allowed, "filter")
        if problem:
            return problem
    ids = [f["id"].lower() for f in filters]
    objects = [i for i in ids if i in OBJECT_CODEC_IDS]
    if dtype.kind != "O":
        if objects:
            return f"filter {objects[0]} is an object codec, but dtype {dtype_text!r} is not object"
        return None
    if not objects or ids[0] not in OBJECT_CODEC_IDS or len(objects) > 1:
        return (
            f"dtype {dtype_text!r} is not allowed without one object codec as its first filter "
            f"(zarrgeno reads {', '.join(OBJECT_CODEC_IDS)})"
        )
    if ids[0] == "vlen-array":
        item = filters[0].get("dtype")
        if not is_numeric_dtype(item):
            return f"filter vlen-array dtype {item!r} must be a numeric dtype"
    return None


def _codec_problem(config: Any, allowed: tuple[str, ...], what: str) -> str | None:
    codec_id = config.get("id") if isinstance(config, dict) else None
    if not isinstance(codec_id, str) or codec_id.lower() not in allowed:
        return f"{what} {codec_id or config!r} is not allowed (zarrgeno reads {', '.join(allowed)})"
    return None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _listdir(store: Any, path: str, where: str = "store") -> list[str]:
    """The names directly under ``path``; each must make a safe key (:mod:`zarrgeno.io.keys`),
    or the store ``where`` is refused: a name ``""`` (from a key ``/abs``) is the directory
    itself and would send a walk round in circles, ``..`` would lead it out of the store."""
    if hasattr(store, "listdir"):
        try:
            names = sorted(store.listdir(path))
        except StoreIOError:
            raise  # a listing that failed (after retries) is not an empty directory
        except (OSError, KeyError, FileNotFoundError):
            return []
    else:
        prefix = f"{path}/" if path else ""
        keys = [check_key(k, where) for k in store if k.startswith(prefix)]
        names = sorted({k[len(prefix) :].split("/", 1)[0] for k in keys})
    for child in names:
        check_key(_join(path, child), where)
    return names


def validate_store(
    store: Mapping[str, bytes], name: str, *, refused: dict[str, str] | None = None
) -> int:
    """Validate every group and array document reachable from the root; return the array count.

    Walks ``.zgroup`` / ``.zarray`` keys by listing, so no chunk is read. With consolidated
    metadata, each entry of ``.zmetadata`` is validated too and must agree with the array's
    own ``.zarray``, because zarr would otherwise trust the consolidated copy alone; a
    store that says it ``trusts_consolidated`` (a remote one, where the walk costs a
    request per node) is validated from its ``.zmetadata`` entries alone. Every
    document zarr will read (``.zmetadata``, or each ``.zgroup``, ``.zarray`` and
    ``.zattrs``) is read here first, with the size and nesting caps.

    An array whose documents are refused (see :func:`array_meta_problem`) is put in
    ``refused`` (path -> why) when a dict is given, for the caller to hide; without one,
    every refused array is named in one :class:`BadDataError`. A bad group or
    ``.zmetadata`` refuses the whole store.
    """
    refuse_unsafe_environment()
    n_arrays = 0
    strict = refused is None
    refused = {} if refused is None else refused  # array path -> why, all named at once
    consolidated: dict[str, Any] = {}
    if ".zmetadata" in store:
        doc = _load(store, ".zmetadata", name, depth=CONSOLIDATED_DEPTH)
        entries = doc.get("metadata")
        if doc.get("zarr_consolidated_format") != 1 or not isinstance(entries, dict):
            raise BadDataError(f"{name}: .zmetadata is not consolidated metadata format 1")
        consolidated = entries
        for key, meta in entries.items():
            check_key(key, name, what=".zmetadata key")  # zarr would list it as a node
            if key.endswith(".zarray"):
                if not isinstance(meta, dict):
                    raise BadDataError(f"{name}: .zmetadata entry {key} is not an object")
                problem = array_meta_problem(meta)
                if problem is not None:
                    refused.setdefault(key[: -len("/.zarray")] or key, problem)
    stack = [""]
    if consolidated and getattr(store, "trusts_consolidated", False):
        # A remote store answers its node documents from .zmetadata: the walk would fetch
        # a listing and the documents of every node only to compare them with themselves.
        stack = []
        for key, meta in consolidated.items():
            leaf = key.rsplit("/", 1)[-1]
            if leaf == ".zgroup" and (not isinstance(meta, dict) or meta.get("zarr_format") != 2):
                raise BadDataError(f"{name}/{key}: zarr_format is not 2")
            n_arrays += leaf == ".zarray"
    while stack:
        path = stack.pop()
        for child in _listdir(store, path, name):
            if child.startswith("."):
                continue
            child_path = _join(path, child)
            array_key = _join(child_path, ".zarray")
            if array_key in store:
                meta, problem = _array_documents(store, child_path, name, bool(consolidated))
                if problem is not None:
                    refused.setdefault(child_path, problem)
                elif child_path not in refused and read_by_zarr(
                    array_key, consolidated.get(array_key, meta)
                ) != read_by_zarr(array_key, meta):
                    raise BadDataError(
                        f"{name}/{child_path}: consolidated metadata disagrees with .zarray; "
                        f"re-consolidate it with `zarrgeno consolidate {name}`"
                    )
                n_arrays += 1
            elif _join(child_path, ".zgroup") in store:
                group = _load(store, _join(child_path, ".zgroup"), name)
                if group.get("zarr_format") != 2:
                    raise BadDataError(f"{name}/{child_path}: zarr_format is not 2")
                _attributes(store, child_path, name, bool(consolidated))
                stack.append(child_path)
    if strict and refused:
        raise refusal_error(name, refused)
    if not consolidated:
        _attributes(store, "", name, False)  # the root group's, which zarr reads first
    return n_arrays


def _attributes(store: Mapping[str, bytes], path: str, name: str, consolidated: bool) -> None:
    """Read a node's ``.zattrs`` with the caps, as zarr will read it (from ``.zmetadata``
    instead when the store is consolidated: that was read whole already)."""
    key = _join(path, ".zattrs")
    if not consolidated and key in store:
        _load(store, key, name)


def _array_documents(
    store: Mapping[str, bytes], path: str, name: str, consolidated: bool
) -> tuple[dict[str, Any], str | None]:
    """An array's ``.zarray`` and why it is refused (None when it opens): its documents
    must be readable JSON within the caps, and its metadata valid."""
    try:
        meta = _load(store, _join(path, ".zarray"), path)
        _attributes(store, path, path, consolidated)
    except BadDataError as exc:
        return {}, str(exc).removeprefix(f"{path}: ").replace(f"{path}/", "")
    return meta, array_meta_problem(meta)


def refusal_error(name: str, refused: Mapping[str, str]) -> BadDataError:
    """One refused array keeps its own message; several are named on one line, each with why."""
    if len(refused) == 1:
        [(path, problem)] = refused.items()
        return BadDataError(f"{name}/{path}: {problem}")
    listed = ", ".join(f"{path} ({problem})" for path, problem in sorted(refused.items()))
    return BadDataError(f"{name}: {len(refused)} arrays refused: {listed}")


#: Metadata documents that zarr's consolidated metadata holds for each node.
NODE_DOCUMENTS = (".zgroup", ".zarray", ".zattrs")
#: The keys of a ``.zarray`` that zarr 2.18 reads (``Metadata2.decode_array_metadata``).
ZARRAY_KEYS_READ = (
    "zarr_format", "shape", "chunks", "dtype", "compressor", "fill_value", "order", "filters",
    "dimension_separator",
)  # fmt: skip


def read_by_zarr(key: str, document: Any) -> Any:
    """The part of metadata document ``key`` that zarr 2.18 reads, to compare two copies.

    zarr reads ``zarr_format`` alone from a ``.zgroup``, the keys of
    :data:`ZARRAY_KEYS_READ` from a ``.zarray`` (a null or empty ``dimension_separator``
    as none), and all of a ``.zattrs``. Other keys are ignored by zarr, and writers add
    them: zarr-python 3 puts ``consolidated_metadata`` in each subgroup's consolidated
    ``.zgroup`` entry, so comparing raw documents reports a false disagreement.

    >>> read_by_zarr("2L/.zgroup", {"zarr_format": 2, "consolidated_metadata": {}})
    {'zarr_format': 2}
    """
    if not isinstance(document, dict):
        return document
    leaf = key.rsplit("/", 1)[-1]
    if leaf == ".zgroup":
        return {"zarr_format": document.get("zarr_format")}
    if leaf == ".zarray":
        read = {k: document[k] for k in ZARRAY_KEYS_READ if k in document}
        if not read.get("dimension_separator"):
            read.pop("dimension_separator", None)
        return read
    return document


def consolidated_mismatches(store: Mapping[str, bytes]) -> list[tuple[str, str]]:
    """Where ``.zmetadata`` and the per-node documents disagree, without raising.

    Returns ``(key, reason)`` pairs sorted by key, reason being ``"differs"`` (both exist,
    and what zarr reads of them differs: :func:`read_by_zarr`), ``"not consolidated"`` (a
    document the consolidated metadata lacks, so zarr would not see it), ``"stale"``
    (listed in ``.zmetadata`` with no document in the store) or ``"unreadable"`` (a
    document refused by the metadata caps, or not JSON). Empty when they agree or when
    there is no ``.zmetadata``. Reads metadata documents only, never chunks.
    """
    per_node = getattr(store, "per_node", None)
    if per_node is not None:  # a remote store answers node documents from .zmetadata
        store = per_node()
    if ".zmetadata" not in store:
        return []
    doc = _load(store, ".zmetadata", "store", depth=CONSOLIDATED_DEPTH)
    entries = doc.get("metadata")
    if not isinstance(entries, dict):
        raise BadDataError(".zmetadata is not consolidated metadata format 1")
    found: dict[str, Any] = {}
    unreadable: list[str] = []
    stack = [""]
    while stack:
        path = stack.pop()
        for name in NODE_DOCUMENTS:
            key = _join(path, name)
            if key in store:
                try:
                    found[key] = _load(store, key, "store")
                except BadDataError:  # a refused array's document, or one zarr does not read
                    unreadable.append(key)
        if path and _join(path, ".zarray") in store:
            continue  # an array's children are chunks
        for child in _listdir(store, path):
            child_path = _join(path, child)
            if not child.startswith(".") and any(
                _join(child_path, n) in store for n in (".zgroup", ".zarray")
            ):
                stack.append(child_path)
    mismatches = [
        (k, "differs")
        for k in found
        if k in entries and read_by_zarr(k, entries[k]) != read_by_zarr(k, found[k])
    ]
    mismatches += [(k, "unreadable") for k in unreadable]
    mismatches += [(k, "not consolidated") for k in found if k not in entries]
    mismatches += [
        (k, "stale")
        for k in entries
        if k not in found and k.rsplit("/", 1)[-1] in NODE_DOCUMENTS and k not in store
    ]
    return sorted(mismatches)
