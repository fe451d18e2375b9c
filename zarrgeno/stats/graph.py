"""The dask form of a plan: genotype dask arrays chunked like the store, one count task per unit."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zarrgeno.errors import StoreIOError, UsageError, os_reason
from zarrgeno.io.partfiles import write_whole
from zarrgeno.runtime.cores import usable_cores
from zarrgeno.stats.kernels import count_calls, count_calls_qc
from zarrgeno.stats.plan import Partial, StatsPlan, WorkUnit, batch_units
from zarrgeno.stats.plot import check_drawing_file
from zarrgeno.stats.reader import ChunkPiece
from zarrgeno.stats.unit import count_passing, finish_unit, qc_unit, run_units, site_pass

#: The file formats ``--visualize`` draws, by file name suffix.
GRAPH_FORMATS = ("svg", "png", "pdf", "dot")

if TYPE_CHECKING:
    import dask.array as da
    from dask.delayed import Delayed


def genotype_arrays(plan: StatsPlan) -> dict[str, da.Array]:
    """Each selected contig's calls as a dask array whose chunks are the store's chunks.

    Blocks are decoded by the same direct chunk reader as the other backends; the variant
    range and sample selection are plain dask slicing.
    """
    import dask.array as da

    arrays = {}
    for a, reader in zip(plan.arrays, plan.readers, strict=True):
        full = da.from_array(
            reader,
            chunks=reader.chunks,
            asarray=False,
            lock=False,
            fancy=False,
            name=f"read-{a.contig}-{reader.token[:8]}",
            meta=np.empty((0, 0, 0), dtype=reader.dtype),
        )
        gt = full if (a.start, a.stop) == (0, reader.shape[0]) else full[a.start : a.stop]
        if plan.samples is not None:
            gt = gt[:, list(plan.samples)]
        arrays[a.contig] = gt
    return arrays


def _edges(chunks: Sequence[int], offset: int = 0) -> list[tuple[int, int]]:
    edges, pos = [], offset
    for size in chunks:
        edges.append((pos, pos + size))
        pos += size
    return edges


def count_blocks(
    unit: WorkUnit,
    rows: tuple[tuple[int, int], ...],
    cols: tuple[tuple[int, int], ...],
    *blocks: np.ndarray,
) -> Partial:
    """The count task of the dask backends: the unit's blocks, row-major, through the kernel
    (with the QC counts of the same pass when ``unit.qc`` asks for them; over the variants
    that pass ``unit.site_filter``, read here, when it has one)."""
    qc = qc_unit(unit) if unit.qc is not None else None
    keep = site_pass(unit)

    def counted() -> Iterable[tuple[int, int, Any, slice]]:
        k = 0
        for r0, r1 in rows:
            for c0, c1 in cols:
                if keep is not None:
                    lo, hi = r0 - unit.start, r1 - unit.start
                    piece = ChunkPiece(r0, r1, c0, 0, c1 - c0, blocks[k])
                    counts, _ = count_passing(piece, keep[lo:hi], None, unit.semantics, qc, lo)
                elif qc is None:
                    counts = count_calls(blocks[k], semantics=unit.semantics)
                else:
                    lo, hi = r0 - unit.start, r1 - unit.start
                    bits = qc.bits_buffer(hi - lo, c1 - c0)
                    counts, block = count_calls_qc(
                        blocks[k],
                        hist=qc.hist[lo:hi],
                        semantics=unit.semantics,
                        bits=bits,
                        cohorts=qc.cohort_target(slice(c0, c1), lo, hi - lo),
                    )
                    qc.add(lo, hi, slice(c0, c1), block)
                yield r0, r1, counts, slice(c0, c1)
                k += 1

    return finish_unit(unit, counted(), qc, keep)


def unit_tasks(plan: StatsPlan, arrays: dict[str, da.Array] | None = None) -> list[Delayed]:
    """One delayed :class:`Partial` per unit, reading (or taking persisted) blocks of ``arrays``."""
    import dask

    arrays = genotype_arrays(plan) if arrays is None else arrays
    count = dask.delayed(count_blocks, pure=True)
    grids = {name: gt.to_delayed() for name, gt in arrays.items()}
    starts = {a.contig: a.start for a in plan.arrays}
    tasks = []
    for unit in plan.units:
        gt = arrays[unit.contig]
        row_edges = _edges(gt.chunks[0], starts[unit.contig])
        col_edges = tuple(_edges(gt.chunks[1]))
        picked = [i for i, (r0, r1) in enumerate(row_edges) if r0 >= unit.start and r1 <= unit.stop]
        rows = tuple(row_edges[i] for i in picked)
        if sum(r1 - r0 for r0, r1 in rows) != unit.n_variants:
            raise AssertionError(f"dask blocks do not tile {unit.describe()}")
        blocks = [grids[unit.contig][i, j, 0] for i in picked for j in range(len(col_edges))]
        tasks.append(count(unit, rows, col_edges, *blocks, dask_key_name=unit_key(unit)))
    return tasks


def unit_key(unit: WorkUnit) -> str:
    """The task key of a unit's count, as the graph and the dashboard show it. The reader's
    token makes it this run's: a running cluster shared by two runs, or by two stores with
    the same contigs, must not hand one run the other's counts (a scheduler reuses a key)."""
    return f"count-{unit.contig}-{unit.start}-{unit.reader.token[:8]}"


def batch_key(units: tuple[WorkUnit, ...]) -> str:
    """A batch's task key: its first unit's (see :func:`unit_key`),
    with the batch's end for a batch of several units."""
    key = unit_key(units[0])
    return key if len(units) == 1 else f"{key}-{units[-1].stop}"


def persisted_tasks(
    plan: StatsPlan, client: Any = None
) -> tuple[list[Delayed], dict[str, da.Array]]:
    """The count tasks over genotypes rechunked to all samples per block and, with a
    ``client``, persisted in its workers' memory first (the tutorial's ``persist()``).

    Also returns the (persisted) arrays: the caller keeps them referenced until the counts
    are in, or the cluster forgets the persisted blocks.
    """
    arrays = {name: gt.rechunk({1: -1}) for name, gt in genotype_arrays(plan).items()}
    if client is not None:
        arrays = dict(zip(arrays, client.persist(list(arrays.values())), strict=True))
    return unit_tasks(plan, arrays), arrays


def backend_tasks(
    plan: StatsPlan, backend: str, *, persist: bool = False, threads: int | None = None
) -> list[Delayed]:
    """The graph a dask backend runs, for ``--visualize``: the genotype dask array and its
    count tasks (``dask``, ``distributed --persist``), or one read-and-count task per
    batch of units (``distributed``, batched for ``threads`` worker threads, default one
    per usable core)."""
    return [task for task, _ in _contig_tasks(plan, backend, persist=persist, threads=threads)]


def _contig_tasks(
    plan: StatsPlan, backend: str, *, persist: bool, threads: int | None
) -> list[tuple[Delayed, tuple[WorkUnit, ...]]]:
    """:func:`backend_tasks`, each with the units it counts (one contig's)."""
    import dask

    if backend == "distributed" and not persist:
        task = dask.delayed(run_units, pure=True)
        batches = batch_units(plan.units, threads or usable_cores())
        return [(task(b, dask_key_name=batch_key(b)), b) for b in batches]
    tasks = persisted_tasks(plan)[0] if backend == "distributed" else unit_tasks(plan)
    return [(task, (unit,)) for task, unit in zip(tasks, plan.units, strict=True)]


def check_graph_file(filename: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """The ``--visualize`` file: a ``.svg``, ``.png``, ``.pdf`` or ``.dot`` name in an
    existing directory, not an existing file (unless ``overwrite``), with Graphviz there to
    draw it. Checked before anything is computed."""
    if shutil.which("dot") is None:
        raise UsageError(
            "--visualize needs Graphviz's `dot` program: install the graphviz system package "
            "(e.g. `apt-get install graphviz`) and `pip install graphviz`"
        )
    try:
        import graphviz  # noqa: F401
    except ImportError:
        raise UsageError(
            "--visualize needs the graphviz Python package: `pip install graphviz`"
        ) from None
    return check_drawing_file("--visualize", filename, GRAPH_FORMATS, overwrite=overwrite)


def draw_graph(
    plan: StatsPlan,
    backend: str,
    filename: str | os.PathLike[str],
    *,
    persist: bool = False,
    threads: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Draw the task graph ``backend`` runs for ``plan`` as the tutorial does
    (``dask.visualize``, via Graphviz's ``dot``), each node named with its contig, and
    write it to ``filename`` whole: a file that cannot be written is a StoreIOError."""
    target = check_graph_file(filename, overwrite=overwrite)
    tasks = _contig_tasks(plan, backend, persist=persist, threads=threads)
    data = _render(tasks, target.suffix.lstrip(".").lower())
    try:
        write_whole(target, data)
    except OSError as exc:
        raise StoreIOError(
            f"cannot write the task graph to {target}: {os_reason(exc)}", exc.errno
        ) from None
    return target


def _render(tasks: list[tuple[Delayed, tuple[WorkUnit, ...]]], fmt: str) -> bytes:
    """The graph of ``tasks`` drawn in ``fmt``, as bytes (dask writes it to a file: one in
    a temporary directory)."""
    import dask

    functions, data = graph_labels(tasks)
    try:
        with tempfile.TemporaryDirectory(prefix="zarrgeno-graph-") as where:
            drawn = Path(where) / f"graph.{fmt}"
            dask.visualize(
                *(task for task, _ in tasks),
                filename=str(drawn),
                rankdir="LR",
                function_attributes=functions,
                data_attributes=data,
            )
            return drawn.read_bytes()
    except OSError as exc:
        raise StoreIOError(f"cannot draw the task graph: {os_reason(exc)}", exc.errno) from None
    except RuntimeError as exc:  # dot made no output (a Graphviz built without the format)
        raise UsageError(f"cannot draw the task graph: {exc}") from None


def graph_labels(
    tasks: list[tuple[Delayed, tuple[WorkUnit, ...]]],
) -> tuple[dict[Any, dict[str, str]], dict[Any, dict[str, str]]]:
    """The label of every node of the drawn graph (``dask.visualize``'s
    ``function_attributes`` and ``data_attributes``), each with its contig.

    dask names a task by the first words of its key and stops at one that starts with a
    digit: ``count-X`` kept its contig, ``count`` of 2L, 2R, 3L and 3R did not, and a
    block was ``(0, 1, 0)`` of no array. Here a task is ``count-2L``, ``read-2L``, a block
    ``2L (0, 1, 0)``, a count ``2L variants 0:300`` and the array ``2L/calldata/GT``.
    """
    from dask.utils import key_split

    functions: dict[Any, dict[str, str]] = {}
    data: dict[Any, dict[str, str]] = {}
    for task, units in tasks:
        first, contig = units[0], units[0].contig
        array = first.reader.path
        if array.split("/")[0] != contig:  # one array of every contig (VCF Zarr)
            array = f"{contig} {array}"
        for key in dict(task.__dask_graph__()):
            verb = "-".join(w for w in key_split(key).split("-") if w != contig)
            functions[key] = {"label": f"{verb}-{contig}"}
            if isinstance(key, tuple):
                data[key] = {"label": f"{contig} ({', '.join(str(i) for i in key[1:])})"}
            elif key == task.key:
                span = f"{first.start:,}:{units[-1].stop:,}"
                data[key] = {"label": f"{contig} variants {span}"}
            else:
                data[key] = {"label": array}
    return functions, data
