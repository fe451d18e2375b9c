"""A read-only ``.zip`` store: entry names checked when opened, every read bounded.

zarr's own ``ZipStore`` trusts the archive: an entry named ``../victim`` is a key that a
copy writes outside its target, an entry named ``/abs`` lists as a child ``""`` of the root
(a walk that never ends), a small entry that inflates to gigabytes is inflated whole, and a
bad CRC or a broken deflate stream is a traceback. :class:`ZipStore` refuses the first two
when the archive is opened, inflates at most what the caller allows, and turns every
damage into a :class:`~zarrgeno.errors.BadDataError` that names the entry.
"""

from __future__ import annotations

import os
import threading
import zipfile
import zlib
from collections.abc import Iterator
from typing import Any

import zarr.storage

from zarrgeno.errors import BadDataError, StoreIOError, UsageError, os_reason
from zarrgeno.io.bounded import metadata_limit, too_large
from zarrgeno.io.keys import check_tree, key_problem, unsafe_key

#: Most bytes ``store[key]`` inflates an entry to when it is no metadata document (those
#: are held to :func:`zarrgeno.io.bounded.metadata_limit`): more than any chunk a codec
#: zarrgeno allows can hold. Chunk reads pass their own, far smaller, limit.
MAX_ENTRY_BYTES = 2**31
#: Metadata documents, read through ``store[key]`` by zarr.
_DOCUMENTS = frozenset({".zgroup", ".zarray", ".zattrs", ".zmetadata", "zarr.json"})
#: Bytes inflated per step: memory stays near the limit even when an entry lies about its size.
_BLOCK = 1 << 20
#: ZIP general purpose flag: the entry is encrypted.
_ENCRYPTED = 0x1


class ZipStore(zarr.storage.Store):
    """A ``.zip`` archive as a read-only zarr store.

    Opening reads the central directory and refuses the archive, naming the entry, when an
    entry name is no safe key (:mod:`zarrgeno.io.keys`) or is both a file and the directory
    of other entries. Directory entries (``2L/``, as ``zip -r`` writes
    them) are not keys and are ignored. :meth:`read_bounded` inflates at most ``limit``
    bytes whatever the entry's header claims. One archive handle serves every thread: the
    zipfile module reads through its own lock, and opening and closing entries (which count
    the handle's users) take this store's lock. A pickle carries the path only, and the
    copy opens and checks the archive again; so does a forked process.
    """

    _erasable = False
    _writeable = False

    def __init__(self, path: str | os.PathLike[str], name: str | None = None) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.name = name or os.fspath(path)
        self._lock = threading.Lock()
        self._open()

    def _open(self) -> None:
        try:
            archive = zipfile.ZipFile(self.path, mode="r")
        except OSError as exc:
            raise StoreIOError(f"{self.name}: {os_reason(exc)}", exc.errno) from None
        except Exception as exc:  # BadZipFile, and ValueError and friends on crafted headers
            raise BadDataError(f"{self.name} is not a readable zip store: {exc}") from None
        try:
            entries = self._entries_of(archive)
        except BaseException:
            archive.close()
            raise
        self._zip, self._pid, self._entries = archive, os.getpid(), entries
        self._children: dict[str, set[str]] = {}
        for key in entries:
            parts = key.split("/")
            for i, part in enumerate(parts):
                self._children.setdefault("/".join(parts[:i]), set()).add(part)

    def _entries_of(self, archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
        """The file entries by name, every name checked; directory entries left out."""
        files = []
        for info in archive.infolist():
            name = info.orig_filename  # ``filename`` stops at a NUL; the entry's name does not
            if name.endswith("/"):
                problem = key_problem(name[:-1])
                if problem is not None:
                    raise unsafe_key(self.name, name, problem, what="zip entry")
            else:
                files.append(info)
        check_tree((info.orig_filename for info in files), self.name, what="zip entry")
        # A name written twice reads as its last entry, as in zipfile and zarr: zarr's own
        # ZipStore appends a new .zarray whenever an array is resized (scikit-allel does).
        return {info.orig_filename: info for info in files}

    def _archive(self) -> zipfile.ZipFile:
        if self._pid != os.getpid():  # forked: the file offset is shared with the parent
            self._lock = threading.Lock()  # and the parent's lock may have been held
            self._open()
        return self._zip

    def __reduce__(self) -> tuple[type[ZipStore], tuple[str, str]]:
        return type(self), (self.path, self.name)

    def __eq__(self, other: object) -> bool:
        # Not Mapping's equality, which would read every entry of both stores.
        return isinstance(other, ZipStore) and other.path == self.path

    def __hash__(self) -> int:
        return hash((type(self), self.path))

    def read_bounded(self, key: str, limit: int) -> bytes:
        """The bytes of entry ``key``, inflating at most ``limit`` of them.

        ``KeyError`` when there is no such entry; :class:`BadDataError` naming the entry
        when it holds (or claims) more than ``limit`` bytes, is encrypted, or fails to
        inflate or its CRC; :class:`StoreIOError` when the file cannot be read.
        """
        archive = self._archive()
        info = self._entries.get(key)
        if info is None:
            raise KeyError(key)
        where = f"{self.name}: zip entry {key}"
        if info.flag_bits & _ENCRYPTED:
            raise BadDataError(f"{where} is encrypted")
        if info.file_size > limit:
            raise BadDataError(f"{self.name}: {too_large('zip entry', key, limit)}")
        parts: list[bytes] = []
        total = 0
        entry = None
        try:
            with self._lock:
                entry = archive.open(info)
            while total <= limit:
                block = entry.read(min(_BLOCK, limit + 1 - total))
                if not block:
                    break
                parts.append(block)
                total += len(block)
        except OSError as exc:
            if exc.errno is not None:
                raise StoreIOError(f"{where}: {os_reason(exc)}", exc.errno) from None
            raise BadDataError(f"{where} is corrupt ({exc})") from None  # bz2's bad data
        except zipfile.BadZipFile as exc:
            if str(exc).startswith("Bad CRC-32"):
                raise BadDataError(f"{where} fails its CRC-32 check (corrupt)") from None
            raise BadDataError(f"{where} is corrupt ({exc})") from None
        except zlib.error as exc:
            raise BadDataError(f"{where} is corrupt (cannot inflate: {exc})") from None
        except Exception as exc:  # EOFError, NotImplementedError, RuntimeError, lzma's...
            raise BadDataError(f"{where} is corrupt ({type(exc).__name__}: {exc})") from None
        finally:
            if entry is not None:
                with self._lock:
                    entry.close()
        if total > limit:  # the header understated it
            raise BadDataError(f"{self.name}: {too_large('zip entry', key, limit)}")
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def __getitem__(self, key: str) -> bytes:
        leaf = key.rsplit("/", 1)[-1]
        return self.read_bounded(key, metadata_limit() if leaf in _DOCUMENTS else MAX_ENTRY_BYTES)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def listdir(self, path: str | None = None) -> list[str]:
        """Names directly under ``path`` (files and directories), as zarr lists them."""
        return sorted(self._children.get((path or "").strip("/"), ()))

    def getsize(self, path: str | None = None) -> int:
        """Stored (compressed) bytes of entry ``path``, or of the entries directly under it."""
        path = (path or "").strip("/")
        if path in self._entries:
            return self._entries[path].compress_size
        prefix = f"{path}/" if path else ""
        keys = (prefix + child for child in self.listdir(path))
        return sum(self._entries[k].compress_size for k in keys if k in self._entries)

    def __setitem__(self, key: str, value: Any) -> None:
        raise UsageError(f"{self.name}: a .zip store cannot be changed in place")

    def __delitem__(self, key: str) -> None:
        raise UsageError(f"{self.name}: a .zip store cannot be changed in place")

    def close(self) -> None:
        with self._lock:
            self._zip.close()
