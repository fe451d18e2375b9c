"""Measure candidate codecs on a sample of a store's own chunks, and recommend one."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numcodecs.blosc
import numpy as np
from numcodecs.abc import Codec

from zarrgeno.errors import BadDataError, MissingInputError, UsageError
from zarrgeno.io.chunks import ChunkLayout, decode_chunk, read_stored
from zarrgeno.io.compression import BLOSC_CNAMES, format_codec, parse_compressor, parse_filters
from zarrgeno.io.screened import refuse_needed
from zarrgeno.io.store import find_genotypes, open_store

#: Timing passes over the samples per codec, the best kept, within the time budget.
REPEATS = 3
#: Decode speed a recommended codec must reach, as a fraction of the fastest decoder's.
DECODE_FRACTION = 0.5
#: Projected sizes this close to the smallest count as equal: the first such codec in the
#: candidate list wins, not the one whose timing happened to be faster this run.
SIZE_TOLERANCE = 0.01
RULE = (
    "the smallest projected size among codecs that decode at least "
    f"{DECODE_FRACTION:.0%} as fast as the fastest decoder; sizes within "
    f"{SIZE_TOLERANCE:.0%} are equal, equal sizes share their best speed, and the first "
    "listed wins"
)


def default_candidates() -> list[str]:
    """Blosc with every cname and shuffle at level 5, a few levels more, and the others."""
    specs = [
        f"blosc:{cname}:5:{shuffle}"
        for cname in BLOSC_CNAMES
        for shuffle in ("noshuffle", "shuffle", "bitshuffle")
    ]
    specs += ["blosc:lz4:1:bitshuffle", "blosc:zstd:1:bitshuffle", "blosc:zstd:7:bitshuffle"]
    specs += ["zstd:1", "zstd:3", "zstd:9", "lz4:1", "zlib:6", "gzip:6", "bz2:9", "lzma:6"]
    return specs


def sample_indices(layout: ChunkLayout, n: int) -> list[tuple[int, ...]]:
    """``n`` chunk indices spread evenly over the chunk grid (first and last included).

    Whole chunks are preferred: a chunk cut by the array's edge is only sampled when an
    axis has no other, as its in-array part would be copied out of the decoded chunk.
    """
    grid = layout.grid()
    whole = tuple(
        g - 1 if s % c and g > 1 else g
        for g, s, c in zip(grid, layout.shape, layout.chunks, strict=True)
    )
    total = math.prod(whole)
    if total == 0 or n <= 0:
        return []
    flat = sorted({round(x) for x in np.linspace(0, total - 1, min(n, total))})
    return [tuple(int(i) for i in np.unravel_index(f, whole)) for f in flat]


def read_sample(
    store: Mapping[str, bytes], layout: ChunkLayout, index: tuple[int, ...]
) -> tuple[int | None, np.ndarray]:
    """A chunk's stored size (None when absent) and its decoded data within the array."""
    key = layout.key(index)
    raw = read_stored(store, layout, index, allow_missing=True)
    if raw is None:
        chunk = np.full(layout.chunks, layout.fill_value or 0, dtype=layout.dtype)
    else:
        chunk = decode_chunk(layout, key, raw)
    inside = tuple(
        slice(0, min(c, s - i * c))
        for i, c, s in zip(index, layout.chunks, layout.shape, strict=True)
    )
    part = chunk[inside]
    if part.shape != chunk.shape:
        part = np.ascontiguousarray(part)
        del chunk
    return (None if raw is None else len(raw)), part


def encode(data: np.ndarray, compressor: Codec | None, filters: Sequence[Codec] = ()) -> bytes:
    """Encode ``data`` as zarr would with these filters and compressor."""
    encoded: Any = data
    for codec in filters:
        encoded = codec.encode(encoded)
    if compressor is not None:
        encoded = compressor.encode(encoded)
    return bytes(encoded) if not isinstance(encoded, bytes) else encoded


def compressed_fractions(
    store: Mapping[str, bytes],
    layout: ChunkLayout,
    encodings: Sequence[tuple[Codec | None, Sequence[Codec]]],
    *,
    samples: int = 2,
) -> tuple[float, list[float]]:
    """Stored/raw size of the source's chunks, and of each encoding, on ``samples`` chunks.

    The largest fraction seen is returned (1.0 when nothing can be sampled): the memory
    model of rechunk needs an upper bound, not an average.
    """
    source = 0.0
    others = [0.0] * len(encodings)
    seen = False
    for index in sample_indices(layout, samples):
        if not encodings:  # sizes only: nothing to decode
            raw = read_stored(store, layout, index, allow_missing=True)
            source = max(source, len(raw) / layout.chunk_nbytes if raw is not None else 0.0)
            seen = True
            continue
        stored, data = read_sample(store, layout, index)
        if data.nbytes == 0:
            continue
        seen = True
        source = max(source, (stored or 0) / layout.chunk_nbytes)
        for i, (compressor, filters) in enumerate(encodings):
            size = len(encode(data, compressor, filters)) if compressor is not None else data.nbytes
            others[i] = max(others[i], size / data.nbytes)
    if not seen:
        return 1.0, [1.0] * len(encodings)
    return source, others


@dataclass(frozen=True)
class CodecResult:
    """One candidate's measurement on the sampled chunks."""

    spec: str
    ratio: float
    encode_mbps: float
    decode_mbps: float
    projected_bytes: int
    chunks: int
    current: bool = False


@dataclass(frozen=True)
class CodecReport:
    """The codec table for one array, and the recommendation."""

    array: str
    current: str
    sample_chunks: int
    sample_bytes: int
    array_bytes: int
    stored_bytes: int | None
    results: tuple[CodecResult, ...]
    recommended: str
    rule: str = RULE

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "results": [asdict(r) for r in self.results]}


def recommend(results: Sequence[CodecResult], *, decode_fraction: float = DECODE_FRACTION) -> str:
    """The smallest projected size among codecs decoding >= ``decode_fraction`` x the fastest.

    Sizes are exact (the same chunks give the same bytes every run) but speeds are not, so
    speeds only decide which codecs qualify, and codecs of equal size (within
    :data:`SIZE_TOLERANCE`) qualify together, on the best speed among them: two encodings
    that store the same bytes (zstd with and without shuffle on int8) decode at the same
    speed but for noise. Among the qualifying codecs of the smallest size, the first in
    ``results`` wins (the current codec, then the candidates in their order), which a
    re-run cannot change.

    >>> fast = CodecResult("blosc:lz4:5:shuffle", 10.0, 900.0, 3000.0, 1000, 3, False)
    >>> small = CodecResult("blosc:zstd:5:shuffle", 12.0, 300.0, 1400.0, 830, 3, False)
    >>> same = CodecResult("blosc:zstd:5:noshuffle", 12.0, 300.0, 1600.0, 830, 3, False)
    >>> recommend([fast, small, same]), recommend([fast, same, small])
    ('blosc:zstd:5:shuffle', 'blosc:zstd:5:noshuffle')
    """
    if not results:
        raise UsageError("no codec was measured")
    fastest = max(r.decode_mbps for r in results)

    def equal(a: CodecResult, b: CodecResult) -> bool:
        small, large = sorted((a.projected_bytes, b.projected_bytes))
        return large <= small * (1 + SIZE_TOLERANCE)

    def speed(r: CodecResult) -> float:
        return max(o.decode_mbps for o in results if equal(o, r))

    fast = [r for r in results if speed(r) >= decode_fraction * fastest]
    smallest = min(r.projected_bytes for r in fast)
    return next(r for r in fast if r.projected_bytes <= smallest * (1 + SIZE_TOLERANCE)).spec


def _timed_pass(
    spec: str,
    compressor: Codec | None,
    filters: Sequence[Codec],
    samples: Sequence[np.ndarray],
    time_budget: float,
) -> tuple[int, int, float, float, int]:
    """Encode and decode each sample once: raw and stored bytes, the two times, chunks used.

    Times are this thread's CPU time, not wall time: other processes on a shared machine
    take cores away (a wall-clock decode speed varied 1.8x between runs on a loaded
    machine), but hardly change the CPU a decode needs.
    """
    raw = stored = used = 0
    enc_time = dec_time = 0.0
    for data in samples:
        started = time.thread_time()
        blob = encode(data, compressor, filters)
        enc_time += time.thread_time() - started
        started = time.thread_time()
        decoded: Any = compressor.decode(blob) if compressor is not None else blob
        for codec in reversed(filters):
            decoded = codec.decode(decoded)
        dec_time += time.thread_time() - started
        if not np.array_equal(np.frombuffer(decoded, dtype=data.dtype), data.ravel()):
            raise BadDataError(f"codec {spec} did not round-trip a sampled chunk")
        raw += data.nbytes
        stored += len(blob)
        used += 1
        if enc_time + dec_time > time_budget:
            break  # slow codecs (lzma, bz2) are measured on fewer chunks
    return raw, stored, enc_time, dec_time, used


@dataclass(frozen=True)
class _Candidate:
    """A codec to time: its spec, compressor and filters, and whether it is the current one."""

    spec: str
    compressor: Codec | None
    filters: Sequence[Codec]
    current: bool = False


def _measure_all(
    candidates: Sequence[_Candidate],
    samples: Sequence[np.ndarray],
    array_bytes: int,
    time_budget: float,
) -> list[CodecResult]:
    """Best of up to REPEATS passes per codec, taken round-robin over the codecs.

    Pass r of every codec runs before pass r + 1 of any, so a burst of load from other
    programs falls on all codecs alike instead of on the few timed during it.
    """
    passes: list[tuple[int, int, float, float, int]] = []
    spent: list[float] = []
    for repeat in range(REPEATS):
        for i, c in enumerate(candidates):
            if repeat and (passes[i][4] < len(samples) or spent[i] > time_budget):
                continue  # a slow codec measured on fewer chunks, or out of time
            started = time.thread_time()
            raw, stored, enc, dec, used = _timed_pass(
                c.spec, c.compressor, c.filters, samples, time_budget
            )
            if repeat == 0:
                passes.append((raw, stored, enc, dec, used))
                spent.append(time.thread_time() - started)
            else:
                raw, stored, enc0, dec0, used = passes[i]
                passes[i] = (raw, stored, min(enc0, enc), min(dec0, dec), used)
                spent[i] += time.thread_time() - started
    results = []
    for c, (raw, stored, enc, dec, used) in zip(candidates, passes, strict=True):
        ratio = raw / max(stored, 1)
        results.append(
            CodecResult(
                spec=c.spec,
                ratio=ratio,
                encode_mbps=raw / 1e6 / max(enc, 1e-9),
                decode_mbps=raw / 1e6 / max(dec, 1e-9),
                projected_bytes=math.ceil(array_bytes / ratio),
                chunks=used,
                current=c.current,
            )
        )
    return results


def measure_codecs(
    source: Any,
    *,
    array: str | None = None,
    sample: int = 3,
    candidates: Sequence[str] | None = None,
    checksum: str | None = None,
    time_budget: float = 0.6,
) -> CodecReport:
    """Encode and decode ``sample`` of the array's chunks with each candidate codec.

    Timings are single-threaded (Blosc's own threads are switched off for the run), as
    each copy or statistics task decodes in one thread; ``time_budget`` seconds per codec
    bound the slow ones. The current codec is measured the same way, for comparison.
    """
    if sample < 1:
        raise UsageError(f"--sample must be at least 1, got {sample}")
    ref, group = open_store(source)
    if array is not None:  # else the first genotype array that opens
        refuse_needed(group, ref.name, [array])
    if array is None:
        genotypes = find_genotypes(group)
        if not genotypes:
            raise MissingInputError("no genotype arrays found; name an array with --array")
        array = genotypes[0].path
    path = array.strip("/")
    if path not in group or not hasattr(group[path], "chunks"):
        raise MissingInputError(f"no array {path!r} in the store")
    arr = group[path]
    layout = ChunkLayout.of(arr)
    if layout.dtype.hasobject:
        raise UsageError(
            f"{path} is an object (string) array; codecs measures numeric arrays such as "
            "the genotypes"
        )
    store = ref.mapping_store()
    specs = list(dict.fromkeys(candidates or default_candidates()))
    parsed = [(spec, parse_compressor(spec)) for spec in specs]
    filters = parse_filters([checksum] if checksum else None) or []
    samples = [read_sample(store, layout, i)[1] for i in sample_indices(layout, sample)]
    samples = [s for s in samples if s.nbytes]
    if not samples:
        raise BadDataError(f"{path} is empty; there is nothing to measure")
    current = format_codec(arr.compressor)
    previous = numcodecs.blosc.use_threads
    numcodecs.blosc.use_threads = False
    try:
        timed = [_Candidate(current, arr.compressor, list(arr.filters or ()), current=True)]
        timed += [
            _Candidate(spec, codec, filters)
            for spec, codec in parsed
            if format_codec(codec) != current or filters
        ]
        results = _measure_all(timed, samples, arr.nbytes, time_budget)
    finally:
        numcodecs.blosc.use_threads = previous
    try:
        stored: int | None = int(arr.nbytes_stored)
    except (OSError, TypeError, ValueError):
        stored = None
    return CodecReport(
        array=path,
        current=current,
        sample_chunks=len(samples),
        sample_bytes=sum(s.nbytes for s in samples),
        array_bytes=arr.nbytes,
        stored_bytes=stored,
        results=tuple(results),
        recommended=recommend(results),
    )
