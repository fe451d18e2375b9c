"""The I/O boundary: open genotype stores read-only and find their genotype arrays.

Opening and discovery live here; every chunk it reads (contig index, sample names) goes
through the checked chunk path of :mod:`zarrgeno.io.chunks`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import zarr
import zarr.storage

from zarrgeno.defaults import DEFAULT_STORE, STORE_ENV
from zarrgeno.errors import BadDataError, MissingInputError, StoreIOError, UsageError
from zarrgeno.io.chunks import ChunkLayout, read_whole, row_blocks
from zarrgeno.io.documents import load_document
from zarrgeno.io.remote_options import RemoteOptions
from zarrgeno.io.screened import ScreenedStore, refuse_needed, refused_arrays
from zarrgeno.io.validation import validate_store
from zarrgeno.io.zarr3 import V3Store, is_zarr3
from zarrgeno.io.zipstore import ZipStore

#: Consolidated-metadata key written by ``zarr.consolidate_metadata``.
CONSOLIDATED_KEY = ".zmetadata"

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")

StoreLike = "str | os.PathLike[str] | MutableMapping[str, bytes] | zarr.hierarchy.Group"


def default_store() -> str:
    """The store used when a command is given none: ``$ZARRGENO_STORE`` or ``data/AG1000G-AO``."""
    return os.environ.get(STORE_ENV) or DEFAULT_STORE


def is_url(location: str) -> bool:
    """True for fsspec URLs such as ``memory://x``, ``gs://bucket/x``, ``https://host/x``."""
    return bool(_URL.match(location))


@dataclass(frozen=True)
class StoreRef:
    """A picklable reference to a store that a worker process can open by itself.

    Tasks carry a ``StoreRef`` rather than arrays, so each worker opens its own handle.
    ``location`` is an absolute local path, a ``.zip`` file or an fsspec URL; ``mapping``
    is set instead for in-memory stores passed from Python (tests, notebooks). ``remote``
    (URLs only) carries timeouts, retries and the chunk cache, so that workers read the
    store exactly as the process that made the reference.
    """

    location: str | None = None
    mapping: MutableMapping[str, bytes] | None = field(default=None, compare=False, repr=False)
    storage_options: tuple[tuple[str, Any], ...] = ()
    remote: RemoteOptions | None = None
    #: The remote store this reference opened, kept so that every open of it in this
    #: process (the command, the plan, each array's reader) shares its connections and its
    #: metadata, fetched once; never pickled: a worker opens its own.
    _opened: Any = field(default=None, init=False, compare=False, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_opened"}

    @classmethod
    def from_source(cls, source: Any, *, remote: RemoteOptions | None = None) -> StoreRef:
        """Make a reference from a path, URL, zarr store, ``zarr.Group`` or ``StoreRef``.

        A URL's ``remote`` options default to :meth:`RemoteOptions.from_env`.
        """
        if isinstance(source, StoreRef):
            if remote is not None and source.location is not None and is_url(source.location):
                return replace(source, remote=remote)
            return source
        if isinstance(source, zarr.hierarchy.Group):
            return cls(mapping=source.store if source.chunk_store is None else source.chunk_store)
        if isinstance(source, str | os.PathLike):
            location = os.fspath(source)
            if not location:
                raise UsageError("the store location is empty")
            if not is_url(location):
                return cls(location=str(Path(location).expanduser().absolute()))
            if location.startswith("file://"):
                return cls(location=location)
            return cls(location=location, remote=remote or RemoteOptions.from_env())
        if isinstance(source, MutableMapping):
            return cls(mapping=source)
        raise UsageError(f"cannot open a store from {type(source).__name__}")

    @property
    def name(self) -> str:
        """A human-readable name for messages."""
        if self.location is not None:
            return self.location
        return f"<{type(self.mapping).__name__}>"

    @property
    def is_local(self) -> bool:
        """True when the store is a directory or zip file on this machine."""
        return self.location is not None and not is_url(self.location)

    def mapping_store(self) -> MutableMapping[str, bytes]:
        """Open the underlying key/value store read-only, without touching any chunk."""
        if self.mapping is not None:
            return self.mapping
        assert self.location is not None
        location = self.location
        if is_url(location):
            if location.startswith("file://"):
                return _local_store(location.removeprefix("file://"))
            # Not zarr's FSStore: it reads a timeout or a 503 as a missing chunk (fill value).
            if self._opened is not None and not self._opened.client.stopped:
                return self._opened  # type: ignore[no-any-return]
            try:
                from zarrgeno.io.remote import open_remote_store  # fsspec: only for URLs

                store = open_remote_store(
                    location, self.remote or RemoteOptions.from_env(), dict(self.storage_options)
                )
                object.__setattr__(self, "_opened", store)
                return store
            except (OSError, ValueError) as exc:
                if isinstance(exc, UsageError | StoreIOError):
                    raise
                raise StoreIOError(f"cannot open {location}: {exc}") from None
        return _local_store(location)

    def open(self) -> zarr.hierarchy.Group:
        """Open the store's root group read-only, with consolidated metadata when present."""
        return open_group_readonly(self.mapping_store(), self.name)


def _local_store(location: str) -> MutableMapping[str, bytes]:
    path = Path(location)
    if not path.exists():
        raise MissingInputError(
            f"no store at {location}; create one with `zarrgeno simulate {location}`"
        )
    if path.is_file():
        if path.suffix != ".zip":
            raise BadDataError(f"{location} is a file, not a Zarr directory or .zip store")
        return ZipStore(path, name=location)  # entry names checked, reads bounded
    return zarr.storage.DirectoryStore(str(path))


def open_group_readonly(store: MutableMapping[str, bytes], name: str) -> zarr.hierarchy.Group:
    """Validate, then open ``store``'s root group in mode ``r``; never creates or modifies.

    A Zarr format 3 store is opened through :class:`zarrgeno.io.zarr3.V3Store`, its format-2
    view, or refused by name when it uses what format 2 cannot express. zarr reads the
    metadata through a :class:`zarrgeno.io.screened.ScreenedStore` (documents capped, the
    arrays validation refused hidden: :func:`zarrgeno.io.screened.refused_arrays` names
    them) and has ``store`` itself as its chunk store.
    """
    if not isinstance(store, V3Store) and is_zarr3(store):
        store = V3Store(store, name)
    refused: dict[str, str] = {}
    validate_store(store, name, refused=refused)
    screened = ScreenedStore(store, refused, name)
    try:
        if CONSOLIDATED_KEY in store:
            return zarr.open_consolidated(screened, mode="r", chunk_store=store)
        if zarr.storage.contains_group(screened):
            return zarr.open_group(screened, mode="r", chunk_store=store)
        if zarr.storage.contains_array(store):
            raise BadDataError(f"{name} holds a single array, not a group of genotype arrays")
    except (KeyError, ValueError, TypeError) as exc:
        raise BadDataError(f"{name}: unreadable metadata: {exc}") from None
    except OSError as exc:
        raise StoreIOError(f"{name}: {exc}") from None
    hint = "" if is_url(name) else f"; create one with `zarrgeno simulate {name}`"
    raise MissingInputError(f"{name} is not a Zarr store (no .zgroup){hint}")


#: Arrays every genotype command reads besides the genotypes (VCF Zarr's contig index and
#: the sample names), whatever contigs are selected.
_SHARED_ARRAYS = ("call_genotype", "variant_contig", "contig_id", "samples", "sample_id")


def refuse_refused_genotypes(
    group: zarr.hierarchy.Group, name: str, contigs: Sequence[str] | None, *, positions: bool
) -> None:
    """Refuse (exit 4), naming them all, the refused arrays a genotype command needs: the
    genotypes of ``contigs`` (None: every contig), the contig index and sample names, and
    with ``positions`` their ``POS`` arrays. Other refused arrays do not matter to it."""
    wanted = set(contigs) if contigs else None
    shared = {*_SHARED_ARRAYS, *(("variant_position",) if positions else ())}
    per_contig = {"calldata/GT", *(("variants/POS",) if positions else ())}

    def needs(path: str) -> bool:
        contig, _, tail = path.partition("/")
        selected = wanted is None or contig in wanted
        return path in shared or tail == "samples" or (tail in per_contig and selected)

    refuse_needed(group, name, [p for p in refused_arrays(group) if needs(p)])


def open_store(source: Any = None) -> tuple[StoreRef, zarr.hierarchy.Group]:
    """Resolve ``source`` (default: :func:`default_store`) and open its root group read-only."""
    if isinstance(source, zarr.hierarchy.Group):
        return StoreRef.from_source(source), source
    ref = StoreRef.from_source(default_store() if source is None else source)
    return ref, ref.open()


#: Root ``.zattrs`` ``source`` prefixes of writers that leave out fill-value chunks.
FILL_SKIPPING_SOURCES = ("bio2zarr-",)


def skips_fill_chunks(group_or_store: Any) -> bool:
    """True when the store's writer leaves out chunks that hold only the fill value.

    zarr-python 3 does not write such chunks (``write_empty_chunks=False``), so an absent
    chunk of its stores is the fill value, not data loss. It is the only writer of Zarr
    format 3, so every format-3 store qualifies; so does a format-2 store whose root
    ``source`` attribute names bio2zarr (0.2 writes format 2 through zarr-python 3).
    Everything else (zarr 2.18, scikit-allel, sgkit, zarrgeno) writes every chunk, and
    an absent chunk there is refused unless the user allows it.
    """
    if isinstance(group_or_store, zarr.hierarchy.Group):
        stores = (group_or_store.store, group_or_store.chunk_store)
        if any(isinstance(s, V3Store) for s in stores):
            return True
        store = group_or_store.store
    else:
        store = group_or_store
        if isinstance(store, V3Store) or is_zarr3(store):
            return True
    try:
        if isinstance(store, zarr.storage.ConsolidatedMetadataStore):
            attrs = store[".zattrs"]  # consolidated metadata holds it already parsed
        else:
            attrs = load_document(store, ".zattrs", "store")  # capped, as every document
        source = attrs.get("source")
    except (KeyError, OSError, ValueError, TypeError, AttributeError, BadDataError):
        return False
    return isinstance(source, str) and source.startswith(FILL_SKIPPING_SOURCES)


def missing_chunks_allowed(allow_missing: bool | None, group_or_store: Any) -> bool:
    """The user's choice (``allow_missing`` True or False), else the store's writer's."""
    return skips_fill_chunks(group_or_store) if allow_missing is None else allow_missing


@dataclass(frozen=True)
class GenotypeArray:
    """One contig's genotype calls: ``path`` in the store, variants ``start:stop`` of it.

    In the MalariaGEN layout each contig has its own array (``2L/calldata/GT``) and the
    range is the whole array; in the VCF Zarr layout all contigs share ``call_genotype``
    and the range comes from ``variant_contig``.
    """

    contig: str
    path: str
    start: int
    stop: int
    shape: tuple[int, ...]
    chunks: tuple[int, ...]

    @property
    def n_variants(self) -> int:
        return self.stop - self.start

    @property
    def n_samples(self) -> int:
        return self.shape[1]

    @property
    def ploidy(self) -> int:
        return self.shape[2]


def _check_genotype_array(arr: zarr.Array) -> None:
    """A genotype array is 3-D signed integers, as VCF Zarr allows (either byte order):
    int8, or int16 to int64 (bio2zarr writes int16 once an allele index passes 127)."""
    if arr.ndim != 3:
        raise BadDataError(f"{arr.path}: a genotype array must be 3-D, found shape {arr.shape}")
    if arr.dtype.kind != "i" or arr.dtype.itemsize not in (1, 2, 4, 8):
        raise BadDataError(
            f"{arr.path}: genotype dtype must be a signed integer (int8, int16, int32 or "
            f"int64), got {arr.dtype}"
        )


#: The genotype arrays of each layout, by path: VCF Zarr's, scikit-allel's ``vcf_to_zarr``
#: without ``group=`` (all contigs in one array), and MalariaGEN's (``CONTIG/calldata/GT``).
VCF_ZARR_GT, ROOT_GT = "call_genotype", "calldata/GT"


def store_name(group: zarr.hierarchy.Group) -> str:
    """A name of the store ``group`` reads, for messages: its path or URL where it has one."""
    store: Any = group.chunk_store if group.chunk_store is not None else group.store
    for attribute in ("name", "url", "path"):
        value = getattr(store, attribute, None)
        if isinstance(value, str) and value:
            return value
    return f"<{type(store).__name__}>"


def _array(group: zarr.hierarchy.Group, path: str) -> zarr.Array | None:
    """The array at ``path``, or None when there is none (or a group is there)."""
    try:
        member = group.get(path)
    except (KeyError, ValueError):
        return None
    return member if isinstance(member, zarr.Array) else None


def genotype_paths(group: zarr.hierarchy.Group) -> list[str]:
    """Paths of the genotype arrays of every layout, from metadata alone.

    Checks nothing and reads no chunk: what ``zarrgeno info`` marks, even in a store whose
    contig index is damaged (:func:`find_genotypes` says what is wrong).
    """
    paths = [p for p in (VCF_ZARR_GT, ROOT_GT) if _array(group, p) is not None]
    for name, member in sorted(group.groups()):
        if _array(member, ROOT_GT) is not None:
            paths.append(f"{name}/{ROOT_GT}")
    return paths


def find_genotypes(group: zarr.hierarchy.Group) -> list[GenotypeArray]:
    """Discover genotype arrays in the MalariaGEN, scikit-allel and VCF Zarr layouts.

    Reads metadata only, except for the small contig indexes that split an array shared
    by all contigs: VCF Zarr's ``variant_contig`` and scikit-allel's ``variants/CHROM``.
    A contig name found twice is an error.
    """
    found: list[GenotypeArray] = []
    for path in genotype_paths(group):
        arr = group[path]
        _check_genotype_array(arr)
        if path == VCF_ZARR_GT:
            found.extend(_vcf_zarr_genotypes(group))
        elif path == ROOT_GT:
            found.extend(_root_genotypes(group, arr))
        else:
            contig = path.split("/", 1)[0]
            found.append(GenotypeArray(contig, path, 0, arr.shape[0], arr.shape, arr.chunks))
    seen: dict[str, str] = {}
    for g in found:
        if seen.setdefault(g.contig, g.path) != g.path:
            raise BadDataError(
                f"{store_name(group)}: contig {g.contig} is in both {seen[g.contig]} and {g.path}"
            )
    return found


def _whole(contig: str, path: str, arr: zarr.Array) -> GenotypeArray:
    return GenotypeArray(contig, path, 0, arr.shape[0], tuple(arr.shape), tuple(arr.chunks))


def _root_genotypes(group: zarr.hierarchy.Group, arr: zarr.Array) -> list[GenotypeArray]:
    """One range of the root ``calldata/GT`` per contig, from ``variants/CHROM``.

    ``allel.vcf_to_zarr`` without ``group=`` writes every contig into one array, with
    each variant's contig name in ``variants/CHROM``; a contig is a run of equal names.
    """
    chrom = _array(group, "variants/CHROM")
    if chrom is None:
        return [_whole("all", ROOT_GT, arr)]
    where = f"{store_name(group)}: variants/CHROM"
    if chrom.ndim != 1 or chrom.shape[0] != arr.shape[0]:
        raise BadDataError(
            f"{where} has shape {chrom.shape}, but {ROOT_GT} has {arr.shape[0]:,} variants"
        )
    if chrom.dtype.kind not in "OSU":
        raise BadDataError(f"{where} must hold contig names (strings), found {chrom.dtype}")
    runs = _runs(_checked_blocks(chrom, skips_fill_chunks(group)), where)
    return [
        GenotypeArray(_text(name), ROOT_GT, start, stop, tuple(arr.shape), tuple(arr.chunks))
        for name, start, stop in runs
    ] or [_whole("all", ROOT_GT, arr)]  # no variants: one empty range


def _vcf_zarr_genotypes(group: zarr.hierarchy.Group) -> list[GenotypeArray]:
    """One range of ``call_genotype`` per contig, in store order.

    bio2zarr's ``region_index`` (a few rows per variant chunk) gives the ranges without
    reading ``variant_contig``; it is used only when it agrees with the array's chunking,
    else ``variant_contig`` is read (sgkit writes no index). Both go through zarrgeno's
    checked chunk reads: zarr 2.18 reads a chunk that zarr-python 3 left out of an array
    with ``fill_value`` null (bio2zarr's format 2) as uninitialised memory.
    """
    arr = group[VCF_ZARR_GT]
    if "contig_id" not in group or "variant_contig" not in group:
        return [_whole("all", VCF_ZARR_GT, arr)]
    name = store_name(group)
    names = [_text(x) for x in _read_small(group, "contig_id")]
    variant_contig = group["variant_contig"]
    where = f"{name}: variant_contig"
    if variant_contig.ndim != 1 or variant_contig.shape[0] != arr.shape[0]:
        raise BadDataError(
            f"{where} has shape {variant_contig.shape}, but {VCF_ZARR_GT} has "
            f"{arr.shape[0]:,} variants"
        )
    if variant_contig.dtype.kind not in "iu":
        raise BadDataError(f"{where} dtype must be integer, got {variant_contig.dtype}")
    runs = None
    allow_missing = skips_fill_chunks(group)
    index = _array(group, "region_index")
    if index is not None and arr.shape[0] > 0:
        runs = _region_index_runs(
            index, arr.shape[0], variant_contig.chunks[0], len(names), allow_missing
        )
    if runs is None:
        blocks = _checked_blocks(variant_contig, allow_missing)
        runs = _runs(_within(blocks, len(names), where), where, names)
    return [
        GenotypeArray(names[index], VCF_ZARR_GT, start, stop, arr.shape, arr.chunks)
        for index, start, stop in runs
    ] or [_whole("all", VCF_ZARR_GT, arr)]  # no variants: one empty range


#: More region_index rows than this is not an index of a genotype store: read variant_contig.
MAX_INDEX_ROWS = 1 << 22


def _checked_blocks(arr: zarr.Array, allow_missing: bool) -> Iterator[np.ndarray]:
    """The rows of a 1-D or 2-D index array, one row of chunks at a time, through the
    checked chunk path (:func:`zarrgeno.io.chunks.row_blocks`); none for an empty array.

    With ``allow_missing`` (a writer that leaves out fill-value chunks, see
    :func:`skips_fill_chunks`) an absent chunk reads as the fill value, 0 when that is
    null; a sorted index exposes a wrong 0. Otherwise an absent chunk is named.
    """
    if 0 in arr.shape:  # zero-length chunks are allowed there, and hold nothing
        return iter(())
    return row_blocks(arr.chunk_store, ChunkLayout.of(arr), allow_missing=allow_missing)


def _region_index_runs(
    index: zarr.Array, n_variants: int, chunk: int, n_contigs: int, allow_missing: bool
) -> list[tuple[int, int, int]] | None:
    """``(contig, start, stop)`` runs from bio2zarr's region_index, or None if it does not
    add up (rows: chunk, contig, start, end, max end, number of records)."""
    if index.ndim != 2 or index.shape[1] != 6 or index.dtype.kind not in "iu":
        return None
    if index.shape[0] > MAX_INDEX_ROWS or chunk <= 0:
        return None
    blocks = list(_checked_blocks(index, allow_missing))
    rows = np.concatenate(blocks or [np.zeros((0, 6), index.dtype)])
    rows = rows.astype(np.int64)
    n_chunks = -(-n_variants // chunk)
    per_chunk = np.zeros(n_chunks, dtype=np.int64)
    runs: list[tuple[int, int, int]] = []
    offset, previous = 0, -1
    for chunk_index, contig, _, _, _, count in rows.tolist():
        if not (previous <= chunk_index < n_chunks) or count <= 0:
            return None
        if not 0 <= contig < n_contigs:
            return None  # variant_contig says what is wrong, by name
        previous = chunk_index
        per_chunk[chunk_index] += count
        if runs and runs[-1][0] == contig:
            runs[-1] = (contig, runs[-1][1], offset + count)
        elif any(r[0] == contig for r in runs):
            return None  # not sorted by contig: variant_contig says so by name
        else:
            runs.append((contig, offset, offset + count))
        offset += count
    expected = np.minimum(chunk, n_variants - np.arange(n_chunks) * chunk)
    if offset != n_variants or not np.array_equal(per_chunk, expected):
        return None
    return runs


def _within(blocks: Iterator[np.ndarray], n_contigs: int, where: str) -> Iterator[np.ndarray]:
    """``blocks`` of contig indexes, each checked to index one of ``n_contigs`` contigs."""
    offset = 0
    for block in blocks:
        outside = (block < 0) | (block >= n_contigs)
        if outside.any():
            i = int(np.argmax(outside))
            raise BadDataError(
                f"{where} holds {int(block[i])} at variant {offset + i:,}, outside contig_id "
                f"(contigs 0 to {n_contigs - 1})"
                if n_contigs
                else f"{where} holds {int(block[i])} at variant {offset + i:,}, and contig_id "
                "is empty"
            )
        offset += block.size
        yield block


def _runs(
    blocks: Iterator[np.ndarray], where: str, names: list[str] | None = None
) -> list[tuple[Any, int, int]]:
    """``(value, start, stop)`` of each run of equal values in ``blocks`` read in order:
    a contig index or name per variant. A value in two separate runs is an error naming
    ``where`` (the contig, by ``names`` when they are indexes)."""
    runs: list[tuple[Any, int, int]] = []
    seen: set[Any] = set()
    offset = 0
    for block in blocks:
        if block.size == 0:
            continue
        starts = np.concatenate([[0], np.flatnonzero(block[1:] != block[:-1]) + 1])
        stops = [*starts[1:].tolist(), block.size]
        for i, j in zip(starts.tolist(), stops, strict=True):
            value = block[i].item() if isinstance(block[i], np.generic) else block[i]
            if runs and runs[-1][0] == value and i == 0:
                runs[-1] = (value, runs[-1][1], offset + j)
                continue
            if value in seen:
                label = names[value] if names is not None else _text(value)
                raise BadDataError(
                    f"{where} is not sorted by contig: contig {label} starts again at variant "
                    f"{offset + i:,} after other contigs (each contig must be one run of "
                    "variants)"
                )
            seen.add(value)
            runs.append((value, offset + i, offset + j))
        offset += block.size
    return runs


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return str(value)


def _read_small(group: zarr.hierarchy.Group, key: str) -> np.ndarray:
    """A small array's values, read through zarrgeno's checked chunk path (not zarr's)."""
    raw = group.chunk_store if group.chunk_store is not None else group.store
    return read_whole(raw, ChunkLayout.of(group[key]))


def sample_names(group: zarr.hierarchy.Group, n_samples: int) -> list[str]:
    """Sample identifiers from ``samples`` (MalariaGEN) or ``sample_id`` (VCF Zarr).

    Any string dtype reads: fixed bytes (``|S24``), unicode (``<U8``) or object strings
    (``vlen-utf8``, as scikit-allel and bio2zarr write them).
    """
    # scikit-allel writes them per contig (``2L/samples``), MalariaGEN and VCF Zarr at the root.
    keys = ["samples", "sample_id", *(f"{name}/samples" for name, _ in sorted(group.groups()))]
    for key in keys:
        if key in group and isinstance(group[key], zarr.Array) and group[key].shape == (n_samples,):
            return [_text(x) for x in _read_small(group, key)]
    return [f"sample_{i}" for i in range(n_samples)]


def select_genotypes(
    genotypes: list[GenotypeArray], contigs: list[str] | None
) -> list[GenotypeArray]:
    """Keep the named contigs, in the order given; an unknown name is a clear error."""
    if not contigs:
        if not genotypes:
            raise MissingInputError(
                "no genotype arrays found (looked for calldata/GT, */calldata/GT and call_genotype)"
            )
        return genotypes
    by_name = {g.contig: g for g in genotypes}
    missing = [c for c in contigs if c not in by_name]
    if missing:
        known = ", ".join(by_name) or "none"
        raise MissingInputError(f"no contig {', '.join(missing)} in the store (found: {known})")
    return [by_name[c] for c in contigs]
