"""Reads of a store's keys that never take more memory than the caller allows.

A hostile store can hold a FIFO where a chunk belongs (a read blocks forever), a 200 MB
``.zattrs``, or a zip entry or HTTP body that inflates without end. Every read of a key
that zarrgeno makes before it trusts the bytes goes through :func:`read_bounded`, which
takes at most ``limit`` bytes and only from a regular file:

- a store that can stop a read early (a zip store, a remote store, a format-3 view)
  implements ``read_bounded(key, limit)`` itself;
- a local ``DirectoryStore`` file is opened without blocking and checked with ``fstat``
  before one byte is read;
- any other mapping (an in-memory store) is read as usual, then checked.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from typing import Any

import zarr.storage

from zarrgeno.errors import BadDataError, StoreIOError

#: Largest metadata document (``.zarray``, ``.zattrs``, ``.zmetadata``, ``zarr.json``)
#: zarrgeno reads. MalariaGEN's consolidated metadata is a few hundred KB.
MAX_METADATA_BYTES = 64 * 2**20
#: Environment variable that raises or lowers :data:`MAX_METADATA_BYTES`, in bytes.
MAX_METADATA_ENV = "ZARRGENO_MAX_METADATA_BYTES"

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def metadata_limit() -> int:
    """The metadata size cap: ``$ZARRGENO_MAX_METADATA_BYTES`` or :data:`MAX_METADATA_BYTES`."""
    text = os.environ.get(MAX_METADATA_ENV, "").strip()
    if text.isdigit() and int(text) > 0:
        return int(text)
    return MAX_METADATA_BYTES


def too_large(what: str, key: str, limit: int) -> BadDataError:
    """The error of a key whose bytes exceed ``limit``."""
    return BadDataError(f"{what} {key} holds more than {limit:,} bytes (corrupt or hostile)")


def directory_path(store: Any, key: str) -> str | None:
    """The file behind ``key`` of a zarr ``DirectoryStore`` (or subclass), else None."""
    if not isinstance(store, zarr.storage.DirectoryStore):
        return None
    return os.path.join(store.path, store._normalize_key(key))


def open_regular(path: str, key: str, what: str) -> int:
    """Open ``path`` read-only without blocking; a file descriptor of a regular file.

    Raises ``KeyError`` when nothing is there (the caller's missing-key policy applies),
    :class:`BadDataError` for a FIFO, device, socket or directory, :class:`StoreIOError`
    for another operating-system error. The caller closes the descriptor.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise KeyError(key) from None
    except IsADirectoryError:
        raise BadDataError(f"{what} {key} is a directory, not a {what} file") from None
    except OSError as exc:
        raise StoreIOError(f"{what} {key}: {exc.strerror or exc}", exc.errno) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise BadDataError(f"{what} {key} is a directory, not a {what} file")
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
            raise BadDataError(f"{what} {key} is {kind}, not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_fd(fd: int, key: str, limit: int, what: str) -> bytes:
    """All bytes of the open regular file ``fd``, refused past ``limit``."""
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise too_large(what, key, limit)
        chunks = []
        total = 0
        while True:
            block = os.read(fd, min(max(size - total, 0) + 1, limit + 1 - total) or 1)
            if not block:
                break
            chunks.append(block)
            total += len(block)
            if total > limit:  # it grew while being read
                raise too_large(what, key, limit)
    except OSError as exc:
        raise StoreIOError(f"{what} {key}: {exc.strerror or exc}", exc.errno) from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def read_bounded(
    store: Mapping[str, Any], key: str, limit: int, *, what: str = "chunk"
) -> bytes | memoryview:
    """The bytes of ``key``, at most ``limit`` of them, from a regular file only.

    ``KeyError`` when the key is absent; :class:`BadDataError` when it holds more than
    ``limit`` bytes or is not a regular file; :class:`StoreIOError` for an I/O failure.
    ``what`` names the key in messages (``chunk``, ``metadata``).
    """
    reader = getattr(store, "read_bounded", None)
    if reader is not None:
        data: bytes | memoryview = reader(key, limit)
        return data
    path = directory_path(store, key)
    if path is not None:
        fd = open_regular(path, key, what)
        try:
            return read_fd(fd, key, limit, what)
        finally:
            os.close(fd)
    value = store[key]
    if len(value) > limit:
        raise too_large(what, key, limit)
    return value
