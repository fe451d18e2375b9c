"""Store inspection: the tree and zarr's ``.info`` per array, from metadata and listings only."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import zarr
import zarr.storage

from zarrgeno.errors import BadDataError, MissingInputError
from zarrgeno.io.compression import format_codec
from zarrgeno.io.consolidate import is_consolidated, v3_mismatches
from zarrgeno.io.screened import refuse_needed, refused_arrays
from zarrgeno.io.store import find_genotypes, genotype_paths, open_store
from zarrgeno.io.validation import consolidated_mismatches
from zarrgeno.io.zarr3 import V3Store
from zarrgeno.sizes import zarr_bytes


@dataclass(frozen=True)
class ArrayInfo:
    """The facts zarr's ``Array.info`` shows, plus chunk and compressor summaries, as numbers."""

    name: str
    path: str
    dtype: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    order: str
    read_only: bool
    compressor: str
    compressor_spec: str
    filters: tuple[str, ...]
    fill_value: Any
    store_type: str
    nbytes: int
    nbytes_stored: int
    nchunks: int
    nchunks_initialized: int
    is_genotype: bool
    #: Filter ids in order, e.g. ``("vlen-utf8",)`` for a string array.
    filter_ids: tuple[str, ...] = ()
    #: The shards of a sharded Zarr format 3 array (``chunks`` are its inner chunks), or None.
    shards: tuple[int, ...] | None = None

    @property
    def codecs_spec(self) -> str:
        """The compressor spec, then the filters: ``zstd:5 +vlen-utf8,crc32``."""
        filters = f" +{','.join(self.filter_ids)}" if self.filter_ids else ""
        return f"{self.compressor_spec}{filters}"

    @property
    def storage_ratio(self) -> float:
        """Raw over stored bytes; 0 when nothing is stored (zarr prints ``nan`` there)."""
        return self.nbytes / self.nbytes_stored if self.nbytes_stored > 0 else 0.0

    @property
    def avg_chunk_stored(self) -> float:
        """Average stored bytes per initialised chunk (metadata included, as zarr counts)."""
        return self.nbytes_stored / self.nchunks_initialized if self.nchunks_initialized else 0.0

    def info_items(self) -> list[tuple[str, str]]:
        """The fields and values exactly as ``zarr.Array.info`` labels and formats them."""
        items = [
            ("Name", self.name),
            ("Type", "zarr.core.Array"),
            ("Data type", self.dtype),
            ("Shape", str(self.shape)),
            ("Chunk shape", str(self.chunks)),
            ("Order", self.order),
            ("Read-only", str(self.read_only)),
        ]
        # zarr lists the filters (an object codec comes first) before the compressor.
        items.extend((f"Filter [{i}]", f) for i, f in enumerate(self.filters))
        items.extend(
            [
                ("Compressor", self.compressor),
                ("Store type", self.store_type),
                ("No. bytes", zarr_bytes(self.nbytes)),
                ("No. bytes stored", zarr_bytes(self.nbytes_stored)),
                ("Storage ratio", f"{self.storage_ratio:.1f}"),
                ("Chunks initialized", f"{self.nchunks_initialized}/{self.nchunks}"),
            ]
        )
        return items

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["shape"] = list(self.shape)
        data["chunks"] = list(self.chunks)
        data["filters"] = list(self.filters)
        data["filter_ids"] = list(self.filter_ids)
        data["storage_ratio"] = round(self.storage_ratio, 3)
        data["avg_chunk_stored"] = round(self.avg_chunk_stored, 1)
        data["fill_value"] = _jsonable(self.fill_value)
        return data


@dataclass(frozen=True)
class StoreInfo:
    """A store's location, tree and per-array facts with totals."""

    location: str
    store_type: str
    consolidated: bool
    tree: str
    arrays: tuple[ArrayInfo, ...]
    #: (key, reason) where ``.zmetadata`` and the per-node documents disagree.
    consolidated_mismatches: tuple[tuple[str, str], ...] = ()
    #: 3 for a Zarr format 3 store, read through :class:`zarrgeno.io.zarr3.V3Store`.
    zarr_format: int = 2
    #: The genotype arrays by contig: (contig, array path, first variant, stop).
    contigs: tuple[tuple[str, str, int, int], ...] = ()
    #: Why the genotype arrays could not be split into contigs (a damaged contig index).
    contigs_problem: str | None = None
    #: (array path, why) for each array zarrgeno refuses to open: not in ``arrays`` or
    #: ``tree``, and no command that does not need it is stopped by it.
    refused: tuple[tuple[str, str], ...] = ()

    @property
    def consolidated_agrees(self) -> bool | None:
        """Whether consolidated metadata matches the per-node documents (None: no .zmetadata)."""
        return not self.consolidated_mismatches if self.consolidated else None

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays)

    @property
    def nbytes_stored(self) -> int:
        return sum(a.nbytes_stored for a in self.arrays)

    @property
    def storage_ratio(self) -> float:
        return self.nbytes / self.nbytes_stored if self.nbytes_stored else 0.0

    @property
    def nchunks(self) -> int:
        return sum(a.nchunks for a in self.arrays)

    @property
    def nchunks_initialized(self) -> int:
        return sum(a.nchunks_initialized for a in self.arrays)

    def to_dict(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "store_type": self.store_type,
            "zarr_format": self.zarr_format,
            "consolidated": self.consolidated,
            "consolidated_agrees": self.consolidated_agrees,
            "consolidated_mismatches": [
                {"key": key, "reason": reason} for key, reason in self.consolidated_mismatches
            ],
            "tree": self.tree,
            "contigs": [
                {"contig": c, "array": p, "start": a, "stop": b, "n_variants": b - a}
                for c, p, a, b in self.contigs
            ],
            "contigs_problem": self.contigs_problem,
            "arrays": [a.to_dict() for a in self.arrays],
            "refused": [{"array": path, "reason": why} for path, why in self.refused],
            "totals": {
                "arrays": len(self.arrays),
                "nbytes": self.nbytes,
                "nbytes_stored": self.nbytes_stored,
                "storage_ratio": round(self.storage_ratio, 3),
                "nchunks": self.nchunks,
                "nchunks_initialized": self.nchunks_initialized,
            },
        }


def _jsonable(value: Any) -> Any:
    """A fill value as JSON: bytes as text, NaN and infinities as strings like zarr writes."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, complex):
        return [_jsonable(value.real), _jsonable(value.imag)]
    return value


def _type_name(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def array_info(arr: zarr.Array, raw_store: Any, *, is_genotype: bool = False) -> ArrayInfo:
    """Collect ``arr``'s facts; sizes come from ``raw_store``'s listings, not chunk reads.

    ``raw_store`` is the store that holds the chunks: with consolidated metadata zarr's own
    ``.info`` cannot size the array, so zarrgeno asks the underlying store directly.
    """
    stored = zarr.storage.getsize(raw_store, arr.path)
    return ArrayInfo(
        name=arr.name or "/",
        path=arr.path,
        dtype=str(arr.dtype),
        shape=tuple(int(s) for s in arr.shape),
        chunks=tuple(int(c) for c in arr.chunks),
        order=arr.order,
        read_only=bool(arr.read_only),
        compressor=repr(arr.compressor),
        compressor_spec=format_codec(arr.compressor),
        filters=tuple(repr(f) for f in arr.filters or ()),
        fill_value=arr.fill_value.item() if hasattr(arr.fill_value, "item") else arr.fill_value,
        store_type=_type_name(raw_store),
        nbytes=int(arr.nbytes),
        nbytes_stored=max(int(stored), 0),
        nchunks=0 if 0 in arr.shape else int(arr.nchunks),  # zarr divides by a chunk of 0
        nchunks_initialized=int(arr.nchunks_initialized),
        is_genotype=is_genotype,
        filter_ids=tuple(f.codec_id for f in arr.filters or ()),
        shards=_shards(arr),
    )


def _mismatches(raw: Any, base: Any) -> list[tuple[str, str]]:
    """Where consolidated metadata disagrees with the per-node documents (format 3: the
    root zarr.json's copy; one it cannot read is named ``unreadable``)."""
    if not isinstance(raw, V3Store):
        return consolidated_mismatches(raw)
    try:
        return v3_mismatches(base)
    except BadDataError:
        return [("zarr.json", "unreadable")]


def _shards(arr: zarr.Array) -> tuple[int, ...] | None:
    spec = getattr(arr.chunk_store, "shard_spec", None)
    shard = spec(arr.path) if spec is not None else None
    return shard.shard_shape if shard is not None else None


def _arrays(node: zarr.hierarchy.Group | zarr.Array) -> list[zarr.Array]:
    if isinstance(node, zarr.Array):
        return [node]
    found: list[zarr.Array] = []
    node.visitvalues(lambda v: found.append(v) if isinstance(v, zarr.Array) else None)
    return sorted(found, key=lambda a: a.path)


def inspect_store(source: Any = None, path: str | None = None) -> StoreInfo:
    """Describe a store (or the group/array at ``path`` in it) without reading any chunk."""
    ref, group = open_store(source)
    # The store holding the chunks: the same object zarr opened, so a remote store's
    # metadata and listings are fetched once.
    raw = group.chunk_store if group.chunk_store is not None else group.store
    node: zarr.hierarchy.Group | zarr.Array = group
    refused = refused_arrays(group)
    prefix = ""
    if path not in (None, "", "/"):
        key = path.strip("/")
        refuse_needed(group, ref.name, [key])
        prefix = f"{key}/"
        if key not in group:
            raise MissingInputError(f"no array or group {key!r} in {ref.name}")
        node = group[key]
    base = raw.base if isinstance(raw, V3Store) else raw
    marked = set(genotype_paths(group))  # metadata only: shown even if contigs cannot be split
    try:
        genotypes, problem = find_genotypes(group), None
    except BadDataError as exc:
        genotypes, problem = [], str(exc)
    arrays = tuple(array_info(a, raw, is_genotype=a.path in marked) for a in _arrays(node))
    tree = (
        repr(node.tree())
        if isinstance(node, zarr.hierarchy.Group)
        else (f"{node.path} {node.shape} {node.dtype}")
    )
    return StoreInfo(
        location=ref.name,
        store_type=_type_name(raw),
        consolidated=is_consolidated(base),
        tree=tree.rstrip("\n"),
        arrays=arrays,
        consolidated_mismatches=tuple(_mismatches(raw, base)),
        zarr_format=3 if isinstance(raw, V3Store) else 2,
        contigs=tuple((g.contig, g.path, g.start, g.stop) for g in genotypes),
        contigs_problem=problem,
        refused=tuple(sorted((p, why) for p, why in refused.items() if p.startswith(prefix))),
    )
