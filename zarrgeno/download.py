"""Mirror a remote Zarr store to a local directory: parallel, verified, resumable."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import zarr.storage
from zarr.util import json_dumps

from zarrgeno import __version__
from zarrgeno.chunkio import ChunkLayout, decode_chunk
from zarrgeno.errors import (
    BadDataError,
    MissingInputError,
    StoreIOError,
    TargetExistsError,
    UsageError,
    ZarrgenoError,
    os_reason,
)
from zarrgeno.remote import RemoteClient, RemoteOptions, is_metadata_key
from zarrgeno.store import StoreRef, is_url, open_group_readonly
from zarrgeno.validation import NODE_DOCUMENTS, consolidated_mismatches, validate_array_meta
from zarrgeno.writing import _pid_alive, check_target

#: Written in DEST when a download starts; a rerun resumes only a download of the same URL.
MARKER = ".zarrgeno-download.json"
#: A file being written is ``NAME.part-PID-THREAD`` until complete, then renamed to NAME.
_PART = re.compile(r"\.part-(\d+)-\d+$")
#: Far above any real store (all of Ag1000G AO is a few thousand files), far below a hang.
MAX_FILES = 10_000_000
DEFAULT_JOBS = 8
#: ``gsutil rsync -x`` in the Ag1000G tutorial: skip the AD, GQ and MQ arrays.
TUTORIAL_EXCLUDE = ".*/calldata/(AD|GQ|MQ)/.*"

ProgressFn = Callable[[int, int], None]
"""Called as ``progress(files, nbytes)`` with increments as files complete."""


@dataclass(frozen=True)
class RemoteFile:
    """One file to mirror: its key relative to the store root and its size if known."""

    key: str
    size: int | None = None


@dataclass(frozen=True)
class DownloadPlan:
    """What a download would do; :func:`execute_download` carries it out.

    ``mode`` is ``new`` (DEST absent or empty), ``resume`` (DEST holds an earlier download
    of the same URL) or ``replace`` (``--overwrite``: DEST is deleted first).
    ``enumeration`` says how the files were found: ``listing`` (the file system lists
    them, with sizes) or ``metadata`` (from ``.zmetadata`` or the ``.zgroup``/``.zarray``
    documents, every chunk key of every array: HTTP servers need not list directories).
    """

    url: str
    dest: Path
    mode: str
    enumeration: str
    fetch: tuple[RemoteFile, ...]
    complete: tuple[RemoteFile, ...]
    excluded: tuple[str, ...]
    absent: tuple[str, ...]
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    options: RemoteOptions = field(default_factory=RemoteOptions, repr=False)
    retries: int = 0

    @property
    def fetch_bytes(self) -> int | None:
        """Bytes to fetch, or None when some sizes are unknown (ask with ``sizes=True``)."""
        sizes = [f.size for f in self.fetch if f.size is not None]
        return sum(sizes) if len(sizes) == len(self.fetch) else None

    @property
    def complete_bytes(self) -> int:
        return sum(f.size or 0 for f in self.complete)

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "dest": str(self.dest),
            "mode": self.mode,
            "enumeration": self.enumeration,
            "fetch": [{"key": f.key, "size": f.size} for f in self.fetch],
            "fetch_files": len(self.fetch),
            "fetch_bytes": self.fetch_bytes,
            "complete_files": len(self.complete),
            "complete_bytes": self.complete_bytes,
            "excluded_files": len(self.excluded),
            "absent": list(self.absent),
            "include": list(self.include),
            "exclude": list(self.exclude),
        }


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


def default_dest(url: str) -> Path:
    """``data/NAME`` for a URL ending in NAME: the tutorial's URL lands on zarrgeno's
    default store, ``data/AG1000G-AO``."""
    name = url.split("://", 1)[-1].rstrip("/").rsplit("/", 1)[-1]
    if not name:
        raise UsageError(f"cannot name a destination after {url}; give DEST")
    return Path("data") / name


def _compile(patterns: Iterable[str], what: str) -> list[re.Pattern[str]]:
    compiled = []
    for p in patterns:
        try:
            compiled.append(re.compile(p))
        except re.error as exc:
            raise UsageError(f"{what} {p!r} is not a regular expression: {exc}") from None
    return compiled


def _check_key(key: str, url: str) -> None:
    """Refuse keys that would write outside DEST (a hostile listing or .zmetadata)."""
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts) or "\\" in key or key == MARKER:
        raise BadDataError(f"{url}: refusing to download unsafe key {key!r}")


def chunk_keys(path: str, meta: dict[str, Any]) -> Iterable[str]:
    """Every chunk key of the array at ``path`` described by ``.zarray`` document ``meta``."""
    separator = meta.get("dimension_separator") or "."
    grid = [math.ceil(s / c) for s, c in zip(meta["shape"], meta["chunks"], strict=True)]
    prefix = f"{path}/" if path else ""
    if not grid:
        yield f"{prefix}0"
        return
    for index in itertools.product(*(range(n) for n in grid)):
        yield prefix + separator.join(map(str, index))


def _n_chunks(meta: dict[str, Any]) -> int:
    return math.prod(math.ceil(s / c) for s, c in zip(meta["shape"], meta["chunks"], strict=True))


def _json(data: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadDataError(f"{where} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise BadDataError(f"{where} is not a JSON object")
    return doc


def _enumerate_by_metadata(client: RemoteClient) -> dict[str, int | None]:
    """Every key of the store from its metadata: exact on any HTTP server, no listing needed."""
    files: dict[str, int | None] = {}
    arrays: dict[str, dict[str, Any]] = {}
    try:
        raw = client.get(".zmetadata")
    except FileNotFoundError:
        raw = None
    if raw is not None:
        doc = _json(raw, f"{client.url}/.zmetadata")
        entries = doc.get("metadata")
        if doc.get("zarr_consolidated_format") != 1 or not isinstance(entries, dict):
            raise BadDataError(f"{client.url}/.zmetadata is not consolidated metadata format 1")
        files[".zmetadata"] = len(raw)
        for key, meta in entries.items():
            if key.rsplit("/", 1)[-1] in NODE_DOCUMENTS:
                files[key] = None
                if key.endswith(".zarray") and isinstance(meta, dict):
                    arrays[key[: -len(".zarray")].rstrip("/")] = meta
    else:
        stack = [""]
        while stack:
            path = stack.pop()
            docs = {}
            for name in NODE_DOCUMENTS:
                key = f"{path}/{name}" if path else name
                try:
                    docs[name] = client.get(key)
                except FileNotFoundError:
                    continue
                files[key] = len(docs[name])
            if ".zarray" in docs:
                arrays[path] = _json(docs[".zarray"], f"{client.url}/{path}/.zarray")
                continue
            if ".zgroup" not in docs:
                if not path:
                    raise MissingInputError(f"{client.url} is not a Zarr store (no .zgroup)")
                continue
            children = client.ls(path)
            if not path and not children:
                raise UsageError(
                    f"{client.url} has no .zmetadata and its server does not list directories, "
                    "so its arrays cannot be found; consolidate the store where it is written"
                )
            stack.extend(f"{path}/{c}" if path else c for c, is_dir, _ in children if is_dir)
    total = len(files)
    for path, meta in sorted(arrays.items()):
        validate_array_meta(meta, f"{client.url}/{path}")
        total += _n_chunks(meta)
        if total > MAX_FILES:
            raise BadDataError(f"{client.url}: more than {MAX_FILES:,} chunk files; refusing")
        files.update(dict.fromkeys(chunk_keys(path, meta)))
    return files


def _enumerate_by_listing(client: RemoteClient) -> dict[str, int | None]:
    files = client.find()
    if not files:
        raise MissingInputError(f"nothing at {client.url}")
    if ".zgroup" not in files and ".zarray" not in files:
        raise MissingInputError(f"{client.url} is not a Zarr store (no .zgroup)")
    return files


def _dest_mode(dest: Path, url: str, overwrite: bool) -> str:
    if not dest.exists():
        return "new"
    if not dest.is_dir():
        raise TargetExistsError(f"{dest} is a file, not a directory; choose another DEST")
    marker = dest / MARKER
    if marker.is_file():
        try:
            source = json.loads(marker.read_text()).get("source")
        except (OSError, ValueError):
            source = None
        if source == url:
            return "replace" if overwrite else "resume"
        if overwrite:
            return "replace"
        raise TargetExistsError(
            f"{dest} holds a download of {source}; choose another DEST, or pass --overwrite "
            "to replace it"
        )
    if not any(dest.iterdir()):
        return "new"
    if overwrite:
        return "replace"
    raise TargetExistsError(
        f"{dest} already exists and is not a download of {url}; choose another DEST, or "
        "pass --overwrite to replace it"
    )


def _local(dest: Path, key: str) -> Path:
    return dest.joinpath(*key.split("/"))


def _map(func: Callable[[str], Any], keys: Sequence[str], jobs: int) -> list[Any]:
    if len(keys) <= 1 or jobs <= 1:
        return [func(k) for k in keys]
    with ThreadPoolExecutor(jobs, thread_name_prefix="zarrgeno-plan") as pool:
        return list(pool.map(func, keys))


def plan_download(
    url: str,
    dest: str | os.PathLike[str] | None = None,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    overwrite: bool = False,
    options: RemoteOptions | None = None,
    sizes: bool = False,
    jobs: int = DEFAULT_JOBS,
) -> DownloadPlan:
    """Find the files to mirror from ``url`` into ``dest`` (nothing is written).

    ``include`` / ``exclude`` are regular expressions matched at the start of each key
    relative to the store root, as ``gsutil rsync -x`` does (``TUTORIAL_EXCLUDE`` skips
    AD, GQ and MQ). ``include`` never drops group metadata (``.zgroup``, ``.zmetadata``
    and group ``.zattrs``), so the mirror still opens as a store. With ``sizes`` every
    size the enumeration lacks is asked for (one HEAD request per file over HTTP).
    """
    if not is_url(url):
        raise UsageError(f"{url} is not a URL; download reads gs://, s3:// or https:// stores")
    url = url.rstrip("/")
    if jobs < 1:
        raise UsageError("--jobs must be at least 1")
    includes, excludes = _compile(include, "--include"), _compile(exclude, "--exclude")
    sources = (StoreRef(location=url[len("file://") :]),) if url.startswith("file://") else ()
    target = check_target(dest or default_dest(url), overwrite=True, sources=sources)
    mode = _dest_mode(target, url, overwrite)
    options = options or RemoteOptions.from_env()
    client = RemoteClient(url, options, {})
    if client.is_http:
        enumeration, files = "metadata", _enumerate_by_metadata(client)
    else:
        enumeration, files = "listing", _enumerate_by_listing(client)
    groups = {k.rsplit("/", 1)[0] if "/" in k else "" for k in files if k.endswith(".zgroup")}

    def wanted(key: str) -> bool:
        if any(r.match(key) for r in excludes):
            return False
        if not includes or any(r.match(key) for r in includes):
            return True
        parent, _, name = key.rpartition("/")
        return name in (".zgroup", ".zmetadata") or (name == ".zattrs" and parent in groups)

    excluded: list[str] = []
    selected: list[str] = []
    for key in sorted(files):
        _check_key(key, url)
        (selected if wanted(key) else excluded).append(key)
    existing = {k for k in selected if _local(target, k).is_file()} if mode == "resume" else set()
    unknown = [k for k in selected if files[k] is None and (sizes or k in existing)]

    def remote_size(key: str) -> int | None:
        try:
            return client.size(key)
        except FileNotFoundError:
            return -1

    absent = []
    for key, size in zip(unknown, _map(remote_size, unknown, jobs), strict=True):
        if size == -1:
            absent.append(key)
        files[key] = size
    fetch, complete = [], []
    for key in selected:
        if files[key] == -1:
            continue
        item = RemoteFile(key, files[key])
        if key in existing and item.size == _local(target, key).stat().st_size:
            complete.append(item)
        else:
            fetch.append(item)
    return DownloadPlan(
        url=url,
        dest=target,
        mode=mode,
        enumeration=enumeration,
        fetch=tuple(fetch),
        complete=tuple(complete),
        excluded=tuple(excluded),
        absent=tuple(absent),
        include=tuple(include),
        exclude=tuple(exclude),
        options=options,
        retries=client.retried,
    )


def _write_marker(dest: Path, plan: DownloadPlan, completed: bool) -> None:
    doc = {
        "source": plan.url,
        "zarrgeno": __version__,
        "include": list(plan.include),
        "exclude": list(plan.exclude),
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        "completed": completed,
    }
    part = dest / f"{MARKER}.part-{os.getpid()}-0"
    part.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(part, dest / MARKER)


def _clean_parts(dest: Path) -> None:
    """Remove partial files left by runs that were killed (not by runs still going)."""
    for folder, _, names in os.walk(dest):
        for name in names:
            match = _PART.search(name)
            if match and not _pid_alive(int(match.group(1))):
                Path(folder, name).unlink(missing_ok=True)


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
            ndim = max(len(layout.shape), 1)
            pattern = re.escape(layout.separator).join([r"\d+"] * ndim)
            return layout if re.fullmatch(pattern, name) else None
    return None


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
        try:
            data = self.client.get(item.key)
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
        layout = _array_of(item.key, self.layouts) if self.verify else None
        if layout is not None:
            decode_chunk(layout, item.key, data)  # BadDataError names the chunk
            with self._lock:
                self.verified += 1
        final = _local(self.plan.dest, item.key)
        part = final.with_name(f"{final.name}.part-{os.getpid()}-{threading.get_ident()}")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            part.write_bytes(data)
            os.replace(part, final)  # never a partial file under the final name
        except OSError as exc:
            part.unlink(missing_ok=True)
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
    rerun. The finished mirror is validated as a store.
    """
    start = time.perf_counter()
    dest = plan.dest
    client = RemoteClient(plan.url, plan.options, {})
    try:
        if plan.mode == "replace" and (dest.exists() or dest.is_symlink()):
            trash = dest.with_name(f".{dest.name}.zarrgeno-trash-{os.getpid()}")
            os.replace(dest, trash)
            if trash.is_symlink():
                trash.unlink()  # --overwrite replaces the link, not what it points to
            else:
                shutil.rmtree(trash)
        dest.mkdir(parents=True, exist_ok=True)
        _clean_parts(dest)
        _write_marker(dest, plan, completed=False)
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
    if (dest / ".zgroup").exists():
        open_group_readonly(store, str(dest))  # the mirror validates and opens as a store
    stale = tuple(k for k, reason in consolidated_mismatches(store) if reason == "stale")
    try:
        _write_marker(dest, plan, completed=True)
    except OSError as exc:
        raise StoreIOError(f"cannot write {dest / MARKER}: {os_reason(exc)}", exc.errno) from None
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
