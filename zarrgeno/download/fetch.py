"""Mirror a remote Zarr store to a local directory, parallel, verified and resumable, by
carrying out a :class:`~zarrgeno.download.plan.DownloadPlan` (made by
:func:`~zarrgeno.download.plan.plan_download`, importable from here too): metadata first,
then chunks, several files at a time, each written as a part file and renamed into place
once complete (and, with ``verify``, once it decodes), with a resume marker in DEST so that
a rerun fetches only what is missing; the finished mirror is validated as a store and the
marker removed, leaving exactly the source's files. :func:`download` plans and executes in
one call.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import zarr.storage
from zarr.util import json_dumps

from zarrgeno import __version__
from zarrgeno.download.plan import (
    DEFAULT_JOBS,
    MARKER,
    MAX_FILES,
    TUTORIAL_EXCLUDE,
    DownloadPlan,
    RemoteFile,
    _json,
    _local,
    chunk_keys,
    default_dest,
    plan_download,
    replaceable_dest,
)
from zarrgeno.errors import BadDataError, StoreIOError, TargetExistsError, ZarrgenoError, os_reason
from zarrgeno.io.bounded import metadata_limit
from zarrgeno.io.chunks import ChunkLayout, decode_chunk
from zarrgeno.io.mark import unmarked
from zarrgeno.io.partfiles import remove_dead_parts, write_whole
from zarrgeno.io.remote import is_metadata_key
from zarrgeno.io.remote_client import RemoteClient
from zarrgeno.io.shards import decode_shard
from zarrgeno.io.store import open_group_readonly
from zarrgeno.io.validation import consolidated_mismatches, validate_array_meta
from zarrgeno.io.writing import clean_stale
from zarrgeno.io.zarr3 import ZARR_JSON, layout_of_document

__all__ = [
    "DEFAULT_JOBS",
    "MARKER",
    "MAX_FILES",
    "TUTORIAL_EXCLUDE",
    "DownloadPlan",
    "DownloadReport",
    "ProgressFn",
    "RemoteFile",
    "chunk_keys",
    "default_dest",
    "download",
    "execute_download",
    "plan_download",
]

ProgressFn = Callable[[int, int], None]
"""Called as ``progress(files, nbytes)`` with increments as files complete."""


@dataclass(frozen=True)
class DownloadReport:
    """What a download did, for the summary."""

    url: str
    dest: Path
    fetched_files: int
    fetched_bytes: int
    complete_files: int
    complete_bytes: int
    excluded_files: int
    absent: tuple[str, ...]
    verified_chunks: int
    retries: int
    seconds: float
    #: Entries of excluded documents dropped from the mirror's ``.zmetadata``.
    dropped_consolidated: int = 0
    #: Keys the mirror's ``.zmetadata`` lists that it lacks (stale on the server too).
    stale_consolidated: tuple[str, ...] = ()

    @property
    def bytes_per_second(self) -> float:
        return self.fetched_bytes / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "dest": str(self.dest),
            "fetched_files": self.fetched_files,
            "fetched_bytes": self.fetched_bytes,
            "complete_files": self.complete_files,
            "complete_bytes": self.complete_bytes,
            "excluded_files": self.excluded_files,
            "absent": list(self.absent),
            "verified_chunks": self.verified_chunks,
            "retries": self.retries,
            "seconds": round(self.seconds, 3),
            "bytes_per_second": round(self.bytes_per_second),
            "dropped_consolidated": self.dropped_consolidated,
            "stale_consolidated": list(self.stale_consolidated),
        }


def _write_marker(dest: Path, plan: DownloadPlan) -> None:
    """Mark DEST as an unfinished download of ``plan.url`` (what a rerun resumes).

    It lives in DEST, not beside it or in a cache: it moves and is deleted with the
    half-done mirror, and it can never bless another directory later made at the same path.
    """
    doc = {
        "source": plan.url,
        "zarrgeno": __version__,
        "include": list(plan.include),
        "exclude": list(plan.exclude),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_whole(dest / MARKER, (json.dumps(doc, indent=2) + "\n").encode())


def _layout(dest: Path, path: str) -> ChunkLayout:
    """The chunk layout of the array at ``path`` of the mirror, from its local ``.zarray``."""
    where = f"{dest}/{path}"
    meta = _json(_local(dest, f"{path}/.zarray" if path else ".zarray").read_bytes(), where)
    validate_array_meta(meta, where)
    dtype = np.dtype(meta["dtype"])
    compressor = numcodecs.get_codec(meta["compressor"]) if meta.get("compressor") else None
    filters = tuple(numcodecs.get_codec(f) for f in meta.get("filters") or ())
    return ChunkLayout(
        path=path,
        shape=tuple(meta["shape"]),
        chunks=tuple(meta["chunks"]),
        dtype=dtype,
        compressor=compressor,
        filters=filters,
        fill_value=None,
        separator=meta.get("dimension_separator") or ".",
        order=meta.get("order", "C"),
    )


def _array_of(key: str, layouts: dict[str, ChunkLayout]) -> ChunkLayout | None:
    """The array whose chunk ``key`` is, or None when ``key`` is not a chunk key."""
    if is_metadata_key(key):
        return None
    parts = key.split("/")
    for cut in range(len(parts) - 1, -1, -1):
        layout = layouts.get("/".join(parts[:cut]))
        if layout is not None:
            name = "/".join(parts[cut:])
            sep = re.escape(layout.separator)
            pattern = sep.join([r"\d+"] * len(layout.shape))
            if layout.key_prefix:  # format 3: c/1/0/0, or c alone for a 0-d array
                pattern = re.escape(layout.key_prefix) + (sep + pattern if pattern else "")
            elif not pattern:
                pattern = "0"
            return layout if re.fullmatch(pattern, name) else None
    return None


def _bound(key: str, layout: ChunkLayout | None) -> tuple[int, str]:
    """The most bytes ``key`` may hold, and what it is for messages: a chunk its array's
    encoded-size bound; metadata, or a file of no array, the metadata size cap."""
    if layout is not None and layout.shard is not None:
        return layout.shard.index_nbytes + layout.shard.n_chunks * layout.raw_cap, "shard"
    if layout is not None:
        return layout.raw_cap, "chunk"
    return metadata_limit(), "metadata" if is_metadata_key(key) else "file"


class _Transfer:
    """Fetch, check and write files; one instance per download, shared by its threads."""

    def __init__(self, plan: DownloadPlan, client: RemoteClient, verify: bool):
        self.plan, self.client, self.verify = plan, client, verify
        self.layouts: dict[str, ChunkLayout] = {}
        self.absent: list[str] = []
        self.verified = 0
        self.dropped = 0
        self._lock = threading.Lock()

    def __call__(self, item: RemoteFile) -> int:
        """Mirror one file; return its size (0 when the server has no such key)."""
        layout = _array_of(item.key, self.layouts)
        try:
            data = self.client.get(item.key, *_bound(item.key, layout))
        except FileNotFoundError:
            with self._lock:
                self.absent.append(item.key)
            return 0
        if item.size is not None and len(data) != item.size:
            raise StoreIOError(
                f"{self.client.path(item.key)}: expected {item.size} bytes, got {len(data)} "
                "(the file changed on the server, or the transfer was cut)"
            )
        if item.key == ".zmetadata" and self.plan.excluded:
            data = self._without_excluded(data)
        # The mark of the command that wrote the source is not the mirror's: kept, it would
        # let that command's --overwrite delete the mirror (the root attributes less it).
        data = unmarked(item.key, data, self.plan.url)
        if layout is not None and self.verify:
            if layout.shard is not None:  # its index checked, every inner chunk decoded
                decode_shard(data, layout.shard, replace(layout, shard=None), item.key)
            else:
                decode_chunk(layout, item.key, data)  # BadDataError names the chunk
            with self._lock:
                self.verified += 1
        final = _local(self.plan.dest, item.key)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            write_whole(final, data)  # never a partial file under the final name
        except OSError as exc:
            raise StoreIOError(f"writing {final}: {os_reason(exc)}", exc.errno) from None
        return len(data)

    def _without_excluded(self, data: bytes) -> bytes:
        """The consolidated metadata minus the documents excluded from the mirror.

        Otherwise zarr would show an excluded array from ``.zmetadata`` and read its
        chunks, all absent, as the fill value.
        """
        doc = _json(data, f"{self.plan.url}/.zmetadata")
        entries = doc.get("metadata")
        if not isinstance(entries, dict):
            raise BadDataError(f"{self.plan.url}/.zmetadata is not consolidated metadata")
        excluded = set(self.plan.excluded)
        kept = {k: v for k, v in entries.items() if k not in excluded}
        self.dropped = len(entries) - len(kept)
        return json_dumps({**doc, "metadata": kept}) if self.dropped else data

    def run(
        self, items: Sequence[RemoteFile], jobs: int, progress: ProgressFn | None
    ) -> tuple[int, int]:
        """Mirror ``items`` with ``jobs`` threads; stop at the first failure (after retries)."""
        done = nbytes = 0
        pending = iter(items)
        running: dict[Future[int], RemoteFile] = {}
        with ThreadPoolExecutor(jobs, thread_name_prefix="zarrgeno-download") as pool:
            try:
                for item in itertools.islice(pending, jobs * 2):
                    running[pool.submit(self, item)] = item
                while running:
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        running.pop(future)
                        size = future.result()  # raises the first failure
                        done, nbytes = done + 1, nbytes + size
                        if progress is not None:
                            progress(1, size)
                    for item in itertools.islice(pending, len(finished)):
                        running[pool.submit(self, item)] = item
            except BaseException:
                for future in running:
                    future.cancel()
                raise
        return done, nbytes


def execute_download(
    plan: DownloadPlan,
    *,
    jobs: int = DEFAULT_JOBS,
    verify: bool = True,
    progress: ProgressFn | None = None,
) -> DownloadReport:
    """Carry out ``plan``: metadata first, then chunks, ``jobs`` files at a time.

    Each file is written beside its final name and renamed into place once complete (and,
    with ``verify``, once a chunk has decoded to its array's chunk shape), so a rerun of
    an interrupted download fetches only what is missing. The first file that still fails
    after its retries stops the download with an error; what was written stays for the
    rerun. The finished mirror is validated as a store, then its resume marker is removed:
    it holds the source's files (less any excluded, and less the mark of the command that
    wrote the source, zarrgeno.io.mark) and nothing of zarrgeno's.
    """
    start = time.perf_counter()
    dest = plan.dest
    client = RemoteClient(plan.url, plan.options, {})
    try:
        if plan.mode == "replace" and (dest.exists() or dest.is_symlink()):
            if not replaceable_dest(dest):  # it changed since the plan was made
                raise TargetExistsError(f"{dest} changed since the download was planned; kept")
            trash = dest.with_name(f".{dest.name}.zarrgeno-trash-{os.getpid()}")
            os.replace(dest, trash)
            if trash.is_symlink():
                trash.unlink()  # --overwrite replaces the link, not what it points to
            else:
                shutil.rmtree(trash)
        dest.mkdir(parents=True, exist_ok=True)
        clean_stale(dest)  # the trash of an --overwrite killed while deleting the old DEST
        remove_dead_parts(dest)
        _write_marker(dest, plan)
    except OSError as exc:
        raise StoreIOError(f"cannot prepare {dest}: {os_reason(exc)}", exc.errno) from None
    transfer = _Transfer(plan, client, verify)
    metadata = [f for f in plan.fetch if is_metadata_key(f.key)]
    chunks = [f for f in plan.fetch if not is_metadata_key(f.key)]
    done = nbytes = 0
    try:
        done, nbytes = transfer.run(metadata, jobs, progress)
        present = {f.key for f in (*plan.complete, *metadata)} - set(transfer.absent)
        for key in present:
            if key == ".zarray" or key.endswith("/.zarray"):
                path = key[: -len(".zarray")].rstrip("/")
                transfer.layouts[path] = _layout(dest, path)
            elif key.endswith(f"/{ZARR_JSON}"):
                path = key[: -len(ZARR_JSON)].rstrip("/")
                meta = _json(_local(dest, key).read_bytes(), f"{dest}/{key}")
                if meta.get("node_type") == "array":
                    transfer.layouts[path] = layout_of_document(meta, path, str(dest))
        more, more_bytes = transfer.run(chunks, jobs, progress)
        done, nbytes = done + more, nbytes + more_bytes
    except ZarrgenoError as exc:
        left = len(plan.fetch) - done
        message = (
            f"{exc}; download stopped with {left} of {len(plan.fetch)} files still to fetch: "
            "rerun the same command to resume"
        )
        if isinstance(exc, StoreIOError):
            raise StoreIOError(message, exc.errno) from None
        raise type(exc)(message) from None
    store = zarr.storage.DirectoryStore(str(dest))
    if (dest / ".zgroup").exists() or (dest / ZARR_JSON).exists():
        open_group_readonly(store, str(dest))  # the mirror validates and opens as a store
    stale = tuple(k for k, reason in consolidated_mismatches(store) if reason == "stale")
    try:
        # Complete and valid: one unlink leaves the source's files and nothing else.
        (dest / MARKER).unlink(missing_ok=True)
    except OSError as exc:
        raise StoreIOError(f"cannot remove {dest / MARKER}: {os_reason(exc)}", exc.errno) from None
    return DownloadReport(
        url=plan.url,
        dest=dest,
        fetched_files=done - len(transfer.absent),
        fetched_bytes=nbytes,
        complete_files=len(plan.complete),
        complete_bytes=plan.complete_bytes,
        excluded_files=len(plan.excluded),
        absent=tuple(sorted({*plan.absent, *transfer.absent})),
        verified_chunks=transfer.verified,
        retries=plan.retries + client.retried,
        seconds=time.perf_counter() - start,
        dropped_consolidated=transfer.dropped,
        stale_consolidated=stale,
    )


def download(url: str, dest: str | os.PathLike[str] | None = None, **kwargs: Any) -> DownloadReport:
    """Plan and execute a download in one call (see :func:`plan_download`)."""
    execute_keys = {"verify", "progress"}
    jobs = kwargs.get("jobs", DEFAULT_JOBS)
    run = {k: kwargs.pop(k) for k in list(kwargs) if k in execute_keys}
    return execute_download(plan_download(url, dest, **kwargs), jobs=jobs, **run)
