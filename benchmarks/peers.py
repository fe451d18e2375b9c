"""The peers' way to the same counts, run by bench_stats.py in their own virtual environment.

``python peers.py allel|sgkit STORE [CONTIG ...]`` prints one JSON line: the totals over the
contigs (missing, hom-ref and het calls; variants with no missing call; variants with more
hom-ref than het calls), with sgkit's semantics (missing: any allele negative; het: called
and different), which both peers use. It imports nothing from zarrgeno: it is what a user of
scikit-allel 1.3.13 or sgkit 0.10 would write, each library's own calls on the same store.
"""

from __future__ import annotations

import json
import sys
from typing import Any

CONTIGS = ("2L", "2R", "3L", "3R", "X")


def _contigs(store: str, wanted: list[str]) -> list[str]:
    import zarr

    root = zarr.open_group(store, mode="r")
    return [c for c in (wanted or CONTIGS) if f"{c}/calldata/GT" in root]


def with_allel(store: str, contigs: list[str]) -> dict[str, int]:
    """scikit-allel: GenotypeDaskArray.count_missing / count_hom_ref / count_het."""
    import allel
    import dask
    import zarr

    root = zarr.open_group(store, mode="r")
    lazy: list[Any] = []
    for contig in contigs:
        gt = allel.GenotypeDaskArray(root[f"{contig}/calldata/GT"])
        lazy += _sums(gt.count_missing(axis=1), gt.count_hom_ref(axis=1), gt.count_het(axis=1))
    return _totals([int(v) for v in dask.compute(*lazy)])  # one pass: dask shares the reads


def with_sgkit(store: str, contigs: list[str]) -> dict[str, int]:
    """sgkit: variant_stats on a dataset made with create_genotype_call_dataset."""
    import dask
    import dask.array as da
    import numpy as np
    import sgkit
    import zarr

    root = zarr.open_group(store, mode="r")
    lazy: list[Any] = []
    for contig in contigs:
        z = root[f"{contig}/calldata/GT"]
        gt = da.from_zarr(z)
        n, s = z.shape[:2]
        chunks = (z.chunks[0],)
        ds = sgkit.create_genotype_call_dataset(
            variant_contig_names=[contig],
            variant_contig=da.zeros(n, dtype="i4", chunks=chunks),
            variant_position=da.arange(n, dtype="i4", chunks=chunks),
            variant_allele=da.full((n, 4), b"A", dtype="S1", chunks=(*chunks, 4)),
            sample_id=np.array([f"s{j}" for j in range(s)]),
            call_genotype=gt,
        )
        stats = sgkit.variant_stats(ds, merge=False)
        missing = s - stats["variant_n_called"].data
        lazy += _sums(missing, stats["variant_n_hom_ref"].data, stats["variant_n_het"].data)
    return _totals([int(v) for v in dask.compute(*lazy)])


def _sums(missing: Any, hom_ref: Any, het: Any) -> list[Any]:
    """Lazy totals from per-variant counts, in the order of :func:`_totals`."""
    return [missing.sum(), hom_ref.sum(), het.sum(), (missing == 0).sum(), (hom_ref > het).sum()]


def _totals(values: list[int]) -> dict[str, int]:
    keys = ("n_missing", "n_hom_ref", "n_het", "complete_data", "more_anc_hom")
    return {k: sum(values[i :: len(keys)]) for i, k in enumerate(keys)}


def main(argv: list[str]) -> int:
    peer, store, *wanted = argv
    contigs = _contigs(store, wanted)
    run = {"allel": with_allel, "sgkit": with_sgkit}[peer]
    print(json.dumps(run(store, contigs)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
