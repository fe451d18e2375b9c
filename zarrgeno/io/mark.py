"""The mark of the command that wrote an output: what lets ``--overwrite`` replace that
command's own earlier output, and nothing else.

A Zarr store carries it in its root attributes, as ``{"zarrgeno": {"command": ...,
"version": ..., "source": ...}}`` (the root ``.zattrs`` and its entry in ``.zmetadata``, or
the root ``zarr.json``'s ``attributes``), so that zarr-python 3, vcztools and every other
Zarr reader see only Zarr's own keys. Any other output (TSV files, plink2 reports) has it
in a file, :data:`MARKER`, at its root. Both are read back, and so is the file at the root
of a Zarr store written by an earlier zarrgeno, which kept the mark there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from zarr.util import json_dumps

from zarrgeno.errors import ZarrgenoError
from zarrgeno.io.bounded import metadata_limit, open_regular, read_fd
from zarrgeno.io.documents import parse_document
from zarrgeno.io.partfiles import write_whole
from zarrgeno.io.zarr3_write import dumps

#: The file at the root of an output that is no Zarr store, naming the command that wrote
#: it (and, in stores written by an earlier zarrgeno, at the root of a Zarr store). A name
#: starting with ``.``: zarrgeno's validation and listings leave it out.
MARKER = ".zarrgeno.json"
#: The root attribute of a Zarr store that holds the mark.
MARK_ATTR = "zarrgeno"
#: Largest marker file read back (a few hundred bytes are written).
MARKER_BYTES = 64 * 1024

ZATTRS = ".zattrs"
ZMETADATA = ".zmetadata"
ZARR_JSON = "zarr.json"
#: The root documents that hold the mark of a Zarr store.
ROOT_DOCUMENTS = (ZATTRS, ZMETADATA, ZARR_JSON)


def mark(command: str, source: str | None) -> dict[str, Any]:
    """The mark of an output of ``zarrgeno COMMAND`` from ``source``."""
    # Imported here: zarrgeno's root package lists the API lazily and imports nothing.
    from zarrgeno import __version__

    return {"command": command, "version": __version__, "source": source}


def _zarr_format(root: Path) -> int | None:
    """2 or 3 for the Zarr store at ``root`` (as zarrgeno.io.zarr3.is_zarr3 decides), None
    when ``root`` holds no Zarr node."""
    if (root / ".zgroup").is_file() or (root / ".zarray").is_file():
        return 2
    return 3 if (root / ZARR_JSON).is_file() else None


def _load(path: Path, limit: int) -> dict[str, Any]:
    """The JSON object in the regular file ``path``, at most ``limit`` bytes; ``KeyError``
    when absent, a :class:`ZarrgenoError` when unreadable or no object."""
    fd = open_regular(str(path), path.name, "metadata")
    try:
        raw = read_fd(fd, path.name, limit, "metadata")
    finally:
        os.close(fd)
    return parse_document(raw, str(path))


def write_mark(root: Path, command: str, source: str | None) -> None:
    """Mark the finished output at ``root`` as written by ``zarrgeno COMMAND``.

    A Zarr store gets the mark in its root attributes (and in its consolidated metadata,
    which then still agrees); anything else gets :data:`MARKER`. Each document is replaced
    by one rename. Called on the staging directory as the last write before it is renamed
    into place, so that no target ever carries the mark of an unfinished output.
    """
    doc = mark(command, source)
    fmt = _zarr_format(root)
    if fmt is None:
        write_whole(root / MARKER, (json.dumps(doc, indent=2) + "\n").encode())
        return
    limit = metadata_limit()
    if fmt == 3:
        root_doc = _load(root / ZARR_JSON, limit)
        attrs = root_doc.get("attributes")
        root_doc["attributes"] = {**(attrs if isinstance(attrs, dict) else {}), MARK_ATTR: doc}
        write_whole(root / ZARR_JSON, dumps(root_doc))
        return
    try:
        attrs = _load(root / ZATTRS, limit)
    except KeyError:
        attrs = {}
    attrs[MARK_ATTR] = doc
    write_whole(root / ZATTRS, json_dumps(attrs))
    try:
        consolidated = _load(root / ZMETADATA, limit)
    except KeyError:
        return
    consolidated.setdefault("metadata", {})[ZATTRS] = attrs
    write_whole(root / ZMETADATA, json_dumps(consolidated))


def read_mark(path: Path) -> dict[str, Any] | None:
    """The mark directory ``path`` holds, if any: in its root attributes (a Zarr store) or
    in :data:`MARKER`. An unreadable document, or a mark that names no command, is none."""
    fmt = _zarr_format(path)
    if fmt is not None:
        try:
            root = _load(path / (ZARR_JSON if fmt == 3 else ZATTRS), metadata_limit())
        except (KeyError, ZarrgenoError):
            root = {}
        attrs = root.get("attributes") if fmt == 3 else root
        found = attrs.get(MARK_ATTR) if isinstance(attrs, dict) else None
        if isinstance(found, dict) and isinstance(found.get("command"), str):
            return found
    try:
        doc = _load(path / MARKER, MARKER_BYTES)
    except (KeyError, ZarrgenoError):
        return None
    return doc if isinstance(doc.get("command"), str) else None


def written_by(path: Path) -> str | None:
    """The command that wrote directory ``path``, as its mark says (:func:`read_mark`)."""
    found = read_mark(path)
    return found["command"] if found is not None else None


def without_mark(attrs: dict[str, Any]) -> dict[str, Any]:
    """Root attributes less the mark: what a copy of the store carries, and what two
    stores are compared by."""
    return {k: v for k, v in attrs.items() if k != MARK_ATTR}


def unmarked(key: str, data: bytes, where: str) -> bytes:
    """``data``, the value of ``key`` of a store, without the mark when ``key`` is a root
    document that holds it (the same bytes otherwise): a copy or a mirror of a store is no
    output of the command that wrote the store, so that command's ``--overwrite`` must not
    replace it. Errors name the document by ``where``."""
    if key not in ROOT_DOCUMENTS or MARK_ATTR.encode() not in data:
        return data
    doc = parse_document(data, f"{where}/{key}")
    if key == ZATTRS and MARK_ATTR in doc:
        return json_dumps(without_mark(doc))
    attrs = doc.get("attributes")
    if key == ZARR_JSON and isinstance(attrs, dict) and MARK_ATTR in attrs:
        return dumps({**doc, "attributes": without_mark(attrs)})
    if key == ZMETADATA and isinstance(doc.get("metadata"), dict):
        attrs = doc["metadata"].get(ZATTRS)
        if isinstance(attrs, dict) and MARK_ATTR in attrs:
            entries = {**doc["metadata"], ZATTRS: without_mark(attrs)}
            return json_dumps({**doc, "metadata": entries})
    return data
