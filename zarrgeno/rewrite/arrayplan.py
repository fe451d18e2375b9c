"""Per-array rechunk plans: pure, from a shape, two chunkings and a memory budget.

:func:`plan_rechunk` asks rechunker's algorithm for read, intermediate and write chunks,
models one copy task's memory buffer by buffer (what zarrgeno.rewrite.blockcopy.copy_block holds:
its block, decode and encode buffers, filter copies, a fixed allowance) and searches the
block limit downwards until the tasks in flight fit the process budget. It reads no store
and returns a frozen :class:`ArrayPlan`; zarrgeno.rewrite.storeplan builds whole-store plans
from it.
rechunker (which imports dask.array) is imported only when a plan is made.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from zarrgeno.defaults import PROMISE_FACTOR as PROMISE_FACTOR  # re-exported
from zarrgeno.errors import UsageError
from zarrgeno.sizes import format_size

#: Blosc cannot compress a buffer above 2**31 - 16 bytes, and zarrgeno refuses to open stores
#: whose chunks exceed it (zarrgeno.io.validation), so no plan may produce such a chunk.
MAX_CHUNK_BYTES = 2**31 - 16
#: Python objects, zarr metadata and small temporaries of one task, beyond the modelled buffers.
TASK_ALLOWANCE = 16_000_000
#: Largest block handed to rechunker when memory allows more (see plan_rechunk).
BLOCK_LIMIT = 256_000_000


def _nbytes(chunks: Sequence[int], itemsize: int) -> int:
    return math.prod(chunks) * itemsize


def _padded(block: Sequence[int], shape: Sequence[int], chunks: Sequence[int]) -> tuple[int, ...]:
    """A block clipped to the array, then rounded up to whole chunks (what a task allocates)."""
    return tuple(math.ceil(min(b, s) / c) * c for b, s, c in zip(block, shape, chunks, strict=True))


def _is_tiling(block: Sequence[int], chunks: Sequence[int], shape: Sequence[int]) -> bool:
    """True when blocks of ``block`` are made of whole ``chunks`` (up to the array's edge)."""
    return all(b % c == 0 or b >= s for b, c, s in zip(block, chunks, shape, strict=True))


def _contiguous_in(chunk: Sequence[int], block: Sequence[int]) -> bool:
    """True when a chunk-shaped slice of a C-order ``block`` is one contiguous run."""
    for i, (c, b) in enumerate(zip(chunk, block, strict=True)):
        if c < b:
            return all(cc == bb for cc, bb in zip(chunk[i + 1 :], block[i + 1 :], strict=True))
    return True


@dataclass(frozen=True)
class Codecs:
    """What the memory model needs to know about the encodings involved.

    Fractions are stored bytes / raw bytes (1.0 = incompressible, the safe default);
    filters are counted because each one makes a full copy of a chunk when encoding or
    decoding (a CRC32 checksum does).
    """

    source_fraction: float = 1.0
    target_fraction: float = 1.0
    temp_fraction: float = 1.0
    source_filters: int = 0
    target_filters: int = 0


@dataclass(frozen=True)
class Stage:
    """One pass of copy tasks: read ``key`` blocks of ``src`` and write whole ``dst`` chunks.

    Memory of one task (modelling ``blockcopy.copy_block``): ``block`` (the key block rounded
    up to whole destination chunks) and ``buffers`` (one decoded source chunk, plus a
    destination chunk when chunks are not contiguous runs of the block) are reused per
    thread; ``transient`` is the larger of a compressed source chunk plus filter copies
    while reading, and filter copies plus the compressed output while writing.
    """

    name: str
    key_chunks: tuple[int, ...]
    src_chunks: tuple[int, ...]
    dst_chunks: tuple[int, ...]
    tasks: int
    block: int
    buffers: int
    transient: int


def _stage(
    name: str,
    key: tuple[int, ...],
    src: tuple[int, ...],
    dst: tuple[int, ...],
    shape: tuple[int, ...],
    itemsize: int,
    fractions: tuple[float, float],
    filters: tuple[int, int],
) -> Stage:
    block = _padded(key, shape, dst)
    src_chunk, dst_chunk = _nbytes(src, itemsize), _nbytes(dst, itemsize)
    copy = 0 if _contiguous_in(dst, block) else dst_chunk
    # Each filter (a checksum) costs its output plus the copy the next codec makes of it.
    reading = src_chunk * (fractions[0] + 2 * filters[0])
    writing = dst_chunk * (fractions[1] + 2 * filters[1])
    return Stage(
        name,
        key,
        src,
        dst,
        _n_blocks(shape, key),
        _nbytes(block, itemsize),
        src_chunk + copy,
        int(max(reading, writing)),
    )


@dataclass(frozen=True)
class ArrayPlan:
    """How one array is rechunked, and what it costs; rendered by ``--plan``, run by execute."""

    path: str
    shape: tuple[int, ...]
    itemsize: int
    source_chunks: tuple[int, ...]
    target_chunks: tuple[int, ...]
    #: Blocks the first stage's tasks read from the source.
    read_chunks: tuple[int, ...]
    #: Chunks of rechunker's temporary array; None when blocks are copied directly.
    intermediate_chunks: tuple[int, ...] | None
    #: Blocks the last stage's tasks write (whole target chunks).
    write_chunks: tuple[int, ...]
    stages: tuple[Stage, ...]
    output_chunks: int
    temp_bytes: int
    concurrency: int
    rechunker_mem: int
    max_mem: int
    #: Peak bytes of one thread: reused buffers keep the largest size any stage needed.
    task_peak: int
    #: Bytes of source chunks a remote source may hold fetched ahead (its window of
    #: requests in flight, each body at its size bound): once per process, or once per
    #: task when each task runs in a worker process of its own (``read_ahead_per_task``).
    read_ahead: int = 0
    read_ahead_per_task: bool = False

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.itemsize

    @property
    def tasks(self) -> int:
        return sum(s.tasks for s in self.stages)

    @property
    def expected_peak(self) -> int:
        """Modelled peak of the copy buffers: tasks in flight x one thread's peak, plus
        the chunks fetched ahead."""
        if self.read_ahead_per_task:
            return self.concurrency * (self.task_peak + self.read_ahead)
        return self.concurrency * self.task_peak + self.read_ahead

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data.update(nbytes=self.nbytes, tasks=self.tasks, expected_peak=self.expected_peak)
        return data


def _peak(stages: Sequence[Stage]) -> int:
    return (
        max(s.block for s in stages)
        + max(s.buffers for s in stages)
        + max(s.transient for s in stages)
        + TASK_ALLOWANCE
    )


def _aligned(
    block: tuple[int, ...],
    source: tuple[int, ...],
    target: tuple[int, ...],
    shape: tuple[int, ...],
) -> tuple[int, ...]:
    """Shrink a block to a multiple of both chunkings where it spans one: a block that
    straddles source chunks decodes them twice (rechunker sizes blocks by memory only).

    >>> _aligned((305000, 81, 2), (300000, 50, 2), (1000, 81, 2), (6065718, 81, 2))
    (300000, 81, 2)
    """
    out = []
    for b, s, t, n in zip(block, source, target, shape, strict=True):
        both = math.lcm(s, t)
        out.append(b if b >= n or b < both else b // both * both)
    return tuple(out)


def clamp_chunks(chunks: Sequence[int], shape: Sequence[int]) -> tuple[int, ...]:
    """Chunk lengths cut to the array's axes (at least 1): what a chunk can hold.

    >>> clamp_chunks((300000, 50, 2), (67835, 31, 2))
    (67835, 31, 2)
    >>> clamp_chunks((10, 10), (0, 5))
    (1, 5)
    """
    return tuple(max(1, min(int(c), int(s))) for c, s in zip(chunks, shape, strict=True))


def _n_blocks(shape: Sequence[int], block: Sequence[int]) -> int:
    return math.prod(math.ceil(s / b) for s, b in zip(shape, block, strict=True))


def _stages(
    shape: tuple[int, ...],
    source_chunks: tuple[int, ...],
    target_chunks: tuple[int, ...],
    itemsize: int,
    mem: int,
    codecs: Codecs,
) -> tuple[tuple[int, ...], tuple[int, ...] | None, tuple[int, ...], tuple[Stage, ...]]:
    from rechunker.algorithm import rechunking_plan  # imports dask.array: only when planning

    # rechunker refuses chunks longer than the array (zarr allows them: a published Ag3
    # store declares (300000, 50, 2) on arrays of 31 samples). Plan with the chunks clamped
    # to the shape; buffers are still modelled at the declared size, which is what a
    # decoded chunk and a padded block take.
    src, dst = clamp_chunks(source_chunks, shape), clamp_chunks(target_chunks, shape)
    try:
        read, inter, write = rechunking_plan(shape, src, dst, itemsize, mem)
    except (ValueError, AssertionError) as exc:  # rechunker's own checks
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(
            f"cannot plan shape {shape} from chunks {source_chunks} to {target_chunks}: "
            f"rechunker: {reason} (try other --chunks or --max-mem)"
        ) from None
    read, inter, write = (tuple(int(x) for x in c) for c in (read, inter, write))
    c = codecs
    if read in (write, inter):  # rechunker's rule: no intermediate array needed
        write = _aligned(write, source_chunks, target_chunks, shape)
        direct = _stage(
            "copy",
            write,
            source_chunks,
            target_chunks,
            shape,
            itemsize,
            (c.source_fraction, c.target_fraction),
            (c.source_filters, c.target_filters),
        )
        return write, None, write, (direct,)  # each task reads the block it writes
    # Stage 1 reads whole read-chunk blocks when they tile the intermediate chunks (each
    # source chunk is then decoded once); otherwise one intermediate chunk per task, as
    # rechunker's own pipeline does.
    key1 = read if _is_tiling(read, inter, shape) else inter
    first = _stage(
        "to-temp",
        key1,
        source_chunks,
        inter,
        shape,
        itemsize,
        (c.source_fraction, c.temp_fraction),
        (c.source_filters, 0),
    )
    second = _stage(
        "from-temp",
        write,
        inter,
        target_chunks,
        shape,
        itemsize,
        (c.temp_fraction, c.target_fraction),
        (0, c.target_filters),
    )
    return key1, inter, write, (first, second)


def _checked(
    shape: Sequence[int],
    source_chunks: Sequence[int],
    target_chunks: Sequence[int],
    itemsize: int,
    path: str,
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], int]:
    """The shape to plan (a zero-length axis as one element: rechunker cannot plan it, and
    there is nothing to copy), both chunkings as int tuples, and the smallest block limit
    rechunker accepts (a whole source and a whole target chunk); refused when invalid."""
    shape = tuple(int(s) for s in shape)
    source = tuple(int(c) for c in source_chunks)
    target = tuple(int(c) for c in target_chunks)
    where = f"{path}: " if path else ""
    if not (len(shape) == len(source) == len(target)):
        raise UsageError(f"{where}chunks {target} do not match shape {shape}")
    if any(c <= 0 for c in source + target):
        raise UsageError(f"{where}chunk lengths must be positive (resolve -1 first)")
    target_bytes = _nbytes(target, itemsize)
    if target_bytes > MAX_CHUNK_BYTES:
        raise UsageError(
            f"{where}target chunk {target} is {format_size(target_bytes)}; "
            f"Blosc and zarrgeno stores allow at most {format_size(MAX_CHUNK_BYTES)} per chunk"
        )
    floor_mem = max(_nbytes(source, itemsize), target_bytes)
    return tuple(max(1, s) for s in shape), source, target, floor_mem


def _path_stages(
    shape: tuple[int, ...],
    source: tuple[int, ...],
    target: tuple[int, ...],
    itemsize: int,
    mem: int,
    codecs: Codecs,
    path: str,
) -> tuple[tuple[int, ...], tuple[int, ...] | None, tuple[int, ...], tuple[Stage, ...]]:
    """:func:`_stages`, its errors prefixed with the array's path."""
    try:
        return _stages(shape, source, target, itemsize, mem, codecs)
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}" if path else str(exc)) from None


def task_memory(
    shape: Sequence[int],
    source_chunks: Sequence[int],
    target_chunks: Sequence[int],
    itemsize: int,
    codecs: Codecs,
    path: str = "",
) -> int:
    """The modelled peak of one copy task at the smallest block: the least ``max_mem``
    with which :func:`plan_rechunk` can plan, for compressed fractions ``codecs``.

    Pure, from metadata: a caller checks a budget with it before reading any chunk.

    >>> task_memory((1000, 81, 2), (100, 81, 2), (500, 81, 2), 1, Codecs()) > 500 * 162
    True
    """
    plan_shape, source, target, floor_mem = _checked(
        shape, source_chunks, target_chunks, itemsize, path
    )
    return _peak(_path_stages(plan_shape, source, target, itemsize, floor_mem, codecs, path)[3])


def budget_too_small(
    path: str, max_mem: int, target_chunks: Sequence[int], minimum: int, enough: int | None = None
) -> UsageError:
    """The error of a ``max_mem`` below ``minimum``, the least one task of ``path`` needs;
    ``enough`` (when the compression is not known yet) is what suffices for any data."""
    where = f"{path}: " if path else ""
    need = format_size(_round_up(minimum))
    suggest = format_size(_round_up(enough or minimum))
    upto = f"; up to {suggest} for data that does not compress" if enough else ""
    return UsageError(
        f"{where}--max-mem {format_size(max_mem)} is too small: a target chunk "
        f"{tuple(target_chunks)} needs at least {need} (one task: its block, decode and "
        f"encode buffers{upto}); pass --max-mem {suggest.replace(' ', '')} or more, "
        "or smaller chunks"
    )


def read_ahead_too_large(path: str, max_mem: int, task: int, read_ahead: int) -> UsageError:
    """The error of a ``max_mem`` that holds one task (``task`` bytes) but not with the
    source's chunks fetched ahead (``read_ahead`` bytes, the ``--fetch-concurrency`` window)."""
    where = f"{path}: " if path else ""
    suggest = format_size(_round_up(task + read_ahead)).replace(" ", "")
    return UsageError(
        f"{where}--max-mem {format_size(max_mem)} is too small for one task "
        f"({format_size(task)}) with the source's chunks fetched ahead "
        f"({format_size(read_ahead)}): lower --fetch-concurrency, or pass --max-mem "
        f"{suggest} or more"
    )


def plan_rechunk(
    shape: Sequence[int],
    source_chunks: Sequence[int],
    target_chunks: Sequence[int],
    itemsize: int,
    max_mem: int,
    *,
    concurrency: int = 1,
    codecs: Codecs | None = None,
    path: str = "",
    read_ahead: int = 0,
    read_ahead_per_task: bool = False,
) -> ArrayPlan:
    """Plan a rechunk whose copy buffers, summed over parallel tasks, stay within ``max_mem``.

    ``max_mem`` is the budget of the whole process. rechunker's ``max_mem`` bounds one
    block; a task holds its block plus decode and encode buffers, and ``concurrency``
    tasks run at once. So the block limit handed to rechunker is searched downwards
    until the modelled peak of ``concurrency`` tasks fits; when even one task at the
    smallest block cannot fit, fewer tasks run; when a single task cannot, a
    :class:`UsageError` names the minimum ``max_mem``. ``read_ahead`` bytes of source
    chunks fetched ahead (a remote source's window) come off the budget first, once, or
    with ``read_ahead_per_task`` once per task (each in a worker process of its own); a
    budget that holds one task but not with them is refused naming ``--fetch-concurrency``.
    ``-1`` must be resolved first (:func:`zarrgeno.chunkgrid.parse_chunks`).

    >>> p = plan_rechunk((48525747, 81, 2), (300000, 50, 2), (12131437, 81, 2), 1,
    ...                  4_000_000_000, codecs=Codecs(0.1, 0.1, 0.1))
    >>> p.write_chunks, p.intermediate_chunks, p.output_chunks, p.concurrency
    ((12131437, 81, 2), None, 4, 1)
    """
    codecs = codecs or Codecs()
    if concurrency < 1:
        raise UsageError(f"the number of parallel tasks must be at least 1, got {concurrency}")
    shape_for_plan, source_chunks, target_chunks, floor_mem = _checked(
        shape, source_chunks, target_chunks, itemsize, path
    )
    shape = tuple(int(s) for s in shape)

    def attempt(mem: int):
        return _path_stages(
            shape_for_plan, source_chunks, target_chunks, itemsize, mem, codecs, path
        )

    smallest = attempt(floor_mem)
    minimum = _peak(smallest[3])
    if minimum > max_mem:
        raise budget_too_small(path, max_mem, target_chunks, minimum)
    if minimum + read_ahead > max_mem:
        raise read_ahead_too_large(path, max_mem, minimum, read_ahead)
    shared, own = (0, read_ahead) if read_ahead_per_task else (read_ahead, 0)
    concurrency = max(1, min(concurrency, (max_mem - shared) // (minimum + own)))
    per_task = (max_mem - shared) // concurrency - own
    mem, best = floor_mem, smallest
    # Blocks beyond BLOCK_LIMIT only add memory (and starve parallel tasks of work): every
    # block is aligned to whole chunks already. Never below what one chunk needs.
    trial = min(per_task, max(floor_mem, BLOCK_LIMIT))
    for _ in range(40):  # the peak grows with the block limit; shrink until it fits
        if trial <= floor_mem:
            break
        result = attempt(trial)
        peak = _peak(result[3])
        if peak <= per_task:
            mem, best = trial, result
            break
        trial = int(trial * min(0.95, per_task / peak))
    read, inter, write, stages = best
    concurrency = min(concurrency, max(s.tasks for s in stages))  # no more than there is work
    temp = _nbytes(shape, itemsize) if inter is not None else 0
    return ArrayPlan(
        path=path,
        shape=shape,
        itemsize=itemsize,
        source_chunks=source_chunks,
        target_chunks=target_chunks,
        read_chunks=read,
        intermediate_chunks=inter,
        write_chunks=write,
        stages=stages,
        output_chunks=_n_blocks(shape_for_plan, target_chunks) if all(shape) else 0,
        temp_bytes=temp,
        concurrency=concurrency,
        rechunker_mem=mem,
        max_mem=max_mem,
        task_peak=_peak(stages),
        read_ahead=read_ahead,
        read_ahead_per_task=read_ahead_per_task,
    )


def _round_up(n: int) -> int:
    """Round up to two significant digits, for a --max-mem the user can type."""
    if n <= 0:
        return 0
    scale = 10 ** max(0, len(str(n)) - 2)
    return -(-n // scale) * scale
