"""A sites store for a simulated genotype store: MalariaGEN layout, positions for ``--region``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import zarr
import zarr.storage

from zarrgeno.io.compression import default_compressor
from zarrgeno.io.store import StoreRef
from zarrgeno.io.writing import check_target, staged_directory
from zarrgeno.simulate.genotypes import CONTIGS, DEFAULT_SCALE, REAL_VARIANTS, contig_sizes

#: Positions per stored chunk (4 MiB of int32), so a region lookup decodes a few MiB.
SITES_CHUNK = 1 << 20
#: The command recorded in a sites store's mark (zarrgeno.io.mark).
SITES_COMMAND = "simulate --sites"
_BASES = np.frombuffer(b"ACGT", dtype="S1")
#: The three other bases of each reference base, in ACGT order (Ag3's ALT has three).
_OTHERS = np.array([[b for b in _BASES if b != r] for r in _BASES], dtype="S1")
_REF_STREAM = 5  # a random-stream tag apart from the genotype model's


def simulated_positions(contig: str, n_variants: int, start: int, stop: int) -> np.ndarray:
    """1-based positions of rows ``start:stop`` of a simulated contig of ``n_variants`` rows.

    Each row of the simulator is one genome position; a store at scale ``s`` stands for
    the real contig, so rows are spread evenly over the real length (``REAL_VARIANTS``)
    and region strings of the real genome select the matching share. At scale 1, row
    ``i`` is position ``i + 1``. Strictly ascending.

    >>> simulated_positions("2L", 485_257, 0, 3).tolist()
    [1, 101, 201]
    """
    span = max(REAL_VARIANTS[contig], n_variants)
    rows = np.arange(start, stop, dtype=np.int64)
    return (rows * span // n_variants + 1).astype(np.int32)


def _bases(seed: int, contig: str, chunk: int, n: int) -> np.ndarray:
    key = [seed, CONTIGS.index(contig), chunk, _REF_STREAM]
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(key)))
    return rng.integers(0, 4, n).astype(np.intp)


def simulate_sites(
    dest: str | os.PathLike[str],
    *,
    contigs: Sequence[str] = CONTIGS,
    scale: float = DEFAULT_SCALE,
    seed: int = 0,
    genotypes: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the sites of ``simulate_store(contigs=..., scale=...)`` to the directory ``dest``.

    ``CONTIG/variants/POS`` (int32), ``REF`` (|S1) and ``ALT`` (|S1, the three other
    bases), consolidated, as a MalariaGEN release's sites store. Built in a staging
    directory and renamed into place; ``genotypes`` (the genotype store) is never a valid
    ``dest``.
    """
    codec = default_compressor()
    beside = side_store(dest, SITES_COMMAND, contigs, scale, genotypes, overwrite)
    with beside as (target, root, sizes):
        root.attrs["simulation"] = {"sites_of": "zarrgeno.simulate.genotypes", "seed": seed,
                                    "scale": float(scale), "contigs": sizes}  # fmt: skip
        for contig, n in sizes.items():
            variants = root.require_group(f"{contig}/variants")
            chunk = min(SITES_CHUNK, n)
            pos = variants.create_dataset(
                "POS", shape=(n,), chunks=(chunk,), dtype="i4", compressor=codec
            )
            ref = variants.create_dataset(
                "REF", shape=(n,), chunks=(chunk,), dtype="S1", compressor=codec
            )
            alt = variants.create_dataset(
                "ALT", shape=(n, 3), chunks=(chunk, 3), dtype="S1", compressor=codec
            )
            for k, lo in enumerate(range(0, n, chunk)):
                hi = min(n, lo + chunk)
                pos[lo:hi] = simulated_positions(contig, n, lo, hi)
                base = _bases(seed, contig, k, hi - lo)
                ref[lo:hi] = _BASES[base]
                alt[lo:hi] = _OTHERS[base]
    return target


@contextlib.contextmanager
def side_store(
    dest: str | os.PathLike[str],
    command: str,
    contigs: Sequence[str],
    scale: float,
    genotypes: str | os.PathLike[str] | None,
    overwrite: bool,
) -> Iterator[tuple[Path, zarr.hierarchy.Group, dict[str, int]]]:
    """A store beside a simulated genotype store (sites, site filters): the target (never
    ``genotypes``, an existing one only with ``overwrite``), its root group in a staging
    directory, and each contig's variants; consolidated and renamed into place when the
    block ends."""
    sizes = contig_sizes(contigs, scale)
    sources = (StoreRef.from_source(genotypes),) if genotypes is not None else ()
    target = check_target(dest, overwrite=overwrite, command=command, sources=sources)
    with staged_directory(target, overwrite=overwrite, command=command) as staging:
        root = zarr.open_group(zarr.storage.DirectoryStore(str(staging)), mode="w")
        yield target, root, sizes
        zarr.consolidate_metadata(root.store)
