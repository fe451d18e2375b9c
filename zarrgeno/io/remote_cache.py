"""The on-disk chunk cache of remote stores (``--cache`` / ``$ZARRGENO_CACHE``): chunk
bytes kept under one directory per store URL, each file written beside its final name and
renamed into place, so that a killed run never leaves a partial chunk to be read later.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from zarrgeno.errors import StoreIOError
from zarrgeno.io.bounded import open_regular, read_fd
from zarrgeno.io.partfiles import write_whole


class ChunkCache:
    """Chunk bytes kept on local disk, one directory per remote store.

    A file appears under its final name only when complete (written beside it, then
    renamed), so a killed run never leaves a partial chunk to be read later; only whole
    bodies, each within its key's size bound, are put here. The cache is keyed by URL and
    assumes the remote store does not change: delete it when it does.
    """

    def __init__(self, directory: str, url: str):
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", url.split("://", 1)[-1]).strip("_")[-60:]
        digest = hashlib.sha256(url.encode()).hexdigest()[:12]
        self.root = Path(directory) / f"{slug}-{digest}"

    def _file(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def get(self, key: str, limit: int) -> bytes | None:
        """The cached bytes of ``key``; None when absent, or larger than ``limit`` (then
        the caller fetches it again, within the bound, from the server)."""
        path = str(self._file(key))
        try:
            fd = open_regular(path, path, "cached chunk")
        except KeyError:
            return None
        try:
            if os.fstat(fd).st_size > limit:
                return None
            return read_fd(fd, path, limit, "cached chunk")
        finally:
            os.close(fd)

    def has(self, key: str) -> bool:
        return self._file(key).is_file()

    def put(self, key: str, data: bytes) -> None:
        final = self._file(key)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            write_whole(final, data)
        except OSError as exc:
            raise StoreIOError(f"cache {self.root}: {exc.strerror or exc}") from None
