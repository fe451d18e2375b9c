"""The plan of a download, before anything is written: which files of a remote Zarr
store to mirror into DEST. The files are found by listing the store or, over HTTP, from
its metadata (every chunk key of every array); ``--include`` / ``--exclude`` select among
them, unsafe keys are refused, and DEST is checked (new, resume of the same URL, or
replace with ``--overwrite``), leaving out files an earlier run already completed. The
plan is what ``--dry-run`` prints and what :func:`zarrgeno.download.fetch.execute_download`
carries out.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zarrgeno.defaults import DEFAULT_JOBS
from zarrgeno.defaults import TUTORIAL_EXCLUDE as TUTORIAL_EXCLUDE  # re-exported
from zarrgeno.errors import BadDataError, MissingInputError, TargetExistsError, UsageError
from zarrgeno.io.documents import CONSOLIDATED_DEPTH, MAX_JSON_DEPTH, parse_document
from zarrgeno.io.keys import check_key
from zarrgeno.io.mark import MARKER as WRITTEN_BY
from zarrgeno.io.remote_client import RemoteClient
from zarrgeno.io.remote_options import RemoteOptions
from zarrgeno.io.store import StoreRef, is_url
from zarrgeno.io.targets import describe, exists, resolve_target
from zarrgeno.io.validation import NODE_DOCUMENTS, array_meta_problem, refusal_error
from zarrgeno.io.zarr3 import ZARR_JSON, layout_of_document

#: Written in DEST when a download starts, so that a rerun resumes only a download of the
#: same URL; removed once the mirror is complete and validated, so that a finished mirror
#: holds the source's files and nothing else.
MARKER = ".zarrgeno-download.json"
#: Far above any real store (all of Ag1000G AO is a few thousand files), far below a hang.
MAX_FILES = 10_000_000
#: Root arrays that name the samples and find the contigs (MalariaGEN's ``samples``, VCF
#: Zarr's ``sample_id``, ``contig_id``, ``variant_contig`` and ``region_index``):
#: ``--include`` keeps them, as a mirror without them would count ``sample_0``... silently.
INDEX_ARRAYS = ("samples", "sample_id", "contig_id", "variant_contig", "region_index")


@dataclass(frozen=True)
class RemoteFile:
    """One file to mirror: its key relative to the store root and its size if known."""

    key: str
    size: int | None = None


@dataclass(frozen=True)
class DownloadPlan:
    """What a download would do; :func:`zarrgeno.download.fetch.execute_download` carries it out.

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
    #: Root arrays fetched although ``include`` leaves them out: the store needs them.
    kept: tuple[str, ...] = ()
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
            "kept": list(self.kept),
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
    check_key(key, url)


def chunk_keys(path: str, meta: dict[str, Any]) -> Iterable[str]:
    """Every chunk key of the array at ``path`` described by ``.zarray`` document ``meta``."""
    separator = meta.get("dimension_separator") or "."
    grid = _grid(meta)
    prefix = f"{path}/" if path else ""
    if not grid:
        yield f"{prefix}0"
        return
    for index in itertools.product(*(range(n) for n in grid)):
        yield prefix + separator.join(map(str, index))


def _grid(meta: dict[str, Any]) -> list[int]:
    """Chunks along each axis; none along an empty axis, whose chunk length may be 0."""
    return [
        math.ceil(s / c) if s else 0 for s, c in zip(meta["shape"], meta["chunks"], strict=True)
    ]


def _n_chunks(meta: dict[str, Any]) -> int:
    return math.prod(_grid(meta))


def _json(data: bytes, where: str) -> dict[str, Any]:
    depth = CONSOLIDATED_DEPTH if where.endswith(".zmetadata") else MAX_JSON_DEPTH
    return parse_document(data, where, depth=depth)


def _enumerate_by_metadata(client: RemoteClient) -> dict[str, int | None]:
    """Every key of the store from its metadata: exact on any HTTP server, no listing needed."""
    files: dict[str, int | None] = {}
    arrays: dict[str, dict[str, Any]] = {}
    try:
        raw = client.get_metadata(".zmetadata")
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
                    docs[name] = client.get_metadata(key)
                except FileNotFoundError:
                    continue
                files[key] = len(docs[name])
            if ".zarray" in docs:
                arrays[path] = _json(docs[".zarray"], f"{client.url}/{path}/.zarray")
                continue
            if ".zgroup" not in docs:
                if not path and _has(client, ZARR_JSON):
                    return _enumerate_v3(client)
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
    refused = {p: why for p, meta in arrays.items() if (why := array_meta_problem(meta))}
    if refused:  # a mirror holds every array: each refused one is named
        raise refusal_error(client.url, refused)
    for path, meta in sorted(arrays.items()):
        total += _n_chunks(meta)
        if total > MAX_FILES:
            raise BadDataError(f"{client.url}: more than {MAX_FILES:,} chunk files; refusing")
        files.update(dict.fromkeys(chunk_keys(path, meta)))
    return files


def _v3_nodes(client: RemoteClient, root: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every node below the root of a format-3 store by path: from the root's consolidated
    metadata (zarr-python 3's), else by listing each group's directory."""
    consolidated = root.get("consolidated_metadata")
    entries = consolidated.get("metadata") if isinstance(consolidated, dict) else None
    if isinstance(entries, dict):
        return {p: d for p, d in entries.items() if isinstance(d, dict)}
    nodes: dict[str, dict[str, Any]] = {}
    stack = [""]
    while stack:
        path = stack.pop()
        children = client.ls(path)
        if not path and not children:
            raise UsageError(
                f"{client.url} has no consolidated metadata and its server does not list "
                "directories, so its arrays cannot be found; consolidate the store where it "
                "is written"
            )
        for name, is_dir, _ in children:
            child = f"{path}/{name}" if path else name
            if not is_dir:
                continue
            try:
                raw = client.get_metadata(f"{child}/{ZARR_JSON}")
            except FileNotFoundError:
                continue
            nodes[child] = _json(raw, f"{client.url}/{child}/{ZARR_JSON}")
            if nodes[child].get("node_type") == "group":
                stack.append(child)
    return nodes


def _enumerate_v3(client: RemoteClient) -> dict[str, int | None]:
    """Every key of a Zarr format 3 store from its metadata: each node's ``zarr.json`` and
    every chunk (or shard) key of every array."""
    raw = client.get_metadata(ZARR_JSON)
    files: dict[str, int | None] = {ZARR_JSON: len(raw)}
    nodes = _v3_nodes(client, _json(raw, f"{client.url}/{ZARR_JSON}"))
    layouts = {}
    refused = {}
    for path, meta in sorted(nodes.items()):
        check_key(path, client.url, what="node")
        files[f"{path}/{ZARR_JSON}"] = None
        if meta.get("node_type") != "array":
            continue
        try:
            layouts[path] = layout_of_document(meta, path, client.url)
        except BadDataError as exc:
            refused[path] = str(exc).removeprefix(f"{client.url}/{path}: ")
    if refused:  # a mirror holds every array: each refused one is named
        raise refusal_error(client.url, refused)
    total = len(files)
    for layout in layouts.values():
        stored = layout.shard.shard_shape if layout.shard is not None else layout.chunks
        grid = [math.ceil(s / c) if s else 0 for s, c in zip(layout.shape, stored, strict=True)]
        total += math.prod(grid)
        if total > MAX_FILES:
            raise BadDataError(f"{client.url}: more than {MAX_FILES:,} chunk files; refusing")
        for index in itertools.product(*(range(n) for n in grid)):
            files[layout.shard_key(index)] = None
    return files


def _has(client: RemoteClient, key: str) -> bool:
    try:
        client.get_metadata(key)
    except FileNotFoundError:
        return False
    return True


def _enumerate_by_listing(client: RemoteClient) -> dict[str, int | None]:
    files = client.find()
    if not files:
        raise MissingInputError(f"nothing at {client.url}")
    if ".zgroup" not in files and ".zarray" not in files and ZARR_JSON not in files:
        raise MissingInputError(f"{client.url} is not a Zarr store (no .zgroup)")
    return files


def unfinished_download(dest: Path) -> str | None:
    """The URL whose unfinished download DEST holds (its :data:`MARKER`), else None;
    ``""`` for a marker that does not say."""
    marker = dest / MARKER
    if not marker.is_file():
        return None
    try:
        source = json.loads(marker.read_text()).get("source")
    except (OSError, ValueError, AttributeError):
        return ""
    return source if isinstance(source, str) else ""


def replaceable_dest(dest: Path) -> bool:
    """Whether ``--overwrite`` may delete DEST: an empty directory or an unfinished
    download (a finished mirror keeps no mark, so it is never deleted)."""
    return dest.is_dir() and (unfinished_download(dest) is not None or not any(dest.iterdir()))


def _dest_mode(dest: Path, url: str, overwrite: bool) -> str:
    if not exists(dest):
        return "new"
    if not dest.is_dir():
        raise TargetExistsError(f"{dest} is {describe(dest)}, not a directory; choose another DEST")
    source = unfinished_download(dest)
    if source is not None:
        if source == url:
            return "replace" if overwrite else "resume"
        if overwrite:
            return "replace"
        raise TargetExistsError(
            f"{dest} holds an unfinished download of {source or 'an unknown URL'}: "
            f"{describe(dest)}; choose another DEST, or pass --overwrite to replace it, "
            "deleting all of that"
        )
    if not any(dest.iterdir()):
        return "new"
    verdict = "--overwrite does not replace it" if overwrite else "--overwrite would not replace it"
    raise TargetExistsError(
        f"{dest} already exists and holds no unfinished download of {url}, but "
        f"{describe(dest)}; {verdict} (it replaces only an empty directory or an unfinished "
        "download; a finished mirror keeps no mark): choose another DEST, or remove it "
        "yourself, deleting all of that"
    )


def _refuse_zip(url: str) -> None:
    """A ``.zip`` URL is one file, not a directory of keys: say what to do instead."""
    scheme, _, path, _, _ = urllib.parse.urlsplit(url)
    if not path.rstrip("/").lower().endswith(".zip"):
        return
    name = path.rstrip("/").rsplit("/", 1)[-1]
    if scheme == "file":
        raise UsageError(f"{url}: download copies directory stores; open a .zip where it is")
    if scheme in ("http", "https"):
        over, fetch = "HTTP", f"download the file with any HTTP client (curl -O {url})"
    else:
        over, fetch = f"{scheme}://", "copy the file with your storage's own client"
    raise UsageError(
        f"{url}: a .zip store over {over} is not supported; {fetch} and open it locally "
        f"(zarrgeno info {name})"
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
    and group ``.zattrs``), nor the root arrays of :data:`INDEX_ARRAYS` (only ``exclude``
    does), so the mirror still opens as a store with its sample names and contigs. With
    ``sizes`` every size the enumeration lacks is asked for (one HEAD request per file over
    HTTP).
    """
    if not is_url(url):
        raise UsageError(f"{url} is not a URL; download reads gs://, s3:// or https:// stores")
    url = url.rstrip("/")
    _refuse_zip(url)
    if jobs < 1:
        raise UsageError("--jobs must be at least 1")
    includes, excludes = _compile(include, "--include"), _compile(exclude, "--exclude")
    target = resolve_target(dest or default_dest(url), sources=(StoreRef(location=url),))
    mode = _dest_mode(target, url, overwrite)
    options = options or RemoteOptions.from_env()
    client = RemoteClient(url, options, {})
    if client.is_http:
        enumeration, files = "metadata", _enumerate_by_metadata(client)
    else:
        enumeration, files = "listing", _enumerate_by_listing(client)
    groups = {k.rsplit("/", 1)[0] if "/" in k else "" for k in files if k.endswith(".zgroup")}
    index_arrays = {
        name for name in INDEX_ARRAYS if {f"{name}/.zarray", f"{name}/zarr.json"} & files.keys()
    }
    kept: set[str] = set()

    def wanted(key: str) -> bool:
        if any(r.match(key) for r in excludes):
            return False
        if not includes or any(r.match(key) for r in includes):
            return True
        parent, _, name = key.rpartition("/")
        if key.split("/", 1)[0] in index_arrays:
            kept.add(key.split("/", 1)[0])
            return True
        return name in (".zgroup", ".zmetadata") or (name == ".zattrs" and parent in groups)

    excluded: list[str] = []
    selected: list[str] = []
    for key in sorted(files):
        _check_key(key, url)
        # An unfinished mirror (or any mirror made by zarrgeno 0.1.0) holds the marker:
        # it is zarrgeno's, not the store's, and would make DEST look unfinished. The
        # mark of the command that wrote the source is not the mirror's either: copied,
        # it would let that command's --overwrite delete the mirror (the file of an
        # earlier zarrgeno; a root attribute is dropped as the mirror is written).
        (selected if key not in (MARKER, WRITTEN_BY) and wanted(key) else excluded).append(key)
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
        kept=tuple(sorted(kept)),
        options=options,
        retries=client.retried,
    )
