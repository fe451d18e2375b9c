"""A site-filter store for a simulated genotype store: MalariaGEN layout, for ``--site-filters``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from zarrgeno.io.compression import default_compressor
from zarrgeno.simulate.genotypes import CONTIGS, DEFAULT_SCALE
from zarrgeno.simulate.sites import side_store

#: Filter items per stored chunk.
FILTERS_CHUNK = 1 << 20
#: The command recorded in a site-filter store's ``.zarrgeno.json``.
FILTERS_COMMAND = "simulate --site-filters"
#: Share of sites that pass, and the mean length of a run of sites that pass or fail alike
#: (real filters fail in stretches: repeats, poorly mapped regions).
PASS_SHARE = 0.7
MEAN_RUN = 200
_FILTER_STREAM = 7  # a random-stream tag apart from the genotype model's and the sites'


def simulated_filter(seed: int, contig: str, chunk: int, n: int) -> np.ndarray:
    """``n`` filter values of chunk ``chunk`` of a contig: runs of passing and failing sites.

    >>> v = simulated_filter(0, "2L", 0, 100_000)
    >>> str(v.dtype), round(float(v.mean()), 2)
    ('bool', 0.72)
    """
    key = [seed, CONTIGS.index(contig), chunk, _FILTER_STREAM]
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(key)))
    runs = rng.geometric(1.0 / MEAN_RUN, size=n // MEAN_RUN * 2 + 16)
    while runs.sum() < n:
        runs = np.concatenate([runs, rng.geometric(1.0 / MEAN_RUN, size=len(runs))])
    states = rng.random(len(runs)) < PASS_SHARE
    return np.repeat(states, runs)[:n]


def simulate_site_filters(
    dest: str | os.PathLike[str],
    *,
    contigs: Sequence[str] = CONTIGS,
    scale: float = DEFAULT_SCALE,
    seed: int = 0,
    genotypes: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write site filters for ``simulate_store(contigs=..., scale=...)`` to the directory
    ``dest``: ``CONTIG/variants/filter_pass`` (bool, one per variant), consolidated, as a
    MalariaGEN release's site-filter store. Built in a staging directory and renamed into
    place; ``genotypes`` (the genotype store) is never a valid ``dest``."""
    codec = default_compressor()
    beside = side_store(dest, FILTERS_COMMAND, contigs, scale, genotypes, overwrite)
    with beside as (target, root, sizes):
        root.attrs["simulation"] = {"site_filters_of": "zarrgeno.simulate.genotypes",
                                    "seed": seed, "scale": float(scale), "contigs": sizes,
                                    "pass_share": PASS_SHARE}  # fmt: skip
        for contig, n in sizes.items():
            chunk = min(FILTERS_CHUNK, n)
            mask = root.require_group(f"{contig}/variants").create_dataset(
                "filter_pass", shape=(n,), chunks=(chunk,), dtype=bool, compressor=codec
            )
            for k, lo in enumerate(range(0, n, chunk)):
                hi = min(n, lo + chunk)
                mask[lo:hi] = simulated_filter(seed, contig, k, hi - lo)
    return target
