"""Simulate an AG1000G-AO-shaped genotype store with realistic content, chunk by chunk."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import threading
import time
from collections.abc import Callable, Generator, Iterable, MutableMapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
import zarr.storage
from numcodecs.abc import Codec

from zarrgeno import __version__
from zarrgeno.chunkgrid import chunk_intervals, parse_chunks
from zarrgeno.defaults import CONTIGS, DEFAULT_CHUNKS, DEFAULT_SCALE, REAL_SAMPLES, REAL_VARIANTS
from zarrgeno.errors import TargetExistsError, UsageError
from zarrgeno.io.compression import default_compressor, format_codec, parse_compressor
from zarrgeno.io.writing import WriterPool, check_target, staged_directory
from zarrgeno.runtime.cores import usable_cores

#: Bumped whenever the same arguments would produce different genotypes.
MODEL_VERSION = 1
#: Genotypes are drawn in fixed blocks of variants, each from its own random stream keyed
#: by (seed, contig, block), so a variant's calls never depend on chunking or write order.
GEN_BLOCK = 50_000
SAMPLE_ID_WIDTH = 24

# The model. Tuned so that 2L at scale 1 stores at a ratio close to the real AG1000G-AO 2L
# (17.6 with Blosc lz4 5 shuffle); docs/simulate.md explains each choice.
#: Fraction of positions with a variant in the population; about 60% of them segregate
#: among 81 samples, since most population variants are too rare to be sampled.
VARIANT_SITES = 0.3
#: Lowest population allele frequency; the neutral 1/x density is cut off here.
MIN_FREQUENCY = 1e-4
#: Fraction of variants with a second alternate allele (2), and with a third (3) as well.
MULTIALLELIC = 0.04
TRIALLELIC = 0.005
#: Inaccessible runs (every sample missing): expected fraction of the genome, and the
#: log-normal run length (median, sigma), capped at one block.
INACCESSIBLE = 0.2
INACCESSIBLE_MEDIAN = 1_000.0
INACCESSIBLE_SIGMA = 1.2
#: Scattered per-sample missingness: median rate, its log-normal spread and upper cap,
#: and the mean length of a missing run (coverage drop-outs span a few positions).
MISSING_MEDIAN = 0.004
MISSING_SIGMA = 0.6
MISSING_CAP = 0.03
MISSING_RUN_MEAN = 6.0
#: Poor-quality samples: this fraction of samples (at least one) miss calls at these rates.
POOR_FRACTION = 0.06
POOR_RATE = (0.06, 0.15)

_SITES, _ACCESS, _MISSING, _SAMPLES = 1, 2, 3, 4  # random-stream tags
_CONTIG_KEY = {c: i for i, c in enumerate(CONTIGS)}

Progress = Callable[[int], None]


def _contig_key(contig: str) -> int:
    try:
        return _CONTIG_KEY[contig]
    except (KeyError, TypeError):
        raise UsageError(f"unknown contig {contig!r} (choose from {', '.join(CONTIGS)})") from None


def _check_int(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise UsageError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise UsageError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def contig_sizes(contigs: Iterable[str] = CONTIGS, scale: float = DEFAULT_SCALE) -> dict[str, int]:
    """Validate contig names and a scale; return each contig's variant count, in order.

    A repeated name counts once. Any positive scale is allowed (above 1 is bigger than real);
    each contig gets at least one variant.

    >>> contig_sizes(["X", "2L"], 0.001)
    {'X': 23385, '2L': 48526}
    """
    names = tuple(dict.fromkeys((contigs,) if isinstance(contigs, str) else contigs))
    if not names:
        raise UsageError("no contigs to simulate")
    for name in names:
        _contig_key(name)
    if isinstance(scale, bool) or not isinstance(scale, int | float | np.integer | np.floating):
        raise UsageError(f"scale must be a number, got {scale!r}")
    if not math.isfinite(scale) or scale <= 0:
        raise UsageError(f"scale must be a positive number, got {scale!r}")
    return {c: max(1, math.floor(REAL_VARIANTS[c] * float(scale) + 0.5)) for c in names}


def sample_ids(n_samples: int) -> list[str]:
    """Sample names shaped like AG1000G-AO's.

    >>> sample_ids(2)
    ['AO0001-C', 'AO0002-C']
    """
    return [f"AO{i + 1:04d}-C" for i in range(n_samples)]


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *key])))


def sample_quality(n_samples: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's rate of scattered missing calls, and the indices of the poor samples.

    Depends only on ``(seed, n_samples)``, so a sample is equally poor on every contig.
    """
    rng = _rng(seed, _SAMPLES)
    rates = np.minimum(MISSING_MEDIAN * rng.lognormal(0.0, MISSING_SIGMA, n_samples), MISSING_CAP)
    n_poor = max(1, round(POOR_FRACTION * n_samples))
    poor = np.sort(rng.permutation(n_samples)[:n_poor])
    rates[poor] = rng.uniform(*POOR_RATE, n_poor)
    return rates, poor


def _inaccessible_runs(seed: int, ckey: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Inaccessible runs starting in ``block``, as absolute (starts, stops).

    A Boolean model: starts form a Poisson process whose rate gives ``INACCESSIBLE``
    coverage on average; overlapping runs merge into longer ones.
    """
    rng = _rng(seed, ckey, block, _ACCESS)
    mean_length = INACCESSIBLE_MEDIAN * math.exp(INACCESSIBLE_SIGMA**2 / 2)
    n = rng.poisson(-math.log1p(-INACCESSIBLE) / mean_length * GEN_BLOCK)
    starts = rng.integers(0, GEN_BLOCK, n) + block * GEN_BLOCK
    lengths = rng.lognormal(math.log(INACCESSIBLE_MEDIAN), INACCESSIBLE_SIGMA, n)
    return starts, starts + np.clip(lengths.astype(np.int64), 1, GEN_BLOCK)


def _missing_runs(
    seed: int, ckey: int, block: int, rates: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-sample missing runs starting in ``block``, as absolute (starts, stops, samples)."""
    rng = _rng(seed, ckey, block, _MISSING)
    counts = rng.poisson(rates * GEN_BLOCK / MISSING_RUN_MEAN)
    total = int(counts.sum())
    starts = rng.integers(0, GEN_BLOCK, total) + block * GEN_BLOCK
    lengths = np.minimum(rng.geometric(1.0 / MISSING_RUN_MEAN, total), GEN_BLOCK)
    return starts, starts + lengths, np.repeat(np.arange(rates.size), counts)


def _frequencies(rng: np.random.Generator, k: int) -> np.ndarray:
    """Population allele frequencies with density ~ 1/x on [MIN_FREQUENCY, 1): neutral."""
    return np.exp(math.log(MIN_FREQUENCY) * (1.0 - rng.random(k)))


def _variants(seed: int, ckey: int, block: int, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Absolute positions and int8 genotypes (variants, samples, 2) of the block's variants.

    A variant at population frequency ``x`` is carried by each haplotype independently with
    probability ``x`` (Hardy-Weinberg genotypes). With ``x`` ~ 1/x, allele counts in the
    sample follow the neutral 1/i spectrum, and variants too rare to be sampled stay hom-ref.
    """
    rng = _rng(seed, ckey, block, _SITES)
    positions = np.flatnonzero(rng.random(GEN_BLOCK, dtype=np.float32) < VARIANT_SITES)
    k = positions.size
    kind = rng.random(k)
    x1 = _frequencies(rng, k)
    x2 = x1 + np.where(kind < MULTIALLELIC, _frequencies(rng, k), 0.0)
    x3 = x2 + np.where(kind < TRIALLELIC, _frequencies(rng, k), 0.0)
    # One uniform 16-bit draw per haplotype: below t1 -> 1, t2 -> 2, t3 -> 3, else 0.
    t1, t2, t3 = (
        np.minimum(np.rint(x * 65536), 65536).astype(np.uint32)[:, None] for x in (x1, x2, x3)
    )
    u = rng.integers(0, 65535, (k, 2 * n_samples), dtype=np.uint16, endpoint=True)
    haps = (u < t1).view(np.int8)
    multi = np.flatnonzero(t3[:, 0] > t1[:, 0])
    if multi.size:
        um = u[multi]
        allele = 1 + (um >= t1[multi]).astype(np.int8) + (um >= t2[multi]).astype(np.int8)
        haps[multi] = np.where(um < t3[multi], allele, 0)
    return positions + block * GEN_BLOCK, haps.reshape(k, n_samples, 2)


def _fill(out: np.ndarray, start: int, *, seed: int, contig: str, rates: np.ndarray) -> None:
    """Write variants ``start:start+len(out)`` of ``contig`` into the all-zero array ``out``."""
    ckey = _contig_key(contig)
    stop = start + out.shape[0]
    first, last = start // GEN_BLOCK, (stop - 1) // GEN_BLOCK
    for block in range(first, last + 1):
        positions, genotypes = _variants(seed, ckey, block, out.shape[1])
        keep = (positions >= start) & (positions < stop)
        out[positions[keep] - start] = genotypes[keep]
    # Missing runs are at most one block long, so they may start in the previous block.
    blocks = range(max(first - 1, 0), last + 1)
    runs = [_missing_runs(seed, ckey, b, rates) for b in blocks]
    lo = np.concatenate([np.maximum(r[0], start) for r in runs])
    hi = np.concatenate([np.minimum(r[1], stop) for r in runs])
    samples = np.concatenate([r[2] for r in runs])
    live = hi > lo
    lo, hi, samples = lo[live], hi[live], samples[live]
    owner = np.repeat(np.arange(lo.size), hi - lo)
    rows = lo[owner] + np.arange(owner.size) - np.repeat(np.cumsum(hi - lo) - (hi - lo), hi - lo)
    out[rows - start, samples[owner]] = -1  # both alleles: a call is missing or not
    for b in blocks:
        for a, z in zip(*_inaccessible_runs(seed, ckey, b), strict=True):
            if z > start and a < stop:
                out[max(a, start) - start : min(z, stop) - start] = -1


def simulate_genotypes(
    n_variants: int,
    n_samples: int = REAL_SAMPLES,
    *,
    seed: int = 0,
    contig: str = "2L",
    start: int = 0,
) -> np.ndarray:
    """Calls for variants ``start:start+n_variants`` of ``contig``: int8 (variants, samples, 2).

    Pure and deterministic: a range equals the matching slice of any longer range with the
    same seed, contig and sample count, which is how stores are written chunk by chunk.

    >>> gt = simulate_genotypes(1000, 4, seed=1)
    >>> gt.shape, gt.dtype
    ((1000, 4, 2), dtype('int8'))
    >>> bool((simulate_genotypes(10, 4, seed=1, start=500) == gt[500:510]).all())
    True
    """
    n_variants = _check_int("the number of variants", n_variants, minimum=0)
    n_samples = _check_int("the number of samples", n_samples, minimum=1)
    seed = _check_int("the seed", seed, minimum=0)
    start = _check_int("the start", start, minimum=0)
    _contig_key(contig)
    out = np.zeros((n_variants, n_samples, 2), dtype=np.int8)
    if n_variants:
        _fill(out, start, seed=seed, contig=contig, rates=sample_quality(n_samples, seed=seed)[0])
    return out


@dataclass(frozen=True)
class ContigSimulation:
    """One simulated contig: its array, shape, and how well it compressed."""

    contig: str
    path: str
    shape: tuple[int, int, int]
    chunks: tuple[int, int, int]
    nbytes: int
    nbytes_stored: int
    missing_calls: int
    seconds: float

    @property
    def ratio(self) -> float:
        """Raw bytes over stored bytes, as zarr's ``Storage ratio``."""
        return self.nbytes / self.nbytes_stored if self.nbytes_stored else math.inf

    @property
    def missing_fraction(self) -> float:
        """Fraction of calls (variant x sample) that are missing."""
        return self.missing_calls / (self.shape[0] * self.shape[1])

    def to_dict(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self),
            "shape": list(self.shape),
            "chunks": list(self.chunks),
            "ratio": round(self.ratio, 3),
            "missing_fraction": round(self.missing_fraction, 5),
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class SimulationReport:
    """What :func:`simulate_store` wrote, per contig and in total."""

    dest: str
    seed: int
    scale: float
    n_samples: int
    compressor: str
    contigs: tuple[ContigSimulation, ...]
    seconds: float
    model_version: int = MODEL_VERSION

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.contigs)

    @property
    def nbytes_stored(self) -> int:
        return sum(c.nbytes_stored for c in self.contigs)

    @property
    def ratio(self) -> float:
        return self.nbytes / self.nbytes_stored if self.nbytes_stored else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
            "contigs": [c.to_dict() for c in self.contigs],
            "nbytes": self.nbytes,
            "nbytes_stored": self.nbytes_stored,
            "ratio": round(self.ratio, 3),
            "seconds": round(self.seconds, 3),
        }


def _codec(compressor: Codec | str | None) -> Codec | None:
    if compressor is None:
        return default_compressor()
    if isinstance(compressor, str):
        return parse_compressor(compressor)
    if isinstance(compressor, Codec):
        return compressor
    raise UsageError(f"compressor must be a codec or a spec string, got {compressor!r}")


def simulate_store(
    dest: str | os.PathLike[str] | MutableMapping[str, bytes],
    *,
    contigs: Sequence[str] = CONTIGS,
    scale: float = DEFAULT_SCALE,
    n_samples: int = REAL_SAMPLES,
    chunks: str | Sequence[int] = DEFAULT_CHUNKS,
    compressor: Codec | str | None = None,
    seed: int = 0,
    overwrite: bool = False,
    progress: Progress | None = None,
    workers: int | None = None,
) -> SimulationReport:
    """Write an AG1000G-AO-shaped store of simulated genotypes to ``dest``.

    ``dest`` is a local directory (built in a staging directory beside it and renamed into
    place when complete) or an empty zarr store mapping such as ``zarr.MemoryStore()``.
    ``chunks`` is a tuple or a spec like ``"300000,50,2"``, clamped to each contig;
    ``compressor`` a codec, a spec like ``"blosc:zstd:7:bitshuffle"`` or ``"none"``, or
    ``None`` for the AG1000G default Blosc(lz4, 5, shuffle). ``progress`` is called after
    each chunk of variants with the number of variants it added. ``workers`` threads
    generate and compress chunks (default: up to 2; 1 runs in the calling thread).
    Memory is about ``workers * 2 * chunk_variants * n_samples * 2`` bytes.
    """
    sizes = contig_sizes(contigs, scale)
    n_samples = _check_int("the number of samples", n_samples, minimum=1)
    seed = _check_int("the seed", seed, minimum=0)
    if workers is None:
        workers = min(2, usable_cores())
    workers = _check_int("the number of workers", workers, minimum=1)
    codec = _codec(compressor)
    shapes = {c: (n, n_samples, 2) for c, n in sizes.items()}
    layout = {c: parse_chunks(chunks, shape) for c, shape in shapes.items()}
    attrs = {
        "simulation": {
            "generator": "zarrgeno.simulate.genotypes",
            "zarrgeno_version": __version__,
            "model_version": MODEL_VERSION,
            "seed": seed,
            "scale": float(scale),
            "n_samples": n_samples,
            "contigs": sizes,
            "real_variants": {c: REAL_VARIANTS[c] for c in sizes},
        }
    }
    began = time.perf_counter()

    def write(store: MutableMapping[str, bytes]) -> list[ContigSimulation]:
        return _write(
            store,
            shapes=shapes,
            layout=layout,
            codec=codec,
            seed=seed,
            attrs=attrs,
            progress=progress,
            workers=workers,
        )

    if isinstance(dest, zarr.hierarchy.Group):
        raise UsageError("pass a path or a zarr store (such as zarr.MemoryStore()), not a Group")
    if isinstance(dest, str | os.PathLike):
        target = check_target(dest, overwrite=overwrite, command="simulate")
        with staged_directory(target, overwrite=overwrite, command="simulate") as staging:
            rows = write(zarr.storage.DirectoryStore(str(staging)))
        where = str(target)
    elif isinstance(dest, MutableMapping):
        if len(dest) and not overwrite:
            raise TargetExistsError("the target store is not empty; pass overwrite=True to replace")
        rows = write(dest)
        where = f"<{type(dest).__name__}>"
    else:
        raise UsageError(f"cannot write a store to a {type(dest).__name__}")
    return SimulationReport(
        dest=where,
        seed=seed,
        scale=float(scale),
        n_samples=n_samples,
        compressor=format_codec(codec),
        contigs=tuple(rows),
        seconds=time.perf_counter() - began,
    )


def _write(
    store: MutableMapping[str, bytes],
    *,
    shapes: dict[str, tuple[int, int, int]],
    layout: dict[str, tuple[int, ...]],
    codec: Codec | None,
    seed: int,
    attrs: dict[str, Any],
    progress: Progress | None,
    workers: int,
) -> list[ContigSimulation]:
    n_samples = next(iter(shapes.values()))[1]
    root = zarr.open_group(store, mode="w")  # empties an existing store (overwrite)
    root.attrs.update(attrs)
    names = np.array(sample_ids(n_samples), dtype=f"S{SAMPLE_ID_WIDTH}")
    root.create_dataset("samples", data=names, chunks=(n_samples,), compressor=codec)
    rates = sample_quality(n_samples, seed=seed)[0]
    buffers = threading.local()
    rows = []
    for contig, shape in shapes.items():
        began = time.perf_counter()
        # Every chunk is written, so the fill value (zarr's default 0, as scikit-allel's
        # vcf_to_zarr leaves it) only pads the edge chunks.
        gt = root.require_group(f"{contig}/calldata").create_dataset(
            "GT",
            shape=shape,
            chunks=layout[contig],
            dtype="i1",
            compressor=codec,
            fill_value=0,
            write_empty_chunks=True,
        )

        def task(lo: int, hi: int, gt: zarr.Array = gt, contig: str = contig) -> tuple[int, int]:
            block = _zeroed(buffers, (hi - lo, n_samples, 2))
            _fill(block, lo, seed=seed, contig=contig, rates=rates)
            gt[lo:hi] = block
            return hi - lo, int(np.count_nonzero(block[:, :, 0] < 0))

        missing = 0
        # closing(): if this loop stops (Ctrl-C, SIGTERM, an error), the pool's running
        # tasks finish before the staging directory is removed, not when the generator is
        # garbage-collected later (a chunk written after the clean-up recreated it).
        with contextlib.closing(
            _run(task, chunk_intervals(0, shape[0], gt.chunks[0]), workers)
        ) as finished:
            for n, m in finished:
                missing += m
                if progress is not None:
                    progress(n)
        rows.append(
            ContigSimulation(
                contig=contig,
                path=gt.path,
                shape=shape,
                chunks=gt.chunks,
                nbytes=gt.nbytes,
                nbytes_stored=gt.nbytes_stored,
                missing_calls=missing,
                seconds=time.perf_counter() - began,
            )
        )
    zarr.consolidate_metadata(store)
    return rows


def _zeroed(buffers: threading.local, shape: tuple[int, int, int]) -> np.ndarray:
    """A zeroed int8 array of ``shape`` in this thread's reusable buffer.

    Zeroing memory already owned is cheaper than faulting in fresh pages for every chunk.
    """
    size = math.prod(shape)
    buffer = getattr(buffers, "array", None)
    if buffer is None or buffer.size < size:
        buffer = buffers.array = np.zeros(size, dtype=np.int8)
    view = buffer[:size].reshape(shape)
    view.fill(0)
    return view


def _run(
    task: Callable[[int, int], tuple[int, int]], intervals: list[tuple[int, int]], workers: int
) -> Generator[tuple[int, int], None, None]:
    """Yield each task's result as it finishes, with at most ``workers`` chunks in flight.

    Threads pay off because Blosc and most numpy work release the GIL.
    """
    if workers == 1:
        for lo, hi in intervals:
            yield task(lo, hi)
        return
    pending: set[Future[tuple[int, int]]] = set()
    pool = WriterPool(workers, thread_name_prefix="zarrgeno-simulate")
    try:
        for lo, hi in intervals:
            if len(pending) >= workers:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (future.result() for future in done)
            pending.add(pool.submit(task, lo, hi))
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            yield from (future.result() for future in done)
    finally:
        pool.drain()  # running tasks write into the staging: let them finish first


__all__ = [
    "CONTIGS",
    "DEFAULT_CHUNKS",
    "DEFAULT_SCALE",
    "MODEL_VERSION",
    "REAL_SAMPLES",
    "REAL_VARIANTS",
    "ContigSimulation",
    "SimulationReport",
    "contig_sizes",
    "sample_ids",
    "sample_quality",
    "simulate_genotypes",
    "simulate_store",
]
