"""Write a store's consolidated metadata from its per-node documents.

Format 2: ``.zmetadata``, as zarr 2 writes it. Format 3 has none in its specification;
zarr-python 3 keeps it in the root ``zarr.json`` (``consolidated_metadata``, ``kind``
``inline``, every node below the root by path) and reads it from there, so zarrgeno writes
it there too.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zarr
import zarr.storage
from zarr.util import json_dumps

from zarrgeno.errors import (
    BadDataError,
    MissingInputError,
    StoreIOError,
    UsageError,
    os_reason,
)
from zarrgeno.io.documents import load_document
from zarrgeno.io.partfiles import remove_dead_parts, write_whole
from zarrgeno.io.store import CONSOLIDATED_KEY, StoreRef
from zarrgeno.io.validation import NODE_DOCUMENTS, _listdir, consolidated_mismatches, validate_store
from zarrgeno.io.zarr3 import ZARR_JSON, V3Store, is_zarr3
from zarrgeno.io.zarr3_write import dumps
from zarrgeno.io.zipstore import ZipStore


@dataclass(frozen=True)
class ConsolidateReport:
    """What ``consolidate`` found and did.

    ``before`` is ``absent`` (no ``.zmetadata``), ``agreed``, ``disagreed`` (see
    ``mismatches``) or ``invalid`` (unreadable ``.zmetadata``). ``written`` is False when
    the existing consolidated metadata already agreed.
    """

    location: str
    before: str
    mismatches: tuple[tuple[str, str], ...]
    written: bool
    n_arrays: int
    n_groups: int
    #: Where the consolidated metadata is: ``.zmetadata``, or format 3's root ``zarr.json``.
    document: str = CONSOLIDATED_KEY

    def to_dict(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "before": self.before,
            "mismatches": [{"key": k, "reason": r} for k, r in self.mismatches],
            "written": self.written,
            "arrays": self.n_arrays,
            "groups": self.n_groups,
            "document": self.document,
        }


class _WithoutConsolidated(Mapping[str, bytes]):
    """A read-only view of a store that hides ``.zmetadata``, to validate what replaces it."""

    def __init__(self, store: Mapping[str, bytes]):
        self._store = store

    def __getitem__(self, key: str) -> bytes:
        if key == CONSOLIDATED_KEY:
            raise KeyError(key)
        return self._store[key]

    def __contains__(self, key: object) -> bool:
        return key != CONSOLIDATED_KEY and key in self._store

    def __iter__(self) -> Iterator[str]:
        return (k for k in self._store if k != CONSOLIDATED_KEY)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def listdir(self, path: str = "") -> list[str]:
        names = zarr.storage.listdir(self._store, path)
        return [n for n in names if not (path in ("", None) and n == CONSOLIDATED_KEY)]


def _writable_store(source: Any) -> tuple[str, MutableMapping[str, bytes]]:
    ref = StoreRef.from_source(source)
    if ref.mapping is not None:
        return ref.name, ref.mapping
    assert ref.location is not None
    if not ref.is_local:
        raise UsageError(
            f"{ref.location}: consolidate writes local stores only; `zarrgeno download` it first"
        )
    store = ref.mapping_store()  # MissingInputError when absent, BadDataError for a bad zip
    if isinstance(store, ZipStore):
        store.close()
        raise UsageError(f"{ref.location}: a .zip store cannot be changed in place")
    return ref.name, store


def consolidate_store(source: Any) -> ConsolidateReport:
    """Write ``.zmetadata`` for the store at ``source`` (a local directory or a zarr store).

    The per-node ``.zgroup`` / ``.zarray`` / ``.zattrs`` documents are the truth: they are
    validated (ignoring any old ``.zmetadata``), then gathered into a new ``.zmetadata``
    that replaces the old one in one atomic rename. Nothing is written when the existing
    consolidated metadata already agrees with them.
    """
    name, store = _writable_store(source)
    if is_zarr3(store):
        return _consolidate_v3(name, store)
    n_arrays = validate_store(_WithoutConsolidated(store), name)
    if not zarr.storage.contains_group(store):
        if zarr.storage.contains_array(store):
            raise BadDataError(f"{name} holds a single array; only groups are consolidated")
        raise MissingInputError(f"{name} is not a Zarr store (no .zgroup)")
    try:
        mismatches = tuple(consolidated_mismatches(store))
        before = (
            "absent" if CONSOLIDATED_KEY not in store else ("disagreed" if mismatches else "agreed")
        )
    except BadDataError:
        mismatches, before = (), "invalid"
    metadata = _gather(store)
    n_groups = sum(1 for k in metadata if k.rsplit("/", 1)[-1] == ".zgroup")
    if before == "agreed":
        return ConsolidateReport(name, before, (), False, n_arrays, n_groups)
    document = {"zarr_consolidated_format": 1, "metadata": metadata}
    try:
        _write_consolidated(store, json_dumps(document))  # zarr's own formatting
    except OSError as exc:
        raise StoreIOError(
            f"writing {name}/{CONSOLIDATED_KEY}: {os_reason(exc)}; the store was not changed",
            exc.errno,
        ) from None
    left = consolidated_mismatches(store)
    if left:  # another writer changed the store meanwhile
        raise StoreIOError(f"{name} changed while consolidating ({left[0][0]}); run it again")
    return ConsolidateReport(name, before, mismatches, True, n_arrays, n_groups, ZARR_JSON)


def _write_consolidated(store: MutableMapping[str, bytes], data: bytes) -> None:
    """Replace ``.zmetadata`` in one rename.

    In a directory the part file is named after this process (zarr's own temporary name
    is not), so one left by a killed run is recognised and removed by the next: the store
    is left with Zarr's keys only.
    """
    _replace(store, CONSOLIDATED_KEY, data)


def _replace(store: MutableMapping[str, bytes], key: str, data: bytes) -> None:
    """Set root key ``key``: in a directory by one rename of a part file (one left by a
    killed run is removed first), else directly."""
    if isinstance(store, zarr.storage.DirectoryStore):
        root = Path(store.path)
        remove_dead_parts(root, of=key)
        write_whole(root / key, data)
    else:
        store[key] = data


def _gather(store: Mapping[str, bytes]) -> dict[str, Any]:
    """Every node document reachable from the root, parsed, as zarr consolidates them."""
    out: dict[str, Any] = {}
    stack = [""]
    while stack:
        path = stack.pop()
        for doc in NODE_DOCUMENTS:
            key = f"{path}/{doc}" if path else doc
            if key in store:
                out[key] = load_document(store, key, "store")  # validated, read again
        if path and f"{path}/.zarray" in out:
            continue
        for child in zarr.storage.listdir(store, path):
            child_path = f"{path}/{child}" if path else child
            if not child.startswith(".") and (
                zarr.storage.contains_group(store, child_path)
                or zarr.storage.contains_array(store, child_path)
            ):
                stack.append(child_path)
    return out


#: zarr-python 3's consolidated metadata, in the root ``zarr.json``.
CONSOLIDATED_V3 = "consolidated_metadata"


def is_consolidated(store: Mapping[str, bytes]) -> bool:
    """True when the store has consolidated metadata (``.zmetadata``, or in format 3 the
    root ``zarr.json``'s ``consolidated_metadata``)."""
    if not is_zarr3(store):
        return CONSOLIDATED_KEY in store
    try:
        return CONSOLIDATED_V3 in load_document(store, ZARR_JSON, "store")
    except (KeyError, BadDataError):
        return False


def _plain(document: dict[str, Any]) -> dict[str, Any]:
    """A node document without its consolidated metadata (what the entries are compared by)."""
    return {k: v for k, v in document.items() if k != CONSOLIDATED_V3}


def gather_v3(store: Mapping[str, bytes]) -> dict[str, dict[str, Any]]:
    """Every ``zarr.json`` below the root, by node path, as zarr-python 3 consolidates them
    (a group's own ``consolidated_metadata`` holds nothing)."""
    out: dict[str, dict[str, Any]] = {}
    stack = [""]
    while stack:
        path = stack.pop()
        for child in _listdir(store, path):
            child_path = f"{path}/{child}" if path else child
            key = f"{child_path}/{ZARR_JSON}"
            if key not in store:
                continue
            document = load_document(store, key, "store")
            if document.get("node_type") == "group":
                document = {
                    **_plain(document),
                    CONSOLIDATED_V3: {"kind": "inline", "must_understand": False, "metadata": {}},
                }
                stack.append(child_path)
            out[child_path] = document
    return dict(sorted(out.items()))


def v3_mismatches(store: Mapping[str, bytes]) -> list[tuple[str, str]]:
    """Where the root ``zarr.json``'s consolidated metadata and the per-node documents
    disagree (``(key, reason)`` as :func:`zarrgeno.io.validation.consolidated_mismatches`);
    empty when it agrees or there is none."""
    root = load_document(store, ZARR_JSON, "store")
    consolidated = root.get(CONSOLIDATED_V3)
    if consolidated is None:
        return []
    entries = consolidated.get("metadata") if isinstance(consolidated, dict) else None
    if not isinstance(entries, dict):
        raise BadDataError(f"{ZARR_JSON}: consolidated_metadata has no metadata object")
    found = gather_v3(store)
    out = [
        (f"{p}/{ZARR_JSON}", "differs")
        for p in found
        if p in entries
        and (not isinstance(entries[p], dict) or _plain(entries[p]) != _plain(found[p]))
    ]
    out += [(f"{p}/{ZARR_JSON}", "not consolidated") for p in found if p not in entries]
    out += [(f"{p}/{ZARR_JSON}", "stale") for p in entries if p not in found]
    return sorted(out)


def consolidated_root_v3(store: Mapping[str, bytes]) -> bytes:
    """The root ``zarr.json`` with fresh consolidated metadata, as zarr-python 3 writes it."""
    root = _plain(load_document(store, ZARR_JSON, "store"))
    document = {
        "attributes": root.get("attributes", {}),
        "zarr_format": 3,
        CONSOLIDATED_V3: {"kind": "inline", "must_understand": False, "metadata": gather_v3(store)},
        "node_type": "group",
    }
    return dumps(document)


def unconsolidated_root_v3(store: Mapping[str, bytes]) -> bytes:
    """The root ``zarr.json`` without consolidated metadata."""
    return dumps(_plain(load_document(store, ZARR_JSON, "store")))


def write_root_v3(store: MutableMapping[str, bytes], data: bytes) -> None:
    """Replace the root ``zarr.json`` in one rename (a directory), or set it."""
    _replace(store, ZARR_JSON, data)


def _consolidate_v3(name: str, store: MutableMapping[str, bytes]) -> ConsolidateReport:
    view = V3Store(store, name)
    n_arrays = validate_store(view, name)  # every node checked, strictly
    try:
        mismatches = tuple(v3_mismatches(store))
        before = (
            "absent" if not is_consolidated(store) else ("disagreed" if mismatches else "agreed")
        )
    except BadDataError:
        mismatches, before = (), "invalid"
    n_groups = 1 + sum(1 for d in gather_v3(store).values() if d.get("node_type") == "group")
    if before == "agreed":
        return ConsolidateReport(name, before, (), False, n_arrays, n_groups, ZARR_JSON)
    try:
        write_root_v3(store, consolidated_root_v3(store))
    except OSError as exc:
        raise StoreIOError(
            f"writing {name}/{ZARR_JSON}: {os_reason(exc)}; the store was not changed", exc.errno
        ) from None
    return ConsolidateReport(name, before, mismatches, True, n_arrays, n_groups, ZARR_JSON)
