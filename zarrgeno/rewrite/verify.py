"""Compare two stores chunk by chunk in bounded memory and name the first difference."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import zarr

from zarrgeno.errors import BadDataError, UsageError
from zarrgeno.io.chunks import ChunkLayout, read_whole
from zarrgeno.io.mark import without_mark
from zarrgeno.io.readahead import reads_stopped, window_bytes
from zarrgeno.io.screened import refuse_needed
from zarrgeno.io.store import missing_chunks_allowed, open_store
from zarrgeno.io.zarr3 import is_zarr3
from zarrgeno.rewrite import arrayplan
from zarrgeno.rewrite.blockcopy import fetch_regions, read_region
from zarrgeno.rewrite.buffers import release_buffers, thread_buffer
from zarrgeno.rewrite.executors import Progress
from zarrgeno.rewrite.measure import compressed_fractions
from zarrgeno.rewrite.regionindex import build_region_index
from zarrgeno.sizes import format_size, parse_size
from zarrgeno.vcfzarr import REGION_INDEX

#: Rows compared per numpy call, so the comparison's boolean temporary stays small.
COMPARE_BYTES = 64_000_000


@dataclass(frozen=True)
class ArrayCheck:
    """One array found identical."""

    path: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int


@dataclass(frozen=True)
class VerifyReport:
    """Every array compared, all identical (a difference raises instead)."""

    source: str
    target: str
    arrays: tuple[ArrayCheck, ...]
    groups: int
    elapsed: float

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays)

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "arrays": [asdict(a) for a in self.arrays],
            "nbytes": self.nbytes,
            "identical": True,
        }


def _members(group: zarr.hierarchy.Group) -> tuple[list[str], list[str]]:
    groups: list[str] = [""]
    arrays: list[str] = []
    group.visititems(
        lambda name, obj: (arrays if isinstance(obj, zarr.Array) else groups).append(name)
    )
    return sorted(groups), sorted(arrays)


def _group_attrs(group: zarr.hierarchy.Group, path: str) -> dict[str, Any]:
    """A group's attributes as compared; the root's without the mark of the command that
    wrote the store (zarrgeno.io.mark), which names that command, not the data."""
    attrs = group.attrs.asdict()
    return attrs if path else without_mark(attrs)


def _same_fill(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    try:
        if np.isnan(a) and np.isnan(b):
            return True
    except TypeError:
        pass
    return bool(np.all(np.asarray(a) == np.asarray(b)))


def verify_stores(
    source: Any,
    target: Any,
    *,
    arrays: Sequence[str] | None = None,
    max_mem: int | str = "4GB",
    progress: Progress | None = None,
    allow_missing: bool | None = None,
) -> VerifyReport:
    """Check that ``target`` holds the same data as ``source``; raise on the first difference.

    Compares every array (or those named in ``arrays``): shape, dtype, fill value,
    attributes and decoded contents, plus group attributes (the root's less the mark of
    the command that wrote the store); an array missing from either side is a
    difference. Contents are read in blocks aligned to the coarser of the two chunkings
    along the first axis and compared against slabs of the finer one, so every
    chunk is decoded about once and memory stays within ``max_mem`` (a remote store's
    window of chunks fetched ahead included: its requests overlap). Raises
    :class:`BadDataError` naming the array and the region of the first difference. Chunks
    are read with zarrgeno's checks; a missing chunk is a difference unless ``allow_missing``
    (None: decided for each store by :func:`zarrgeno.io.store.skips_fill_chunks`).
    """
    started = time.perf_counter()
    budget = parse_size(max_mem)
    progress = progress or Progress()
    src_ref, src = open_store(source)
    tgt_ref, tgt = open_store(target)
    for ref, group in ((src_ref, src), (tgt_ref, tgt)):  # each array compared, or those named
        refuse_needed(group, ref.name, arrays)
    src_allow = missing_chunks_allowed(allow_missing, src)
    tgt_allow = missing_chunks_allowed(allow_missing, tgt)
    src_groups, src_arrays = _members(src)
    tgt_groups, tgt_arrays = _members(tgt)
    if arrays:
        paths = list(dict.fromkeys(p.strip("/") for p in arrays))  # each array checked once
        for path in paths:
            if path not in src_arrays:
                raise UsageError(f"no array {path!r} in the source {src_ref.name}")
        groups: list[str] = []
    else:
        paths = src_arrays
        groups = src_groups
        extra = sorted(set(tgt_arrays) - set(src_arrays)) or sorted(
            set(tgt_groups) - set(src_groups)
        )
        if extra:
            raise BadDataError(f"the target has {extra[0]!r}, which the source does not")
    for path in groups:
        if path not in tgt_groups:
            raise BadDataError(f"group {path or '/'} is missing from the target")
        a = src[path] if path else src
        b = tgt[path] if path else tgt
        if _group_attrs(a, path) != _group_attrs(b, path):
            raise BadDataError(f"group {path or '/'}: attributes differ")
    checks = []
    # Zarr format 3 has no null fill value: zarr-python 3 reads format 2's null as zero.
    cross = is_zarr3(src_ref.mapping_store()) != is_zarr3(tgt_ref.mapping_store())
    for path in paths:
        if path not in tgt_arrays:
            raise BadDataError(f"array {path} is missing from the target")
        a, b = src[path], tgt[path]
        if path == REGION_INDEX and _variants_chunk(src) != _variants_chunk(tgt):
            _check_region_index(tgt, tgt_ref.mapping_store(), tgt_allow)
            checks.append(ArrayCheck(path, b.shape, b.dtype.str, b.nbytes))
            continue
        for what, x, y in (("shape", a.shape, b.shape), ("dtype", a.dtype, b.dtype)):
            if x != y:
                raise BadDataError(f"{path}: {what} differs (source {x}, target {y})")
        if not _same_fill(*(_fill(x, cross) for x in (a, b))):
            raise BadDataError(
                f"{path}: fill value differs (source {a.fill_value!r}, target {b.fill_value!r})"
            )
        if a.attrs.asdict() != b.attrs.asdict():
            raise BadDataError(f"{path}: attributes differ")
        sides = (
            _Side(src_ref.mapping_store(), ChunkLayout.of(a), "source", src_allow),
            _Side(tgt_ref.mapping_store(), ChunkLayout.of(b), "target", tgt_allow),
        )
        try:
            with reads_stopped(*{id(side.store): side.store for side in sides}.values()):
                _compare_contents(path, a, b, sides, budget, progress)
        finally:
            release_buffers()
        checks.append(ArrayCheck(path, a.shape, a.dtype.str, a.nbytes))
    return VerifyReport(
        src_ref.name, tgt_ref.name, tuple(checks), len(groups), time.perf_counter() - started
    )


def _fill(arr: zarr.Array, cross: bool) -> Any:
    """An array's fill value as compared: across formats, null is what format 3 reads."""
    if not cross or arr.fill_value is not None:
        return arr.fill_value
    return "" if arr.dtype.hasobject else np.zeros((), dtype=arr.dtype).item()


def _variants_chunk(group: zarr.hierarchy.Group) -> int | None:
    """The variants chunk length of a VCF Zarr store (its ``variant_position``'s)."""
    position = group.get("variant_position")
    return position.chunks[0] if isinstance(position, zarr.Array) and position.ndim else None


def _check_region_index(group: zarr.hierarchy.Group, store: Any, allow_missing: bool) -> None:
    """A VCF Zarr store rechunked along ``variants`` has its own region index: it must be
    the one bio2zarr would build for its chunks, from its own variant columns."""
    chunk = _variants_chunk(group)
    index = group[REGION_INDEX]
    if chunk is None or index.ndim != 2:
        raise BadDataError(f"{REGION_INDEX}: cannot be checked without variant_position")
    expected = build_region_index(group, store, chunk, allow_missing=allow_missing)
    found = read_whole(store, ChunkLayout.of(index), allow_missing=allow_missing)
    if found.shape != expected.shape or not np.array_equal(found, expected):
        raise BadDataError(
            f"{REGION_INDEX}: does not index the target's variants chunks of {chunk} (it must "
            "be rebuilt for them)"
        )


@dataclass(frozen=True)
class _Side:
    store: Any
    layout: ChunkLayout
    name: str
    allow_missing: bool


def _rows(side: _Side, r0: int, r1: int) -> tuple[slice, ...]:
    """Rows ``r0:r1`` of the side's array, every other axis whole."""
    return (slice(r0, r1), *(slice(0, n) for n in side.layout.shape[1:]))


def _read(side: _Side, r0: int, r1: int, out: np.ndarray) -> None:
    """Decode rows ``r0:r1`` (every other axis whole) into ``out``, with chunk checks."""
    try:
        read_region(
            side.store, side.layout, _rows(side, r0, r1), out, allow_missing=side.allow_missing
        )
    except BadDataError as exc:
        raise BadDataError(f"{side.layout.path}: cannot read the {side.name}: {exc}") from None


def _region(arr: zarr.Array, r0: int, r1: int, column: int | None = None) -> str:
    if arr.ndim < 2:
        return f"elements {r0}-{r1}"
    text = f"variants {r0}-{r1}"
    if column is not None:
        c = arr.chunks[1]
        lo = (column // c) * c
        text += f", samples {lo}-{min(lo + c, arr.shape[1])}"
    return text


def _compare_contents(
    path: str,
    a: zarr.Array,
    b: zarr.Array,
    sides: tuple[_Side, _Side],
    budget: int,
    progress: Progress,
) -> None:
    if a.ndim == 0:  # a scalar array: one tiny chunk
        x, y = (read_whole(s.store, s.layout, allow_missing=s.allow_missing) for s in sides)
        if not np.array_equal(x, y, equal_nan=a.dtype.kind in "fc"):
            raise BadDataError(f"{path}: the value differs")
        return
    if 0 in a.shape:  # nothing to compare (and its chunk length may be 0)
        progress.start(path, 0)
        return
    n = a.shape[0]
    row = math.prod(a.shape[1:]) * a.itemsize
    coarse, fine = sides if sides[0].layout.chunks[0] >= sides[1].layout.chunks[0] else sides[::-1]
    f_rows = fine.layout.chunks[0]
    rows = _block_rows(path, coarse, fine, row, budget)
    rows = min(rows, max(n, 1))
    for side, r0, r1 in _reads(n, rows, coarse, fine):  # fetched ahead in this order
        fetch_regions(side.store, side.layout, (_rows(side, r0, r1),))
    progress.start(path, math.ceil(n / rows) if n else 0)
    for b0 in range(0, n, rows):
        b1 = min(b0 + rows, n)
        block = thread_buffer("verify-block", (b1 - b0, *a.shape[1:]), a.dtype)
        _read(coarse, b0, b1, block)
        for s0 in range((b0 // f_rows) * f_rows, b1, f_rows):
            lo, hi = max(s0, b0), min(s0 + f_rows, b1)
            part = thread_buffer("verify-slab", (hi - lo, *a.shape[1:]), a.dtype)
            _read(fine, lo, hi, part)
            _compare_slab(path, a, block[lo - b0 : hi - b0], part, lo, coarse is sides[0])
        progress.advance(1)


def _reads(n: int, rows: int, coarse: _Side, fine: _Side) -> Iterator[tuple[_Side, int, int]]:
    """``(side, r0, r1)`` for every read of :func:`_compare_contents`, in its order: a
    block of ``rows`` rows of the coarser side, then the slabs of the finer one within it."""
    f_rows = fine.layout.chunks[0]
    for b0 in range(0, n, rows):
        b1 = min(b0 + rows, n)
        yield coarse, b0, b1
        for s0 in range((b0 // f_rows) * f_rows, b1, f_rows):
            yield fine, max(s0, b0), min(s0 + f_rows, b1)


def _window(sides: tuple[_Side, ...]) -> int:
    """Bytes of chunks the stores of ``sides`` may hold fetched ahead: each remote store's
    window once (0 for local stores)."""
    most: dict[int, int] = {}
    for side in sides:
        key = id(side.store)
        most[key] = max(most.get(key, 0), window_bytes(side.store, side.layout))
    return sum(most.values())


def _scratch(side: _Side) -> int:
    """A decoded chunk held apart from the output (plus filter copies), if one is needed."""
    layout = side.layout
    direct = (
        layout.compressor is not None
        and layout.compressor.codec_id == "blosc"
        and not layout.filters
        and layout.order == "C"
        and layout.chunks[1:] == layout.shape[1:]
    )
    return 0 if direct else layout.chunk_nbytes * (1 + 2 * len(layout.filters))


def _block_rows(path: str, coarse: _Side, fine: _Side, row: int, budget: int) -> int:
    """Rows per block of the coarser array that keep every buffer within ``budget``.

    A block holds whole chunks of the coarser array when it can (each decoded once,
    straight into the block when they span the other axes), else whole chunks of the finer
    one. Besides the block: a slab of the finer array, decode scratch, one chunk's
    compressed bytes (their measured fraction, with a margin; a remote store's chunk at its
    size bound, so that no chunk is fetched twice), the comparison's temporary
    and a remote store's window of chunks fetched ahead (``--fetch-concurrency`` bodies at
    their size bound).
    """
    c_rows, f_rows = coarse.layout.chunks[0], fine.layout.chunks[0]
    compressed = 0.0
    for side in (coarse, fine):
        if window_bytes(side.store, side.layout):  # remote: the bound, not two more requests
            compressed = max(compressed, side.layout.raw_cap)
            continue
        fraction, _ = compressed_fractions(side.store, side.layout, [])
        compressed = max(compressed, 1.25 * fraction * side.layout.chunk_nbytes)
    fixed = int(f_rows * row + _scratch(fine) + compressed + min(COMPARE_BYTES, f_rows * row))
    fixed += arrayplan.TASK_ALLOWANCE
    ahead = _window((coarse, fine))
    fixed += ahead
    whole = (budget - fixed - _scratch(coarse)) // max(row, 1)
    if whole >= c_rows:
        return int(whole // c_rows * c_rows)
    # Blocks cut the coarser chunks: each is decoded apart, then copied.
    cut = (budget - fixed - coarse.layout.chunk_nbytes) // max(row, 1)
    if cut >= f_rows:
        return int(cut // f_rows * f_rows)
    need = fixed + coarse.layout.chunk_nbytes + f_rows * row
    fetched = (
        f" (with {format_size(ahead)} of chunks fetched ahead: lower --fetch-concurrency, or "
        f"pass --max-mem {format_size(need).replace(' ', '')} or more)"
        if ahead
        else ""
    )
    raise UsageError(
        f"{path}: --max-mem {format_size(budget)} is too small to compare chunks of "
        f"{coarse.layout.chunks} and {fine.layout.chunks}; at least {format_size(need)} "
        f"is needed{fetched}"
    )


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (``-1``, not ``np.int8(-1)``)."""
    return value.item() if isinstance(value, np.generic) else value


def _compare_slab(
    path: str, arr: zarr.Array, x: np.ndarray, y: np.ndarray, r0: int, x_is_source: bool
) -> None:
    nan = arr.dtype.kind in "fc"
    row = max(1, x.itemsize * math.prod(x.shape[1:]))  # x[0] of strings is a str
    step = max(1, COMPARE_BYTES // row)
    for i in range(0, len(x), step):
        xs, ys = x[i : i + step], y[i : i + step]
        if np.array_equal(xs, ys, equal_nan=nan):
            continue
        differ = xs != ys
        if nan:
            differ &= ~(np.isnan(xs) & np.isnan(ys))
        where = np.unravel_index(int(np.flatnonzero(differ)[0]), xs.shape)
        index = (r0 + i + int(where[0]), *(int(w) for w in where[1:]))
        src_val, tgt_val = (xs[where], ys[where]) if x_is_source else (ys[where], xs[where])
        step0 = arr.chunks[0]
        lo = (index[0] // step0) * step0
        region = _region(arr, lo, min(lo + step0, arr.shape[0]), index[1] if arr.ndim > 1 else None)
        raise BadDataError(
            f"{path}: contents differ in {region} (first at {list(index)}: "
            f"source {_plain(src_val)!r}, target {_plain(tgt_val)!r})"
        )
