"""The view of a validated store that zarr opens: refused arrays hidden, documents capped.

:class:`ScreenedStore` is what zarr reads metadata from once
:func:`zarrgeno.io.validation.validate_store` has run: every metadata document comes through
:func:`zarrgeno.io.documents.read_document` (size and nesting caps) each time zarr asks, and
the arrays validation refused are absent (their keys, listings and ``.zmetadata`` entries),
so zarr never parses their metadata. Commands ask :func:`refused_arrays` which were refused
and why, and refuse only when they need one of them (:func:`refuse_needed`). Chunks are not
read through this view: zarrgeno reads them from the store itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import zarr.storage

from zarrgeno.errors import UsageError
from zarrgeno.io.documents import CONSOLIDATED_DEPTH, read_document
from zarrgeno.io.validation import refusal_error

_DOCUMENTS = (".zarray", ".zgroup", ".zattrs", ".zmetadata")


class ScreenedStore(zarr.storage.Store):
    """A read-only view of ``base`` without the arrays in ``refused`` (path -> why)."""

    _erasable = False

    def __init__(self, base: Mapping[str, Any], refused: Mapping[str, str], name: str) -> None:
        self.base = base
        self.refused = dict(refused)
        self.name = name
        self._prefixes = tuple(f"{path}/" for path in self.refused)

    def hidden(self, key: str) -> bool:
        """True for a refused array's path and every key under it."""
        return key in self.refused or key.startswith(self._prefixes)

    def __getitem__(self, key: str) -> Any:
        if self.hidden(key):
            raise KeyError(key)
        leaf = key.rsplit("/", 1)[-1]
        if leaf not in _DOCUMENTS:
            return self.base[key]
        if leaf == ".zmetadata" and key == leaf:
            return self._consolidated()
        return read_document(self.base, key, self.name)

    def _consolidated(self) -> bytes:
        """``.zmetadata`` without the refused arrays' entries."""
        raw = read_document(self.base, ".zmetadata", self.name, depth=CONSOLIDATED_DEPTH)
        if not self.refused:
            return bytes(raw)
        doc = json.loads(bytes(raw).decode("utf-8"))  # validated: an object of objects
        entries = doc["metadata"]
        doc["metadata"] = {k: v for k, v in entries.items() if not self.hidden(k)}
        return json.dumps(doc).encode()

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and not self.hidden(key) and key in self.base

    def __iter__(self) -> Iterator[str]:
        return (k for k in self.base if not self.hidden(k))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def listdir(self, path: str = "") -> list[str]:
        path = (path or "").strip("/")
        names = zarr.storage.listdir(self.base, path)
        return [n for n in names if not self.hidden(f"{path}/{n}" if path else n)]

    def getsize(self, path: str = "") -> int:
        """The base store's size of ``path`` (0 for a refused array); never reads chunks."""
        path = (path or "").strip("/")
        if self.hidden(path):
            return 0
        sized = getattr(self.base, "getsize", None)
        return int(sized(path)) if sized is not None else -1

    def __setitem__(self, key: str, value: Any) -> None:
        raise UsageError(f"{self.name} is opened read-only")

    def __delitem__(self, key: str) -> None:
        raise UsageError(f"{self.name} is opened read-only")

    def is_writeable(self) -> bool:
        return False


def refused_arrays(group: zarr.hierarchy.Group) -> dict[str, str]:
    """The arrays of ``group``'s store that validation refused (path -> why), or none."""
    store = group.store
    for candidate in (store, getattr(store, "store", None)):  # consolidated: zarr wraps it
        if isinstance(candidate, ScreenedStore):
            return dict(candidate.refused)
    return {}


def refuse_needed(group: zarr.hierarchy.Group, name: str, paths: Iterable[str] | None) -> None:
    """Refuse (exit 4) naming every refused array among ``paths`` (None: any array) of the
    store ``name``: a command needs them and cannot go on without them."""
    refused = refused_arrays(group)
    if paths is not None:
        wanted = {p.strip("/") for p in paths}
        refused = {p: why for p, why in refused.items() if p in wanted}
    if refused:
        raise refusal_error(name, refused)
